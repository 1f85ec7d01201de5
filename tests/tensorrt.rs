//! The TensorRT backends as far as they can be tested without TensorRT: backend/device
//! selection against the CPU-only ONNX Runtime of this project (a missing provider is an
//! error naming it, `device=auto` falls back), the element and the CLI without the
//! `tensorrt` feature, and, ignored unless TensorRT and a GPU are there, an engine built
//! from the sample model compared with ONNX Runtime.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use segstream::backend::select::{BackendKind, Device};
use segstream::segmenter::{Segmenter, SegmenterConfig};

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

fn sample_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/models/shapes-m2f.onnx")
}

fn segstream(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run segstream");
    common::wait_with_deadline(child, &format!("segstream {args:?}"), Duration::from_secs(120))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cfg(backend: BackendKind, device: Device) -> SegmenterConfig {
    let mut c = SegmenterConfig::new(sample_model());
    c.ort.intra_threads = Some(1);
    c.backend = backend;
    c.device = device;
    c
}

/// The project's ONNX Runtime (the PyPI wheel's) has neither CUDA nor TensorRT: asking for
/// them on `device=cuda` is an error naming the provider, not a quiet CPU session.
#[test]
fn missing_ort_provider_on_cuda_is_an_error() {
    for (backend, provider) in [(BackendKind::OnnxRuntimeTensorRt, "TensorRT"), (BackendKind::OnnxRuntimeCuda, "CUDA")] {
        let e = Segmenter::open_auto(&cfg(backend, Device::Cuda)).expect_err("no GPU provider here").to_string();
        assert!(
            e.contains(&format!("execution provider {provider} is not available in this ONNX Runtime build")),
            "{backend}: {e}"
        );
    }
    // No cache folder is made for a provider that is not there.
    assert!(!sample_model().with_extension("ort-trt-cache").exists());
}

/// `device=auto` walks the fallback order down to the CPU and says what it skipped.
#[test]
fn auto_device_falls_back_to_the_cpu_in_order() {
    let s = Segmenter::open_auto(&cfg(BackendKind::OnnxRuntimeTensorRt, Device::Auto)).expect("CPU fallback");
    assert_eq!(s.backend_name(), "onnxruntime-cpu");
    let notes = s.fallbacks();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("onnxruntime-tensorrt: ") && notes[0].contains("TensorRT"), "{notes:?}");
    assert!(notes[1].starts_with("onnxruntime-cuda: ") && notes[1].contains("CUDA"), "{notes:?}");
}

#[test]
fn gpu_backends_refuse_the_cpu_device() {
    let e = Segmenter::open_auto(&cfg(BackendKind::TensorRt, Device::Cpu)).expect_err("refused").to_string();
    assert!(e.contains("CUDA devices only"), "{e}");
}

#[test]
fn an_engine_file_needs_the_tensorrt_backend() {
    let dir = common::workdir("tensorrt", "engine-on-ort");
    let engine = dir.join("m.fp16.engine");
    std::fs::write(&engine, b"not really").unwrap();
    std::fs::copy(sample_model().with_extension("json"), dir.join("m.json")).unwrap();
    let mut c = cfg(BackendKind::OnnxRuntime, Device::Cpu);
    c.model = engine;
    let e = Segmenter::open_auto(&c).expect_err("refused").to_string();
    assert!(e.contains("only backend=tensorrt runs it"), "{e}");
}

#[test]
fn run_with_a_missing_provider_is_one_line_error() {
    let out = segstream(&["run", "--backend", "onnxruntime-tensorrt", "--device", "cuda", "--no-overlay", "--json", "/dev/null"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("segstream: error: ") && lines[0].contains("TensorRT is not available"), "{err}");
}

#[test]
fn run_rejects_unknown_backend_names() {
    let out = segstream(&["run", "--backend", "tflite"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown backend \"tflite\""), "{}", stderr(&out));
}

/// `inspect` reads an engine's header without TensorRT and checks it against the card.
#[test]
fn inspect_reads_the_engine_header() {
    use segstream::backend::tensorrt::{BatchProfile, EngineHeader, Gpu, Precision, TrtVersion, card_hash, load_card};
    let dir = common::workdir("tensorrt", "inspect");
    let card_file = dir.join("m.json");
    std::fs::copy(sample_model().with_extension("json"), &card_file).unwrap();
    let card = load_card(&dir.join("m.onnx")).unwrap();
    let header = EngineHeader {
        tensorrt: TrtVersion(10, 3, 0),
        tensorrt_build: 1,
        gpu: Gpu { name: "Orin".into(), compute_capability: (8, 7) },
        card_sha256: card_hash(&card),
        model: card.name.clone(),
        precision: Precision::Fp16,
        batch: BatchProfile::default(),
        input: (card.input.height, card.input.width),
        plugin: false,
        source: "m.onnx".into(),
        onnx_sha256: "0".repeat(64),
        requested_batch: BatchProfile::default(),
        plugin_library: None,
        segstream: "test".into(),
        plan_len: 0,
    };
    let engine = dir.join("m.fp16.engine");
    std::fs::write(&engine, header.encode(b"fake plan")).unwrap();
    let out = segstream(&["inspect", engine.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("engine:       TensorRT 10.3.0, Orin (compute capability 8.7), fp16"), "{text}");
    assert!(text.contains("(matches)"), "{text}");
    // A card edited where the plan does not care (name, thresholds): still matches.
    let mut edited = card.clone();
    edited.name.push_str("-renamed");
    edited.defaults.score_threshold = 0.123;
    std::fs::write(&card_file, serde_json::to_string(&edited).unwrap()).unwrap();
    let out = segstream(&["inspect", engine.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A card with another label count beside it: refused.
    let mut other = card.clone();
    other.labels.pop();
    std::fs::write(&card_file, serde_json::to_string(&other).unwrap()).unwrap();
    let out = segstream(&["inspect", engine.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("another model card"), "{}", stderr(&out));
    // A bare plan: refused with the reason.
    std::fs::write(&engine, b"ftrt bare plan bytes").unwrap();
    let out = segstream(&["inspect", engine.to_str().unwrap()]);
    assert!(stderr(&out).contains("not a segstream engine file"), "{}", stderr(&out));
}

#[cfg(not(feature = "tensorrt"))]
mod without_feature {
    use super::*;
    use gst::prelude::*;
    use gstreamer as gst;

    #[test]
    fn build_engine_says_the_feature_is_missing() {
        let m = sample_model();
        let out = segstream(&["build-engine", m.to_str().unwrap(), "--precision", "fp16"]);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(err.starts_with("segstream: error: ") && err.contains("without the `tensorrt` cargo feature"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!m.with_extension("fp16.engine").exists());
    }

    #[test]
    fn run_with_backend_tensorrt_says_the_feature_is_missing() {
        let out = segstream(&["run", "--backend", "tensorrt", "--no-overlay", "--json", "/dev/null"]);
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains("without the `tensorrt` cargo feature"), "{err}");
    }

    #[test]
    fn element_with_backend_tensorrt_posts_a_clear_error() {
        gst::init().unwrap();
        segstream::elements::register_static().unwrap();
        let p = gst::parse::launch("videotestsrc num-buffers=1 ! videoconvert ! mask2former name=m backend=tensorrt ! fakesink")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        p.by_name("m").unwrap().set_property("model", sample_model().to_str().unwrap());
        let ret = p.set_state(gst::State::Playing);
        let msg = p.bus().unwrap().timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error]);
        p.set_state(gst::State::Null).unwrap();
        assert!(ret.is_err());
        let text = match msg.expect("an error message").view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => unreachable!(),
        };
        assert!(text.contains("backend=tensorrt") && text.contains("without the `tensorrt` cargo feature"), "{text}");
    }
}

#[cfg(feature = "tensorrt")]
mod with_tensorrt {
    use super::*;
    use segstream::backend::onnxruntime::{OrtBackend, OrtOptions};
    use segstream::backend::tensorrt::{self, BuildOptions, Precision};
    use segstream::backend::{Backend, InputTensor};

    /// Build an FP32 engine from the sample model, reload it, and compare with ONNX
    /// Runtime on one input; then a second open reuses the cached engine.
    #[test]
    #[ignore = "needs TensorRT and a CUDA GPU"]
    fn sample_engine_matches_onnxruntime() {
        let dir = common::workdir("tensorrt", "sample-engine");
        let onnx = dir.join("m.onnx");
        std::fs::copy(sample_model(), &onnx).unwrap();
        std::fs::copy(sample_model().with_extension("json"), dir.join("m.json")).unwrap();
        let card = tensorrt::load_card(&onnx).unwrap();
        let opts = BuildOptions { precision: Precision::Fp32, ..BuildOptions::default() };
        let out = dir.join("m.fp32.engine");
        let header = tensorrt::build_engine(&onnx, &card, &out, &opts, &mut |_| true).unwrap();
        assert_eq!(header.precision, Precision::Fp32);
        let mut trt = tensorrt::open(&out, &card, &opts).unwrap();
        let mut ort = OrtBackend::open(&onnx, &OrtOptions::default()).unwrap();
        let (h, w) = ort.input_size();
        let data: Vec<f32> = (0..3 * h * w).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let input = InputTensor { shape: [1, 3, h, w], data };
        let a = trt.infer(&input).unwrap();
        let b = ort.infer(&input).unwrap();
        let max = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(max(&a.class_logits, &b.class_logits) < 1e-2, "class logits differ");
        assert!(max(&a.mask_logits, &b.mask_logits) < 1e-2, "mask logits differ");
        // A model=x.onnx open finds the cached engine (no rebuild).
        let before = std::fs::metadata(&out).unwrap().modified().unwrap();
        let _ = tensorrt::open(&onnx, &card, &opts).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), before);
    }

    /// Several pipelines opening one ONNX model at once: one build, one engine, no
    /// temporary files left, a timing cache beside it.
    #[test]
    #[ignore = "needs TensorRT and a CUDA GPU"]
    fn concurrent_opens_build_one_engine() {
        let dir = common::workdir("tensorrt", "concurrent-opens");
        let onnx = dir.join("m.onnx");
        std::fs::copy(sample_model(), &onnx).unwrap();
        std::fs::copy(sample_model().with_extension("json"), dir.join("m.json")).unwrap();
        let card = tensorrt::load_card(&onnx).unwrap();
        let opts = BuildOptions { precision: Precision::Fp32, ..BuildOptions::default() };
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| tensorrt::open(&onnx, &card, &opts).map(|_| ()).unwrap());
            }
        });
        let names: Vec<String> =
            std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
        assert!(names.contains(&"m.fp32.engine".to_string()) && names.contains(&"tensorrt.timing-cache".to_string()), "{names:?}");
    }

    /// A re-exported ONNX (same card) makes the cached engine stale; a threshold edit in
    /// the card does not.
    #[test]
    #[ignore = "needs TensorRT and a CUDA GPU"]
    fn reexported_onnx_rebuilds_card_edit_does_not() {
        let dir = common::workdir("tensorrt", "stale-onnx");
        let onnx = dir.join("m.onnx");
        std::fs::copy(sample_model(), &onnx).unwrap();
        std::fs::copy(sample_model().with_extension("json"), dir.join("m.json")).unwrap();
        let mut card = tensorrt::load_card(&onnx).unwrap();
        let opts = BuildOptions { precision: Precision::Fp32, ..BuildOptions::default() };
        let engine = dir.join("m.fp32.engine");
        let _ = tensorrt::open(&onnx, &card, &opts).unwrap();
        let first = std::fs::metadata(&engine).unwrap().modified().unwrap();
        card.defaults.score_threshold = 0.99;
        let _ = tensorrt::open(&onnx, &card, &opts).unwrap();
        assert_eq!(std::fs::metadata(&engine).unwrap().modified().unwrap(), first, "rebuilt for a threshold");
        // A "re-export": the same graph in other bytes. An empty `doc_string` (ModelProto
        // field 6, length 0) appended to the file is valid protobuf (the last value wins).
        let mut bytes = std::fs::read(&onnx).unwrap();
        bytes.extend_from_slice(&[0x32, 0x00]);
        std::fs::write(&onnx, &bytes).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _ = tensorrt::open(&onnx, &card, &opts).unwrap();
        assert_ne!(std::fs::metadata(&engine).unwrap().modified().unwrap(), first, "not rebuilt for a new ONNX");
    }
}
