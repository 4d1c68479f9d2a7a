//! OpenPGP in process: a [`Keyring`] of public certificates and unlocked secret keys, and the
//! encrypt/decrypt operations the store needs, with the `pgp` crate (no gpg process per entry).
//!
//! Messages are what pass writes: SEIPDv1 (gpg 2.2 reads nothing newer) encrypted to the v4
//! encryption subkey of each recipient, AES-256, uncompressed, binary. We read binary or armored
//! messages, compressed or not, as gpg writes them.
//!
//! Recipients are named as in `.gpg-id`: a fingerprint, a 16- or 8-hex-digit key id (with or
//! without `0x`, possibly ending in `!`), an e-mail address, or a user id; [`Keyring::resolve`]
//! finds the certificate the same way gpg would for those forms.
//!
//! What this is not: a keyring on disk or key storage policy. Files and sealing are
//! [`crate::keydir`]'s job; this module only holds parsed keys in memory. Secret keys are kept
//! unlocked (passphrase removed at import), which is why the caller seals them at rest.

use mv_core::secret::SecretBytes;
use pgp::composed::{
    Deserializable, Esk, Message, MessageBuilder, SignedPublicKey, SignedPublicSubKey,
    SignedSecretKey,
};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, Password};
use std::collections::BTreeSet;
use std::io::Read;

/// Errors of key parsing and of OpenPGP operations.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not an OpenPGP key of the expected kind.
    #[error("not a valid OpenPGP {what}")]
    Parse {
        /// "secret key" or "public key".
        what: &'static str,
        /// The library's reason.
        #[source]
        source: pgp::errors::Error,
    },
    /// A secret key is passphrase-protected and no (or a wrong) passphrase was given.
    #[error(
        "secret key {fingerprint} is protected by a passphrase that was not given or is wrong"
    )]
    Locked {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// No certificate matches a recipient named in `.gpg-id`.
    #[error("no public key for recipient `{0}` in the keyring")]
    UnknownRecipient(String),
    /// Several certificates match a recipient.
    #[error("recipient `{0}` matches more than one key; use its fingerprint in .gpg-id")]
    AmbiguousRecipient(String),
    /// A certificate has no key usable for encryption.
    #[error("key {0} has no encryption subkey")]
    NoEncryptionKey(String),
    /// Encryption failed inside the library.
    #[error("cannot encrypt")]
    Encrypt(#[source] pgp::errors::Error),
    /// The message is not an OpenPGP message, or is damaged.
    #[error("not a valid OpenPGP message")]
    Malformed(#[source] pgp::errors::Error),
    /// None of our secret keys opens the message.
    #[error("no secret key in the keyring can decrypt it (encrypted to {0})")]
    NoSecretKey(String),
    /// Decryption failed (integrity check, bad packet, ...).
    #[error("cannot decrypt")]
    Decrypt(#[source] pgp::errors::Error),
    /// A key could not be serialised.
    #[error("cannot serialise the key")]
    Serialize(#[source] pgp::errors::Error),
    /// Reading the decrypted stream failed (integrity error at the end of the data, ...).
    #[error("cannot read the decrypted data")]
    Read(#[source] std::io::Error),
}

/// Parses an armored or binary secret key and removes its passphrase (if `pw` opens it), so it
/// can be sealed under the identity passphrase instead.
pub fn parse_secret_key(bytes: &[u8], pw: Option<&str>) -> Result<SignedSecretKey, KeyError> {
    let (mut key, _) =
        SignedSecretKey::from_reader_single(bytes).map_err(|source| KeyError::Parse {
            what: "secret key",
            source,
        })?;
    let fingerprint = fingerprint_hex(&key.primary_key);
    let password = Password::from(pw.unwrap_or(""));
    let locked = |_| KeyError::Locked {
        fingerprint: fingerprint.clone(),
    };
    if key.primary_key.secret_params().is_encrypted() {
        key.primary_key.remove_password(&password).map_err(locked)?;
    }
    for sub in &mut key.secret_subkeys {
        if sub.key.secret_params().is_encrypted() {
            sub.key.remove_password(&password).map_err(locked)?;
        }
    }
    key.verify_bindings().map_err(|source| KeyError::Parse {
        what: "secret key",
        source,
    })?;
    Ok(key)
}

/// Parses an armored or binary public key (certificate).
pub fn parse_public_key(bytes: &[u8]) -> Result<SignedPublicKey, KeyError> {
    let (key, _) =
        SignedPublicKey::from_reader_single(bytes).map_err(|source| KeyError::Parse {
            what: "public key",
            source,
        })?;
    key.verify_bindings().map_err(|source| KeyError::Parse {
        what: "public key",
        source,
    })?;
    Ok(key)
}

/// Armored text of a secret key (to seal or keep).
pub fn armor_secret(key: &SignedSecretKey) -> Result<SecretBytes, KeyError> {
    key.to_armored_bytes(Default::default())
        .map(SecretBytes::new)
        .map_err(KeyError::Serialize)
}

/// Armored public certificate of `key`.
pub fn armor_public(key: &SignedPublicKey) -> Result<Vec<u8>, KeyError> {
    key.to_armored_bytes(Default::default())
        .map_err(KeyError::Serialize)
}

/// Upper-case hex fingerprint, as gpg prints it.
pub fn fingerprint_hex(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

/// Upper-case hex fingerprint of a secret key's primary key.
pub fn secret_fingerprint(key: &SignedSecretKey) -> String {
    fingerprint_hex(&key.primary_key)
}

fn key_id_hex(key: &impl KeyDetails) -> String {
    hex_upper(key.legacy_key_id().as_ref())
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The subkeys of `cert` flagged for encryption (newest last), or the primary if it can encrypt.
fn encryption_subkeys(cert: &SignedPublicKey) -> Vec<&SignedPublicSubKey> {
    cert.public_subkeys
        .iter()
        .filter(|s| {
            s.key.algorithm().can_encrypt()
                && s.signatures.iter().any(|sig| {
                    let f = sig.key_flags();
                    f.encrypt_comms() || f.encrypt_storage()
                })
        })
        .collect()
}

/// Keys in memory: certificates to encrypt to, secret keys to decrypt with.
#[derive(Default)]
pub struct Keyring {
    publics: Vec<SignedPublicKey>,
    secrets: Vec<SignedSecretKey>,
    /// gpg's `group NAME = ID…` lines (see [`parse_gpg_groups`]).
    groups: std::collections::BTreeMap<String, Vec<String>>,
}

/// The `group NAME = ID ID…` lines of a gpg.conf (gpg expands a recipient that names a group to
/// its members; pass relies on it). Other lines are ignored; a later line for the same name adds
/// members, as in gpg.
pub fn parse_gpg_groups(conf: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in conf.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("group") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, members)) = rest.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        groups
            .entry(name.to_string())
            .or_default()
            .extend(members.split_whitespace().map(String::from));
    }
    groups
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("publics", &self.publics.len())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a certificate (ignored if one with the same fingerprint is there).
    pub fn add_public(&mut self, key: SignedPublicKey) {
        if !self
            .publics
            .iter()
            .any(|k| k.fingerprint() == key.fingerprint())
        {
            self.publics.push(key);
        }
    }

    /// Adds an unlocked secret key, and its public part as a certificate.
    pub fn add_secret(&mut self, key: SignedSecretKey) {
        self.add_public(key.to_public_key());
        if !self
            .secrets
            .iter()
            .any(|k| k.fingerprint() == key.fingerprint())
        {
            self.secrets.push(key);
        }
    }

    /// Whether any secret key is loaded.
    pub fn has_secret(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Fingerprints of the loaded certificates and whether each has its secret key.
    pub fn list(&self) -> Vec<(String, Vec<String>, bool)> {
        self.publics
            .iter()
            .map(|k| {
                let fpr = fingerprint_hex(k);
                let uids = k
                    .details
                    .users
                    .iter()
                    .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                    .collect();
                let has = self
                    .secrets
                    .iter()
                    .any(|s| fingerprint_hex(&s.primary_key) == fpr);
                (fpr, uids, has)
            })
            .collect()
    }

    /// Sets gpg's groups (from gpg.conf): a recipient naming a group means its members.
    pub fn set_groups(&mut self, groups: std::collections::BTreeMap<String, Vec<String>>) {
        self.groups = groups;
    }

    /// `recipients` with group names replaced by their members (one level, as gpg does).
    pub fn expand_groups(&self, recipients: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for r in recipients {
            match self.groups.get(r.trim()) {
                Some(members) => out.extend(members.iter().cloned()),
                None => out.push(r.clone()),
            }
        }
        out
    }

    /// The key id each recipient's messages are encrypted to (what [`Keyring::encrypt`] uses).
    pub fn encryption_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, KeyError> {
        let mut ids = BTreeSet::new();
        for r in self.expand_groups(recipients) {
            let cert = self.resolve(&r)?;
            match encryption_subkeys(cert).last() {
                Some(sub) => ids.insert(key_id_hex(*sub)),
                None if cert.primary_key.algorithm().can_encrypt() => ids.insert(key_id_hex(cert)),
                None => return Err(KeyError::NoEncryptionKey(fingerprint_hex(cert))),
            };
        }
        Ok(ids)
    }

    /// Finds the certificate a `.gpg-id` line names.
    pub fn resolve(&self, recipient: &str) -> Result<&SignedPublicKey, KeyError> {
        let r = recipient.trim().trim_end_matches('!');
        let hexish = r
            .strip_prefix("0x")
            .or_else(|| r.strip_prefix("0X"))
            .unwrap_or(r);
        let is_hex = !hexish.is_empty() && hexish.chars().all(|c| c.is_ascii_hexdigit());
        let needle = hexish.to_ascii_uppercase();
        let email = r
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .unwrap_or(r)
            .to_lowercase();
        let matches: Vec<&SignedPublicKey> = self
            .publics
            .iter()
            .filter(|k| {
                if is_hex && matches!(needle.len(), 8 | 16 | 40) {
                    let mut ids = vec![fingerprint_hex(*k)];
                    ids.extend(k.public_subkeys.iter().map(fingerprint_hex));
                    return ids.iter().any(|fpr| fpr.ends_with(&needle));
                }
                k.details.users.iter().any(|u| {
                    let uid = String::from_utf8_lossy(u.id.id()).to_lowercase();
                    uid == email || uid.contains(&format!("<{email}>")) || uid.contains(&email)
                })
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(KeyError::UnknownRecipient(recipient.to_string())),
            _ => Err(KeyError::AmbiguousRecipient(recipient.to_string())),
        }
    }

    /// Every key id (primary and subkeys, upper-case hex) of the certificates `recipients` name.
    pub fn recipient_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, KeyError> {
        let mut ids = BTreeSet::new();
        for r in &self.expand_groups(recipients) {
            let cert = self.resolve(r)?;
            ids.insert(key_id_hex(cert));
            ids.extend(cert.public_subkeys.iter().map(key_id_hex));
        }
        Ok(ids)
    }

    /// Encrypts `plain` to the newest encryption subkey of every recipient: SEIPDv1, AES-256.
    pub fn encrypt(&self, plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, KeyError> {
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_bytes("", plain.to_vec())
            .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        for r in &self.expand_groups(recipients) {
            let cert = self.resolve(r)?;
            match encryption_subkeys(cert).last() {
                Some(sub) => builder.encrypt_to_key(&mut rng, *sub),
                None if cert.primary_key.algorithm().can_encrypt() => {
                    builder.encrypt_to_key(&mut rng, cert)
                }
                None => return Err(KeyError::NoEncryptionKey(fingerprint_hex(cert))),
            }
            .map_err(KeyError::Encrypt)?;
        }
        builder.to_vec(&mut rng).map_err(KeyError::Encrypt)
    }

    /// Decrypts a binary or armored message with whichever secret key opens it.
    pub fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, KeyError> {
        let msg = parse_message(data)?;
        let ids = esk_ids(&msg);
        if self.secrets.is_empty() {
            return Err(KeyError::NoSecretKey(ids.join(", ")));
        }
        let empty = Password::empty();
        let pws = vec![&empty; self.secrets.len()];
        let keys: Vec<&SignedSecretKey> = self.secrets.iter().collect();
        let mut msg = match msg.decrypt_with_keys(pws, keys) {
            Ok(m) => m,
            Err(pgp::errors::Error::MissingKey) => {
                return Err(KeyError::NoSecretKey(ids.join(", ")))
            }
            Err(e) => return Err(KeyError::Decrypt(e)),
        };
        if msg.is_compressed() {
            msg = msg.decompress().map_err(KeyError::Decrypt)?;
        }
        let mut out = SecretBytes::new(Vec::new());
        msg.read_to_end(out.expose_mut()).map_err(KeyError::Read)?;
        Ok(out)
    }
}

fn parse_message(data: &[u8]) -> Result<Message<'_>, KeyError> {
    if data.starts_with(b"-----BEGIN PGP MESSAGE") {
        Message::from_armor(data)
            .map(|(m, _)| m)
            .map_err(KeyError::Malformed)
    } else {
        Message::from_bytes(data).map_err(KeyError::Malformed)
    }
}

fn esk_ids(msg: &Message<'_>) -> Vec<String> {
    match msg {
        Message::Encrypted { esk, .. } => esk
            .iter()
            .filter_map(|e| match e {
                Esk::PublicKeyEncryptedSessionKey(p) => {
                    p.id().ok().map(|id| hex_upper(id.as_ref()))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The key ids (upper-case hex) a message is encrypted to, read without decrypting it.
pub(crate) fn message_key_ids(data: &[u8]) -> Result<Vec<String>, KeyError> {
    let msg = parse_message(data)?;
    if !msg.is_encrypted() {
        return Err(KeyError::Malformed(pgp::errors::Error::Message {
            message: "not an encrypted message".into(),
            backtrace: None,
        }));
    }
    Ok(esk_ids(&msg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
    use pgp::crypto::ecc_curve::ECCCurve;

    /// A fresh v4 Ed25519 + Curve25519 key, the shape gpg 2.2 makes by default.
    pub(crate) fn test_key(uid: &str) -> SignedSecretKey {
        let mut enc = SubkeyParamsBuilder::default();
        enc.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All);
        let mut p = SecretKeyParamsBuilder::default();
        p.key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(uid.into())
            .subkeys(vec![enc.build().unwrap()]);
        p.build().unwrap().generate(rand::thread_rng()).unwrap()
    }

    #[test]
    fn round_trip_and_resolution() {
        let k = test_key("Alice <alice@example.org>");
        let fpr = secret_fingerprint(&k);
        let mut ring = Keyring::new();
        ring.add_secret(k);
        for name in [
            fpr.as_str(),
            &fpr[24..],
            &fpr[32..],
            "alice@example.org",
            "<alice@example.org>",
        ] {
            assert!(ring.resolve(name).is_ok(), "{name}");
        }
        assert!(matches!(
            ring.resolve("bob@example.org"),
            Err(KeyError::UnknownRecipient(_))
        ));
        let ct = ring
            .encrypt(b"hunter2\nuser: a\n", &["alice@example.org".into()])
            .unwrap();
        assert_eq!(ring.decrypt(&ct).unwrap().expose(), b"hunter2\nuser: a\n");
        let ids = message_key_ids(&ct).unwrap();
        let want = ring.recipient_key_ids(std::slice::from_ref(&fpr)).unwrap();
        assert!(ids.iter().all(|i| want.contains(i)));
        assert!(matches!(
            ring.decrypt(b"garbage"),
            Err(KeyError::Malformed(_))
        ));
        let other = test_key("Bob <bob@example.org>");
        let mut ring2 = Keyring::new();
        ring2.add_secret(other);
        assert!(matches!(ring2.decrypt(&ct), Err(KeyError::NoSecretKey(_))));
    }
}
