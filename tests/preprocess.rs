//! Preprocess against the reference (PIL bilinear resize, normalize, pad after
//! normalization) recorded in tests/golden/*/pixel_values.npy, and colour conversion.

mod common;

use segstream::frame::{Frame, PixelFormat};
use segstream::model::CardInput;
use segstream::preprocess::{fit_size, Preprocessor};

fn card_input(meta: &serde_json::Value) -> CardInput {
    let f = |k: &str| meta[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<_>>();
    CardInput {
        height: meta["input"]["height"].as_u64().unwrap() as u32,
        width: meta["input"]["width"].as_u64().unwrap() as u32,
        mean: f("mean"),
        std: f("std"),
        channel_order: "RGB".into(),
    }
}

#[test]
fn matches_pil_reference_on_golden_frames() {
    let cases = common::golden_cases();
    assert!(!cases.is_empty(), "no golden cases under tests/golden");
    let mut checked = 0;
    for case in cases {
        // Sample-model cases keep pixel_values.npy for two frames only (repository size).
        if !case.join("pixel_values.npy").is_file() {
            continue;
        }
        checked += 1;
        let meta = common::read_json(&case.join("meta.json"));
        let input = card_input(&meta);
        let png = common::read_png(&case.join("frame.png"));
        assert_eq!(png.channels, 3, "{}: frame.png must be RGB", case.display());
        let rgb: Vec<u8> = png.samples.iter().map(|&s| s as u8).collect();
        let frame = Frame::packed(PixelFormat::Rgb, png.width, png.height, &rgb).unwrap();
        let mut pre = Preprocessor::new(&input).unwrap();
        let (tensor, valid) = pre.run(&frame).unwrap();
        let want_valid = (meta["valid"]["height"].as_u64().unwrap() as usize, meta["valid"]["width"].as_u64().unwrap() as usize);
        assert_eq!(valid, want_valid, "{}: valid region", case.display());
        let (shape, reference) = common::read_npy_f32(&case.join("pixel_values.npy"));
        assert_eq!(shape, tensor.shape.to_vec(), "{}", case.display());
        // Compare in 0..255 pixel units: mean absolute difference ≤ 1 (1/255 of full scale).
        let (h, w) = (tensor.shape[2], tensor.shape[3]);
        let mut sum = 0.0f64;
        let mut max = 0.0f64;
        for c in 0..3 {
            for i in 0..h * w {
                let d = ((tensor.data[c * h * w + i] - reference[c * h * w + i]) * input.std[c]).abs() as f64;
                sum += d;
                max = max.max(d);
            }
        }
        let mean = sum / (3 * h * w) as f64;
        println!("{}: mean |diff| = {mean:.4} px, max = {max:.1} px", case.display());
        assert!(mean <= 1.0, "{}: mean abs diff {mean} > 1/255", case.display());
        // Padding is exactly zero after normalization.
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    if y >= valid.0 || x >= valid.1 {
                        assert_eq!(tensor.data[c * h * w + y * w + x], 0.0);
                    }
                }
            }
        }
    }
    assert!(checked >= 4, "only {checked} golden cases hold pixel_values.npy");
}

#[test]
fn fit_size_keeps_aspect() {
    assert_eq!(fit_size(360, 640, 288, 512), (288, 512));
    assert_eq!(fit_size(1080, 1920, 288, 512), (288, 512));
    assert_eq!(fit_size(150, 250, 128, 160), (96, 160));
    assert_eq!(fit_size(1000, 10, 64, 64), (64, 1));
}

/// BT.601 limited range, the textbook formula the conversion must follow.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [f32; 3] {
    let (y, u, v) = (1.164_383 * (y as f32 - 16.0), u as f32 - 128.0, v as f32 - 128.0);
    [y + 1.596_027 * v, y - 0.391_762 * u - 0.812_968 * v, y + 2.017_232 * u].map(|c| c.clamp(0.0, 255.0))
}

#[test]
fn nv12_and_i420_follow_bt601_limited_range() {
    let (w, h) = (16usize, 8usize);
    let yp: Vec<u8> = (0..w * h).map(|i| 16 + (i * 13 % 219) as u8).collect();
    let up: Vec<u8> = (0..w * h / 4).map(|i| 40 + (i * 29 % 180) as u8).collect();
    let vp: Vec<u8> = (0..w * h / 4).map(|i| 30 + (i * 17 % 190) as u8).collect();
    let uv: Vec<u8> = up.iter().zip(&vp).flat_map(|(&u, &v)| [u, v]).collect();
    for frame in [
        Frame::new(PixelFormat::I420, w, h, [&yp, &up, &vp], [w, w / 2, w / 2]).unwrap(),
        Frame::new(PixelFormat::Nv12, w, h, [&yp, &uv, &[]], [w, w, 0]).unwrap(),
    ] {
        let mut rgb = Vec::new();
        segstream::preprocess::to_rgb(&frame, &mut rgb).unwrap();
        let mut worst = 0.0f32;
        for y in 0..h {
            for x in 0..w {
                let c = (y / 2) * (w / 2) + x / 2;
                let want = yuv_to_rgb(yp[y * w + x], up[c], vp[c]);
                for k in 0..3 {
                    worst = worst.max((rgb[(y * w + x) * 3 + k] as f32 - want[k]).abs());
                }
            }
        }
        assert!(worst <= 2.0, "{:?}: worst channel error {worst}", frame.format);
    }
}

#[test]
fn strided_and_swizzled_formats_agree() {
    let (w, h) = (5usize, 3usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 11 % 256) as u8).collect();
    let stride = w * 3 + 7;
    let mut padded = vec![0u8; stride * h];
    let mut bgrx = vec![0u8; w * h * 4];
    for y in 0..h {
        padded[y * stride..y * stride + w * 3].copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
        for x in 0..w {
            let p = &rgb[(y * w + x) * 3..][..3];
            bgrx[(y * w + x) * 4..][..4].copy_from_slice(&[p[2], p[1], p[0], 0]);
        }
    }
    let mut a = Vec::new();
    let mut b = Vec::new();
    segstream::preprocess::to_rgb(&Frame::new(PixelFormat::Rgb, w, h, [&padded, &[], &[]], [stride, 0, 0]).unwrap(), &mut a).unwrap();
    segstream::preprocess::to_rgb(&Frame::packed(PixelFormat::Bgrx, w, h, &bgrx).unwrap(), &mut b).unwrap();
    assert_eq!(a, rgb);
    assert_eq!(b, rgb);
}

/// Copies `rows` rows of `row_bytes` from a tight plane into one with `stride`-byte rows
/// (padding filled with a marker value that must never show up in the result).
fn pad_plane(tight: &[u8], row_bytes: usize, rows: usize, stride: usize) -> Vec<u8> {
    let mut out = vec![0xA5u8; stride * rows];
    for r in 0..rows {
        out[r * stride..][..row_bytes].copy_from_slice(&tight[r * row_bytes..][..row_bytes]);
    }
    out
}

#[test]
fn padded_yuv_strides_give_the_tight_result() {
    // GStreamer pads rows (4-byte alignment when the width is not a multiple of 4, 64 bytes
    // for CUDA/NVMM buffers); the conversion must read the same pixels whatever the stride.
    for (w, h) in [(16usize, 8usize), (1002, 6), (1918, 4), (1920, 2)] {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let yp: Vec<u8> = (0..w * h).map(|i| 16 + (i * 13 % 219) as u8).collect();
        let up: Vec<u8> = (0..cw * ch).map(|i| 40 + (i * 29 % 180) as u8).collect();
        let vp: Vec<u8> = (0..cw * ch).map(|i| 30 + (i * 17 % 190) as u8).collect();
        let uv: Vec<u8> = up.iter().zip(&vp).flat_map(|(&u, &v)| [u, v]).collect();
        let mut want = Vec::new();
        segstream::preprocess::to_rgb(
            &Frame::new(PixelFormat::Nv12, w, h, [&yp, &uv, &[]], [w, 2 * cw, 0]).unwrap(),
            &mut want,
        )
        .unwrap();
        for pad in [2usize, 64] {
            let (ys, uvs, cs) = (
                (w + pad).div_ceil(4) * 4,
                (2 * cw + pad).div_ceil(4) * 4,
                (cw + pad).div_ceil(4) * 4,
            );
            let (y2, uv2) = (pad_plane(&yp, w, h, ys), pad_plane(&uv, 2 * cw, ch, uvs));
            let (u2, v2) = (pad_plane(&up, cw, ch, cs), pad_plane(&vp, cw, ch, cs));
            let mut got = Vec::new();
            segstream::preprocess::to_rgb(
                &Frame::new(PixelFormat::Nv12, w, h, [&y2, &uv2, &[]], [ys, uvs, 0]).unwrap(),
                &mut got,
            )
            .unwrap_or_else(|e| panic!("NV12 {w}x{h} strides {ys}/{uvs}: {e}"));
            assert!(
                got == want,
                "NV12 {w}x{h}: strides {ys}/{uvs} change the pixels"
            );
            let mut i420 = Vec::new();
            segstream::preprocess::to_rgb(
                &Frame::new(PixelFormat::I420, w, h, [&y2, &u2, &v2], [ys, cs, cs]).unwrap(),
                &mut i420,
            )
            .unwrap_or_else(|e| panic!("I420 {w}x{h} strides {ys}/{cs}: {e}"));
            assert!(
                i420 == want,
                "I420 {w}x{h}: strides {ys}/{cs} differ from tight NV12"
            );
        }
    }
}
