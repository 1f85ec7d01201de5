//! CPU preprocess: frame → packed RGB → resize keeping aspect ratio (bilinear with
//! antialiasing, the same filter as PIL's `Image.resize(BILINEAR)`) → normalize with the
//! card's mean/std → pad bottom/right with zeros (after normalization, as transformers
//! pads) → NCHW f32.
//!
//! Colour conversion of NV12/I420 uses `yuvutils-rs` (BT.601, limited range, the
//! GStreamer default for SD/HD raw video without colorimetry); resizing uses
//! `fast_image_resize` (SIMD convolution resampling matching Pillow's filters).

use fast_image_resize::images::{Image, ImageRef};
use rayon::prelude::*;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use yuvutils_rs::{YuvBiPlanarImage, YuvConversionMode, YuvPlanarImage, YuvRange, YuvStandardMatrix};

use crate::backend::InputTensor;
use crate::frame::{Frame, PixelFormat};
use crate::model::CardInput;
use crate::{Error, Result};

/// Size `(height, width)` of a `h×w` frame resized to fit `H×W` keeping its aspect ratio:
/// `scale = min(H/h, W/w)`, each side rounded to the nearest pixel and clamped to 1..=H/W.
pub fn fit_size(frame_h: usize, frame_w: usize, input_h: usize, input_w: usize) -> (usize, usize) {
    let scale = (input_h as f64 / frame_h as f64).min(input_w as f64 / frame_w as f64);
    let h = ((frame_h as f64 * scale).round() as usize).clamp(1, input_h);
    let w = ((frame_w as f64 * scale).round() as usize).clamp(1, input_w);
    (h, w)
}

/// yuvutils-rs `INVERSE_BT601_LIMITED_8_PREC13`: y, cr, cb, g1 (cr), g2 (cb).
pub const YUV_BT601_LIMITED: [i32; 5] = [9539, 13075, 16525, 6660, 3209];

/// `_mm256_mulhrs_epi16` / `_mm_mulhrs_epi16`: `(a·b) >> 14`, `+ 1`, `>> 1`.
#[inline]
fn mulhrs(a: i32, b: i32) -> i32 {
    (((a * b) >> 14) + 1) >> 1
}

/// One pixel of yuvutils-rs' SIMD NV12/I420 → RGB rows on x86 (SSE4.1 / AVX2; the tail
/// of a row goes through the same SIMD code on a padded copy): 8-bit samples widened to 10
/// bits by byte duplication and `>> 6`, luma bias subtracted with unsigned saturation,
/// 13-bit coefficients applied with rounding high multiplies, packed with unsigned
/// saturation. The CUDA preprocess kernel and [`to_rgb`] on other architectures compute
/// exactly this, so every machine gives x86's bytes.
#[inline]
pub fn yuv_to_rgb(y: i32, u: i32, v: i32) -> [u8; 3] {
    let [yc, crc, cbc, g1, g2] = YUV_BT601_LIMITED;
    let y10 = ((y - 16).max(0) * 257) >> 6;
    let (u10, v10) = (((u * 257) >> 6) - 514, ((v * 257) >> 6) - 514);
    let yh = mulhrs(y10, yc);
    let r = yh + mulhrs(v10, crc);
    let b = yh + mulhrs(u10, cbc);
    let g = yh - (mulhrs(v10, g1) + mulhrs(u10, g2));
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

/// NV12 / I420 → packed RGB with [`yuv_to_rgb`], rows in parallel. Used where yuvutils-rs'
/// SIMD rows round differently from its x86 ones (aarch64's NEON rows differ by up to two
/// levels: docs/BENCHMARKS.md, "aarch64 under emulation").
pub fn yuv_to_rgb_portable(frame: &Frame<'_>, out: &mut [u8]) {
    let (w, p, s) = (frame.width, &frame.planes, &frame.strides);
    let nv12 = frame.format == PixelFormat::Nv12;
    out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
        let luma = &p[0][y * s[0]..][..w];
        let c = y / 2;
        for (x, (px, &l)) in row.chunks_exact_mut(3).zip(luma).enumerate() {
            let (u, v) = if nv12 {
                let uv = &p[1][c * s[1] + 2 * (x / 2)..];
                (uv[0], uv[1])
            } else {
                (p[1][c * s[1] + x / 2], p[2][c * s[2] + x / 2])
            };
            px.copy_from_slice(&yuv_to_rgb(l as i32, u as i32, v as i32));
        }
    });
}

/// A plane as yuvutils-rs needs it: a slice of whole rows (`stride × rows` bytes). It
/// walks planes in chunks of whole strides and silently leaves a last row unconverted
/// when the slice ends at that row's last pixel, as a mapped frame's plane may (a CUDA
/// pitch of 512 for a 64-pixel row); such a plane is repacked into `store` (stride = row).
fn whole_rows<'a>(plane: &'a [u8], stride: usize, row: usize, rows: usize, store: &'a mut Vec<u8>) -> (&'a [u8], usize) {
    if plane.len() >= stride * rows {
        return (&plane[..stride * rows], stride);
    }
    store.clear();
    store.reserve(row * rows);
    for r in 0..rows {
        store.extend_from_slice(&plane[r * stride..][..row]);
    }
    (&store[..], row)
}

/// The colour of pixel (`x`, `y`) of `frame` as R, G, B, as [`to_rgb`] converts it (YUV
/// formats through [`yuv_to_rgb`]). The pixel must lie inside the frame.
#[inline]
pub fn rgb_at(frame: &Frame<'_>, x: usize, y: usize) -> [u8; 3] {
    let (p, s) = (&frame.planes, &frame.strides);
    match frame.format {
        PixelFormat::Rgb => {
            let i = y * s[0] + 3 * x;
            [p[0][i], p[0][i + 1], p[0][i + 2]]
        }
        PixelFormat::Rgba => {
            let i = y * s[0] + 4 * x;
            [p[0][i], p[0][i + 1], p[0][i + 2]]
        }
        PixelFormat::Bgrx => {
            let i = y * s[0] + 4 * x;
            [p[0][i + 2], p[0][i + 1], p[0][i]]
        }
        PixelFormat::Nv12 => {
            let (luma, c) = (p[0][y * s[0] + x] as i32, (y / 2) * s[1] + 2 * (x / 2));
            yuv_to_rgb(luma, p[1][c] as i32, p[1][c + 1] as i32)
        }
        PixelFormat::I420 => {
            let luma = p[0][y * s[0] + x] as i32;
            let (u, v) = (p[1][(y / 2) * s[1] + x / 2] as i32, p[2][(y / 2) * s[2] + x / 2] as i32);
            yuv_to_rgb(luma, u, v)
        }
    }
}

/// Converts any accepted frame into a tightly packed RGB buffer.
pub fn to_rgb(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<()> {
    let (w, h) = (frame.width, frame.height);
    out.resize(w * h * 3, 0);
    let yuv_err = |e: yuvutils_rs::YuvError| Error::InvalidFrame(format!("colour conversion failed: {e}"));
    match frame.format {
        PixelFormat::Rgb => {
            for y in 0..h {
                let src = &frame.planes[0][y * frame.strides[0]..][..w * 3];
                out[y * w * 3..][..w * 3].copy_from_slice(src);
            }
        }
        PixelFormat::Rgba | PixelFormat::Bgrx => {
            let (r, b) = if frame.format == PixelFormat::Rgba { (0, 2) } else { (2, 0) };
            for y in 0..h {
                let src = &frame.planes[0][y * frame.strides[0]..][..w * 4];
                let dst = &mut out[y * w * 3..][..w * 3];
                for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                    d[0] = s[r];
                    d[1] = s[1];
                    d[2] = s[b];
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::I420 if !cfg!(target_arch = "x86_64") => yuv_to_rgb_portable(frame, out),
        PixelFormat::Nv12 => {
            let mut y_store = Vec::new();
            let (y_plane, y_stride) = whole_rows(frame.planes[0], frame.strides[0], w, h, &mut y_store);
            // yuvutils-rs 0.8 accepts an interleaved chroma plane only when its rows are
            // exactly the chroma width (no row padding) and the slice holds nothing more, so
            // padded rows (GStreamer's 4-byte alignment when the width is not a multiple of
            // 4, 64-byte device pitches) are repacked first; a tight plane is passed as it is.
            let (uv_w, uv_h) = (w.div_ceil(2) * 2, h.div_ceil(2));
            let packed: Vec<u8>;
            let uv_plane = if frame.strides[1] == uv_w {
                &frame.planes[1][..uv_w * uv_h]
            } else {
                packed = (0..uv_h).flat_map(|r| &frame.planes[1][r * frame.strides[1]..][..uv_w]).copied().collect();
                &packed[..]
            };
            let img = YuvBiPlanarImage {
                y_plane,
                y_stride: y_stride as u32,
                uv_plane,
                uv_stride: uv_w as u32,
                width: w as u32,
                height: h as u32,
            };
            yuvutils_rs::yuv_nv12_to_rgb(&img, out, (w * 3) as u32, YuvRange::Limited, YuvStandardMatrix::Bt601, YuvConversionMode::Balanced)
                .map_err(yuv_err)?;
        }
        PixelFormat::I420 => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let mut stores = [Vec::new(), Vec::new(), Vec::new()];
            let [ys, us, vs] = &mut stores;
            let (y_plane, y_stride) = whole_rows(frame.planes[0], frame.strides[0], w, h, ys);
            let (u_plane, u_stride) = whole_rows(frame.planes[1], frame.strides[1], cw, ch, us);
            let (v_plane, v_stride) = whole_rows(frame.planes[2], frame.strides[2], cw, ch, vs);
            let img = YuvPlanarImage {
                y_plane,
                y_stride: y_stride as u32,
                u_plane,
                u_stride: u_stride as u32,
                v_plane,
                v_stride: v_stride as u32,
                width: w as u32,
                height: h as u32,
            };
            yuvutils_rs::yuv420_to_rgb(&img, out, (w * 3) as u32, YuvRange::Limited, YuvStandardMatrix::Bt601).map_err(yuv_err)?;
        }
    }
    Ok(())
}

/// Normalization constants in network channel order, from the card: per channel `(x -
/// mean) / std` as `x * scale + bias`, and `order[c]`, the RGB channel network channel `c`
/// reads. Shared by the CPU preprocess and the CUDA kernels (`crate::cuda`).
pub fn normalization(input: &CardInput) -> Result<([f32; 3], [f32; 3], [usize; 3])> {
    if input.mean.len() != 3 || input.std.len() != 3 {
        return Err(Error::InvalidArgument(format!("{} mean and {} std values (expected 3)", input.mean.len(), input.std.len())));
    }
    let order = match input.channel_order.as_str() {
        "RGB" => [0, 1, 2],
        "BGR" => [2, 1, 0],
        other => return Err(Error::InvalidArgument(format!("channel order {other:?} (expected RGB or BGR)"))),
    };
    let mut scale = [0.0; 3];
    let mut bias = [0.0; 3];
    for c in 0..3 {
        scale[c] = 1.0 / input.std[c];
        bias[c] = -input.mean[c] / input.std[c];
    }
    Ok((scale, bias, order))
}

/// Reusable preprocess state: buffers and the resizer live across frames.
pub struct Preprocessor {
    input_h: usize,
    input_w: usize,
    /// Per channel (in network order): `(x - mean) / std` as `x * scale + bias`.
    scale: [f32; 3],
    bias: [f32; 3],
    /// Network channel `c` reads RGB channel `order[c]`.
    order: [usize; 3],
    rgb: Vec<u8>,
    resized: Vec<u8>,
    resizer: Resizer,
    tensor: InputTensor,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor").field("input", &(self.input_h, self.input_w)).finish()
    }
}

impl Preprocessor {
    pub fn new(input: &CardInput) -> Result<Self> {
        let (h, w) = (input.height as usize, input.width as usize);
        if h == 0 || w == 0 || input.mean.len() != 3 || input.std.len() != 3 {
            return Err(Error::InvalidArgument(format!(
                "input {h}x{w} with {} mean and {} std values is not a valid network input",
                input.mean.len(),
                input.std.len()
            )));
        }
        let (scale, bias, order) = normalization(input)?;
        Ok(Preprocessor {
            input_h: h,
            input_w: w,
            scale,
            bias,
            order,
            rgb: Vec::new(),
            resized: Vec::new(),
            resizer: Resizer::new(),
            tensor: InputTensor { shape: [1, 3, h, w], data: vec![0.0; 3 * h * w] },
        })
    }

    /// Network input size `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.input_h, self.input_w)
    }

    /// Preprocess one frame. Returns the input tensor (batch 1) and the valid (unpadded)
    /// size `(height, width)` of the frame inside it.
    pub fn run(&mut self, frame: &Frame<'_>) -> Result<(&InputTensor, (usize, usize))> {
        if frame.width == 0 || frame.height == 0 {
            return Err(Error::InvalidFrame(format!("zero-sized frame {}x{}", frame.width, frame.height)));
        }
        to_rgb(frame, &mut self.rgb)?;
        let (vh, vw) = fit_size(frame.height, frame.width, self.input_h, self.input_w);
        self.resized.resize(vh * vw * 3, 0);
        let resize_err = |e: &dyn std::fmt::Display| Error::InvalidFrame(format!("resize failed: {e}"));
        if (vh, vw) == (frame.height, frame.width) {
            self.resized.copy_from_slice(&self.rgb);
        } else {
            let src = ImageRef::new(frame.width as u32, frame.height as u32, &self.rgb, PixelType::U8x3)
                .map_err(|e| resize_err(&e))?;
            let mut dst = Image::from_slice_u8(vw as u32, vh as u32, &mut self.resized, PixelType::U8x3)
                .map_err(|e| resize_err(&e))?;
            let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            self.resizer.resize(&src, &mut dst, &opts).map_err(|e| resize_err(&e))?;
        }
        let (h, w) = (self.input_h, self.input_w);
        let plane = h * w;
        let (scale, bias, order, resized) = (self.scale, self.bias, self.order, &self.resized);
        // Normalize + pad, one network row of one channel per task (rows are independent).
        self.tensor.data.par_chunks_mut(w).enumerate().for_each(|(i, row)| {
            let (c, y) = (i / h, i % h);
            debug_assert!(c < 3 && i < 3 * plane);
            let (s, b, src_c) = (scale[c], bias[c], order[c]);
            if y < vh {
                let src = &resized[y * vw * 3..(y + 1) * vw * 3];
                for (d, px) in row[..vw].iter_mut().zip(src.chunks_exact(3)) {
                    *d = px[src_c] as f32 * s + b;
                }
                row[vw..].fill(0.0);
            } else {
                row.fill(0.0);
            }
        });
        Ok((&self.tensor, (vh, vw)))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise bytes (xorshift from `seed`): `n` more bytes a call.
    fn noise(mut seed: u64) -> impl FnMut(usize) -> Vec<u8> {
        move |n| {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect()
        }
    }

    /// The portable conversion (used off x86) gives yuvutils-rs' x86 bytes exactly.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn portable_yuv_conversion_equals_yuvutils_on_x86() {
        let mut noise = noise(0x9e37_79b9_7f4a_7c15);
        for (w, h) in [(64usize, 48usize), (50, 30), (2, 2), (96, 54), (1920, 8), (38, 22)] {
            for format in [PixelFormat::Nv12, PixelFormat::I420] {
                let planes: Vec<Vec<u8>> =
                    (0..format.num_planes()).map(|p| noise(format.min_stride(p, w) * format.plane_rows(p, h))).collect();
                let empty: &[u8] = &[];
                let mut strides = [0usize; 3];
                for (p, st) in strides.iter_mut().enumerate().take(format.num_planes()) {
                    *st = format.min_stride(p, w);
                }
                let f = Frame::new(format, w, h, [&planes[0], planes.get(1).map_or(empty, |v| v), planes.get(2).map_or(empty, |v| v)], strides)
                    .unwrap();
                let mut simd = Vec::new();
                to_rgb(&f, &mut simd).unwrap();
                let mut portable = vec![0u8; w * h * 3];
                yuv_to_rgb_portable(&f, &mut portable);
                let diff = simd.iter().zip(&portable).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{format:?} {w}x{h}: {diff} of {} bytes differ", simd.len());
            }
        }
    }

    /// `rgb_at` (the tracker's colour samples) gives `to_rgb`'s colour at every
    /// pixel, for every accepted format, with padded rows.
    #[test]
    fn rgb_at_equals_the_converted_frame() {
        let mut noise = noise(0x2545_f491_4f6c_dd1d);
        let (w, h) = (38usize, 22usize);
        for format in [PixelFormat::Rgb, PixelFormat::Rgba, PixelFormat::Bgrx, PixelFormat::Nv12, PixelFormat::I420] {
            let mut strides = [0usize; 3];
            for (p, st) in strides.iter_mut().enumerate().take(format.num_planes()) {
                *st = format.min_stride(p, w) + 6;
            }
            let planes: Vec<Vec<u8>> = (0..format.num_planes()).map(|p| noise(strides[p] * format.plane_rows(p, h))).collect();
            let empty: &[u8] = &[];
            let f = Frame::new(format, w, h, [&planes[0], planes.get(1).map_or(empty, |v| v), planes.get(2).map_or(empty, |v| v)], strides)
                .unwrap();
            let mut rgb = Vec::new();
            to_rgb(&f, &mut rgb).unwrap();
            let mut differ = 0;
            for y in 0..h {
                for x in 0..w {
                    differ += usize::from(rgb_at(&f, x, y) != rgb[(y * w + x) * 3..][..3]);
                }
            }
            assert_eq!(differ, 0, "{format:?}: {differ} of {} pixels differ", w * h);
        }
    }

    /// yuvutils-rs walks a plane in chunks of whole strides and skips a last row whose
    /// slice ends at the last pixel (as a mapped frame's plane may); `to_rgb` must convert
    /// every row whatever the slice length. Found with the CUDA memory tests (pitch 512).
    #[test]
    fn yuv_planes_that_end_at_the_last_pixel_convert_every_row() {
        let (w, h) = (64usize, 48usize);
        let luma = |x: usize, y: usize| -> u8 { if x < 24 && y < 36 { 235 } else { 20 + (x + y) as u8 } };
        let chroma = |x: usize, y: usize, c: usize| -> u8 { (40 + (x * 5 + y * 3 + c * 50) % 170) as u8 };
        for format in [PixelFormat::Nv12, PixelFormat::I420] {
            let mut outs = Vec::new();
            for (stride, tight_end) in [(w, true), (512, false), (512, true), (96, true)] {
                let planes: Vec<Vec<u8>> = (0..format.num_planes())
                    .map(|p| {
                        let (rows, row) = (format.plane_rows(p, h), format.min_stride(p, w));
                        let st = if p == 0 || format == PixelFormat::Nv12 { stride } else { stride / 2 };
                        let len = if tight_end { st * (rows - 1) + row } else { st * rows };
                        let mut v = vec![0u8; len];
                        for r in 0..rows {
                            for x in 0..row {
                                v[r * st + x] = match (format, p) {
                                    (_, 0) => luma(x, r),
                                    (PixelFormat::Nv12, _) => chroma(x / 2, r, x % 2),
                                    _ => chroma(x, r, p - 1),
                                };
                            }
                        }
                        v
                    })
                    .collect();
                let strides = if format == PixelFormat::Nv12 { [stride, stride, 0] } else { [stride, stride / 2, stride / 2] };
                let empty: &[u8] = &[];
                let f = Frame::new(format, w, h, [&planes[0], planes.get(1).map_or(empty, |v| v), planes.get(2).map_or(empty, |v| v)], strides);
                let mut out = vec![7u8; w * h * 3];
                to_rgb(&f.unwrap(), &mut out).unwrap();
                outs.push(out);
            }
            for (i, o) in outs.iter().enumerate().skip(1) {
                let diff = (0..o.len()).filter(|&k| o[k] != outs[0][k]).count();
                assert_eq!(diff, 0, "{format:?} layout {i}: {diff} values differ from the packed frame");
            }
        }
    }
}
