//! `mv-seal`: passphrase sealing with Argon2id and XChaCha20-Poly1305, parameters stored with the
//! ciphertext.
//!
//! Used for the Scramble Suit root (`mv-identity`) and the guard's LUKS key. The sealed bytes are a
//! self-describing, versioned container, so a file sealed today with today's parameters opens with any
//! later build, and the parameters can be raised for new seals without breaking old ones.
//!
//! Main items:
//! - [`KdfParams`]: validated Argon2id cost parameters ([`KdfParams::DEFAULT`]: m = 256 MiB, t = 3,
//!   p = 1), capped ([`MAX_MEMORY_KIB`], [`MAX_COST_KIB`]) because `open` reads them from the file
//!   before it can authenticate anything. Tests pass cheaper parameters explicitly; there is no
//!   hidden environment switch.
//! - [`seal`] / [`open`]: the whole container. A wrong passphrase or any changed byte is
//!   [`SealError::Authentication`]; truncated or foreign bytes are [`SealError::Format`] naming what
//!   is wrong. Never garbage plaintext.
//! - [`derive_key`]: the bare KDF (passphrase + 16-byte salt → 32-byte key) for callers that need
//!   the key itself; [`parse`]: the container parser alone (it touches untrusted bytes, so it is
//!   fuzzed and property-tested separately from the crypto).
//!
//! What it is not: a general-purpose encryption library, or a streaming format. Sealed payloads are
//! small secrets held in memory.
//!
//! # Container, version 1 (all integers little-endian)
//! ```text
//! offset size
//!      0    6  magic "MVSEAL"
//!      6    1  version = 1
//!      7    1  algorithm = 1 (Argon2id v0x13 → XChaCha20-Poly1305)
//!      8    4  Argon2 memory in KiB
//!     12    4  Argon2 iterations
//!     16    4  Argon2 parallelism
//!     20   16  salt
//!     36   24  nonce
//!     60    n  ciphertext followed by the 16-byte Poly1305 tag
//! ```
//! The 60 header bytes are the AEAD's associated data, so changing a parameter, the salt or the
//! nonce fails authentication exactly like changing the ciphertext.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use mv_core::secret::SecretBytes;
use mv_core::Secret;
use rand_core::{OsRng, RngCore};
use std::fmt;

/// The magic bytes every sealed container starts with.
pub const MAGIC: &[u8; 6] = b"MVSEAL";
/// The container version this build writes (and the only one it reads).
pub const VERSION: u8 = 1;
/// Algorithm id 1: Argon2id (v0x13) then XChaCha20-Poly1305.
pub const ALG_ARGON2ID_XCHACHA20POLY1305: u8 = 1;
/// Length of the salt in bytes.
pub const SALT_LEN: usize = 16;
/// Length of the XChaCha20 nonce in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag in bytes.
pub const TAG_LEN: usize = 16;
/// Length of the header (the associated data).
pub const HEADER_LEN: usize = 6 + 1 + 1 + 12 + SALT_LEN + NONCE_LEN;
/// Length of the derived key.
pub const KEY_LEN: usize = 32;

/// Largest Argon2 memory accepted (1 GiB in KiB, four times the default). A bigger value in a file
/// is refused as malformed rather than honoured: the parameters are read from the file before
/// anything can be authenticated, so a planted file must not make `open` allocate gigabytes.
/// [`seal`] takes only validated [`KdfParams`], so it never writes what `open` would refuse.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
/// Largest Argon2 iteration count accepted.
pub const MAX_ITERATIONS: u32 = 16;
/// Largest Argon2 parallelism accepted.
pub const MAX_PARALLELISM: u32 = 16;
/// Largest total work accepted, memory × iterations in KiB (4 GiB·passes: 1 GiB × 4, or the
/// default 256 MiB × 16). It bounds the time a planted header can make `open` spend before the
/// tag is checked (about 2 s/GiB·pass on one core here: a few seconds, not minutes).
pub const MAX_COST_KIB: u64 = 4 * 1024 * 1024;
/// Below this memory (64 MiB) a seal resists offline guessing poorly: accepted (tests and very
/// small machines use less) but [`KdfParams::is_weak`], so that the CLI warns.
pub const WEAK_MEMORY_KIB: u32 = 64 * 1024;

/// Why Argon2 parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Memory outside `8 * parallelism ..= MAX_MEMORY_KIB`.
    #[error("Argon2 memory {memory_kib} KiB is outside {min}..={max} KiB")]
    Memory {
        /// The memory asked for.
        memory_kib: u32,
        /// The minimum for this parallelism (8 KiB per lane).
        min: u32,
        /// [`MAX_MEMORY_KIB`].
        max: u32,
    },
    /// Iterations outside `1..=MAX_ITERATIONS`.
    #[error("Argon2 iterations {0} is outside 1..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// Parallelism outside `1..=MAX_PARALLELISM`.
    #[error("Argon2 parallelism {0} is outside 1..={MAX_PARALLELISM}")]
    Parallelism(u32),
    /// Memory × iterations above [`MAX_COST_KIB`].
    #[error(
        "Argon2 cost {memory_kib} KiB × {iterations} passes is above {MAX_COST_KIB} KiB·passes"
    )]
    Cost {
        /// The memory asked for.
        memory_kib: u32,
        /// The passes asked for.
        iterations: u32,
    },
}

/// Argon2id cost parameters. Always valid: built only through [`KdfParams::new`] or the constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The default for secrets at rest: m = 256 MiB, t = 3, p = 1 (spec scramble-v1).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 256 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Cheap parameters (m = 1 MiB, t = 1, p = 1) for tests and benchmarks only: they protect
    /// nothing against a guessing attacker. Production code never picks them on its own.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    /// Validates explicit parameters.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, ParamsError> {
        if parallelism == 0 || parallelism > MAX_PARALLELISM {
            return Err(ParamsError::Parallelism(parallelism));
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ParamsError::Iterations(iterations));
        }
        let min = 8 * parallelism;
        if memory_kib < min || memory_kib > MAX_MEMORY_KIB {
            return Err(ParamsError::Memory {
                memory_kib,
                min,
                max: MAX_MEMORY_KIB,
            });
        }
        if u64::from(memory_kib) * u64::from(iterations) > MAX_COST_KIB {
            return Err(ParamsError::Cost {
                memory_kib,
                iterations,
            });
        }
        Ok(KdfParams {
            memory_kib,
            iterations,
            parallelism,
        })
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }
    /// Number of passes.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
    /// Number of lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }
    /// Whether the memory cost is below [`WEAK_MEMORY_KIB`] (valid, but weak against guessing).
    pub fn is_weak(&self) -> bool {
        self.memory_kib < WEAK_MEMORY_KIB
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argon2id m={} KiB t={} p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// Why bytes are not a sealed container this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than a header plus a tag.
    #[error("sealed data is {len} bytes, shorter than the {need}-byte minimum (header and tag)")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed at least.
        need: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("not a Multiverse sealed container: it does not start with \"MVSEAL\"")]
    BadMagic,
    /// A container version this build does not know.
    #[error("sealed container version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// An algorithm id this build does not know.
    #[error("sealed container uses unknown algorithm id {0}")]
    UnknownAlgorithm(u8),
    /// The stored Argon2 parameters are out of range.
    #[error("sealed container holds invalid KDF parameters")]
    Params(#[source] ParamsError),
}

/// Why [`open`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes are not a readable container.
    #[error("sealed data is malformed")]
    Format(#[from] FormatError),
    /// The passphrase is wrong or a byte of the container was changed.
    #[error("wrong passphrase, or the sealed data was modified (authentication failed)")]
    Authentication,
}

impl mv_core::Classify for ParamsError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

impl mv_core::Classify for FormatError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for SealError {
    /// A wrong passphrase is the person's to fix; a malformed container is not.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            SealError::Authentication => mv_core::ErrorClass::Usage,
            SealError::Format(_) => mv_core::ErrorClass::Failure,
        }
    }
}

/// A parsed container, borrowing the ciphertext from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The KDF parameters it was sealed with.
    pub params: KdfParams,
    /// The Argon2 salt.
    pub salt: [u8; SALT_LEN],
    /// The XChaCha20 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The 60 header bytes (authenticated as associated data).
    pub header: &'a [u8],
    /// Ciphertext with the tag at its end.
    pub ciphertext: &'a [u8],
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Parses a container without decrypting it. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> Result<Sealed<'_>, FormatError> {
    let need = HEADER_LEN + TAG_LEN;
    // Check the magic first so that a foreign file says "not ours" rather than "too short".
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if bytes.len() < need {
        return Err(FormatError::TooShort {
            len: bytes.len(),
            need,
        });
    }
    if bytes[6] != VERSION {
        return Err(FormatError::UnsupportedVersion(bytes[6]));
    }
    if bytes[7] != ALG_ARGON2ID_XCHACHA20POLY1305 {
        return Err(FormatError::UnknownAlgorithm(bytes[7]));
    }
    let params = KdfParams::new(read_u32(bytes, 8), read_u32(bytes, 12), read_u32(bytes, 16))
        .map_err(FormatError::Params)?;
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[20..20 + SALT_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[36..36 + NONCE_LEN]);
    Ok(Sealed {
        params,
        salt,
        nonce,
        header: &bytes[..HEADER_LEN],
        ciphertext: &bytes[HEADER_LEN..],
    })
}

/// Derives a 32-byte key from a passphrase with Argon2id (v0x13).
///
/// This is the KDF of the container, for callers that need the key itself (the guard derives the
/// LUKS key's wrapping key with it). Use a fresh random salt per secret.
pub fn derive_key(passphrase: &[u8], salt: &[u8; SALT_LEN], params: KdfParams) -> Secret<[u8; 32]> {
    let mut key = Secret::new([0u8; KEY_LEN]);
    // `KdfParams` is validated at construction against the same bounds Argon2 checks, the salt is 16
    // bytes (Argon2 wants >= 8) and the output 32 bytes, so neither call can fail; a failure here is
    // a bug in this crate, not something input can cause.
    #[allow(clippy::expect_used)]
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(KEY_LEN),
    )
    .expect("KdfParams are validated at construction");
    #[allow(clippy::expect_used)]
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase, salt, key.expose_mut())
        .expect("Argon2 inputs are within bounds");
    key
}

fn header(params: KdfParams, salt: &[u8; SALT_LEN], nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(ALG_ARGON2ID_XCHACHA20POLY1305);
    h.extend_from_slice(&params.memory_kib.to_le_bytes());
    h.extend_from_slice(&params.iterations.to_le_bytes());
    h.extend_from_slice(&params.parallelism.to_le_bytes());
    h.extend_from_slice(salt);
    h.extend_from_slice(nonce);
    h
}

/// Seals `plaintext` under `passphrase` with a fresh random salt and nonce from the OS CSPRNG.
pub fn seal(plaintext: &[u8], passphrase: &[u8], params: KdfParams) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    seal_with(plaintext, passphrase, params, salt, nonce)
}

/// Seals with a caller-chosen salt and nonce. Only for reproducible test vectors: reusing a salt
/// and nonce under one passphrase breaks the AEAD. Everyone else calls [`seal`].
pub fn seal_with(
    plaintext: &[u8],
    passphrase: &[u8],
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let key = derive_key(passphrase, &salt, params);
    let mut out = header(params, &salt, &nonce);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.expose()));
    // XChaCha20-Poly1305 encryption only fails for messages above ~256 GiB; sealed payloads are
    // small secrets held in memory.
    #[allow(clippy::expect_used)]
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &out,
            },
        )
        .expect("payload below the AEAD size limit");
    out.extend_from_slice(&ct);
    out
}

/// Opens a container sealed by [`seal`], returning the plaintext.
pub fn open(sealed: &[u8], passphrase: &[u8]) -> Result<SecretBytes, SealError> {
    let parsed = parse(sealed)?;
    let key = derive_key(passphrase, &parsed.salt, parsed.params);
    open_with_key(&parsed, &key)
}

/// Opens a parsed container with a key already derived by [`derive_key`] from its salt and params.
pub fn open_with_key(
    parsed: &Sealed<'_>,
    key: &Secret<[u8; 32]>,
) -> Result<SecretBytes, SealError> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.expose()));
    cipher
        .decrypt(
            XNonce::from_slice(&parsed.nonce),
            Payload {
                msg: parsed.ciphertext,
                aad: parsed.header,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| SealError::Authentication)
}

/// The body of the fuzz target: parse untrusted bytes and, when the stored parameters are cheap,
/// try to open them. Compiled for this crate's tests and with the `test-hooks` feature (which
/// `fuzz/` enables), so that the fuzzer and the property tests share one entry point.
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn fuzz_open(data: &[u8]) {
    if let Ok(p) = parse(data) {
        assert_eq!(p.header.len() + p.ciphertext.len(), data.len());
        // Only small memory costs: the fuzzer would otherwise spend its time inside Argon2.
        if p.params.memory_kib() <= 64 && p.params.iterations() <= 2 {
            let key = derive_key(b"fuzz", &p.salt, p.params);
            let _ = open_with_key(&p, &key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const FAST: KdfParams = KdfParams::INSECURE_FAST;

    #[test]
    fn round_trip() {
        let s = seal(b"root secret", b"pass", FAST);
        assert_eq!(s.len(), HEADER_LEN + 11 + TAG_LEN);
        assert_eq!(open(&s, b"pass").unwrap().expose(), b"root secret");
        let p = parse(&s).unwrap();
        assert_eq!(p.params, FAST);
    }

    #[test]
    fn default_params_round_trip() {
        // The production cost (256 MiB, 3 passes): about a second, paid once so that the default
        // is known to be accepted by Argon2 and stored and read back exactly.
        let s = seal(b"root", b"pass", KdfParams::DEFAULT);
        assert_eq!(parse(&s).unwrap().params, KdfParams::DEFAULT);
        assert_eq!(open(&s, b"pass").unwrap().expose(), b"root");
    }

    #[test]
    fn fresh_salt_and_nonce_each_time() {
        let a = seal(b"x", b"p", FAST);
        let b = seal(b"x", b"p", FAST);
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_passphrase_is_authentication_error() {
        let s = seal(b"root", b"right", FAST);
        assert_eq!(open(&s, b"wrong"), Err(SealError::Authentication));
        assert_eq!(open(&s, b""), Err(SealError::Authentication));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let s = seal_with(b"0123456789abcdef", b"pw", FAST, [7; 16], [9; 24]);
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x01;
            let e = open(&t, b"pw").unwrap_err();
            // Magic/version/algorithm/params bytes may turn into a format error; everything else is
            // an authentication failure. Never a successful open.
            if i >= 20 {
                assert_eq!(e, SealError::Authentication, "byte {i}");
            }
        }
    }

    #[test]
    fn format_errors_name_the_problem() {
        let s = seal(b"k", b"p", FAST);
        assert_eq!(parse(b"hello"), Err(FormatError::BadMagic));
        assert_eq!(parse(b"PK\x03\x04 zip file"), Err(FormatError::BadMagic));
        assert!(matches!(
            parse(&s[..40]),
            Err(FormatError::TooShort { len: 40, need: 76 })
        ));
        let mut v = s.clone();
        v[6] = 2;
        assert_eq!(parse(&v), Err(FormatError::UnsupportedVersion(2)));
        let mut a = s.clone();
        a[7] = 9;
        assert_eq!(parse(&a), Err(FormatError::UnknownAlgorithm(9)));
        let mut m = s.clone();
        m[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&m),
            Err(FormatError::Params(ParamsError::Memory { .. }))
        ));
        let msg = SealError::from(FormatError::UnsupportedVersion(2)).to_string();
        assert_eq!(msg, "sealed data is malformed");
    }

    #[test]
    fn caps_admit_the_default_and_refuse_costly_headers() {
        assert!(!KdfParams::DEFAULT.is_weak());
        assert!(KdfParams::INSECURE_FAST.is_weak());
        assert!(KdfParams::new(MAX_MEMORY_KIB, 4, 1).is_ok());
        assert!(KdfParams::new(256 * 1024, MAX_ITERATIONS, 1).is_ok());
        assert!(matches!(
            KdfParams::new(MAX_MEMORY_KIB + 1, 1, 1),
            Err(ParamsError::Memory { .. })
        ));
        assert!(matches!(
            KdfParams::new(MAX_MEMORY_KIB, 5, 1),
            Err(ParamsError::Cost { .. })
        ));
        assert!(matches!(
            KdfParams::new(1024, MAX_ITERATIONS + 1, 1),
            Err(ParamsError::Iterations(_))
        ));
        // What the finding planted: 4 GiB, refused by the parser before any Argon2 work.
        let mut h = seal(b"k", b"p", FAST);
        h[8..12].copy_from_slice(&(4u32 * 1024 * 1024).to_le_bytes());
        assert_eq!(
            open(&h, b"p"),
            Err(SealError::Format(FormatError::Params(
                ParamsError::Memory {
                    memory_kib: 4 * 1024 * 1024,
                    min: 8,
                    max: MAX_MEMORY_KIB
                }
            )))
        );
    }

    #[test]
    fn params_are_validated() {
        assert!(KdfParams::new(8, 1, 1).is_ok());
        assert!(matches!(
            KdfParams::new(7, 1, 1),
            Err(ParamsError::Memory { min: 8, .. })
        ));
        assert!(matches!(
            KdfParams::new(64, 0, 1),
            Err(ParamsError::Iterations(0))
        ));
        assert!(matches!(
            KdfParams::new(64, 1, 0),
            Err(ParamsError::Parallelism(0))
        ));
        assert!(matches!(
            KdfParams::new(15, 1, 2),
            Err(ParamsError::Memory { min: 16, .. })
        ));
        assert_eq!(
            KdfParams::default().to_string(),
            "argon2id m=262144 KiB t=3 p=1"
        );
    }

    #[test]
    fn derive_key_depends_on_every_input() {
        let k = derive_key(b"p", &[1; 16], FAST);
        assert_eq!(k, derive_key(b"p", &[1; 16], FAST));
        assert_ne!(k, derive_key(b"q", &[1; 16], FAST));
        assert_ne!(k, derive_key(b"p", &[2; 16], FAST));
        assert_ne!(
            k,
            derive_key(b"p", &[1; 16], KdfParams::new(1024, 2, 1).unwrap())
        );
        assert_eq!(format!("{k:?}"), "Secret([REDACTED])");
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_with_our_magic(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&tail);
            let _ = fuzz_entry(&b);
        }

        #[test]
        fn truncation_is_never_accepted(cut in 0usize..91) {
            let s = seal_with(b"0123456789abcdef", b"pw", FAST, [3; 16], [4; 24]);
            prop_assert!(open(&s[..cut.min(s.len() - 1)], b"pw").is_err());
        }
    }

    /// The fuzz target's body (crates/mv-seal/fuzz), run here so the suite exercises it.
    fn fuzz_entry(data: &[u8]) -> Option<()> {
        super::fuzz_open(data);
        Some(())
    }
}
