//! One-time passwords: HOTP (RFC 4226), TOTP (RFC 6238) and `otpauth://` key URIs.
//!
//! [`OtpUri`] is one `otpauth://totp|hotp/...` line as pass-otp stores it: the first line of an
//! entry that starts with `otpauth://`. It is parsed with pass-otp's own rules (label
//! `issuer:account`, a required account and secret, a numeric counter for HOTP) so that anything
//! `pass otp` accepts we accept, and the codes agree. The HOTP convention is pass-otp's too: the
//! stored counter is the last one used, so the next code is computed with `counter + 1` and that
//! value is written back ([`OtpUri::next_hotp`]).
//!
//! Why ours and not `totp-rs` (issue #19 weighed it): `totp-rs` does TOTP only, and pass-otp
//! stores HOTP too — `otpauth://hotp/…?counter=N`, whose counter this module advances and writes
//! back into the entry line ([`OtpUri::next_hotp`], [`replace_otp_line`]); `totp-rs` has no
//! HOTP, no counter and no `hotp` URI. Its URI parser is also stricter than pass-otp's, so it
//! would refuse entries `pass otp` reads: secrets shorter than 128 bits (common in the wild)
//! unless unchecked, a `:` inside the account name, and it rebuilds the URI instead of keeping
//! the stored line byte for byte. The HMAC truncation itself is 30 lines and checked against
//! the RFC 4226 and RFC 6238 vectors (`tests/vectors/`).
//!
//! What this is not: a clipboard or a QR code renderer. The secret never leaves this process
//! (pass-otp hands it to `oathtool` on argv; we compute in process).

use hmac::{Hmac, Mac};
use mv_core::secret::{SecretBytes, SecretString};

/// Why an `otpauth://` URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpError {
    /// Not `otpauth://totp/...?...` or `otpauth://hotp/...?...`.
    #[error("not an otpauth:// key URI (expected otpauth://totp/LABEL?secret=... or otpauth://hotp/LABEL?secret=...&counter=N)")]
    NotUri,
    /// No account name in the label.
    #[error("otpauth URI has no account name in its label")]
    MissingAccount,
    /// No `secret=` parameter.
    #[error("otpauth URI has no secret parameter")]
    MissingSecret,
    /// The secret is not base32.
    #[error("otpauth URI secret is not valid base32")]
    BadSecret,
    /// HOTP without a numeric counter.
    #[error("hotp URI has no numeric counter parameter")]
    MissingCounter,
    /// Digits not 6, 7 or 8.
    #[error("otpauth URI digits `{0}` must be 6, 7 or 8")]
    BadDigits(String),
    /// Unknown algorithm.
    #[error("otpauth URI algorithm `{0}` is not SHA1, SHA256 or SHA512")]
    BadAlgorithm(String),
    /// Period not a positive number.
    #[error("otpauth URI period `{0}` is not a positive number of seconds")]
    BadPeriod(String),
    /// The entry has no otpauth line.
    #[error("the entry has no otpauth:// line")]
    NoOtpLine,
}

/// The HMAC hash of an OTP key (JSON: `"SHA1"`, `"SHA256"`, `"SHA512"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    /// HMAC-SHA1 (the default).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Result<Self, OtpError> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(OtpError::BadAlgorithm(s.to_string())),
        }
    }
}

/// HOTP value (RFC 4226 section 5.3) of `key` at `counter`, `digits` long (clamped to 1..=9),
/// zero padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32, alg: Algorithm) -> String {
    let digits = digits.clamp(1, 9);
    let msg = counter.to_be_bytes();
    let mac: Vec<u8> = match alg {
        Algorithm::Sha1 => mac_of::<Hmac<sha1::Sha1>>(key, &msg),
        Algorithm::Sha256 => mac_of::<Hmac<sha2::Sha256>>(key, &msg),
        Algorithm::Sha512 => mac_of::<Hmac<sha2::Sha512>>(key, &msg),
    };
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes. The MAC is 20, 32 or
    // 64 bytes, so offset + 3 <= 18 is always inside it.
    let off = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = (u32::from(mac[off] & 0x7f) << 24)
        | (u32::from(mac[off + 1]) << 16)
        | (u32::from(mac[off + 2]) << 8)
        | u32::from(mac[off + 3]);
    let code = bin % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

fn mac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps it panic-free.
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => vec![0; 20],
    }
}

/// TOTP value (RFC 6238) at unix time `now` with the given `period` in seconds (T0 = 0).
pub fn totp(key: &[u8], now: u64, period: u64, digits: u32, alg: Algorithm) -> String {
    hotp(key, now / period.max(1), digits, alg)
}

/// Time-based or counter-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum OtpKind {
    /// TOTP with its period in seconds.
    Totp {
        /// Seconds per code.
        period: u64,
    },
    /// HOTP with the last used counter.
    Hotp {
        /// Last counter value used (the next code uses counter + 1).
        counter: u64,
    },
}

/// A parsed `otpauth://` URI. The secret and the URI text are secrets; `Debug` hides them.
#[derive(Debug, Clone)]
pub struct OtpUri {
    /// The URI exactly as stored (it holds the secret).
    pub uri: SecretString,
    /// TOTP or HOTP.
    pub kind: OtpKind,
    /// The decoded key.
    pub secret: SecretBytes,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: u32,
    /// Issuer, from the label or the `issuer` parameter.
    pub issuer: Option<String>,
    /// Account name from the label.
    pub account: String,
}

fn percent_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // Both digits are < 16, so the byte fits.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A counter value. pass-otp 1.1.1 under bash 5.2 rewrites `&counter=1` as
/// `&counter=1counter=2` (its `${uri/&counter=N/&counter=M}` now expands `&` to the match), a
/// URI it cannot read back itself; we take the last number, which is the counter it used, and
/// the next write repairs the parameter.
fn parse_counter(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse() {
        return Some(n);
    }
    let (head, last) = v.rsplit_once("counter=")?;
    let head_ok = head
        .split("counter=")
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if head_ok {
        last.parse().ok()
    } else {
        None
    }
}

/// Decodes a base32 OTP secret the way authenticators write it: any case, spaces and `=` ignored.
pub(crate) fn decode_base32(s: &str) -> Result<SecretBytes, OtpError> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let cleaned = SecretString::new(cleaned);
    data_encoding::BASE32_NOPAD
        .decode(cleaned.expose().as_bytes())
        .map(SecretBytes::new)
        .map_err(|_| OtpError::BadSecret)
}

/// Splits a label into issuer and account as pass-otp does (`ISSUER:ACCOUNT`, the issuer
/// optional), except that a trailing `host:port` stays whole in the account:
/// `alice@google.com:443` is an account, `Google:alice@google.com:443` is issuer `Google` and
/// account `alice@google.com:443`.
pub(crate) fn split_label(label: &str) -> (Option<String>, String) {
    let port_tail = |s: &str| {
        s.rsplit_once(':').is_some_and(|(host, port)| {
            host.contains('.')
                && !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let (issuer, account) = if port_tail(label) && label.matches(':').count() == 1 {
        (None, label)
    } else {
        match label.split_once(':') {
            Some((i, a)) if !a.is_empty() => (Some(i), a),
            Some((i, _)) => (None, i),
            None => (None, label),
        }
    };
    (
        issuer.map(percent_decode).filter(|i| !i.is_empty()),
        percent_decode(account),
    )
}

/// pass-otp's `urlencode`: letters, digits and `.~_-` as they are, space as `+`, others `%XX`.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'~' | b'_' | b'-' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URI pass-otp builds for `otp insert --secret`: TOTP, SHA-1, 30 s, 6 digits.
pub fn uri_from_secret(
    secret: &str,
    issuer: Option<&str>,
    account: Option<&str>,
) -> Result<OtpUri, OtpError> {
    let i = issuer.map(url_encode).unwrap_or_default();
    let a = account.map(url_encode).unwrap_or_default();
    let sep = if !i.is_empty() && !a.is_empty() {
        ":"
    } else {
        ""
    };
    let mut uri = SecretString::new(format!(
        "otpauth://totp/{i}{sep}{a}?secret={}",
        secret.trim()
    ));
    if !i.is_empty() {
        uri.expose_mut().push_str(&format!("&issuer={i}"));
    }
    OtpUri::parse(uri.expose())
}

impl OtpUri {
    /// The entry name pass-otp takes from the label: `ISSUER/ACCOUNT`, or `ACCOUNT`.
    pub fn label_name(&self) -> String {
        match &self.issuer {
            Some(i) if !i.is_empty() => format!("{i}/{}", self.account),
            _ => self.account.clone(),
        }
    }

    /// Parses one URI with pass-otp's rules.
    pub fn parse(uri: &str) -> Result<Self, OtpError> {
        let uri = uri.trim_end_matches(['\r', '\n']);
        let rest = uri.strip_prefix("otpauth://").ok_or(OtpError::NotUri)?;
        let (typ, rest) = if let Some(r) = rest.strip_prefix("totp") {
            ("totp", r)
        } else if let Some(r) = rest.strip_prefix("hotp") {
            ("hotp", r)
        } else {
            return Err(OtpError::NotUri);
        };
        let (label, query) = rest.split_once('?').ok_or(OtpError::NotUri)?;
        if query.is_empty() {
            return Err(OtpError::NotUri);
        }
        let label = match label.strip_prefix('/') {
            Some(l) => l,
            None if label.is_empty() => "",
            None => return Err(OtpError::NotUri),
        };
        let (mut issuer, account) = split_label(label);
        if account.is_empty() {
            return Err(OtpError::MissingAccount);
        }
        let mut secret = None;
        let mut digits = 6u32;
        let mut algorithm = Algorithm::Sha1;
        let mut period = 30u64;
        let mut counter = None;
        for param in query.split('&') {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            match k {
                "secret" => secret = Some(decode_base32(v)?),
                "digits" => {
                    digits = v
                        .parse()
                        .ok()
                        .filter(|d| (6..=8).contains(d))
                        .ok_or_else(|| OtpError::BadDigits(v.to_string()))?;
                }
                "algorithm" => algorithm = Algorithm::parse(v)?,
                "period" => {
                    period = v
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| OtpError::BadPeriod(v.to_string()))?;
                }
                "counter" => counter = parse_counter(v),
                "issuer" => issuer = Some(percent_decode(v)),
                _ => {}
            }
        }
        let secret = secret.ok_or(OtpError::MissingSecret)?;
        let kind = if typ == "hotp" {
            OtpKind::Hotp {
                counter: counter.ok_or(OtpError::MissingCounter)?,
            }
        } else {
            OtpKind::Totp { period }
        };
        Ok(OtpUri {
            uri: SecretString::new(uri.to_string()),
            kind,
            secret,
            algorithm,
            digits,
            issuer,
            account,
        })
    }

    /// Finds and parses the first `otpauth://` line of an entry's contents.
    pub fn from_entry(contents: &str) -> Result<Self, OtpError> {
        let line = contents
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with("otpauth://"))
            .ok_or(OtpError::NoOtpLine)?;
        // pass-otp reads the line with `read -a`, so only the first word counts.
        let word = line.split_whitespace().next().unwrap_or(line);
        OtpUri::parse(word)
    }

    /// The TOTP code at unix time `now`; `None` for an HOTP key.
    pub fn totp_at(&self, now: u64) -> Option<String> {
        match self.kind {
            OtpKind::Totp { period } => Some(totp(
                self.secret.expose(),
                now,
                period,
                self.digits,
                self.algorithm,
            )),
            OtpKind::Hotp { .. } => None,
        }
    }

    /// Seconds the TOTP code at `now` stays valid.
    pub fn remaining(&self, now: u64) -> Option<u64> {
        match self.kind {
            OtpKind::Totp { period } => {
                let period = period.max(1);
                Some(period - now % period)
            }
            OtpKind::Hotp { .. } => None,
        }
    }

    /// For HOTP: the next code (counter + 1) and the URI with the counter advanced, exactly as
    /// pass-otp rewrites it. `None` for a TOTP key.
    pub fn next_hotp(&self) -> Option<(String, SecretString)> {
        let OtpKind::Hotp { counter } = self.kind else {
            return None;
        };
        let next = counter.saturating_add(1);
        let code = hotp(self.secret.expose(), next, self.digits, self.algorithm);
        let uri = self.uri.expose();
        let (head, query) = uri.split_once('?')?;
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("counter", _)) => format!("counter={next}"),
                _ => p.to_string(),
            })
            .collect();
        let new_uri = SecretString::new(format!("{head}?{}", params.join("&")));
        Some((code, new_uri))
    }
}

/// Replaces the first `otpauth://` line of `contents` with `uri`, keeping every other line.
pub fn replace_otp_line(contents: &str, uri: &str) -> SecretString {
    let mut out = String::with_capacity(contents.len() + 8);
    let mut done = false;
    for line in contents.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if !done && body.trim_start().starts_with("otpauth://") {
            out.push_str(uri);
            out.push_str(nl);
            done = true;
        } else {
            out.push_str(line);
        }
    }
    SecretString::new(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn labels_with_ports_and_names_from_labels() {
        assert_eq!(
            split_label("alice%40google.com:443"),
            (None, "alice@google.com:443".to_string())
        );
        assert_eq!(
            split_label("Google:alice@google.com:443"),
            (Some("Google".into()), "alice@google.com:443".into())
        );
        assert_eq!(
            split_label("Example:alice"),
            (Some("Example".into()), "alice".into())
        );
        assert_eq!(split_label("alice"), (None, "alice".into()));
        let u = OtpUri::parse(
            "otpauth://totp/alice@google.com:443?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Google",
        )
        .unwrap();
        assert_eq!(u.label_name(), "Google/alice@google.com:443");
        let u = uri_from_secret("GEZDGNBVGY3TQOJQ", Some("Big Co"), Some("me@x.org")).unwrap();
        assert_eq!(
            u.uri.expose(),
            "otpauth://totp/Big+Co:me%40x.org?secret=GEZDGNBVGY3TQOJQ&issuer=Big+Co"
        );
        assert_eq!(u.label_name(), "Big Co/me@x.org");
        let u = uri_from_secret("GEZDGNBVGY3TQOJQ", None, Some("me")).unwrap();
        assert_eq!(u.uri.expose(), "otpauth://totp/me?secret=GEZDGNBVGY3TQOJQ");
        assert!(uri_from_secret("not base32!", None, Some("me")).is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn vectors(file: &str) -> Vec<Vec<String>> {
        let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    #[test]
    fn rfc4226_vectors() {
        let v = vectors("rfc4226.txt");
        assert_eq!(v.len(), 10);
        for row in v {
            // secret(ascii) counter code
            let counter: u64 = row[1].parse().unwrap();
            assert_eq!(hotp(row[0].as_bytes(), counter, 6, Algorithm::Sha1), row[2]);
        }
    }

    #[test]
    fn rfc6238_vectors() {
        let v = vectors("rfc6238.txt");
        assert_eq!(v.len(), 18);
        for row in v {
            // time algorithm secret(ascii) code
            let t: u64 = row[0].parse().unwrap();
            let alg = Algorithm::parse(&row[1]).unwrap();
            assert_eq!(totp(row[2].as_bytes(), t, 30, 8, alg), row[3], "{row:?}");
        }
    }

    #[test]
    fn parses_like_pass_otp() {
        let u = OtpUri::parse(
            "otpauth://totp/ACME%20Co:john@example.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60",
        )
        .unwrap();
        assert_eq!(u.account, "john@example.com");
        assert_eq!(u.issuer.as_deref(), Some("ACME Co"));
        assert_eq!(u.digits, 8);
        assert_eq!(u.algorithm, Algorithm::Sha256);
        assert_eq!(u.kind, OtpKind::Totp { period: 60 });
        assert_eq!(u.totp_at(61).unwrap().len(), 8);
        assert_eq!(u.remaining(61), Some(59));

        assert!(matches!(
            OtpUri::parse("otpauth://totp/?secret=AAAA"),
            Err(OtpError::MissingAccount)
        ));
        assert!(matches!(
            OtpUri::parse("otpauth://totp/a?issuer=x"),
            Err(OtpError::MissingSecret)
        ));
        assert!(matches!(
            OtpUri::parse("otpauth://hotp/a?secret=AAAA"),
            Err(OtpError::MissingCounter)
        ));
        assert!(matches!(
            OtpUri::parse("otpauth://totp/a?secret=AAAA&digits=9"),
            Err(OtpError::BadDigits(_))
        ));
        assert!(matches!(
            OtpUri::parse("otpauth://totp/a?secret=!!"),
            Err(OtpError::BadSecret)
        ));
        assert!(matches!(OtpUri::parse("http://x"), Err(OtpError::NotUri)));
    }

    #[test]
    fn hotp_advances_like_pass_otp() {
        // RFC 4226 key "12345678901234567890" in base32.
        let u = OtpUri::parse(
            "otpauth://hotp/x:y?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=4&issuer=x",
        )
        .unwrap();
        let (code, uri) = u.next_hotp().unwrap();
        assert_eq!(code, "254676"); // RFC 4226 count 5
        assert_eq!(
            uri.expose(),
            "otpauth://hotp/x:y?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=5&issuer=x"
        );
        let contents = format!("pw\n{}\nuser: me\n", u.uri.expose());
        let replaced = replace_otp_line(&contents, uri.expose());
        assert_eq!(
            replaced.expose(),
            &format!("pw\n{}\nuser: me\n", uri.expose())
        );
        assert!(OtpUri::from_entry("no otp here").is_err());
        assert_eq!(
            OtpUri::from_entry(&contents).unwrap().kind,
            OtpKind::Hotp { counter: 4 }
        );
    }

    #[test]
    fn reads_and_repairs_pass_otp_bash52_counters() {
        let u = OtpUri::parse(
            "otpauth://hotp/H:c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=1counter=2&issuer=H",
        )
        .unwrap();
        assert_eq!(u.kind, OtpKind::Hotp { counter: 2 });
        let (code, uri) = u.next_hotp().unwrap();
        assert_eq!(code, "969429");
        assert!(uri.expose().ends_with("&counter=3&issuer=H"));
        assert!(OtpUri::parse("otpauth://hotp/H:c?secret=AAAA&counter=xcounter=2").is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let u = OtpUri::parse("otpauth://totp/a?secret=GEZDGNBV").unwrap();
        let d = format!("{u:?}");
        assert!(!d.contains("GEZDGNBV"), "{d}");
    }

    proptest! {
        /// The parser of untrusted entry contents never panics (same entry point as the fuzz target).
        #[test]
        fn parse_never_panics(s in "otpauth://(totp|hotp)?/?[ -~]{0,60}") {
            let _ = OtpUri::parse(&s);
            let _ = OtpUri::from_entry(&s);
        }

        #[test]
        fn codes_have_the_asked_length(key in proptest::collection::vec(any::<u8>(), 1..64), c in any::<u64>(), d in 6u32..=8) {
            prop_assert_eq!(hotp(&key, c, d, Algorithm::Sha512).len(), d as usize);
        }
    }
}
