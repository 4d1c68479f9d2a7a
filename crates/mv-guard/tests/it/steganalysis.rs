//! Steganalysis of our embedding, written here so that it cannot lean on the code it judges.
//!
//! Two classic attacks on LSB steganography:
//! - Westfeld and Pfitzmann's **chi-square attack**: LSB replacement equalises the counts of each
//!   pair of values (2i, 2i+1); the test statistic's p-value near 1 flags embedding. Run, as the
//!   attack is meant to be, on the first samples in scan order, the window a sequential payload of
//!   this size fills.
//! - Dumitrescu, Wu and Wang's **sample pair analysis** (SPA): estimates the LSB-replacement rate
//!   from the statistics of horizontally adjacent pairs.
//!
//! The cover is a 512×512 photo-like RGB image; the payload is the default one (a 64-byte key,
//! which the container pads to 3 648 hidden bits). Our embedding (LSB matching at keyed random
//! positions) must not be flagged; a control that writes the same number of bits by sequential
//! LSB replacement must be.
#![allow(clippy::unwrap_used)]

use mv_guard::container::{self, bits_for_class, class_for, KdfParams};
use mv_guard::{synthetic_photo, Cover, Layout};

/// ln Γ(x) (Lanczos).
fn ln_gamma(x: f64) -> f64 {
    let g = [
        76.180_091_729_471_46,
        -86.505_320_329_416_77,
        24.014_098_240_830_91,
        -1.231_739_572_450_155,
        0.001_208_650_973_866_179,
        -0.000_005_395_239_384_953,
    ];
    let mut y = x;
    let tmp = x + 5.5;
    let tmp = tmp - (x + 0.5) * tmp.ln();
    let mut ser = 1.000_000_000_190_015;
    for c in g {
        y += 1.0;
        ser += c / y;
    }
    -tmp + (2.506_628_274_631_000_5 * ser / x).ln()
}

/// Regularised lower incomplete gamma P(a, x).
fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-14 {
                break;
            }
        }
        sum * (-x + a * x.ln() - ln_gamma(a)).exp()
    } else {
        // Continued fraction for Q, then P = 1 - Q.
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / 1e-300;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < 1e-300 {
                d = 1e-300;
            }
            c = b + an / c;
            if c.abs() < 1e-300 {
                c = 1e-300;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-14 {
                break;
            }
        }
        1.0 - (-x + a * x.ln() - ln_gamma(a)).exp() * h
    }
}

/// The chi-square attack's probability of embedding for a run of samples.
fn chi_square_p(samples: &[u16]) -> f64 {
    let mut hist = [0u64; 256];
    for s in samples {
        hist[*s as usize] += 1;
    }
    let (mut chi, mut cats) = (0.0, 0usize);
    for i in 0..128 {
        let (a, b) = (hist[2 * i] as f64, hist[2 * i + 1] as f64);
        let e = (a + b) / 2.0;
        if e >= 5.0 {
            chi += (a - e) * (a - e) / e;
            cats += 1;
        }
    }
    if cats < 2 {
        return 0.0;
    }
    1.0 - gamma_p((cats - 1) as f64 / 2.0, chi / 2.0)
}

/// SPA estimate of the fraction of flipped LSBs (half the LSB-replacement embedding rate) over horizontally adjacent pairs of one channel
/// (rows × columns of `ch` interleaved channels; only pairs inside `rows`).
fn spa(c: &Cover, rows: std::ops::Range<usize>, channel: usize) -> f64 {
    let (w, ch) = (c.width as usize, c.layout.channels());
    let (mut x, mut y, mut k, mut pairs) = (0f64, 0f64, 0f64, 0f64);
    for row in rows {
        for col in 0..w - 1 {
            let r = c.samples[(row * w + col) * ch + channel] as i32;
            let s = c.samples[(row * w + col + 1) * ch + channel] as i32;
            pairs += 1.0;
            if (s % 2 == 0 && r < s) || (s % 2 == 1 && r > s) {
                x += 1.0;
            }
            if (s % 2 == 0 && r > s) || (s % 2 == 1 && r < s) {
                y += 1.0;
            }
            if s / 2 == r / 2 {
                k += 1.0;
            }
        }
    }
    if k == 0.0 {
        return 0.0;
    }
    let (a, b, cc) = (2.0 * k, 2.0 * (2.0 * x - pairs), y - x);
    let disc = (b * b - 4.0 * a * cc).max(0.0).sqrt();
    ((-b + disc) / (2.0 * a)).min((-b - disc) / (2.0 * a)).abs()
}

struct Verdict {
    chi_p: f64,
    spa: f64,
}

/// Both attacks on the prefix a sequential payload of `bits` occupies: flagged when the chi-square
/// p-value of the prefix (all colour channels) exceeds 0.5 (clean covers give p < 1e-4) or the SPA estimate of flipped LSBs
/// of any channel over the rows of the prefix exceeds 0.25 (an embedding rate above one half).
fn attack(c: &Cover, bits: usize) -> Verdict {
    let w = c.width as usize * c.layout.channels();
    let rows = bits.div_ceil(w).max(1);
    let mut v = Verdict {
        chi_p: 0.0,
        spa: 0.0,
    };
    v.chi_p = chi_square_p(&c.samples[..bits]);
    for ch in 0..3 {
        v.spa = v.spa.max(spa(c, 0..rows, ch));
    }
    v
}

fn flagged(v: &Verdict) -> bool {
    v.chi_p > 0.5 || v.spa > 0.25
}

fn lsb_replace_sequential(c: &mut Cover, bits: &[u8]) {
    for (i, b) in bits.iter().enumerate() {
        let idx = c.carrier_index(i);
        c.samples[idx] = (c.samples[idx] & !1) | u16::from(*b);
    }
}

#[test]
fn our_embedding_passes_chi_square_and_spa_and_the_control_does_not() {
    for seed in [2024, 7, 31337] {
        check_one_cover(seed);
    }
}

fn check_one_cover(seed: u64) {
    let cover = synthetic_photo(512, 512, Layout::Rgb, 8, seed);
    let bits = bits_for_class(class_for(64).unwrap());
    assert_eq!(bits, 3648);

    let clean = attack(&cover, bits);
    assert!(
        !flagged(&clean),
        "the attacks must not flag the clean cover (chi p {:.3}, spa {:.3})",
        clean.chi_p,
        clean.spa
    );

    let mut ours = cover.clone();
    let key: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    container::hide(&mut ours, &key, b"correct horse", KdfParams::INSECURE_FAST).unwrap();
    let v_ours = attack(&ours, bits);

    // The control: the same number of uniformly random bits (what our sealed container looks
    // like), written sequentially by LSB replacement.
    let mut control = cover.clone();
    let mut x: u64 = 0x1234_5678_9ABC_DEF1 ^ seed;
    let payload: Vec<u8> = (0..bits)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8 & 1
        })
        .collect();
    lsb_replace_sequential(&mut control, &payload);
    let v_control = attack(&control, bits);

    eprintln!(
        "seed {seed}: clean: chi p {:.4} spa {:.4}; ours: chi p {:.4} spa {:.4}; control: chi p {:.4} spa {:.4}",
        clean.chi_p, clean.spa, v_ours.chi_p, v_ours.spa, v_control.chi_p, v_control.spa
    );
    assert!(
        !flagged(&v_ours),
        "our embedding is flagged: chi p {:.3}, spa {:.3}",
        v_ours.chi_p,
        v_ours.spa
    );
    assert!(
        flagged(&v_control) && v_control.chi_p > 0.5 && v_control.spa > 0.25,
        "the sequential control must be flagged by both: chi p {:.3}, spa {:.3}",
        v_control.chi_p,
        v_control.spa
    );

    // Over the whole image, SPA sees no more embedding in ours than in the cover.
    let h = cover.height as usize;
    for ch in 0..3 {
        let before = spa(&cover, 0..h, ch);
        let after = spa(&ours, 0..h, ch);
        assert!(
            (after - before).abs() < 0.01,
            "channel {ch}: spa {before:.4} -> {after:.4}"
        );
    }
    // And the key is still there.
    assert_eq!(
        container::reveal(&ours, b"correct horse", KdfParams::INSECURE_FAST)
            .unwrap()
            .expose(),
        &key
    );
}

#[test]
fn the_statistics_are_sane() {
    // chi-square CDF: P(chi2 with 2 dof <= 2) = 1 - e^-1.
    assert!((gamma_p(1.0, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-9);
    assert!((gamma_p(3.0, 10.0) - 0.997_230_604_284_488_7).abs() < 1e-9);
    // SPA on a fully LSB-randomised image estimates about half the LSBs flipped.
    let mut c = synthetic_photo(256, 64, Layout::Grey, 8, 1);
    let mut x = 99u64;
    for s in c.samples.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = (*s & !1) | (x & 1) as u16;
    }
    let est = spa(&c, 0..64, 0);
    assert!((0.4..0.6).contains(&est), "spa on full replacement: {est}");
}
