//! ONNX Runtime backend (`ort` with `load-dynamic`).
//!
//! The runtime library is found, in order, through `ORT_DYLIB_PATH`, the project's own
//! install dir (`.ort/lib/` in the current directory or beside the executable's ancestors,
//! where `make setup` puts the library of the PyPI `onnxruntime` wheel), then the system's
//! loader path (`libonnxruntime.so`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use crate::backend::{Backend, InputTensor, Logits};
use crate::{Error, Result};

/// Output names of the segstream ONNX contract.
pub const INPUT_NAME: &str = "pixel_values";
pub const CLASS_OUTPUT: &str = "class_queries_logits";
pub const MASK_OUTPUT: &str = "masks_queries_logits";

const LIB_NAME: &str = "libonnxruntime.so";

/// Where ONNX Runtime runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

impl std::str::FromStr for Provider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" => Ok(Provider::TensorRt),
            other => Err(Error::InvalidArgument(format!("unknown execution provider {other:?} (cpu, cuda, tensorrt)"))),
        }
    }
}

/// Session options exposed to users.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// Intra-op threads; `None` lets ONNX Runtime choose (one per core).
    pub intra_threads: Option<usize>,
    /// Graph optimization level 0..=3 (0 disables, 3 = all, the default).
    pub optimization_level: u8,
    pub provider: Provider,
    /// Folder for the TensorRT provider's engine and timing caches (TensorRT provider
    /// only); `None`: [`ort_trt_cache_dir`] beside the model.
    pub trt_cache_dir: Option<PathBuf>,
    /// Let the TensorRT provider use FP16 kernels.
    pub trt_fp16: bool,
}

/// The default cache folder of ONNX Runtime's TensorRT provider: `x.onnx` →
/// `x.ort-trt-cache/` beside it. Engines built there are reused by later sessions (ONNX
/// Runtime keys them on the model, the GPU and the TensorRT version).
pub fn ort_trt_cache_dir(model: &Path) -> PathBuf {
    model.with_extension("ort-trt-cache")
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions { intra_threads: None, optimization_level: 3, provider: Provider::Cpu, trt_cache_dir: None, trt_fp16: true }
    }
}

/// Candidate library paths, in search order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        v.push(PathBuf::from(p));
    }
    let local = Path::new(".ort").join("lib").join(LIB_NAME);
    if let Ok(cwd) = std::env::current_dir() {
        v.push(cwd.join(&local));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            v.push(dir.join(&local));
        }
    }
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(&local));
    v
}

static RUNTIME: OnceLock<std::result::Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

/// Load the ONNX Runtime library once per process and return the path it came from;
/// later calls return the first answer.
pub fn ensure_runtime() -> Result<PathBuf> {
    runtime().map(|(p, _)| p)
}

fn runtime() -> Result<(PathBuf, ort::environment::Environment)> {
    RUNTIME
        .get_or_init(|| {
            let candidates = library_candidates();
            let chosen = candidates.iter().find(|p| p.is_file()).cloned();
            let from_env = std::env::var_os("ORT_DYLIB_PATH").is_some();
            if from_env && chosen.as_deref() != Some(Path::new(&std::env::var_os("ORT_DYLIB_PATH").unwrap_or_default())) {
                return Err(format!(
                    "ORT_DYLIB_PATH={} does not name a file",
                    std::env::var("ORT_DYLIB_PATH").unwrap_or_default()
                ));
            }
            // Fall back to the system loader path.
            let path = chosen.unwrap_or_else(|| PathBuf::from(LIB_NAME));
            match ort::init_from(&path) {
                Ok(builder) => match builder.with_name("segstream").build() {
                    Ok(env) => Ok((path, env)),
                    Err(e) => Err(format!("ONNX Runtime loaded from {} but its environment failed: {e}", path.display())),
                },
                Err(e) => Err(format!(
                    "could not load {} ({e}). Install it with `make setup` (copies the library of the PyPI \
                     `onnxruntime` wheel into .ort/lib/), or set ORT_DYLIB_PATH to a libonnxruntime.so",
                    path.display()
                )),
            }
        })
        .clone()
        .map_err(Error::RuntimeMissing)
}

/// The ONNX Runtime backend: one session over a segstream ONNX model.
pub struct OrtBackend {
    session: Session,
    name: String,
    input_hw: (usize, usize),
    /// Batch size fixed in the model, or `None` when dynamic.
    fixed_batch: Option<usize>,
    queries: usize,
    classes_plus_one: usize,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend").field("name", &self.name).field("input", &self.input_hw).finish()
    }
}

fn tensor_dims(t: &ValueType) -> Option<Vec<i64>> {
    match t {
        ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
        _ => None,
    }
}

fn ort_err(e: impl std::fmt::Display) -> Error {
    Error::Inference(e.to_string())
}

impl OrtBackend {
    /// Open a model file and check it against the ONNX contract.
    pub fn open(model: &Path, opts: &OrtOptions) -> Result<Self> {
        if !model.is_file() {
            return Err(Error::ModelNotFound(model.to_path_buf()));
        }
        let (_, env) = runtime()?;
        let level = match opts.optimization_level {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::Level3,
        };
        let mut builder = Session::builder(&env)
            .map_err(ort_err)?
            .with_optimization_level(level)
            .map_err(|e| ort_err(e.to_string()))?;
        if let Some(n) = opts.intra_threads {
            builder = builder.with_intra_threads(n).map_err(|e| ort_err(e.to_string()))?;
        }
        let name = match opts.provider {
            Provider::Cpu => "onnxruntime-cpu",
            Provider::Cuda => {
                let ep = ort::ep::CUDA::default();
                register_provider(&ep, &mut builder, "CUDA")?;
                "onnxruntime-cuda"
            }
            Provider::TensorRt => {
                let dir = opts.trt_cache_dir.clone().unwrap_or_else(|| ort_trt_cache_dir(model));
                // Refuse before making a cache folder for a provider that is not there.
                ensure_available::<ort::ep::TensorRT>("TensorRT")?;
                let mut ep = ort::ep::TensorRT::default().with_fp16(opts.trt_fp16);
                // Caches where the folder can be made (a read-only model folder runs
                // without them, building the engine in every session).
                if std::fs::create_dir_all(&dir).is_ok() {
                    ep = ep
                        .with_engine_cache(true)
                        .with_engine_cache_path(dir.to_string_lossy())
                        .with_timing_cache(true)
                        .with_timing_cache_path(dir.to_string_lossy());
                }
                register_provider(&ep, &mut builder, "TensorRT")?;
                // Nodes TensorRT does not take run on CUDA where the build has it.
                if <ort::ep::CUDA as ort::ep::ExecutionProvider>::is_available().unwrap_or(false) {
                    let _ = ort::ep::ExecutionProvider::register(&ort::ep::CUDA::default(), &mut builder);
                }
                "onnxruntime-tensorrt"
            }
        };
        let session = builder.commit_from_file(model).map_err(|e| {
            Error::ModelContract(format!("ONNX Runtime cannot load {}: {e}", model.display()))
        })?;
        Self::from_session(session, name)
    }

    fn from_session(session: Session, name: &str) -> Result<Self> {
        // A non-tensor input or output has no dimensions: the contract check refuses it.
        let declared = |outlets: &[ort::value::Outlet]| -> Vec<(String, Vec<i64>)> {
            outlets.iter().map(|o| (o.name().to_string(), tensor_dims(o.dtype()).unwrap_or_default())).collect()
        };
        let dims = super::check_contract(&declared(session.inputs()), &declared(session.outputs()))?;
        Ok(OrtBackend {
            name: name.to_string(),
            input_hw: dims.input_hw,
            fixed_batch: dims.fixed_batch,
            queries: dims.queries,
            classes_plus_one: dims.classes_plus_one,
            session,
        })
    }

    /// Input and output names with their shapes, as the model declares them (`-1` = dynamic).
    pub fn describe(&self) -> Vec<(String, String, Vec<i64>)> {
        let mut v = Vec::new();
        for (kind, outlets) in [("input", self.session.inputs()), ("output", self.session.outputs())] {
            for o in outlets {
                v.push((kind.to_string(), o.name().to_string(), tensor_dims(o.dtype()).unwrap_or_default()));
            }
        }
        v
    }
}

fn ensure_available<E: ort::ep::ExecutionProvider>(label: &str) -> Result<()> {
    if !E::is_available().unwrap_or(false) {
        return Err(Error::ProviderUnavailable {
            provider: label.into(),
            msg: "this ONNX Runtime build does not include it (the PyPI `onnxruntime` wheel is CPU-only; \
                  use onnxruntime-gpu's library via ORT_DYLIB_PATH)"
                .into(),
        });
    }
    Ok(())
}

fn register_provider<E: ort::ep::ExecutionProvider>(
    ep: &E,
    builder: &mut ort::session::builder::SessionBuilder,
    label: &str,
) -> Result<()> {
    ensure_available::<E>(label)?;
    ep.register(builder).map_err(|e| Error::ProviderUnavailable { provider: label.into(), msg: e.to_string() })
}

impl Backend for OrtBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_size(&self) -> (usize, usize) {
        self.input_hw
    }
    fn output_dims(&self) -> (usize, usize) {
        (self.queries, self.classes_plus_one)
    }
    /// A model with a dynamic batch dimension runs any batch in one call; a model
    /// exported with a fixed batch (`engines/export.py --batch 1`) runs one image a call.
    fn max_batch(&self) -> usize {
        match self.fixed_batch {
            None => usize::MAX,
            Some(_) => 1,
        }
    }

    fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        let [n, c, h, w] = input.shape;
        if c != 3 || (h, w) != self.input_hw {
            return Err(Error::InvalidArgument(format!(
                "input tensor is {:?}, model takes [N,3,{},{}]",
                input.shape, self.input_hw.0, self.input_hw.1
            )));
        }
        if n == 0 || self.fixed_batch.is_some_and(|b| b != n) {
            return Err(Error::InvalidArgument(format!("batch {n} does not fit the model's batch {:?}", self.fixed_batch)));
        }
        if input.data.len() != n * c * h * w {
            return Err(Error::InvalidArgument(format!("input tensor holds {} values, shape needs {}", input.data.len(), n * c * h * w)));
        }
        let tensor = TensorRef::from_array_view((input.shape, input.data.as_slice())).map_err(ort_err)?;
        let outputs = self.session.run(ort::inputs![INPUT_NAME => tensor]).map_err(ort_err)?;
        let (cs, cls) = outputs[CLASS_OUTPUT].try_extract_tensor::<f32>().map_err(ort_err)?;
        let (ms, msk) = outputs[MASK_OUTPUT].try_extract_tensor::<f32>().map_err(ort_err)?;
        if cs.len() != 3 || ms.len() != 4 || cs[0] as usize != n || ms[0] as usize != n || ms[1] != cs[1] {
            return Err(Error::ModelContract(format!("unexpected output shapes {:?} and {:?}", &cs[..], &ms[..])));
        }
        Ok(Logits {
            batch: n,
            num_queries: cs[1] as usize,
            num_classes_plus_one: cs[2] as usize,
            mask_height: ms[2] as usize,
            mask_width: ms[3] as usize,
            class_logits: cls.to_vec(),
            mask_logits: msk.to_vec(),
        })
    }
}
