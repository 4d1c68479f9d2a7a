//! The root secret, its 24-word mnemonic and the HKDF derivation of spec scramble-v1 with its epochs
//! extension (`docs/spec/scramble-v1.md`, `docs/spec/scramble-v1-epochs.md`).
//!
//! [`Root`] is 32 bytes held in a zeroised [`Secret`]; its `Debug` never shows them. It carries the
//! public [`Epochs`] table of the tree it was unsealed from, so every key builder derives a name at
//! that name's epoch without the caller passing it (epoch 0, the default, is v1 byte for byte). [`Purpose`] is
//! the closed list of derivation purposes of the spec, each with its fixed output length, so a caller
//! cannot derive with a misspelt purpose string.

use hkdf::Hkdf;
use mv_core::epochs::Epochs;
use mv_core::secret::{SecretBytes, SecretString};
use mv_core::{IdentityName, Secret};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroize;

/// The HKDF salt of spec scramble-v1.
pub const HKDF_SALT: &[u8] = b"multiverse-scramble-v1";
/// Number of words of a root's mnemonic.
pub const MNEMONIC_WORDS: usize = 24;

/// What a derived byte string becomes (the `purpose` column of the spec's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Ed25519 seed of the login key.
    SshEd25519,
    /// P-256 scalar material of the login ECDSA key.
    SshEcdsaP256,
    /// Ed25519 seed of the sshd host key.
    SshHostEd25519,
    /// P-256 scalar material of the sshd ECDSA host key.
    SshHostEcdsaP256,
    /// Ed25519 seed of the Tor v3 onion service.
    OnionV3,
    /// Ed25519 seed of the OpenPGP primary key.
    OpenpgpEd25519,
    /// X25519 secret of the OpenPGP encryption subkey.
    OpenpgpCv25519,
    /// Bytes walked into the machine password.
    Password,
    /// The raw LUKS key file.
    Luks,
}

impl Purpose {
    /// Every purpose, in the spec's order.
    pub const ALL: [Purpose; 9] = [
        Purpose::SshEd25519,
        Purpose::SshEcdsaP256,
        Purpose::SshHostEd25519,
        Purpose::SshHostEcdsaP256,
        Purpose::OnionV3,
        Purpose::OpenpgpEd25519,
        Purpose::OpenpgpCv25519,
        Purpose::Password,
        Purpose::Luks,
    ];

    /// The purpose string hashed into `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::SshEd25519 => "ssh-ed25519",
            Purpose::SshEcdsaP256 => "ssh-ecdsa-p256",
            Purpose::SshHostEd25519 => "ssh-host-ed25519",
            Purpose::SshHostEcdsaP256 => "ssh-host-ecdsa-p256",
            Purpose::OnionV3 => "onion-v3",
            Purpose::OpenpgpEd25519 => "openpgp-ed25519",
            Purpose::OpenpgpCv25519 => "openpgp-cv25519",
            Purpose::Password => "password",
            Purpose::Luks => "luks",
        }
    }

    /// The output length `L` the spec fixes for this purpose.
    pub fn output_len(self) -> usize {
        match self {
            Purpose::SshEd25519
            | Purpose::SshHostEd25519
            | Purpose::OnionV3
            | Purpose::OpenpgpEd25519
            | Purpose::OpenpgpCv25519 => 32,
            Purpose::SshEcdsaP256 | Purpose::SshHostEcdsaP256 => 48,
            Purpose::Password => 128,
            Purpose::Luks => 64,
        }
    }

    /// Looks a purpose up by its spec string.
    pub fn parse(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why words were refused as a root's mnemonic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MnemonicError {
    /// Not 24 words.
    #[error("a root's recovery phrase has 24 words, this one has {0}")]
    WordCount(usize),
    /// A word is not in the BIP-39 English list. Such a word is a typo rather than part of the
    /// secret, so it is named to help the person find it.
    #[error("word {position} `{word}` is not in the BIP-39 English word list")]
    UnknownWord {
        /// 1-based position.
        position: usize,
        /// The word as typed.
        word: String,
    },
    /// All words are known but the checksum (last word) does not match.
    #[error("the recovery phrase's checksum does not match: a word is wrong or two are swapped")]
    Checksum,
}

/// The 32-byte root every key is derived from, with the epochs of the names derived from it.
/// Zeroised on drop; `Debug` prints no bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Root {
    bytes: Secret<[u8; 32]>,
    epochs: Epochs,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Root([REDACTED])")
    }
}

impl Root {
    fn new(bytes: Secret<[u8; 32]>) -> Root {
        Root {
            bytes,
            epochs: Epochs::new(),
        }
    }

    /// This root with `epochs` as its epoch table (from `[identity.epochs]`).
    pub fn with_epochs(mut self, epochs: Epochs) -> Root {
        self.epochs = epochs;
        self
    }

    /// The epoch table every derivation uses.
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// The epoch `name` is derived at (0 when the table does not name it).
    pub fn epoch(&self, name: &IdentityName) -> u32 {
        self.epochs.get(name)
    }

    /// A copy of this root that derives `name` at `epoch` (other names unchanged): the old or the
    /// new keys of a rotation.
    pub fn at_epoch(&self, name: &IdentityName, epoch: u32) -> Root {
        let mut r = self.clone();
        r.epochs.set(name, epoch);
        r
    }

    /// Whether two roots hold the same secret, whatever their epoch tables.
    pub fn same_secret(&self, other: &Root) -> bool {
        self.bytes.expose() == other.bytes.expose()
    }
}

impl Root {
    /// A new root from the OS CSPRNG.
    pub fn generate() -> Root {
        let mut s = Secret::new([0u8; 32]);
        OsRng.fill_bytes(s.expose_mut());
        Root::new(s)
    }

    /// A root from its raw bytes (test vectors, restore from another store).
    pub fn from_bytes(bytes: [u8; 32]) -> Root {
        Root::new(Secret::new(bytes))
    }

    /// The raw root bytes. Every use is a place the secret leaves this type: keep them few.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        self.bytes.expose()
    }

    /// Restores a root from its 24 words (case and whitespace are normalised; the BIP-39 checksum
    /// is checked).
    pub fn from_mnemonic(words: &str) -> Result<Root, MnemonicError> {
        let lower = zeroize::Zeroizing::new(words.to_lowercase());
        let list: Vec<&str> = lower.split_whitespace().collect();
        if list.len() != MNEMONIC_WORDS {
            return Err(MnemonicError::WordCount(list.len()));
        }
        let english = bip39::Language::English;
        for (i, w) in list.iter().enumerate() {
            if english.find_word(w).is_none() {
                return Err(MnemonicError::UnknownWord {
                    position: i + 1,
                    word: (*w).to_string(),
                });
            }
        }
        let joined = zeroize::Zeroizing::new(list.join(" "));
        let m = bip39::Mnemonic::parse_in_normalized(english, &joined).map_err(|e| match e {
            bip39::Error::UnknownWord(i) => MnemonicError::UnknownWord {
                position: i + 1,
                word: list.get(i).map(|w| w.to_string()).unwrap_or_default(),
            },
            bip39::Error::BadWordCount(n) => MnemonicError::WordCount(n),
            _ => MnemonicError::Checksum,
        })?;
        let (mut entropy, len) = m.to_entropy_array();
        if len != 32 {
            entropy.zeroize();
            return Err(MnemonicError::WordCount(list.len()));
        }
        let mut bytes = Secret::new([0u8; 32]);
        bytes.expose_mut().copy_from_slice(&entropy[..32]);
        // The array is a plain copy on the stack: wipe it now that the Secret holds the bytes.
        entropy.zeroize();
        Ok(Root::new(bytes))
    }

    /// The 24 BIP-39 words of this root, separated by single spaces.
    pub fn mnemonic(&self) -> SecretString {
        // Entropy of 32 bytes is always valid BIP-39 input, so this cannot fail.
        match bip39::Mnemonic::from_entropy_in(bip39::Language::English, self.bytes.expose()) {
            Ok(m) => {
                // Pushed word by word: a Vec of the words would leave their pointers (which encode
                // the root) in freed memory.
                let mut s = String::with_capacity(MNEMONIC_WORDS * 9);
                for (i, w) in m.words().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    s.push_str(w);
                }
                SecretString::new(s)
            }
            Err(_) => unreachable!("32 bytes of entropy are always a valid mnemonic"),
        }
    }

    /// `HKDF-SHA256(salt = "multiverse-scramble-v1", ikm = root, info, L)` at the name's epoch e:
    /// `info = purpose || 0x00 || name` for e = 0 (v1), `… || 0x00 || u32be(e)` for e > 0.
    ///
    /// # Panics
    /// If `len` exceeds HKDF-SHA256's maximum of 8160 bytes (every spec purpose is far below it).
    pub fn derive(&self, purpose: Purpose, name: &IdentityName, len: usize) -> SecretBytes {
        derive_raw_at(
            self.bytes.expose(),
            purpose.as_str(),
            name.as_str(),
            self.epoch(name),
            len,
        )
    }

    /// [`Root::derive`] with the spec's length for `purpose`.
    pub fn derive_default(&self, purpose: Purpose, name: &IdentityName) -> SecretBytes {
        self.derive(purpose, name, purpose.output_len())
    }

    /// A 32-byte derivation as a fixed array (for seeds).
    pub(crate) fn derive32(&self, purpose: Purpose, name: &IdentityName) -> Secret<[u8; 32]> {
        let v = self.derive(purpose, name, 32);
        let mut out = Secret::new([0u8; 32]);
        out.expose_mut().copy_from_slice(v.expose());
        out
    }
}

/// The v1 derivation (epoch 0) on raw strings, exposed for the spec vectors.
pub fn derive_raw(root: &[u8; 32], purpose: &str, name: &str, len: usize) -> SecretBytes {
    derive_raw_at(root, purpose, name, 0, len)
}

/// The derivation at `epoch` on raw strings: what [`Root::derive`] computes.
pub fn derive_raw_at(
    root: &[u8; 32],
    purpose: &str,
    name: &str,
    epoch: u32,
    len: usize,
) -> SecretBytes {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), root);
    let mut info = Vec::with_capacity(purpose.len() + name.len() + 6);
    info.extend_from_slice(purpose.as_bytes());
    info.push(0);
    info.extend_from_slice(name.as_bytes());
    if epoch > 0 {
        info.push(0);
        info.extend_from_slice(&epoch.to_be_bytes());
    }
    let mut out = SecretBytes::new(vec![0u8; len]);
    #[allow(clippy::expect_used)]
    hk.expand(&info, out.expose_mut())
        .expect("HKDF output length within 255 * 32 bytes");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn vector_root() -> Root {
        Root::from_bytes(core::array::from_fn(|i| i as u8))
    }

    #[test]
    fn purposes_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("ssh"), None);
    }

    #[test]
    fn mnemonic_errors() {
        let good = vector_root().mnemonic();
        let words: Vec<&str> = good.expose().split(' ').collect();
        assert_eq!(words.len(), 24);
        let mut bad = words.clone();
        bad[3] = "notaword";
        assert_eq!(
            Root::from_mnemonic(&bad.join(" ")).unwrap_err(),
            MnemonicError::UnknownWord {
                position: 4,
                word: "notaword".into()
            }
        );
        let mut swapped = words.clone();
        swapped.swap(0, 1);
        assert_eq!(
            Root::from_mnemonic(&swapped.join(" ")).unwrap_err(),
            MnemonicError::Checksum
        );
        assert_eq!(
            Root::from_mnemonic(&words[..12].join(" ")).unwrap_err(),
            MnemonicError::WordCount(12)
        );
        // Case and whitespace do not matter.
        let messy = format!("  {}\n", good.expose().to_uppercase().replace(' ', "\n\t "));
        assert_eq!(Root::from_mnemonic(&messy).unwrap(), vector_root());
    }

    #[test]
    fn debug_is_redacted() {
        let r = vector_root();
        assert_eq!(format!("{r:?}"), "Root([REDACTED])");
        let d = r.derive_default(Purpose::Luks, &IdentityName::parse("a.b").unwrap());
        assert_eq!(format!("{d:?}"), "Secret([REDACTED])");
    }

    proptest! {
        #[test]
        fn mnemonic_round_trips(bytes in any::<[u8; 32]>()) {
            let r = Root::from_bytes(bytes);
            prop_assert_eq!(Root::from_mnemonic(r.mnemonic().expose()).unwrap(), r);
        }

        #[test]
        fn mnemonic_parser_never_panics(s in ".{0,300}") {
            let _ = Root::from_mnemonic(&s);
        }

        #[test]
        fn derivation_separates_purpose_and_name(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            // info = purpose || 0 || name: moving the boundary changes the output.
            let root = vector_root();
            let x = derive_raw(root.expose_bytes(), &a, &b, 32);
            let y = derive_raw(root.expose_bytes(), &format!("{a}x"), &b, 32);
            prop_assert_ne!(x.expose(), y.expose());
        }
    }
}
