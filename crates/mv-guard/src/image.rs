//! Cover images: reading a PNG into a flat buffer of samples and writing it back unchanged in kind.
//!
//! [`Cover`] holds every sample of the image as `u16` (8-bit images use 0..=255), the geometry and
//! which channel (if any) is alpha. Only lossless covers are accepted: PNG in 8 or 16 bits per sample,
//! grey, grey+alpha, RGB or RGBA. A JPEG (or any other lossy format) is refused with the reason:
//! re-compression would destroy the low bits that carry the payload. Palette PNGs and grey at 1/2/4
//! bits are refused too: a ±1 change of a palette index is a different colour, not a small change.
//!
//! What this module is not: an embedder. It knows nothing about payloads; see [`crate::container`].

use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Why an image cannot be used as a cover.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The bytes are a JPEG.
    #[error("{0}: is a JPEG; a lossy format would destroy the hidden bits on the next save, use a PNG cover")]
    Lossy(String),
    /// The bytes are not a PNG at all.
    #[error("{0}: not a PNG image")]
    NotPng(String),
    /// A PNG we refuse.
    #[error("{what}: unsupported PNG ({why})")]
    Unsupported {
        /// The file concerned.
        what: String,
        /// The reason.
        why: String,
    },
    /// The PNG is damaged.
    #[error("{what}: cannot decode the PNG")]
    Decode {
        /// The file concerned.
        what: String,
        /// The decoder's error.
        #[source]
        source: png::DecodingError,
    },
    /// Encoding failed.
    #[error("cannot encode the PNG")]
    Encode(#[source] png::EncodingError),
    /// Reading or writing the file failed.
    #[error("cannot read {path}")]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The colour layout of a cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One grey channel.
    Grey,
    /// Grey and alpha.
    GreyAlpha,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue, alpha.
    Rgba,
}

impl Layout {
    /// Channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            Layout::Grey => 1,
            Layout::GreyAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }
    /// Whether the last channel is alpha (never used to carry data: alpha is usually flat 255 and
    /// a 254 among 255s would stand out).
    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::GreyAlpha | Layout::Rgba)
    }
    fn color_type(self) -> png::ColorType {
        match self {
            Layout::Grey => png::ColorType::Grayscale,
            Layout::GreyAlpha => png::ColorType::GrayscaleAlpha,
            Layout::Rgb => png::ColorType::Rgb,
            Layout::Rgba => png::ColorType::Rgba,
        }
    }
}

/// A decoded cover image: every sample as `u16`, row-major, channels interleaved.
#[derive(Clone, PartialEq, Eq)]
pub struct Cover {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour layout.
    pub layout: Layout,
    /// Bits per sample: 8 or 16.
    pub depth: u8,
    /// The samples.
    pub samples: Vec<u16>,
}

impl std::fmt::Debug for Cover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cover({}x{} {:?} {}-bit)",
            self.width, self.height, self.layout, self.depth
        )
    }
}

/// Tells a JPEG from a PNG from anything else by the first bytes.
pub(crate) fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else {
        "unknown"
    }
}

impl Cover {
    /// A blank cover (tests and benchmarks fill it).
    pub fn new(width: u32, height: u32, layout: Layout, depth: u8) -> Cover {
        let n = width as usize * height as usize * layout.channels();
        Cover {
            width,
            height,
            layout,
            depth,
            samples: vec![0; n],
        }
    }

    /// The largest sample value.
    pub fn max_value(&self) -> u16 {
        if self.depth == 16 {
            u16::MAX
        } else {
            255
        }
    }

    /// Indices of the samples that may carry data (every channel but alpha).
    pub fn carrier_count(&self) -> usize {
        let ch = self.layout.channels();
        let per_pixel = if self.layout.has_alpha() { ch - 1 } else { ch };
        self.width as usize * self.height as usize * per_pixel
    }

    /// Maps the n-th carrier to its index in `samples`.
    pub fn carrier_index(&self, n: usize) -> usize {
        if self.layout.has_alpha() {
            let per = self.layout.channels() - 1;
            (n / per) * self.layout.channels() + n % per
        } else {
            n
        }
    }

    /// Reads a PNG file.
    pub fn read(path: &Path) -> Result<Cover, ImageError> {
        let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Cover::decode(&bytes, &path.display().to_string())
    }

    /// Decodes PNG bytes; `what` names the source in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Cover, ImageError> {
        match sniff(bytes) {
            "jpeg" => return Err(ImageError::Lossy(what.to_string())),
            "png" => {}
            _ => return Err(ImageError::NotPng(what.to_string())),
        }
        let decoder = png::Decoder::new(Cursor::new(bytes));
        let mut reader = decoder.read_info().map_err(|source| ImageError::Decode {
            what: what.to_string(),
            source,
        })?;
        let info = reader.info();
        let unsupported = |why: String| ImageError::Unsupported {
            what: what.to_string(),
            why,
        };
        let layout =
            match info.color_type {
                png::ColorType::Grayscale => Layout::Grey,
                png::ColorType::GrayscaleAlpha => Layout::GreyAlpha,
                png::ColorType::Rgb => Layout::Rgb,
                png::ColorType::Rgba => Layout::Rgba,
                png::ColorType::Indexed => return Err(unsupported(
                    "palette image: convert it to RGB first, a changed index is a changed colour"
                        .into(),
                )),
            };
        let depth = match info.bit_depth {
            png::BitDepth::Eight => 8u8,
            png::BitDepth::Sixteen => 16,
            other => {
                return Err(unsupported(format!(
                    "{} bits per sample: only 8 and 16 are supported",
                    other as u8
                )))
            }
        };
        if info.interlaced {
            // Decoding works, but we would write it back non-interlaced: a visible change of kind.
            return Err(unsupported(
                "interlaced (Adam7): save it non-interlaced first".into(),
            ));
        }
        let (width, height) = (info.width, info.height);
        let mut buf = vec![0u8; reader.output_buffer_size()];
        let frame = reader
            .next_frame(&mut buf)
            .map_err(|source| ImageError::Decode {
                what: what.to_string(),
                source,
            })?;
        let data = &buf[..frame.buffer_size()];
        let samples = if depth == 16 {
            data.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect()
        } else {
            data.iter().map(|&b| u16::from(b)).collect()
        };
        Ok(Cover {
            width,
            height,
            layout,
            depth,
            samples,
        })
    }

    /// Encodes as PNG with the same layout and depth.
    pub fn encode(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(self.layout.color_type());
            enc.set_depth(if self.depth == 16 {
                png::BitDepth::Sixteen
            } else {
                png::BitDepth::Eight
            });
            enc.set_compression(png::Compression::Default);
            let mut w = enc.write_header().map_err(ImageError::Encode)?;
            let data: Vec<u8> = if self.depth == 16 {
                self.samples.iter().flat_map(|s| s.to_be_bytes()).collect()
            } else {
                // Values of an 8-bit cover never exceed 255 (we only ever move them by one within range).
                self.samples.iter().map(|&s| s.min(255) as u8).collect()
            };
            w.write_image_data(&data).map_err(ImageError::Encode)?;
            w.finish().map_err(ImageError::Encode)?;
        }
        Ok(out)
    }
}

/// A procedurally generated photo-like cover: a smooth sky-like gradient at the top, large soft
/// shapes and texture (value noise over several octaves) below, and sensor noise of about ±2
/// levels. Deterministic in `seed`. For tests, benchmarks and demos: never hide a real key in a
/// synthetic image, use a photo you took.
pub fn synthetic_photo(width: u32, height: u32, layout: Layout, depth: u8, seed: u64) -> Cover {
    let mut c = Cover::new(width, height, layout, depth);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // splitmix64: good enough for pictures, and stable forever.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let unit = |v: u64| (v >> 11) as f64 / (1u64 << 53) as f64;
    // Value-noise lattices, one per octave and channel.
    let octaves = [
        (96.0f64, 40.0f64),
        (48.0, 20.0),
        (24.0, 10.0),
        (12.0, 5.0),
        (6.0, 2.5),
    ];
    let ch = layout.channels();
    let mut lattices = Vec::new();
    for _ in 0..ch {
        let mut per = Vec::new();
        for (cell, _) in octaves {
            let gw = (width as f64 / cell) as usize + 2;
            let gh = (height as f64 / cell) as usize + 2;
            per.push((
                gw,
                (0..gw * gh)
                    .map(|_| unit(next()) - 0.5)
                    .collect::<Vec<f64>>(),
            ));
        }
        lattices.push(per);
    }
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    let horizon = height as f64 * 0.3;
    let sky = [118.0, 152.0, 201.0, 255.0];
    let max = c.max_value() as f64;
    let scale = max / 255.0;
    for y in 0..height as usize {
        for x in 0..width as usize {
            for k in 0..ch {
                let idx = (y * width as usize + x) * ch + k;
                if layout.has_alpha() && k == ch - 1 {
                    c.samples[idx] = c.max_value();
                    continue;
                }
                let fy = y as f64;
                let mut v = if fy < horizon {
                    // Sky: a slow vertical gradient, almost no texture.
                    sky[k.min(2)] + 12.0 * fy / horizon
                } else {
                    let mut t = 110.0 + 15.0 * k as f64;
                    for (o, (cell, amp)) in octaves.iter().enumerate() {
                        let (gw, lat) = &lattices[k][o];
                        let (gx, gy) = (x as f64 / cell, (y as f64 - horizon) / cell);
                        let (ix, iy) = (gx as usize, gy as usize);
                        let (tx, ty) = (smooth(gx - ix as f64), smooth(gy - iy as f64));
                        let at = |i: usize, j: usize| lat[j * gw + i];
                        let top = at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx;
                        let bottom = at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx;
                        t += 2.0 * amp * (top * (1.0 - ty) + bottom * ty);
                    }
                    t
                };
                // Sensor noise: the sum of four uniforms, roughly Gaussian with sigma about 1.2.
                let n: f64 = (0..4).map(|_| unit(next())).sum::<f64>() - 2.0;
                v += n * 2.0;
                c.samples[idx] = (v * scale).round().clamp(0.0, max) as u16;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_layout_and_depth() {
        for layout in [Layout::Grey, Layout::GreyAlpha, Layout::Rgb, Layout::Rgba] {
            for depth in [8u8, 16] {
                let mut c = Cover::new(7, 5, layout, depth);
                let max = c.max_value() as u32;
                for (i, s) in c.samples.iter_mut().enumerate() {
                    *s = ((i as u32 * 7919) % (max + 1)) as u16;
                }
                let bytes = c.encode().unwrap();
                let back = Cover::decode(&bytes, "t").unwrap();
                assert_eq!(back, c, "{layout:?} {depth}");
            }
        }
    }

    #[test]
    fn refuses_jpeg_and_garbage() {
        let e = Cover::decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], "x.jpg").unwrap_err();
        assert!(e.to_string().contains("JPEG"), "{e}");
        let e = Cover::decode(b"hello", "x.txt").unwrap_err();
        assert!(matches!(e, ImageError::NotPng(_)));
    }

    #[test]
    fn carriers_skip_alpha() {
        let c = Cover::new(2, 1, Layout::Rgba, 8);
        assert_eq!(c.carrier_count(), 6);
        let idx: Vec<usize> = (0..6).map(|n| c.carrier_index(n)).collect();
        assert_eq!(idx, vec![0, 1, 2, 4, 5, 6]);
        let g = Cover::new(3, 1, Layout::GreyAlpha, 16);
        let idx: Vec<usize> = (0..3).map(|n| g.carrier_index(n)).collect();
        assert_eq!(idx, vec![0, 2, 4]);
    }
}
