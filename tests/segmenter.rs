//! The ONNX Runtime backend and the Segmenter on small contract models, and each bad
//! input of the core library: missing/corrupt model, outputs off contract, card that
//! disagrees with the model, bad frames.

use std::path::{Path, PathBuf};

use segstream::backend::onnxruntime::{ensure_runtime, OrtBackend, OrtOptions};
use segstream::backend::{Backend, InputTensor};
use segstream::frame::{Frame, PixelFormat};
use segstream::model::ModelCard;
use segstream::segmenter::{Segmenter, SegmenterConfig};
use segstream::settings::PostSettings;
use segstream::Error;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// ONNX Runtime is installed by `make setup`; without it these tests cannot run.
fn runtime() -> bool {
    match ensure_runtime() {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: ONNX Runtime not available: {e}");
            false
        }
    }
}

#[test]
fn missing_model_is_model_not_found() {
    let err = OrtBackend::open(Path::new("/nonexistent/model.onnx"), &OrtOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ModelNotFound(_)), "{err}");
    let err = Segmenter::open(&SegmenterConfig::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(err, Error::ModelNotFound(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.onnx"));
}

#[test]
fn corrupt_model_is_a_contract_error() {
    if !runtime() {
        return;
    }
    let err = OrtBackend::open(&data("corrupt.onnx"), &OrtOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ModelContract(_)), "{err}");
    assert!(err.to_string().contains("corrupt.onnx"), "{err}");
}

#[test]
fn wrong_outputs_are_named() {
    if !runtime() {
        return;
    }
    let err = OrtBackend::open(&data("wrong_outputs.onnx"), &OrtOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ModelContract(_)), "{msg}");
    assert!(msg.contains("class_queries_logits"), "{msg}");
}

#[test]
fn tiny_model_runs_with_shapes_of_the_contract() {
    if !runtime() {
        return;
    }
    let mut b = OrtBackend::open(&data("tiny_contract.onnx"), &OrtOptions { intra_threads: Some(1), ..Default::default() }).unwrap();
    assert_eq!(b.input_size(), (64, 64));
    assert_eq!(b.output_dims(), (4, 3));
    let input = InputTensor { shape: [2, 3, 64, 64], data: (0..2 * 3 * 64 * 64).map(|i| (i % 97) as f32 / 97.0).collect() };
    let out = b.infer(&input).unwrap();
    assert_eq!((out.batch, out.num_queries, out.num_classes_plus_one, out.mask_height, out.mask_width), (2, 4, 3, 16, 16));
    assert_eq!(out.class_logits.len(), 2 * 4 * 3);
    assert_eq!(out.mask_logits.len(), 2 * 4 * 16 * 16);
    assert!(out.mask_logits.iter().all(|v| v.is_finite()));
    // A wrongly sized input is refused before it reaches ONNX Runtime.
    let bad = InputTensor { shape: [1, 3, 32, 32], data: vec![0.0; 3 * 32 * 32] };
    assert!(matches!(b.infer(&bad), Err(Error::InvalidArgument(_))));
}

fn card_with(edit: impl FnOnce(&mut serde_json::Value)) -> (common::WorkDir, PathBuf) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = common::workdir("card", &N.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string());
    let model = dir.0.join("m.onnx");
    std::fs::copy(data("tiny_contract.onnx"), &model).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data("tiny_contract.json")).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(dir.0.join("m.json"), serde_json::to_string(&v).unwrap()).unwrap();
    (dir, model)
}

#[test]
fn card_disagreeing_with_model_is_refused() {
    if !runtime() {
        return;
    }
    let (_d, model) = card_with(|v| {
        v["labels"].as_array_mut().unwrap().push(serde_json::json!({"id": 2, "name": "extra", "isthing": true, "color": [1, 2, 3]}))
    });
    let err = Segmenter::open(&SegmenterConfig::new(&model)).unwrap_err();
    assert!(matches!(err, Error::CardMismatch(_)), "{err}");
    assert!(err.to_string().contains("3 labels"), "{err}");

    let (_d, model) = card_with(|v| {
        v["input"]["height"] = 96.into();
    });
    let err = Segmenter::open(&SegmenterConfig::new(&model)).unwrap_err();
    assert!(matches!(err, Error::CardMismatch(_)), "{err}");
    assert!(err.to_string().contains("96x64"), "{err}");
}

#[test]
fn invalid_cards_name_the_problem() {
    let (_d, model) = card_with(|v| v["input"]["width"] = 65.into());
    let err = ModelCard::load(&ModelCard::path_for_model(&model)).unwrap_err();
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    let (_d, model) = card_with(|v| v["input"]["mean"] = serde_json::json!([1.0, 2.0]));
    let err = ModelCard::load(&ModelCard::path_for_model(&model)).unwrap_err();
    assert!(err.to_string().contains("mean and std need 3 values"), "{err}");
    let (_d, model) = card_with(|v| v["format"] = "other/2".into());
    assert!(ModelCard::load(&ModelCard::path_for_model(&model)).unwrap_err().to_string().contains("format"));
    let (_d, model) = card_with(|v| v["labels"][1]["id"] = 7.into());
    assert!(ModelCard::load(&ModelCard::path_for_model(&model)).unwrap_err().to_string().contains("ids must be 0..K"));
}

#[test]
fn bad_frames_are_typed_errors() {
    let px = vec![0u8; 64];
    assert!(matches!(Frame::packed(PixelFormat::Rgb, 0, 4, &px), Err(Error::InvalidFrame(_))));
    assert!(matches!(Frame::packed(PixelFormat::Rgba, 8, 8, &px), Err(Error::InvalidFrame(_))), "too small a buffer");
    let y = vec![0u8; 15];
    let uv = vec![0u8; 8];
    let err = Frame::new(PixelFormat::Nv12, 5, 3, [&y, &uv, &[]], [5, 6, 0]).unwrap_err();
    assert!(err.to_string().contains("even"), "{err}");
    let err = PixelFormat::from_name("YUY2").unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat(_)) && err.to_string().contains("YUY2"), "{err}");
}

#[test]
fn segmenter_runs_every_format_end_to_end() {
    if !runtime() {
        return;
    }
    let mut s = Segmenter::open(&SegmenterConfig::new(data("tiny_contract.onnx"))).unwrap();
    let post = PostSettings { score_threshold: Some(0.0), ..PostSettings::default() };
    let (w, h) = (40usize, 30usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let (seg, t) = s.segment(&Frame::packed(PixelFormat::Rgb, w, h, &rgb).unwrap(), &post).unwrap();
    assert_eq!((seg.width, seg.height, seg.ids.len()), (w as u32, h as u32, w * h));
    assert!(t.inference_ms >= 0.0);
    let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 3 % 251) as u8).collect();
    s.segment(&Frame::packed(PixelFormat::Rgba, w, h, &rgba).unwrap(), &post).unwrap();
    s.segment(&Frame::packed(PixelFormat::Bgrx, w, h, &rgba).unwrap(), &post).unwrap();
    let y = vec![120u8; w * h];
    let uv = vec![128u8; w * h / 2];
    s.segment(&Frame::new(PixelFormat::Nv12, w, h, [&y, &uv, &[]], [w, w, 0]).unwrap(), &post).unwrap();
    let u = vec![128u8; w * h / 4];
    s.segment(&Frame::new(PixelFormat::I420, w, h, [&y, &u, &u], [w, w / 2, w / 2]).unwrap(), &post).unwrap();
}

mod common;

/// The sample model under ONNX Runtime reproduces the PyTorch logits recorded in the
/// golden cases (same pixel_values): relative error ≤ 1e-4 on both outputs.
#[test]
fn sample_model_matches_pytorch_logits() {
    if !runtime() {
        return;
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/models/shapes-m2f.onnx");
    let mut b = OrtBackend::open(&model, &OrtOptions { intra_threads: Some(2), ..Default::default() }).unwrap();
    let mut checked = 0;
    for case in common::golden_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("shapes-") || !case.join("pixel_values.npy").is_file() {
            continue;
        }
        let (shape, data) = common::read_npy_f32(&case.join("pixel_values.npy"));
        let input = InputTensor { shape: [shape[0], shape[1], shape[2], shape[3]], data };
        let out = b.infer(&input).unwrap();
        for (file, got) in [("class_queries_logits.npy", &out.class_logits), ("masks_queries_logits.npy", &out.mask_logits)] {
            let (_, want) = common::read_npy_f32(&case.join(file));
            assert_eq!(want.len(), got.len(), "{name} {file}");
            let num: f64 = want.iter().zip(got.iter()).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
            let den: f64 = want.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let rel = num / den.max(1e-12);
            println!("{name} {file}: relative error {rel:.2e}");
            assert!(rel <= 1e-4, "{name} {file}: relative error {rel}");
        }
        checked += 1;
    }
    assert!(checked >= 1, "no sample-model golden case with pixel_values.npy");
}
