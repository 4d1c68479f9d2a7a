//! The hidden container: a key sealed with a passphrase and spread over a cover's low bits.
//!
//! Design (version 1; see docs/guard.md for the reasoning):
//!
//! 1. **Locator.** `L = Argon2id(passphrase, salt = SHA-256("multiverse-guard-v1/locator" ‖ w ‖ h
//!    ‖ channels ‖ depth)[..16])`. `L` keys a SHA-256 counter-mode stream that drives a partial
//!    Fisher–Yates shuffle of the carrier samples (every sample but alpha): the embedding order.
//!    Without the passphrase the order is unknown, so the bits cannot even be located.
//! 2. **Header**, on the first 1 280 positions: a random 16-byte salt `S` and a 16-byte check
//!    value, each bit repeated 5 times (majority vote on reading, so a small edit of the image is
//!    reported as damage rather than as a wrong passphrase). `K = Argon2id(passphrase, S)` (64
//!    bytes): the AEAD key and the check key. The check tells "wrong passphrase (or nothing
//!    hidden)" from "right passphrase, damaged image". Salt and check are uniformly random bits.
//! 3. **Body**, on the following positions: a random 24-byte nonce and XChaCha20-Poly1305 over a
//!    fixed-size plaintext `len (u16 BE) ‖ key ‖ random padding` of 256 bytes (or 4 096 for keys
//!    longer than 254 bytes). The image geometry is the associated data. The length is therefore
//!    hidden (only the size class exists), and every embedded bit is indistinguishable from noise.
//! 4. **Embedding** is LSB matching: when a carrier's low bit differs from the bit to hide, the
//!    sample moves by +1 or −1 at random (never past 0 or the maximum), which leaves none of the
//!    pair-of-values artefacts that LSB replacement leaves (chi-square, sample-pair analysis).
//!
//! A capacity check refuses covers with fewer than 16 carriers per hidden bit.
//!
//! What this module is not: a general steganography library. It hides one short key.

use crate::image::Cover;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mv_core::secret::SecretBytes;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use zeroize::{Zeroize, Zeroizing};

/// Domain string of version 1.
const DOMAIN: &[u8] = b"multiverse-guard-v1";
/// Salt bytes.
const SALT_LEN: usize = 16;
/// Check bytes.
const CHECK_LEN: usize = 16;
/// Repetitions of each header bit.
const REPEAT: usize = 5;
/// Header bits on the image (salt + check, repeated).
pub(crate) const HEADER_BITS: usize = (SALT_LEN + CHECK_LEN) * 8 * REPEAT;
/// Nonce bytes.
const NONCE_LEN: usize = 24;
/// AEAD tag bytes.
const TAG_LEN: usize = 16;
/// Plaintext size classes: a key is padded to the smallest that holds `2 + key.len()` bytes.
pub(crate) const SIZE_CLASSES: [usize; 2] = [256, 4096];
/// Carriers required per hidden bit (an embedding rate of at most 1/16 of the samples).
pub(crate) const CARRIERS_PER_BIT: usize = 16;

pub use crate::hide_file::{hide_file, HideFile, HideFileError, HideFileOutcome};
pub use mv_seal::KdfParams;

/// Why a key cannot be hidden.
#[derive(Debug, thiserror::Error)]
pub enum HideError {
    /// The key is empty.
    #[error("the key to hide is empty")]
    EmptyKey,
    /// The key is longer than the largest size class.
    #[error("the key is {0} bytes; at most {max} bytes can be hidden", max = SIZE_CLASSES[SIZE_CLASSES.len() - 1] - 2)]
    KeyTooLong(usize),
    /// The AEAD refused the message (cannot happen below 256 GiB).
    #[error("the sealed key is too large for the AEAD")]
    TooLarge,
    /// The cover is too small.
    #[error("the cover has {have} usable samples; hiding a {key}-byte key needs at least {need} (16 per hidden bit), use a larger image")]
    Capacity {
        /// Carrier samples available.
        have: usize,
        /// Carrier samples needed.
        need: usize,
        /// Key length.
        key: usize,
    },
}

/// Why no key came out of an image.
#[derive(Debug, thiserror::Error)]
pub enum RevealError {
    /// Wrong passphrase, or nothing is hidden: by design the two cannot be told apart.
    #[error("wrong passphrase, or no key is hidden in this image")]
    NotFound,
    /// The passphrase is right but the data does not authenticate.
    #[error("the passphrase is right but the hidden key is damaged: the image was modified after hiding")]
    Damaged,
}

/// The geometry bytes bound into the locator salt and the AEAD.
fn geometry(cover: &Cover) -> Vec<u8> {
    let mut g = Vec::with_capacity(10);
    g.extend_from_slice(&cover.width.to_be_bytes());
    g.extend_from_slice(&cover.height.to_be_bytes());
    g.push(cover.layout.channels() as u8);
    g.push(cover.depth);
    g
}

/// A deterministic stream of u64 from SHA-256(key ‖ counter): pinned by this code, not by a
/// library's RNG (whose algorithm may change between versions and lose people's keys).
struct Stream {
    key: Zeroizing<[u8; 32]>,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Stream {
    fn new(key: &[u8; 32]) -> Stream {
        Stream {
            key: Zeroizing::new(*key),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
    fn next_u64(&mut self) -> u64 {
        if self.used == 32 {
            let mut h = Sha256::new();
            h.update(b"multiverse-guard-v1/order");
            h.update(self.key.as_slice());
            h.update(self.counter.to_le_bytes());
            self.block = h.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.block[self.used..self.used + 8]);
        self.used += 8;
        u64::from_le_bytes(b)
    }
    /// Uniform in 0..n (rejection sampling, no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// The first `k` positions of a keyed random permutation of `0..n` (partial Fisher–Yates over a
/// sparse map, so the cost is O(k) whatever the image size).
pub fn order(key: &[u8; 32], n: usize, k: usize) -> Vec<usize> {
    let mut s = Stream::new(key);
    let mut swapped: HashMap<usize, usize> = HashMap::with_capacity(k * 2);
    let mut out = Vec::with_capacity(k);
    for i in 0..k.min(n) {
        let j = i + s.below((n - i) as u64) as usize;
        let vj = *swapped.get(&j).unwrap_or(&j);
        let vi = *swapped.get(&i).unwrap_or(&i);
        swapped.insert(j, vi);
        out.push(vj);
    }
    out
}

fn locator(passphrase: &[u8], cover: &Cover, params: KdfParams) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(b"/locator");
    h.update(geometry(cover));
    let digest: [u8; 32] = h.finalize().into();
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&digest[..SALT_LEN]);
    Zeroizing::new(*mv_seal::derive_key(passphrase, &salt, params).expose())
}

fn sub_key(k: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(label);
    h.update(k);
    h.finalize().into()
}

/// (AEAD key, check value) from the passphrase and the stored salt.
fn keys(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> (Zeroizing<[u8; 32]>, [u8; CHECK_LEN]) {
    let k = mv_seal::derive_key(passphrase, salt, params);
    let aead = Zeroizing::new(sub_key(k.expose(), b"/aead"));
    let digest = sub_key(k.expose(), b"/check");
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(&digest[..CHECK_LEN]);
    (aead, check)
}

/// Bits hidden for a plaintext class (header + nonce + ciphertext + tag).
pub fn bits_for_class(class: usize) -> usize {
    HEADER_BITS + (NONCE_LEN + class + TAG_LEN) * 8
}

/// The smallest size class for a key of `len` bytes.
pub fn class_for(len: usize) -> Option<usize> {
    SIZE_CLASSES.iter().copied().find(|c| len + 2 <= *c)
}

fn to_bits(bytes: &[u8], out: &mut Vec<u8>) {
    for b in bytes {
        for i in (0..8).rev() {
            out.push((b >> i) & 1);
        }
    }
}

fn from_bits(bits: &[u8]) -> Vec<u8> {
    bits.chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, b| (acc << 1) | (b & 1)))
        .collect()
}

/// Sets the low bit of sample `v` to `bit` by ±1 (LSB matching).
fn lsb_match(v: u16, bit: u8, max: u16, rng: &mut impl Rng) -> u16 {
    if (v & 1) as u8 == bit {
        return v;
    }
    if v == 0 {
        1
    } else if v == max {
        max - 1
    } else if rng.gen::<bool>() {
        v + 1
    } else {
        v - 1
    }
}

/// What hiding a key of some length in a cover takes (see [`capacity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// The plaintext size class the key is padded to.
    pub class: usize,
    /// Carrier samples needed.
    pub need: usize,
    /// Carrier samples the cover has.
    pub have: usize,
}

/// Whether `cover` can hold a key of `key_len` bytes, without deriving anything: the checks
/// [`hide`] makes before its (slow) key derivation, with the same errors.
pub fn capacity(cover: &Cover, key_len: usize) -> Result<Capacity, HideError> {
    if key_len == 0 {
        return Err(HideError::EmptyKey);
    }
    let class = class_for(key_len).ok_or(HideError::KeyTooLong(key_len))?;
    let need = bits_for_class(class) * CARRIERS_PER_BIT;
    let have = cover.carrier_count();
    if have < need {
        return Err(HideError::Capacity {
            have,
            need,
            key: key_len,
        });
    }
    Ok(Capacity { class, need, have })
}

/// Hides `key` in `cover` under `passphrase`. The cover is modified in place.
pub fn hide(
    cover: &mut Cover,
    key: &[u8],
    passphrase: &[u8],
    params: KdfParams,
) -> Result<(), HideError> {
    let class = capacity(cover, key.len())?.class;
    let total = bits_for_class(class);
    let have = cover.carrier_count();
    let mut rng = rand::rngs::OsRng;
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let loc = locator(passphrase, cover, params);
    let (aead_key, check) = keys(passphrase, &salt, params);

    let mut plain = Zeroizing::new(vec![0u8; class]);
    plain[..2].copy_from_slice(&(key.len() as u16).to_be_bytes());
    plain[2..2 + key.len()].copy_from_slice(key);
    rng.fill_bytes(&mut plain[2 + key.len()..]);
    let cipher = XChaCha20Poly1305::new(aead_key.as_slice().into());
    let ad = [DOMAIN, &geometry(cover)].concat();
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &ad,
            },
        )
        .map_err(|_| HideError::TooLarge)?;

    let mut bits = Vec::with_capacity(total);
    let mut header = Vec::with_capacity((SALT_LEN + CHECK_LEN) * 8);
    to_bits(&salt, &mut header);
    to_bits(&check, &mut header);
    for _ in 0..REPEAT {
        bits.extend_from_slice(&header);
    }
    to_bits(&nonce, &mut bits);
    to_bits(&sealed, &mut bits);
    debug_assert_eq!(bits.len(), total);

    let positions = order(&loc, have, total);
    let max = cover.max_value();
    let mut choice = rand::thread_rng();
    for (pos, bit) in positions.iter().zip(&bits) {
        let idx = cover.carrier_index(*pos);
        cover.samples[idx] = lsb_match(cover.samples[idx], *bit, max, &mut choice);
    }
    bits.zeroize();
    Ok(())
}

/// Reads the key hidden in `cover` under `passphrase`.
pub fn reveal(
    cover: &Cover,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<SecretBytes, RevealError> {
    let have = cover.carrier_count();
    let smallest = bits_for_class(SIZE_CLASSES[0]);
    if have < smallest * CARRIERS_PER_BIT {
        // Too small to ever hold a key: nothing to find.
        return Err(RevealError::NotFound);
    }
    let fitting: Vec<usize> = SIZE_CLASSES
        .iter()
        .copied()
        .filter(|c| bits_for_class(*c) * CARRIERS_PER_BIT <= have)
        .collect();
    let longest = fitting
        .iter()
        .map(|c| bits_for_class(*c))
        .max()
        .unwrap_or(smallest);
    let loc = locator(passphrase, cover, params);
    let positions = order(&loc, have, longest);
    let read = |p: &usize| (cover.samples[cover.carrier_index(*p)] & 1) as u8;

    let header_len = (SALT_LEN + CHECK_LEN) * 8;
    let mut header = Vec::with_capacity(header_len);
    for i in 0..header_len {
        let ones: usize = (0..REPEAT)
            .map(|r| read(&positions[r * header_len + i]) as usize)
            .sum();
        header.push(u8::from(ones * 2 > REPEAT));
    }
    let header = from_bits(&header);
    let (salt_bytes, stored_check) = header.split_at(SALT_LEN);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(salt_bytes);
    let (aead_key, check) = keys(passphrase, &salt, params);
    if check.as_slice() != stored_check {
        return Err(RevealError::NotFound);
    }
    let cipher = XChaCha20Poly1305::new(aead_key.as_slice().into());
    let ad = [DOMAIN, &geometry(cover)].concat();
    for class in fitting {
        let end = bits_for_class(class);
        let bits: Vec<u8> = positions[HEADER_BITS..end].iter().map(read).collect();
        let body = from_bits(&bits);
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        if let Ok(plain) = cipher.decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &ad,
            },
        ) {
            let plain = Zeroizing::new(plain);
            let len = u16::from_be_bytes([plain[0], plain[1]]) as usize;
            if len == 0 || len + 2 > plain.len() {
                return Err(RevealError::Damaged);
            }
            return Ok(SecretBytes::new(plain[2..2 + len].to_vec()));
        }
    }
    Err(RevealError::Damaged)
}

/// Reveals from untrusted PNG bytes with cheap parameters: the fuzzing entry point. Must never
/// panic, whatever the bytes.
#[cfg(any(test, feature = "test-hooks"))]
pub fn reveal_bytes_for_fuzzing(bytes: &[u8]) -> bool {
    match Cover::decode(bytes, "fuzz") {
        Ok(c) => {
            // Bound the work: the fuzzer's images may be huge but the order is O(bits), fine.
            reveal(&c, b"fuzz", KdfParams::INSECURE_FAST).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Layout;
    use proptest::prelude::*;

    fn noisy(w: u32, h: u32, layout: Layout, depth: u8) -> Cover {
        let mut c = Cover::new(w, h, layout, depth);
        let max = c.max_value() as u64;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for s in c.samples.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *s = (x % (max + 1)) as u16;
        }
        c
    }

    #[test]
    fn order_is_a_prefix_of_a_permutation() {
        let k = [7u8; 32];
        let a = order(&k, 1000, 1000);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(order(&k, 1000, 10), a[..10].to_vec());
        assert_ne!(order(&[8u8; 32], 1000, 10), a[..10].to_vec());
    }

    #[test]
    fn hide_reveal_each_layout_and_class() {
        let p = KdfParams::INSECURE_FAST;
        for (layout, depth) in [(Layout::Grey, 8), (Layout::Rgba, 16)] {
            for key_len in [1usize, 64, 254, 255, 4094] {
                let mut c = noisy(800, 800, layout, depth);
                let orig = c.clone();
                let key: Vec<u8> = (0..key_len).map(|i| (i * 31) as u8).collect();
                hide(&mut c, &key, b"pass", p).unwrap();
                let changed = c
                    .samples
                    .iter()
                    .zip(&orig.samples)
                    .filter(|(a, b)| a != b)
                    .count();
                assert!(changed > 0 && changed <= bits_for_class(class_for(key_len).unwrap()));
                assert!(c
                    .samples
                    .iter()
                    .zip(&orig.samples)
                    .all(|(a, b)| a.abs_diff(*b) <= 1));
                assert_eq!(reveal(&c, b"pass", p).unwrap().expose(), &key);
                assert!(matches!(
                    reveal(&c, b"wrong", p),
                    Err(RevealError::NotFound)
                ));
            }
        }
    }

    #[test]
    fn alpha_is_never_touched() {
        let p = KdfParams::INSECURE_FAST;
        let mut c = noisy(300, 300, Layout::Rgba, 8);
        for px in c.samples.chunks_mut(4) {
            px[3] = 255;
        }
        hide(&mut c, &[1; 64], b"x", p).unwrap();
        assert!(c.samples.chunks(4).all(|px| px[3] == 255));
    }

    #[test]
    fn capacity_and_length_limits() {
        let p = KdfParams::INSECURE_FAST;
        let mut small = noisy(50, 50, Layout::Rgb, 8);
        let e = hide(&mut small, &[1; 64], b"x", p).unwrap_err();
        assert!(matches!(e, HideError::Capacity { have: 7500, .. }), "{e}");
        let mut c = noisy(300, 300, Layout::Rgb, 8);
        assert!(matches!(
            hide(&mut c, &[1; 5000], b"x", p),
            Err(HideError::KeyTooLong(5000))
        ));
        assert!(matches!(
            hide(&mut c, &[], b"x", p),
            Err(HideError::EmptyKey)
        ));
        // Nothing hidden in a plain cover: reported as not found.
        assert!(matches!(reveal(&c, b"x", p), Err(RevealError::NotFound)));
    }

    #[test]
    fn tampering_the_body_is_damage_not_wrong_passphrase() {
        let p = KdfParams::INSECURE_FAST;
        let mut c = noisy(300, 300, Layout::Rgb, 8);
        hide(&mut c, &[9; 64], b"pp", p).unwrap();
        let loc = locator(b"pp", &c, p);
        let pos = order(&loc, c.carrier_count(), HEADER_BITS + 1);
        let idx = c.carrier_index(pos[HEADER_BITS]);
        c.samples[idx] ^= 1;
        assert!(matches!(reveal(&c, b"pp", p), Err(RevealError::Damaged)));
        // A single flipped header bit is outvoted.
        c.samples[idx] ^= 1;
        let h = c.carrier_index(pos[0]);
        c.samples[h] ^= 1;
        assert_eq!(reveal(&c, b"pp", p).unwrap().expose(), &[9; 64]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Any key up to the first size class, any passphrase, any cover: it comes back, and
        /// another passphrase finds nothing.
        #[test]
        fn round_trip_any_key(key in proptest::collection::vec(any::<u8>(), 1..=254),
                              pass in proptest::collection::vec(any::<u8>(), 0..40),
                              seed in any::<u64>(), depth16 in any::<bool>()) {
            let p = KdfParams::INSECURE_FAST;
            let mut c = crate::image::synthetic_photo(150, 150, Layout::Rgb, if depth16 { 16 } else { 8 }, seed);
            hide(&mut c, &key, &pass, p).unwrap();
            let back = Cover::decode(&c.encode().unwrap(), "t").unwrap();
            let got = reveal(&back, &pass, p).unwrap();
            prop_assert_eq!(got.expose(), &key);
            let mut other = pass.clone();
            other.push(b'!');
            prop_assert!(matches!(reveal(&back, &other, p), Err(RevealError::NotFound)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The fuzz target's entry point on arbitrary and on mutated-PNG bytes never panics.
        #[test]
        fn fuzz_entry_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..4096, flip in 0usize..4096) {
            let _ = reveal_bytes_for_fuzzing(&bytes);
            let png = noisy(40, 30, Layout::Rgb, 8).encode().unwrap();
            let mut m = png.clone();
            let i = flip % m.len();
            m[i] ^= 0x5a;
            let _ = reveal_bytes_for_fuzzing(&m);
            let _ = reveal_bytes_for_fuzzing(&png[..cut.min(png.len())]);
        }
    }
}
