//! Small helpers shared by the modules: durations as people write them, wall-clock time,
//! constant-time comparison.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Compares two secrets without an early exit. Both sides are hashed first so that neither the
/// position of the first difference nor the length of the expected token leaks through timing.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"token", b"token"));
        assert!(!ct_eq(b"token", b"tokem"));
        assert!(!ct_eq(b"token", b"token2"));
        assert!(!ct_eq(b"", b"x"));
    }
}
