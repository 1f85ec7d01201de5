//! The one error type of the library. Every failure a user can cause (bad model, bad
//! card, bad frame, missing runtime) has its own variant naming the problem.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model file not found: {0}")]
    ModelNotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model card {path}: {msg}")]
    InvalidCard { path: PathBuf, msg: String },
    #[error("model does not match the segstream ONNX contract: {0}")]
    ModelContract(String),
    #[error("model card and model disagree: {0}")]
    CardMismatch(String),
    #[error("ONNX Runtime library not available: {0}")]
    RuntimeMissing(String),
    /// The OpenVINO C library (`libopenvino_c.so`) could not be loaded from `path`, the
    /// first place searched that exists or, when none does, the name given to the loader.
    #[error("OpenVINO library not available: {path}: {msg}")]
    OpenVinoMissing { path: PathBuf, msg: String },
    #[error("execution provider {provider} is not available in this ONNX Runtime build: {msg}")]
    ProviderUnavailable { provider: String, msg: String },
    #[error("TensorRT: {0}")]
    TensorRt(String),
    #[error("engine {path} cannot be used: {reason}; rebuild it (`segstream build-engine MODEL.onnx`), or delete it to have it rebuilt from the ONNX file beside it")]
    EngineMismatch { path: PathBuf, reason: String },
    #[error("this segstream was built without the `{feature}` cargo feature: {what} (rebuild with `cargo build --release --features {feature}`)")]
    FeatureDisabled { feature: &'static str, what: String },
    #[error("CUDA is not available: {0}")]
    CudaUnavailable(String),
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("inference failed: {0}")]
    Inference(String),
    /// A remote inference server (`backend=triton`) cannot be reached, or missed the
    /// deadline: the frame has no result, and a later call may succeed.
    #[error("inference server unavailable: {0}")]
    Unavailable(String),
    /// A remote inference server answered with an error (unknown model, bad request, the
    /// model failing on the server).
    #[error("Triton: {0}")]
    Triton(String),
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    #[error("unsupported pixel format: {0}")]
    UnsupportedFormat(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid RLE: {0}")]
    InvalidRle(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
