//! Native TensorRT backend (cargo feature `tensorrt`).
//!
//! Engines are built from the exported ONNX with TensorRT's ONNX parser (`segstream
//! build-engine`, or on first use of `model=x.onnx`, cached beside it as `x.fp16.engine`)
//! and run with `enqueueV3`. The C++ side is a small shim (`shim/segstream_trt.{h,cpp}`,
//! compiled by build.rs) with a C ABI; [`engine`] is its safe wrapper.
//!
//! What needs no TensorRT is always compiled and unit-tested: the engine file header and
//! its validation ([`header`]), the I/O contract check and model/card paths ([`contract`]),
//! and the build options ([`options`]). Without the feature, [`open`] and [`build_engine`]
//! fail with [`crate::Error::FeatureDisabled`].
//!
//! TensorRT 10.x vs 11.x: 11 removed the weakly typed precision flags; see
//! [`options::Precision`]. Everything else the shim uses is common to both.
//!
//! Device memory: execution takes raw device pointers and a `cudaStream_t`
//! ([`engine::ExecutionContext::enqueue`]). The host path ([`Backend::infer`]) owns a
//! stream and device buffers allocated by the shim with the CUDA runtime; the device path
//! ([`Backend::infer_device`], used by the GPU stages of `src/cuda/`) binds the caller's
//! buffers and stream (no host staging). Which engines have a device path, and the sizes
//! bound: [`contract::device_io_plan`].

pub mod cache;
pub mod contract;
pub mod header;
pub mod options;
pub mod progress;

// build.rs's search and flags, compiled here for their unit tests only.
#[cfg(test)]
mod build_support;

#[cfg(feature = "tensorrt")]
pub mod engine;
#[cfg(feature = "tensorrt")]
mod ffi;

use std::path::Path;
use std::sync::RwLock;

use crate::backend::Backend;
use crate::model::ModelCard;
use crate::Result;

pub use header::{BuildRecord, EngineHeader, Expected, Gpu, TrtVersion, card_hash, file_sha256};
pub use options::{BatchProfile, BuildOptions, Precision};

/// Severity of a TensorRT log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Verbose,
}

/// One event of an engine build, from TensorRT's progress monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEvent<'a> {
    /// A phase starts; `parent` is empty for top-level phases.
    PhaseStart { phase: &'a str, parent: &'a str, steps: u32 },
    Step { phase: &'a str, step: u32 },
    PhaseFinish { phase: &'a str },
}

type Sink = Box<dyn Fn(LogLevel, &str) + Send + Sync>;
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Send TensorRT's log (and this backend's own notes) to `sink` instead of the default.
pub fn set_log_sink(sink: impl Fn(LogLevel, &str) + Send + Sync + 'static) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(sink));
}

static CAT: std::sync::LazyLock<gstreamer::DebugCategory> = std::sync::LazyLock::new(|| {
    gstreamer::DebugCategory::new("segstream-tensorrt", gstreamer::DebugColorFlags::empty(), Some("segstream TensorRT backend"))
});

/// Default routing: every message to the GStreamer debug log (category
/// `segstream-tensorrt`, so `GST_DEBUG=segstream-tensorrt:6` shows all of it), errors and
/// warnings also on stderr as one line each.
pub fn log(level: LogLevel, msg: &str) {
    if let Some(sink) = SINK.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        sink(level, msg);
        return;
    }
    if gstreamer::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst) {
        match level {
            LogLevel::Error => gstreamer::error!(CAT, "{msg}"),
            LogLevel::Warning => gstreamer::warning!(CAT, "{msg}"),
            LogLevel::Info => gstreamer::info!(CAT, "{msg}"),
            LogLevel::Verbose => gstreamer::log!(CAT, "{msg}"),
        }
    }
    if level <= LogLevel::Warning {
        eprintln!("segstream: tensorrt: {}", msg.trim_end());
    }
}

/// Whether this build has the native TensorRT backend.
pub const AVAILABLE: bool = cfg!(feature = "tensorrt");

#[cfg(not(feature = "tensorrt"))]
fn disabled(what: &str) -> crate::Error {
    crate::Error::FeatureDisabled { feature: "tensorrt", what: what.into() }
}

/// Open the native TensorRT backend for `model` (`.engine`, or `.onnx` built and cached on
/// first use) and its `card`.
pub fn open(model: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<Box<dyn Backend>> {
    #[cfg(feature = "tensorrt")]
    {
        Ok(Box::new(engine::TrtBackend::open(model, card, opts)?))
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        let _ = (model, card, opts);
        Err(disabled("the native TensorRT backend (backend=tensorrt) is not available"))
    }
}

/// Build an engine file `out` from `onnx` for `card`, reporting progress to `progress`
/// (return `false` to cancel). `progress` may be called from TensorRT's builder threads
/// (one call at a time), hence `Send`. A build of the same `out` running in another
/// pipeline or process is waited for (lock file `out.lock`).
pub fn build_engine(
    onnx: &Path,
    card: &ModelCard,
    out: &Path,
    opts: &BuildOptions,
    progress: &mut progress::ProgressFn<'_>,
) -> Result<EngineHeader> {
    #[cfg(feature = "tensorrt")]
    {
        engine::build_engine_file(onnx, card, out, opts, progress)
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        let _ = (onnx, card, out, opts, progress);
        Err(disabled("`segstream build-engine` needs TensorRT"))
    }
}

/// Load the model card of a model file (`x.onnx` → `x.json`; an engine → see
/// [`contract::card_path_for`]).
pub fn load_card(model: &Path) -> Result<ModelCard> {
    ModelCard::load(&contract::card_path_for(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "tensorrt"))]
    #[test]
    fn without_the_feature_open_and_build_say_so() {
        let card = header::tests::card();
        let e = match open(Path::new("m.engine"), &card, &BuildOptions::default()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened without TensorRT"),
        };
        assert!(e.contains("without the `tensorrt` cargo feature"), "{e}");
        let e = build_engine(Path::new("m.onnx"), &card, Path::new("m.engine"), &BuildOptions::default(), &mut |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("build-engine") && e.contains("--features tensorrt"), "{e}");
    }

    #[test]
    fn log_sink_receives_messages() {
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        set_log_sink(move |l, m| s.lock().unwrap().push((l, m.to_string())));
        log(LogLevel::Warning, "hello");
        *SINK.write().unwrap() = None;
        assert!(seen.lock().unwrap().contains(&(LogLevel::Warning, "hello".to_string())));
    }
}
