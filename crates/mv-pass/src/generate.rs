//! Password generation, with pass's character sets.
//!
//! pass draws from `tr -dc '[:punct:][:alnum:]' < /dev/urandom` (or `[:alnum:]` with
//! `--no-symbols`) in the C locale; we draw uniformly from the same ASCII sets with the OS
//! random source, so a generated password looks exactly like one pass would make.

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
    let mut rng = OsRng;
    let s: String = (0..len)
        .filter_map(|_| set.choose(&mut rng).map(|b| char::from(*b)))
        .collect();
    SecretString::new(s)
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
}
