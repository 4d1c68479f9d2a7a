//! The one duration grammar of Multiverse: what a person types for a timeout, a pause or a
//! cache lifetime (`500ms`, `90`, `90s`, `10m`, `2h`, `1d`).
//!
//! A bare number is seconds. One unit per value (no `1h30m`): every duration in the tree is a
//! single quantity, and a grammar this small leaves nothing to misread. Overflow is an error,
//! never a wrap. This module is not a clock and does not format durations.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing, or no digits before the unit.
    #[error("{0:?} is not a duration: expected a number with an optional unit (ms, s, m, h, d)")]
    Malformed(String),
    /// A unit this grammar does not know.
    #[error("{value:?} has the unknown unit {unit:?}: use ms, s, m, h or d")]
    UnknownUnit {
        /// The whole value as given.
        value: String,
        /// The unit part of it.
        unit: String,
    },
    /// More than `u64` milliseconds.
    #[error("{0:?} is too long a duration")]
    Overflow(String),
}

/// Parses `500ms`, `30`, `30s`, `5m`, `2h`, `1d` (surrounding spaces are ignored).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(DurationError::Malformed(text.to_string()));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(DurationError::UnknownUnit {
                value: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::Overflow(text.to_string()))?;
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_input_says_what() {
        assert!(matches!(parse(""), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("m"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("-5s"), Err(DurationError::Malformed(_))));
        assert!(matches!(
            parse("1w"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("1h30m"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("99999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn seconds_round_trip(n in 0u64..=u64::MAX / 1000) {
            prop_assert_eq!(parse(&format!("{n}s")), Ok(Duration::from_secs(n)));
            prop_assert_eq!(parse(&n.to_string()), Ok(Duration::from_secs(n)));
        }

        #[test]
        fn never_panics(s in ".*") {
            let _ = parse(&s);
        }
    }
}
