//! The OpenPGP key of a name: a v4 EdDSA-legacy (algorithm 22) primary for certify and sign, and an
//! ECDH Curve25519 (algorithm 18) subkey for encryption, both created 2019-03-01T00:00:00Z.
//!
//! Built packet by packet from the derived secrets instead of through pgp's key generator, whose
//! randomness and `Timestamp::now()` would make the output differ from run to run. Every signature
//! (the user ID certification and the subkey binding) is also dated at the creation time, and
//! Ed25519 signatures are deterministic, so the whole armored key is a function of root and name.
//!
//! The user ID is the name itself (`universe.router.multiverse`, `@user`).

use crate::keys::KeyError;
use crate::root::{Purpose, Root};
use mv_core::IdentityName;
use pgp::composed::{SignedKeyDetails, SignedSecretKey, SignedSecretSubKey};
use pgp::crypto::ecdh::{self, Curve25519Legacy};
use pgp::crypto::ed25519::{self, Mode};
use pgp::crypto::eddsa_legacy;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{
    self, Features, KeyFlags, PubKeyInner, SignatureConfig, SignatureType, Subpacket,
    SubpacketData, UserId,
};
use pgp::types::{
    CompressionAlgorithm, EcdhPublicParams, KeyDetails as _, KeyVersion, Password,
    PlainSecretParams, PublicParams, SecretParams, SignedUser, Timestamp,
};

/// The creation time of every derived OpenPGP key and signature: 2019-03-01T00:00:00Z.
pub const CREATION_TIME: u32 = 1_551_398_400;

fn err(e: impl std::fmt::Display) -> KeyError {
    KeyError::OpenPgp(e.to_string())
}

/// Builds the signed secret key from the two 32-byte secrets, created at [`CREATION_TIME`].
pub fn openpgp_from_secrets(
    primary_seed: &[u8; 32],
    cv25519_secret: &[u8; 32],
    user_id: &str,
) -> Result<SignedSecretKey, KeyError> {
    openpgp_from_secrets_at(primary_seed, cv25519_secret, user_id, CREATION_TIME)
}

/// The creation time of a name's OpenPGP key at `epoch`: [`CREATION_TIME`] + epoch seconds, so a
/// newer epoch's key is also the newer key by date (spec scramble-v1-epochs).
pub fn creation_time(epoch: u32) -> u32 {
    CREATION_TIME.saturating_add(epoch)
}

/// [`openpgp_from_secrets`] with the key and its self-signatures dated `created`.
pub fn openpgp_from_secrets_at(
    primary_seed: &[u8; 32],
    cv25519_secret: &[u8; 32],
    user_id: &str,
    created: u32,
) -> Result<SignedSecretKey, KeyError> {
    let created = Timestamp::from_secs(created);

    // Primary: EdDSA legacy over Ed25519.
    let ed = ed25519::SecretKey::try_from_bytes(*primary_seed, Mode::EdDSALegacy).map_err(err)?;
    let primary_public = PublicParams::EdDSALegacy((&ed).into());
    let primary_pub = packet::PublicKey::from_inner(
        PubKeyInner::new(
            KeyVersion::V4,
            PublicKeyAlgorithm::EdDSALegacy,
            created,
            None,
            primary_public,
        )
        .map_err(err)?,
    )
    .map_err(err)?;
    let primary = packet::SecretKey::new(
        primary_pub.clone(),
        SecretParams::Plain(PlainSecretParams::EdDSALegacy(
            eddsa_legacy::SecretKey::Ed25519(ed),
        )),
    )
    .map_err(err)?;

    // Subkey: ECDH over Curve25519 (legacy encoding), stored clamped as gpg generates it; X25519
    // clamps on use anyway, so clamping does not change the key.
    let mut clamped = zeroize::Zeroizing::new(*cv25519_secret);
    clamped[0] &= 248;
    clamped[31] &= 127;
    clamped[31] |= 64;
    let x = ecdh::SecretKey::Curve25519Legacy(Curve25519Legacy::from(
        x25519_dalek::StaticSecret::from(*clamped),
    ));
    let sub_public = PublicParams::ECDH(EcdhPublicParams::try_from(&x).map_err(err)?);
    let sub_pub = packet::PublicSubkey::from_inner(
        PubKeyInner::new(
            KeyVersion::V4,
            PublicKeyAlgorithm::ECDH,
            created,
            None,
            sub_public,
        )
        .map_err(err)?,
    )
    .map_err(err)?;
    let sub = packet::SecretSubkey::new(
        sub_pub.clone(),
        SecretParams::Plain(PlainSecretParams::ECDH(x)),
    )
    .map_err(err)?;

    let pw = Password::empty();
    let issuer = || -> Result<Vec<Subpacket>, KeyError> {
        Ok(vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(created)).map_err(err)?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint()))
                .map_err(err)?,
        ])
    };
    let unhashed = || -> Result<Vec<Subpacket>, KeyError> {
        Ok(vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            primary.legacy_key_id(),
        ))
        .map_err(err)?])
    };

    // User ID certification (positive), carrying the primary's flags and preferences.
    let uid = UserId::from_str(Default::default(), user_id).map_err(err)?;
    let mut flags = KeyFlags::default();
    flags.set_certify(true);
    flags.set_sign(true);
    let mut features = Features::default();
    features.set_seipd_v1(true);
    let mut config = SignatureConfig::v4(
        SignatureType::CertPositive,
        PublicKeyAlgorithm::EdDSALegacy,
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = issuer()?;
    for sp in [
        SubpacketData::KeyFlags(flags),
        SubpacketData::Features(features),
        SubpacketData::PreferredSymmetricAlgorithms(
            [
                SymmetricKeyAlgorithm::AES256,
                SymmetricKeyAlgorithm::AES192,
                SymmetricKeyAlgorithm::AES128,
            ]
            .into_iter()
            .collect(),
        ),
        SubpacketData::PreferredHashAlgorithms(
            [HashAlgorithm::Sha512, HashAlgorithm::Sha256]
                .into_iter()
                .collect(),
        ),
        SubpacketData::PreferredCompressionAlgorithms(
            [CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP]
                .into_iter()
                .collect(),
        ),
        SubpacketData::IsPrimary(true),
    ] {
        config
            .hashed_subpackets
            .push(Subpacket::regular(sp).map_err(err)?);
    }
    config.unhashed_subpackets = unhashed()?;
    let cert = config
        .sign_certification(&primary, &primary_pub, &pw, pgp::types::Tag::UserId, &uid)
        .map_err(err)?;

    // Subkey binding.
    let mut sub_flags = KeyFlags::default();
    sub_flags.set_encrypt_comms(true);
    sub_flags.set_encrypt_storage(true);
    let mut config = SignatureConfig::v4(
        SignatureType::SubkeyBinding,
        PublicKeyAlgorithm::EdDSALegacy,
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = issuer()?;
    config
        .hashed_subpackets
        .push(Subpacket::regular(SubpacketData::KeyFlags(sub_flags)).map_err(err)?);
    config.unhashed_subpackets = unhashed()?;
    let binding = config
        .sign_subkey_binding(&primary, &primary_pub, &pw, &sub_pub)
        .map_err(err)?;

    let details = SignedKeyDetails::new(
        vec![],
        vec![],
        vec![SignedUser::new(uid, vec![cert])],
        vec![],
    );
    let key = SignedSecretKey::new(
        primary,
        details,
        vec![],
        vec![SignedSecretSubKey::new(sub, vec![binding])],
    );
    Ok(key)
}

/// The fingerprint as 40 upper-case hex digits.
pub fn fingerprint_hex(key: &SignedSecretKey) -> String {
    hex::encode_upper(key.primary_key.fingerprint().as_bytes())
}

impl Root {
    /// The OpenPGP key of `name` (user ID = the name), created at [`creation_time`] of its epoch.
    pub fn openpgp(&self, name: &IdentityName) -> Result<SignedSecretKey, KeyError> {
        let primary = self.derive32(Purpose::OpenpgpEd25519, name);
        let sub = self.derive32(Purpose::OpenpgpCv25519, name);
        openpgp_from_secrets_at(
            primary.expose(),
            sub.expose(),
            name.as_str(),
            creation_time(self.epoch(name)),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_is_self_consistent_and_deterministic() {
        let a = openpgp_from_secrets(&[1; 32], &[2; 32], "a.b").unwrap();
        a.verify_bindings().unwrap();
        let b = openpgp_from_secrets(&[1; 32], &[2; 32], "a.b").unwrap();
        let opts = pgp::composed::ArmorOptions::default();
        assert_eq!(
            a.to_armored_string(opts.clone()).unwrap(),
            b.to_armored_string(opts).unwrap()
        );
        assert_eq!(fingerprint_hex(&a).len(), 40);
        assert_eq!(
            a.primary_key.public_key().created_at().as_secs(),
            CREATION_TIME
        );
    }
}
