//! Password generation, with pass's character sets.
//!
//! pass draws from `tr -dc '[:punct:][:alnum:]' < /dev/urandom` (or `[:alnum:]` with
//! `--no-symbols`) in the C locale; we draw uniformly from the same ASCII sets with the OS
//! random source, so a generated password looks exactly like one pass would make.
//! `PASSWORD_STORE_CHARACTER_SET` and `PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS` are `tr` sets;
//! [`tr_set`] reads them as `LC_ALL=C tr -dc SET` does.

use mv_core::secret::SecretString;
use rand::rngs::OsRng;
use rand::seq::SliceRandom;

/// pass's default length (`PASSWORD_STORE_GENERATED_LENGTH`).
pub const DEFAULT_LENGTH: usize = 25;

/// `[:alnum:]` in the C locale.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// `[:punct:]` in the C locale.
pub const PUNCT: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A random password of `len` characters; with `symbols`, punctuation is allowed too.
pub fn password(len: usize, symbols: bool) -> SecretString {
    let mut set: Vec<u8> = ALNUM.to_vec();
    if symbols {
        set.extend_from_slice(PUNCT);
    }
    password_from(len, &set)
}

/// A random password of `len` characters drawn uniformly from `set` (ASCII bytes, see
/// [`tr_set`]); empty when `set` is.
pub fn password_from(len: usize, set: &[u8]) -> SecretString {
    let mut rng = OsRng;
    let s: String = (0..len)
        .filter_map(|_| set.choose(&mut rng).map(|b| char::from(*b)))
        .collect();
    SecretString::new(s)
}

/// Why a character set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// `[:name:]` with a name tr does not know.
    #[error("invalid character class {0:?}")]
    Class(String),
    /// `z-a`.
    #[error("range-endpoints of '{0}-{1}' are in reverse collating sequence order")]
    Range(char, char),
    /// `[c*]`, which tr allows in a second set only.
    #[error("the [c*] repeat construct may not appear in the character set")]
    Repeat,
    /// A character outside ASCII (pass would emit raw bytes that are no text).
    #[error("{0:?} is not an ASCII character; only ASCII characters can be generated")]
    NotAscii(char),
    /// Nothing left to draw from (pass would wait for ever).
    #[error("the set selects no printable character")]
    Empty,
}

fn class(name: &str) -> Option<Vec<u8>> {
    let all = 0u8..=127;
    let f: fn(&u8) -> bool = match name {
        "alnum" => u8::is_ascii_alphanumeric,
        "alpha" => u8::is_ascii_alphabetic,
        "blank" => |b| *b == b' ' || *b == b'\t',
        "cntrl" => u8::is_ascii_control,
        "digit" => u8::is_ascii_digit,
        "graph" => u8::is_ascii_graphic,
        "lower" => u8::is_ascii_lowercase,
        "print" => |b| b.is_ascii_graphic() || *b == b' ',
        "punct" => u8::is_ascii_punctuation,
        "space" => |b| b" \t\n\x0b\x0c\r".contains(b),
        "upper" => u8::is_ascii_uppercase,
        "xdigit" => u8::is_ascii_hexdigit,
        _ => return None,
    };
    Some(all.filter(f).collect())
}

/// The characters of a `tr` set as `LC_ALL=C tr -dc SET` keeps them: `[:class:]`, `[=c=]`,
/// ranges `a-z`, escapes `\\ \n \t \NNN`, anything else itself. Sorted, without duplicates,
/// and without NUL and newline (pass reads the password with `read`, which stops at a newline).
pub fn tr_set(spec: &str) -> Result<Vec<u8>, SetError> {
    let chars: Vec<char> = spec.chars().collect();
    // First the escapes and brackets into items: a char (escaped or not: an escaped `-` is no
    // range), or a class.
    let mut items: Vec<Result<(char, bool), Vec<u8>>> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            let (v, used) = match n {
                'a' => ('\x07', 2),
                'b' => ('\x08', 2),
                'f' => ('\x0c', 2),
                'n' => ('\n', 2),
                'r' => ('\r', 2),
                't' => ('\t', 2),
                'v' => ('\x0b', 2),
                '0'..='7' => {
                    let digits: String = chars[i + 1..]
                        .iter()
                        .take(3)
                        .take_while(|d| ('0'..='7').contains(d))
                        .collect();
                    let mut v = u32::from_str_radix(&digits, 8).unwrap_or(0);
                    let mut used = digits.len();
                    if v > 0o377 {
                        v >>= 3;
                        used -= 1;
                    }
                    (char::from_u32(v).unwrap_or('\0'), used + 1)
                }
                other => (other, 2),
            };
            items.push(Ok((v, true)));
            i += used;
            continue;
        }
        if c == '[' && i + 1 < chars.len() {
            let kind = chars[i + 1];
            if kind == ':' || kind == '=' {
                let close = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == kind && chars[j + 1] == ']');
                if let Some(close) = close {
                    let inner: String = chars[i + 2..close].iter().collect();
                    if kind == ':' {
                        items.push(Err(class(&inner).ok_or(SetError::Class(inner))?));
                    } else {
                        let mut it = inner.chars();
                        match (it.next(), it.next()) {
                            (Some(e), None) => items.push(Ok((e, true))),
                            _ => return Err(SetError::Class(inner)),
                        }
                    }
                    i = close + 2;
                    continue;
                }
            }
            // `[c*n]` is c (tr accepts it in the first set); `[c*]` is refused, as by tr.
            if chars.get(i + 2) == Some(&'*') {
                let close = chars[i + 3..].iter().position(|d| *d == ']');
                if let Some(k) = close {
                    if chars[i + 3..i + 3 + k].iter().all(char::is_ascii_digit) {
                        if k == 0 {
                            return Err(SetError::Repeat);
                        }
                        items.push(Ok((chars[i + 1], true)));
                        i += 4 + k;
                        continue;
                    }
                }
            }
        }
        items.push(Ok((c, false)));
        i += 1;
    }
    let mut set: Vec<u8> = Vec::new();
    let mut k = 0;
    while k < items.len() {
        match &items[k] {
            Err(class) => set.extend_from_slice(class),
            Ok((a, _)) => {
                let range_end = match (items.get(k + 1), items.get(k + 2)) {
                    (Some(Ok(('-', false))), Some(Ok((b, _)))) => Some(*b),
                    _ => None,
                };
                let (lo, hi) = match range_end {
                    Some(b) => {
                        if b < *a {
                            return Err(SetError::Range(*a, b));
                        }
                        k += 2;
                        (*a, b)
                    }
                    None => (*a, *a),
                };
                for c in lo..=hi {
                    let b = u8::try_from(u32::from(c))
                        .ok()
                        .filter(u8::is_ascii)
                        .ok_or(SetError::NotAscii(c))?;
                    set.push(b);
                }
            }
        }
        k += 1;
    }
    set.retain(|b| *b != 0 && *b != b'\n');
    set.sort_unstable();
    set.dedup();
    if set.is_empty() {
        return Err(SetError::Empty);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_sets() {
        let p = password(200, false);
        assert_eq!(p.expose().len(), 200);
        assert!(p.expose().bytes().all(|b| ALNUM.contains(&b)));
        let q = password(500, true);
        assert!(q
            .expose()
            .bytes()
            .all(|b| ALNUM.contains(&b) || PUNCT.contains(&b)));
        assert!(
            q.expose().bytes().any(|b| PUNCT.contains(&b)),
            "symbols appear"
        );
        assert_ne!(password(25, true), password(25, true));
        assert_eq!(PUNCT.len(), 32);
    }

    #[test]
    fn tr_sets() {
        assert_eq!(tr_set("[:punct:][:alnum:]").unwrap().len(), 94);
        assert_eq!(tr_set("[:alnum:]").unwrap(), {
            let mut v = ALNUM.to_vec();
            v.sort_unstable();
            v
        });
        assert_eq!(tr_set("a-d").unwrap(), b"abcd");
        assert_eq!(tr_set("x-").unwrap(), b"-x");
        assert_eq!(tr_set("\\101\\-z").unwrap(), b"-Az");
        assert_eq!(tr_set("[=z=]\\\\").unwrap(), b"\\z");
        assert_eq!(tr_set("[ab]").unwrap(), b"[]ab");
        assert_eq!(tr_set("z-a"), Err(SetError::Range('z', 'a')));
        assert_eq!(tr_set("[:word:]"), Err(SetError::Class("word".into())));
        assert_eq!(tr_set("[a*]"), Err(SetError::Repeat));
        assert_eq!(tr_set("[a*3]").unwrap(), b"a");
        assert_eq!(tr_set("é"), Err(SetError::NotAscii('é')));
        assert_eq!(tr_set("\\n"), Err(SetError::Empty));
        assert_eq!(tr_set(""), Err(SetError::Empty));
        let pw = password_from(300, b"ab");
        assert!(pw.expose().bytes().all(|b| b == b'a' || b == b'b'));
    }
}
