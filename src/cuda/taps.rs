//! Host-side tables for the CUDA kernels, compiled with or without the `cuda` feature so
//! that their agreement with the CPU path is tested on every machine:
//!
//! * [`ResizeAxis`]: the fixed-point taps of `fast_image_resize`'s convolution resize
//!   (`ResizeAlg::Convolution(FilterType::Bilinear)`, Pillow's antialiased bilinear) for
//!   one axis: same support, normalization, precision choice and i16 rounding, so the GPU
//!   resize gives the CPU's bytes.
//! * [`YUV_BT601_LIMITED`]: yuvutils-rs' 13-bit BT.601 limited-range inverse transform
//!   (its "Balanced" mode, which [`crate::preprocess::to_rgb`] uses).
//! * [`MaskTaps`]: the composed bilinear taps of [`crate::postprocess::upsample::Taps`]
//!   flattened into the arrays the panoptic kernel reads.
//! * [`emulate_preprocess`]: the preprocess kernels' arithmetic on the CPU, the model the
//!   CPU-only tests compare with [`crate::preprocess::Preprocessor`].

use crate::frame::{Frame, PixelFormat};
use crate::postprocess::upsample::{Taps, MAX_TAPS};
use crate::preprocess::fit_size;
use crate::{Error, Result};

pub use crate::preprocess::{YUV_BT601_LIMITED, yuv_to_rgb};

/// Fixed-point resize taps of one axis, `n_in → n_out`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeAxis {
    pub n_in: usize,
    pub n_out: usize,
    /// First source index of each output sample.
    pub start: Vec<i32>,
    /// Number of taps of each output sample (≤ `window`).
    pub count: Vec<i32>,
    /// `window` coefficients per output sample (unused ones 0).
    pub coef: Vec<i16>,
    pub window: usize,
    /// Fixed-point precision (bits) of `coef`.
    pub precision: u32,
}

/// fast_image_resize's `Bilinear` filter (support 1).
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

impl ResizeAxis {
    /// The taps fast_image_resize 6 uses for a convolution resize with the bilinear
    /// filter and adaptive kernel size (its `precompute_coefficients` + `Normalizer16`).
    /// Equal sizes give one tap of weight 1 per sample, which is an exact copy.
    pub fn bilinear(n_in: usize, n_out: usize) -> Result<ResizeAxis> {
        if n_in == 0 || n_out == 0 {
            return Err(Error::InvalidArgument(format!("resize {n_in} → {n_out}: empty axis")));
        }
        let scale = n_in as f64 / n_out as f64;
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // support 1.0 × filter_scale
        let window = radius.ceil() as usize * 2 + 1;
        let recip = 1.0 / filter_scale;
        let mut values = vec![0.0f64; window * n_out];
        let mut start = Vec::with_capacity(n_out);
        let mut count = Vec::with_capacity(n_out);
        for o in 0..n_out {
            let in_center = (o as f64 + 0.5) * scale;
            let x_min = (in_center - radius).floor().max(0.0) as usize;
            let x_max = (in_center + radius).ceil().min(n_in as f64) as usize;
            let center = in_center - 0.5;
            let mut b0 = x_min;
            let mut b1 = x_max;
            let row = &mut values[o * window..(o + 1) * window];
            let mut n = 0usize;
            let mut ww = 0.0f64;
            for x in x_min..x_max {
                let w = bilinear((x as f64 - center) * recip);
                if x == b0 && w == 0.0 {
                    b0 += 1;
                } else {
                    if n < window {
                        row[n] = w;
                    }
                    n += 1;
                    ww += w;
                }
            }
            // Trailing zero weights are dropped too.
            let mut m = n.min(window);
            while b1 > b0 && m > 0 && row[m - 1] == 0.0 {
                b1 -= 1;
                m -= 1;
            }
            if ww != 0.0 {
                row[..n.min(window)].iter_mut().for_each(|w| *w /= ww);
            }
            start.push(b0 as i32);
            count.push((b1 - b0) as i32);
        }
        // Normalizer16: the largest precision whose largest coefficient still fits i16.
        let max_w = values.iter().copied().fold(0.0f64, f64::max);
        let mut precision = 0u32;
        for p in 0..22u32 {
            precision = p;
            if (max_w * (1u64 << (p + 1)) as f64).round() as i64 >= 1 << 15 {
                break;
            }
        }
        let s = (1u64 << precision) as f64;
        let mut coef = vec![0i16; window * n_out];
        for o in 0..n_out {
            for j in 0..count[o] as usize {
                coef[o * window + j] = (values[o * window + j] * s).round() as i16;
            }
        }
        Ok(ResizeAxis { n_in, n_out, start, count, coef, window, precision })
    }

    /// One output sample of one channel: `source(i)` gives the 8-bit source value.
    #[inline]
    pub fn apply(&self, o: usize, source: impl Fn(usize) -> u8) -> u8 {
        let mut acc: i32 = 1 << (self.precision - 1);
        let s = self.start[o] as usize;
        for j in 0..self.count[o] as usize {
            acc += source(s + j) as i32 * self.coef[o * self.window + j] as i32;
        }
        (acc >> self.precision).clamp(0, 255) as u8
    }
}

/// RGB of pixel `(x, y)` exactly as the preprocess kernel computes it.
pub fn pixel_rgb(frame: &Frame<'_>, x: usize, y: usize) -> [u8; 3] {
    let (p, s) = (&frame.planes, &frame.strides);
    match frame.format {
        PixelFormat::Rgb => {
            let q = &p[0][y * s[0] + 3 * x..];
            [q[0], q[1], q[2]]
        }
        PixelFormat::Rgba => {
            let q = &p[0][y * s[0] + 4 * x..];
            [q[0], q[1], q[2]]
        }
        PixelFormat::Bgrx => {
            let q = &p[0][y * s[0] + 4 * x..];
            [q[2], q[1], q[0]]
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let yy = p[0][y * s[0] + x] as i32;
            let (u, v) = if frame.format == PixelFormat::Nv12 {
                let c = &p[1][(y / 2) * s[1] + 2 * (x / 2)..];
                (c[0] as i32, c[1] as i32)
            } else {
                (p[1][(y / 2) * s[1] + x / 2] as i32, p[2][(y / 2) * s[2] + x / 2] as i32)
            };
            yuv_to_rgb(yy, u, v)
        }
    }
}

pub use crate::preprocess::normalization;

/// The preprocess kernels' arithmetic on the CPU: vertical pass into 8-bit RGB, then
/// horizontal pass, normalize, pad. Returns the `[3, H, W]` tensor and the valid size.
pub fn emulate_preprocess(frame: &Frame<'_>, input: &crate::model::CardInput) -> Result<(Vec<f32>, (usize, usize))> {
    let (ih, iw) = (input.height as usize, input.width as usize);
    let (scale, bias, order) = normalization(input)?;
    let (fh, fw) = (frame.height, frame.width);
    let (vh, vw) = fit_size(fh, fw, ih, iw);
    let ya = ResizeAxis::bilinear(fh, vh)?;
    let xa = ResizeAxis::bilinear(fw, vw)?;
    let mut tmp = vec![0u8; vh * fw * 3];
    for y in 0..vh {
        for x in 0..fw {
            for c in 0..3 {
                tmp[(y * fw + x) * 3 + c] = ya.apply(y, |sy| pixel_rgb(frame, x, sy)[c]);
            }
        }
    }
    let plane = ih * iw;
    let mut out = vec![0.0f32; 3 * plane];
    for y in 0..vh {
        for x in 0..vw {
            let mut rgb = [0u8; 3];
            for (c, v) in rgb.iter_mut().enumerate() {
                *v = xa.apply(x, |sx| tmp[(y * fw + sx) * 3 + c]);
            }
            for c in 0..3 {
                out[c * plane + y * iw + x] = rgb[order[c]] as f32 * scale[c] + bias[c];
            }
        }
    }
    Ok((out, (vh, vw)))
}

/// Composed mask taps of one axis, flattened for the kernels: `len[o]`, and `MAX_TAPS`
/// indices and weights per output sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskTaps {
    pub len: Vec<i32>,
    pub idx: Vec<i32>,
    pub w: Vec<f32>,
}

impl MaskTaps {
    pub fn from_taps(t: &Taps) -> MaskTaps {
        let n = t.taps.len();
        let mut m = MaskTaps { len: vec![0; n], idx: vec![0; n * MAX_TAPS], w: vec![0.0; n * MAX_TAPS] };
        for (o, tap) in t.taps.iter().enumerate() {
            m.len[o] = tap.len as i32;
            for j in 0..tap.len as usize {
                m.idx[o * MAX_TAPS + j] = tap.idx[j] as i32;
                m.w[o * MAX_TAPS + j] = tap.w[j];
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CardInput;
    use crate::preprocess::Preprocessor;

    fn card(h: u32, w: u32) -> CardInput {
        CardInput { height: h, width: w, mean: vec![123.675, 116.28, 103.53], std: vec![58.395, 57.12, 57.375], channel_order: "RGB".into() }
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn identity_axis_is_a_copy() {
        let a = ResizeAxis::bilinear(7, 7).unwrap();
        for o in 0..7 {
            assert_eq!((a.start[o], a.count[o]), (o as i32, 1));
            assert_eq!(a.apply(o, |i| (i * 30) as u8), (o * 30) as u8);
        }
    }

    /// The emulated kernels give the CPU preprocess's tensor, value for value, for every
    /// format and for down- and up-scaling, on every architecture: off x86 the CPU path
    /// converts YUV with the portable [`crate::preprocess::yuv_to_rgb_portable`]
    /// (yuvutils-rs' NEON rows differed by up to three 8-bit levels under qemu-aarch64,
    /// docs/BENCHMARKS.md, "aarch64 under emulation").
    #[test]
    fn emulated_kernels_match_cpu_preprocess() {
        for (fw, fh, ih, iw) in [(64usize, 48usize, 32u32, 32u32), (50, 30, 64, 96), (40, 40, 40, 40), (96, 54, 64, 64)] {
            let input = card(ih, iw);
            for fmt in [PixelFormat::Rgb, PixelFormat::Rgba, PixelFormat::Bgrx, PixelFormat::Nv12, PixelFormat::I420] {
                let planes: Vec<Vec<u8>> = (0..fmt.num_planes()).map(|p| noise(fmt.min_stride(p, fw) * fmt.plane_rows(p, fh), p as u64 + 7)).collect();
                let mut refs: [&[u8]; 3] = [&[], &[], &[]];
                let mut strides = [0usize; 3];
                for p in 0..fmt.num_planes() {
                    refs[p] = &planes[p];
                    strides[p] = fmt.min_stride(p, fw);
                }
                let frame = Frame::new(fmt, fw, fh, refs, strides).unwrap();
                let mut pre = Preprocessor::new(&input).unwrap();
                let (t, valid) = pre.run(&frame).unwrap();
                let (e, evalid) = emulate_preprocess(&frame, &input).unwrap();
                assert_eq!(valid, evalid);
                let tol = 0.0f32;
                let diff = t.data.iter().zip(&e).filter(|(a, b)| a != b).count();
                let worst = t.data.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(
                    worst <= tol,
                    "{fmt:?} {fw}x{fh} → {iw}x{ih}: {diff} of {} values differ, by up to {worst}",
                    e.len()
                );
            }
        }
    }
}
