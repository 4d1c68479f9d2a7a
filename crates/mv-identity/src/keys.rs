//! Key builders: turn derived bytes into SSH keys, the machine password and the LUKS key file.
//!
//! Each builder is a method on [`Root`] so that callers never handle the intermediate bytes. The
//! mapping from bytes to key is the spec's, written out here rather than left to a library's key
//! generator (whose RNG consumption order may change between versions; see ssh-keydgen #8).

use crate::root::{Purpose, Root};
use mv_core::secret::{SecretBytes, SecretString};
use mv_core::IdentityName;
use p256::elliptic_curve::bigint::{Encoding, NonZero, U384};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData};
use ssh_key::PrivateKey;
use zeroize::Zeroizing;

/// The password alphabet: `A-Z a-z 0-9`, in that order.
pub const PASSWORD_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a machine password.
pub const PASSWORD_LEN: usize = 32;

/// n - 1 for the P-256 group order n, as a 384-bit integer.
const P256_N_MINUS_1: U384 = U384::from_be_hex(
    "00000000000000000000000000000000ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
);

/// Why a key could not be built. With the spec's fixed lengths these do not happen; they are kept
/// typed rather than panicking because the encoders belong to other crates.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// ssh-key refused the key material or failed to encode it.
    #[error("cannot build the {what} SSH key")]
    Ssh {
        /// Which key.
        what: &'static str,
        /// The library's error.
        #[source]
        source: ssh_key::Error,
    },
    /// The OpenPGP library refused the key material or failed to sign or encode it.
    #[error("cannot build the OpenPGP key: {0}")]
    OpenPgp(String),
}

/// Which of the two SSH roles a key plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshRole {
    /// A login (user) key.
    User,
    /// An sshd host key.
    Host,
}

/// Walks `bytes` into a password per the spec: keep b < 248, emit `ALPHA[b mod 62]`, stop at 32.
///
/// 248 = 4 × 62, so every kept byte maps uniformly. With 128 input bytes fewer than 32 kept bytes
/// has a probability below 2^-300; the result is then simply shorter.
pub fn password_from_bytes(bytes: &[u8]) -> SecretString {
    let mut out = String::with_capacity(PASSWORD_LEN);
    for &b in bytes {
        if out.len() == PASSWORD_LEN {
            break;
        }
        if b < 248 {
            out.push(PASSWORD_ALPHABET[(b % 62) as usize] as char);
        }
    }
    SecretString::new(out)
}

/// `d = (OS2IP(bytes) mod (n - 1)) + 1`: a P-256 scalar in `1..n` from 48 bytes (the bias of the
/// reduction is below 2^-128). Returns the 32-byte big-endian scalar.
pub fn p256_scalar_from_bytes(bytes: &[u8; 48]) -> Zeroizing<[u8; 32]> {
    let x = U384::from_be_slice(bytes);
    // Constant time: crypto-bigint's `rem` does not branch on the value.
    #[allow(clippy::expect_used)]
    let m = NonZero::new(P256_N_MINUS_1).expect("n - 1 is not zero");
    // Both intermediates are wiped on drop (crypto-bigint integers implement Zeroize).
    let x = Zeroizing::new(x);
    let d = Zeroizing::new(x.rem(&m).wrapping_add(&U384::ONE));
    let be = Zeroizing::new(d.to_be_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&be[16..48]);
    out
}

impl Root {
    fn ssh_ed25519_for(
        &self,
        purpose: Purpose,
        name: &IdentityName,
        what: &'static str,
    ) -> Result<PrivateKey, KeyError> {
        let seed = self.derive32(purpose, name);
        let kp = Ed25519Keypair::from_seed(seed.expose());
        PrivateKey::new(KeypairData::Ed25519(kp), name.as_str())
            .map_err(|source| KeyError::Ssh { what, source })
    }

    fn ssh_ecdsa_for(
        &self,
        purpose: Purpose,
        name: &IdentityName,
        what: &'static str,
    ) -> Result<PrivateKey, KeyError> {
        let raw = self.derive(purpose, name, 48);
        let mut b48 = Zeroizing::new([0u8; 48]);
        b48.copy_from_slice(raw.expose());
        let d = p256_scalar_from_bytes(&b48);
        let sk = p256::SecretKey::from_bytes(d.as_ref().into()).map_err(|_| KeyError::Ssh {
            what,
            source: ssh_key::Error::Crypto,
        })?;
        let public = sk.public_key().to_encoded_point(false);
        let kp = EcdsaKeypair::NistP256 {
            public,
            private: sk.into(),
        };
        PrivateKey::new(KeypairData::Ecdsa(kp), name.as_str())
            .map_err(|source| KeyError::Ssh { what, source })
    }

    /// The login Ed25519 key of `name` (comment: the name).
    pub fn ssh_ed25519(&self, name: &IdentityName) -> Result<PrivateKey, KeyError> {
        self.ssh_ed25519_for(Purpose::SshEd25519, name, "ssh-ed25519")
    }

    /// The login ECDSA P-256 key of `name`.
    pub fn ssh_ecdsa_p256(&self, name: &IdentityName) -> Result<PrivateKey, KeyError> {
        self.ssh_ecdsa_for(Purpose::SshEcdsaP256, name, "ssh-ecdsa-p256")
    }

    /// The sshd Ed25519 host key of `name`.
    pub fn ssh_host_ed25519(&self, name: &IdentityName) -> Result<PrivateKey, KeyError> {
        self.ssh_ed25519_for(Purpose::SshHostEd25519, name, "ssh-host-ed25519")
    }

    /// The sshd ECDSA P-256 host key of `name`.
    pub fn ssh_host_ecdsa_p256(&self, name: &IdentityName) -> Result<PrivateKey, KeyError> {
        self.ssh_ecdsa_for(Purpose::SshHostEcdsaP256, name, "ssh-host-ecdsa-p256")
    }

    /// The 32-character machine password of `name`.
    pub fn password(&self, name: &IdentityName) -> SecretString {
        password_from_bytes(self.derive_default(Purpose::Password, name).expose())
    }

    /// The 64-byte raw LUKS key file of `name`.
    pub fn luks_key(&self, name: &IdentityName) -> SecretBytes {
        self.derive_default(Purpose::Luks, name)
    }
}

/// An OpenSSH public key line without comment (`ssh-ed25519 AAAA…`), as `identity show` prints it.
pub fn public_line(key: &PrivateKey) -> String {
    let mut pk = key.public_key().clone();
    pk.set_comment("");
    // Encoding a public key into a String cannot fail for the algorithms we build.
    pk.to_openssh()
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn p256_scalar_edges() {
        // 0 maps to 1; n - 1 maps to 1; n - 2 maps to n - 1 (the largest scalar).
        assert_eq!(p256_scalar_from_bytes(&[0; 48])[31], 1);
        let nm1 = P256_N_MINUS_1.to_be_bytes();
        let mut b = [0u8; 48];
        b.copy_from_slice(&nm1);
        let one = p256_scalar_from_bytes(&b);
        assert_eq!(one[..31], [0u8; 31]);
        assert_eq!(one[31], 1);
        let nm2 = P256_N_MINUS_1.wrapping_sub(&U384::ONE).to_be_bytes();
        b.copy_from_slice(&nm2);
        let top = p256_scalar_from_bytes(&b);
        assert_eq!(&top[..], &nm1[16..]);
    }

    proptest! {
        #[test]
        fn password_uses_only_the_alphabet(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let p = password_from_bytes(&bytes);
            let kept: Vec<u8> = bytes.iter().copied().filter(|b| *b < 248).take(PASSWORD_LEN).collect();
            prop_assert_eq!(p.expose().len(), kept.len());
            for (c, b) in p.expose().bytes().zip(kept) {
                prop_assert_eq!(c, PASSWORD_ALPHABET[(b % 62) as usize]);
                prop_assert!(c.is_ascii_alphanumeric());
            }
        }

        #[test]
        fn p256_scalar_is_valid(bytes in any::<[u8; 32]>(), more in any::<[u8; 16]>()) {
            let mut b = [0u8; 48];
            b[..32].copy_from_slice(&bytes);
            b[32..].copy_from_slice(&more);
            let d = p256_scalar_from_bytes(&b);
            prop_assert!(p256::SecretKey::from_bytes(d.as_ref().into()).is_ok());
        }
    }
}
