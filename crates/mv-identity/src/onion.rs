//! Tor v3 onion service keys in tor's own file formats (spec scramble-v1, "Onion").
//!
//! Written by hand because no maintained crate of our RustCrypto generation does it, and because
//! the format is small and fixed: a 32-byte text header padded with NUL bytes, then the key.

use crate::root::{Purpose, Root};
use mv_core::secret::SecretBytes;
use mv_core::IdentityName;
use sha2::{Digest, Sha512};
use sha3::Sha3_256;

/// Header of `hs_ed25519_secret_key` (before NUL padding to 32 bytes).
pub(crate) const SECRET_HEADER: &[u8] = b"== ed25519v1-secret: type0 ==";
/// Header of `hs_ed25519_public_key` (before NUL padding to 32 bytes).
pub(crate) const PUBLIC_HEADER: &[u8] = b"== ed25519v1-public: type0 ==";
/// The onion address version byte.
pub(crate) const VERSION: u8 = 0x03;

/// An onion service's three files.
#[derive(Debug, Clone)]
pub struct OnionKey {
    /// The 32-byte Ed25519 public key.
    pub public: [u8; 32],
    /// `hs_ed25519_secret_key`: header + 64-byte expanded secret key (96 bytes).
    pub secret_file: SecretBytes,
    /// `hs_ed25519_public_key`: header + public key (64 bytes).
    pub public_file: Vec<u8>,
    /// The address with `.onion`, no newline.
    pub hostname: String,
}

fn header(text: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..text.len()].copy_from_slice(text);
    h
}

/// The v3 address of an Ed25519 public key: lower-case base32(pub || checksum || 0x03) + ".onion".
pub fn onion_address(public: &[u8; 32]) -> String {
    let mut h = Sha3_256::new();
    h.update(b".onion checksum");
    h.update(public);
    h.update([VERSION]);
    let sum = h.finalize();
    let mut raw = Vec::with_capacity(35);
    raw.extend_from_slice(public);
    raw.extend_from_slice(&sum[..2]);
    raw.push(VERSION);
    let mut s = data_encoding::BASE32_NOPAD
        .encode(&raw)
        .to_ascii_lowercase();
    s.push_str(".onion");
    s
}

/// Why an onion address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionAddressError {
    /// Not 56 base32 characters followed by `.onion`.
    #[error("`{0}` is not a v3 onion address (56 base32 characters then .onion)")]
    Shape(String),
    /// Version byte is not 3.
    #[error("onion address `{0}` has version {1}, not 3")]
    Version(String, u8),
    /// Checksum mismatch.
    #[error("onion address `{0}` has a wrong checksum")]
    Checksum(String),
}

/// Decodes a v3 address back to its public key, checking version and checksum.
pub fn parse_onion_address(addr: &str) -> Result<[u8; 32], OnionAddressError> {
    let shape = || OnionAddressError::Shape(addr.to_string());
    let body = addr.strip_suffix(".onion").ok_or_else(shape)?;
    if body.len() != 56 {
        return Err(shape());
    }
    let raw = data_encoding::BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|_| shape())?;
    if raw.len() != 35 {
        return Err(shape());
    }
    if raw[34] != VERSION {
        return Err(OnionAddressError::Version(addr.to_string(), raw[34]));
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&raw[..32]);
    if onion_address(&public) != addr {
        return Err(OnionAddressError::Checksum(addr.to_string()));
    }
    Ok(public)
}

/// Builds tor's files from an Ed25519 seed.
pub fn onion_from_seed(seed: &[u8; 32]) -> OnionKey {
    let public = ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes();
    let mut expanded = zeroize::Zeroizing::new([0u8; 64]);
    expanded.copy_from_slice(&Sha512::digest(seed));
    expanded[0] &= 248;
    expanded[31] &= 127;
    expanded[31] |= 64;
    let mut secret = Vec::with_capacity(96);
    secret.extend_from_slice(&header(SECRET_HEADER));
    secret.extend_from_slice(&expanded[..]);
    let mut public_file = Vec::with_capacity(64);
    public_file.extend_from_slice(&header(PUBLIC_HEADER));
    public_file.extend_from_slice(&public);
    OnionKey {
        public,
        secret_file: SecretBytes::new(secret),
        public_file,
        hostname: onion_address(&public),
    }
}

impl Root {
    /// The onion service of `name`.
    pub fn onion_v3(&self, name: &IdentityName) -> OnionKey {
        onion_from_seed(self.derive32(Purpose::OnionV3, name).expose())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn file_layout() {
        let k = onion_from_seed(&[5; 32]);
        assert_eq!(k.secret_file.expose().len(), 96);
        assert_eq!(&k.secret_file.expose()[..29], SECRET_HEADER);
        assert_eq!(&k.secret_file.expose()[29..32], &[0, 0, 0]);
        assert_eq!(k.public_file.len(), 64);
        assert_eq!(&k.public_file[32..], &k.public);
        let a = k.secret_file.expose()[32];
        assert_eq!(a & 7, 0);
        let b = k.secret_file.expose()[63];
        assert_eq!(b & 0xc0, 0x40);
    }

    #[test]
    fn bad_addresses_are_refused() {
        let a = onion_address(&[1; 32]);
        let mut chars: Vec<char> = a.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let bad: String = chars.into_iter().collect();
        assert!(matches!(
            parse_onion_address(&bad),
            Err(OnionAddressError::Checksum(_))
        ));
        assert!(matches!(
            parse_onion_address("abc.onion"),
            Err(OnionAddressError::Shape(_))
        ));
    }

    proptest! {
        #[test]
        fn address_round_trips(public in any::<[u8; 32]>()) {
            let a = onion_address(&public);
            prop_assert_eq!(a.len(), 62);
            prop_assert!(a.ends_with("d.onion"), "version 3 ends the base32 in `d`: {}", a);
            prop_assert!(a[..56].bytes().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
            prop_assert_eq!(parse_onion_address(&a).unwrap(), public);
        }

        #[test]
        fn address_parser_never_panics(s in ".{0,80}") {
            let _ = parse_onion_address(&s);
        }
    }
}
