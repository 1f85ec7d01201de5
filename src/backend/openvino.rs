//! OpenVINO backend: the `openvino` crate over OpenVINO's C API, the library opened at run
//! time (`runtime-linking`: nothing is linked, nothing is needed to build). It reads the
//! same ONNX file and model card as ONNX Runtime.
//!
//! The C library (`libopenvino_c.so`, with its neighbours: `libopenvino`, the device
//! plugins, the ONNX frontend, TBB) is found, in order, through `OPENVINO_LIB_PATH` (the
//! library file or its folder; when set, nothing else is tried), the project's own folder
//! `.openvino/lib/` (in the current directory or beside the executable's ancestors, where
//! `make setup` links the `libs` folder of the PyPI `openvino` wheel), then the system's
//! loader path (`libopenvino_c.so`). A library that does not load is
//! [`Error::OpenVinoMissing`], naming the path tried.
//!
//! Precision ([`Precision`]): `f32`, `bf16`, or `auto` = bf16 where the device reports
//! BF16 among its optimization capabilities (on the CPU: AMX; AVX-512-bf16 alone is slower than f32) and the model
//! card does not say `"bf16": false`, f32 otherwise. The precision is always set
//! explicitly (OpenVINO's CPU plugin would otherwise pick bf16 by itself on AMX machines)
//! and read back from the compiled model: a device that compiled another precision than
//! the one picked is an error, and the backend's name and [`Backend::details`] say what
//! runs (`openvino-cpu-bf16`, and why).
//!
//! The compiled model is cached by OpenVINO in `CACHE_DIR`, by default
//! [`openvino_cache_dir`] beside the model, so the second start imports the compiled blob
//! instead of compiling again (a folder that cannot be made: no cache, compiled each
//! time).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gstreamer::glib;
use openvino::{
    CompiledModel, Core, DeviceType, Dimension, ElementType, InferRequest, PartialShape, PropertyKey, RwPropertyKey, Shape,
    Tensor,
};

use crate::backend::onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
use crate::backend::{Backend, InputTensor, Logits, check_contract};
use crate::model::ModelCard;
use crate::util::panic_message;
use crate::{Error, Result};

/// The environment variable that names the OpenVINO C library (or its folder).
pub const LIB_ENV: &str = "OPENVINO_LIB_PATH";
/// The C library's unversioned name (the wheel ships `libopenvino_c.so.<version>` only).
const LIB_NAME: &str = "libopenvino_c.so";
/// The project-local folder `make setup` links to the wheel's libraries.
const LOCAL_DIR: &str = ".openvino/lib";

/// The `precision` option (element property, CLI flag): the precision OpenVINO computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamPrecision")]
pub enum Precision {
    /// bf16 where the device has it (CPU: AMX) and the card allows it, else f32.
    #[default]
    #[enum_value(
        name = "Auto: bf16 where the device supports it (CPU: with AMX) and the model card allows it, f32 otherwise",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "f32: full precision (same results as ONNX Runtime)", nick = "f32")]
    F32 = 1,
    #[enum_value(name = "bf16: bfloat16 compute (an error where the device lacks it)", nick = "bf16")]
    Bf16 = 2,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::F32, Precision::Bf16];

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// OpenVINO's value of `INFERENCE_PRECISION_HINT` (none for `auto`).
    fn hint(self) -> Option<&'static str> {
        match self {
            Precision::Auto => None,
            Precision::F32 => Some("f32"),
            Precision::Bf16 => Some("bf16"),
        }
    }

    /// The precision an `INFERENCE_PRECISION_HINT` value read back from OpenVINO names.
    fn from_hint(s: &str) -> Option<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Precision::Auto);
        }
        Precision::from_hint(s).ok_or_else(|| Error::InvalidArgument(format!("unknown precision {s:?} (auto, f32, bf16)")))
    }
}

/// The `performance-hint` option: OpenVINO's `PERFORMANCE_HINT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamPerformanceHint")]
pub enum PerformanceHint {
    /// One inference at a time as fast as it goes (one stream of all threads).
    #[default]
    #[enum_value(name = "Latency: each inference as fast as possible (one execution stream)", nick = "latency")]
    Latency = 0,
    /// Several execution streams: more frames a second with several requests in flight,
    /// each one slower.
    #[enum_value(
        name = "Throughput: several execution streams, for many inferences in flight (each one slower)",
        nick = "throughput"
    )]
    Throughput = 1,
}

impl PerformanceHint {
    pub const ALL: [PerformanceHint; 2] = [PerformanceHint::Latency, PerformanceHint::Throughput];

    pub fn as_str(self) -> &'static str {
        match self {
            PerformanceHint::Latency => "latency",
            PerformanceHint::Throughput => "throughput",
        }
    }

    fn openvino_value(self) -> &'static str {
        match self {
            PerformanceHint::Latency => "LATENCY",
            PerformanceHint::Throughput => "THROUGHPUT",
        }
    }
}

impl std::str::FromStr for PerformanceHint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PerformanceHint::ALL
            .into_iter()
            .find(|h| h.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::InvalidArgument(format!("unknown performance hint {s:?} (latency, throughput)")))
    }
}

/// The default OpenVINO device name.
pub const DEFAULT_DEVICE: &str = "CPU";

/// How to open a model on OpenVINO.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenVinoOptions {
    /// OpenVINO device name (`CPU`; `GPU`, `GPU.1`, `NPU`, `AUTO:GPU,CPU` are passed as given).
    pub device: String,
    pub precision: Precision,
    /// `INFERENCE_NUM_THREADS`; `None` lets OpenVINO choose (one per core).
    pub threads: Option<usize>,
    pub hint: PerformanceHint,
    /// OpenVINO's `CACHE_DIR`; `None`: [`openvino_cache_dir`] beside the model.
    pub cache_dir: Option<PathBuf>,
}

impl Default for OpenVinoOptions {
    fn default() -> Self {
        OpenVinoOptions {
            device: DEFAULT_DEVICE.into(),
            precision: Precision::Auto,
            threads: None,
            hint: PerformanceHint::Latency,
            cache_dir: None,
        }
    }
}

/// The default compiled-model cache folder: `x.onnx` → `x.openvino-cache/` beside it.
/// OpenVINO keys its blobs on the model, the device and the compile options, so one folder
/// serves every precision and thread count.
pub fn openvino_cache_dir(model: &Path) -> PathBuf {
    model.with_extension("openvino-cache")
}

/// Candidate library paths, in search order, for the value of [`LIB_ENV`] (`env`): when
/// it is set, only it (a folder stands for the library in it); else the project folders.
pub fn library_candidates(env: Option<OsString>) -> Vec<PathBuf> {
    if let Some(p) = env {
        let p = PathBuf::from(p);
        return vec![if p.is_dir() { find_in_dir(&p).unwrap_or_else(|| p.join(LIB_NAME)) } else { p }];
    }
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(LOCAL_DIR));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            dirs.push(dir.join(LOCAL_DIR));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(LOCAL_DIR));
    dirs.iter().map(|d| find_in_dir(d).unwrap_or_else(|| d.join(LIB_NAME))).collect()
}

/// The C library in `dir`: `libopenvino_c.so`, else the highest `libopenvino_c.so.<version>`.
fn find_in_dir(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(LIB_NAME);
    if plain.is_file() {
        return Some(plain);
    }
    let prefix = format!("{LIB_NAME}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)) && p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The library that loaded, and its version.
#[derive(Debug, Clone)]
struct Runtime {
    path: PathBuf,
    version: String,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, (PathBuf, String)>> = OnceLock::new();

/// Load the OpenVINO C library once per process and return the path it came from; later
/// calls return the first answer (the library stays loaded for the process' life).
pub fn ensure_runtime() -> Result<PathBuf> {
    runtime().map(|r| r.path)
}

/// The loaded library's version (e.g. `2026.4.1-22982-...`).
pub fn runtime_version() -> Result<String> {
    runtime().map(|r| r.version)
}

fn runtime() -> Result<Runtime> {
    RUNTIME
        .get_or_init(|| {
            let from_env = std::env::var_os(LIB_ENV);
            let set = from_env.is_some();
            let candidates = library_candidates(from_env);
            let chosen = candidates.iter().find(|p| p.is_file()).cloned();
            let hint = "install it with `make setup` (links the libraries of the PyPI `openvino` wheel into \
                        .openvino/lib/), or set OPENVINO_LIB_PATH to libopenvino_c.so or its folder";
            if set && chosen.is_none() {
                let p = candidates.into_iter().next().unwrap_or_default();
                return Err((p, format!("{LIB_ENV} does not name a file; {hint}")));
            }
            // Fall back to the system loader path.
            let path = chosen.unwrap_or_else(|| PathBuf::from(LIB_NAME));
            // openvino-sys parses the version string with `unwrap`: no panic leaves here.
            let loaded = std::panic::catch_unwind(|| openvino_sys::library::load_from(path.clone()))
                .unwrap_or_else(|p| Err(format!("panic while loading: {}", panic_message(&p))));
            if let Err(e) = loaded {
                return Err((path, format!("{e}; {hint}")));
            }
            let version = openvino::version();
            Ok(Runtime { path, version: version.build_number })
        })
        .clone()
        .map_err(|(path, msg)| Error::OpenVinoMissing { path, msg })
}

fn ov_err(what: &str) -> impl FnOnce(openvino::InferenceError) -> Error + '_ {
    move |e| Error::Inference(format!("OpenVINO: {what}: {e}"))
}

/// The precision to compile in for `asked` on a device whose `OPTIMIZATION_CAPABILITIES`
/// are `capabilities`, with the reason (said by [`Backend::details`]). An explicit `bf16`
/// on a device without BF16 is an error, never a silent f32.
///
/// `auto` on the CPU also needs AMX (`cpu_amx`): with AVX-512-bf16 alone, bf16 ran 1.5× slower
/// than f32 on the real-size Swin-T here (docs/BENCHMARKS.md, "OpenVINO"), so `auto` keeps
/// f32 there; an explicit `bf16` still runs.
pub fn pick_precision(
    asked: Precision,
    device: &str,
    capabilities: &[String],
    card_allows_bf16: bool,
    cpu_amx: bool,
) -> Result<(Precision, String)> {
    let has_bf16 = capabilities.iter().any(|c| c.eq_ignore_ascii_case("BF16"));
    let cpu = device.to_ascii_uppercase().starts_with("CPU");
    let what = if cpu { "the CPU has AMX or AVX-512-bf16" } else { "the device reports BF16" };
    let caps = capabilities.join(" ");
    Ok(match asked {
        Precision::F32 => (Precision::F32, "precision=f32".into()),
        Precision::Bf16 if has_bf16 => (Precision::Bf16, format!("precision=bf16 ({what})")),
        Precision::Bf16 => {
            return Err(Error::InvalidArgument(format!(
                "precision=bf16: OpenVINO device {device} has no bfloat16 support (on the CPU it needs AMX or \
                 AVX-512-bf16; capabilities: {caps}); use precision=f32 or auto"
            )));
        }
        Precision::Auto if has_bf16 && !card_allows_bf16 => {
            (Precision::F32, "precision=auto picked f32: the model card says \"bf16\": false".into())
        }
        Precision::Auto if has_bf16 && cpu && !cpu_amx => (
            Precision::F32,
            "precision=auto picked f32: the CPU has AVX-512-bf16 but no AMX, where bf16 is slower than f32 \
             (precision=bf16 forces it)"
                .into(),
        ),
        Precision::Auto if has_bf16 => {
            let what = if cpu { "the CPU has AMX" } else { what };
            (Precision::Bf16, format!("precision=auto picked bf16: {what} and the model card allows it"))
        }
        Precision::Auto => {
            (Precision::F32, format!("precision=auto picked f32: device {device} has no bfloat16 support (capabilities: {caps})"))
        }
    })
}

/// Whether this machine's CPU has AMX bf16 tiles (Linux: the `amx_bf16` flag of
/// /proc/cpuinfo; elsewhere, false).
pub fn cpu_has_amx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").map(|s| s.split_whitespace().any(|f| f == "amx_bf16")).unwrap_or(false)
}

/// The OpenVINO backend: one compiled model and one infer request (and, for a model with a
/// dynamic batch compiled for batch 1 on the CPU, a second one for larger batches, compiled
/// on first use).
pub struct OpenVinoBackend {
    // Dropped in this order: the requests, the compiled models, then the core.
    request: InferRequest,
    _compiled: CompiledModel,
    /// Batches of more than one image, when `request` takes batch 1 only.
    batched: Option<(InferRequest, CompiledModel)>,
    /// The model was compiled for batch 1 though its batch dimension is dynamic.
    batch_one: bool,
    model_path: PathBuf,
    device: String,
    core: Core,
    name: String,
    details: String,
    precision: Precision,
    input_hw: (usize, usize),
    fixed_batch: Option<usize>,
    queries: usize,
    classes_plus_one: usize,
}

impl std::fmt::Debug for OpenVinoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVinoBackend").field("name", &self.name).field("input", &self.input_hw).finish()
    }
}

/// Dimensions of a port's partial shape, `-1` for a dynamic one (ONNX Runtime's convention).
fn port_dims(node: &openvino::Node) -> Result<(String, Vec<i64>)> {
    let name = node.get_name().map_err(ov_err("port name"))?;
    let shape = node.get_partial_shape().map_err(ov_err("port shape"))?;
    let dims = shape.get_dimensions().iter().map(|d| if d.is_dynamic() { -1 } else { d.get_min() }).collect();
    Ok((name, dims))
}

impl OpenVinoBackend {
    /// Open an ONNX model with its card, compile it for `opts.device`, and check it
    /// against the ONNX contract.
    pub fn open(model: &Path, card: &ModelCard, opts: &OpenVinoOptions) -> Result<Self> {
        if !model.is_file() {
            return Err(Error::ModelNotFound(model.to_path_buf()));
        }
        let device = opts.device.trim();
        if device.is_empty() || device.contains('\0') {
            return Err(Error::InvalidArgument(format!("invalid OpenVINO device name {:?}", opts.device)));
        }
        let model_str = model
            .to_str()
            .ok_or_else(|| Error::InvalidArgument(format!("{}: OpenVINO takes UTF-8 paths only", model.display())))?;
        let runtime = runtime()?;
        let mut core = Core::new().map_err(|e| Error::Inference(format!("OpenVINO: cannot create its core: {e}")))?;
        let dev = DeviceType::Other(device.to_string().into());

        let caps = core
            .get_property(&dev, &PropertyKey::Other("OPTIMIZATION_CAPABILITIES".into()))
            .map_err(|e| Error::InvalidArgument(format!("OpenVINO device {device:?} is not available: {e}")))?;
        let caps: Vec<String> = caps.split([' ', ',']).filter(|c| !c.is_empty()).map(str::to_string).collect();
        let (precision, why) = pick_precision(opts.precision, device, &caps, card.bf16 != Some(false), cpu_has_amx())?;

        let set = |core: &mut Core, key: RwPropertyKey, value: &str| {
            let label = format!("{key:?}");
            core.set_property(&dev, &key, value).map_err(|e| Error::Inference(format!("OpenVINO: {device}: {label}={value}: {e}")))
        };
        set(&mut core, RwPropertyKey::HintInferencePrecision, precision.hint().unwrap_or("f32"))?;
        set(&mut core, RwPropertyKey::HintPerformanceMode, opts.hint.openvino_value())?;
        if let Some(n) = opts.threads {
            set(&mut core, RwPropertyKey::InferenceNumThreads, &n.to_string())?;
        }
        // The compiled-model cache, where the folder can be made (a read-only model folder
        // runs without it).
        let cache = opts.cache_dir.clone().unwrap_or_else(|| openvino_cache_dir(model));
        let cache_note = match std::fs::create_dir_all(&cache) {
            Ok(()) => match cache.to_str() {
                Some(c) => {
                    set(&mut core, RwPropertyKey::CacheDir, c)?;
                    format!("compiled-model cache {c}")
                }
                None => "no compiled-model cache (non-UTF-8 folder)".to_string(),
            },
            Err(e) => format!("no compiled-model cache ({}: {e})", cache.display()),
        };

        let ov_model = core
            .read_model_from_file(model_str, "")
            .map_err(|e| Error::ModelContract(format!("OpenVINO cannot read {}: {e}", model.display())))?;
        let ports = |n: usize, get: &dyn Fn(usize) -> std::result::Result<openvino::Node, openvino::InferenceError>| {
            (0..n).map(|i| get(i).map_err(ov_err("model ports")).and_then(|p| port_dims(&p))).collect::<Result<Vec<_>>>()
        };
        let inputs = ports(ov_model.get_inputs_len().map_err(ov_err("model inputs"))?, &|i| ov_model.get_input_by_index(i))?;
        let outputs = ports(ov_model.get_outputs_len().map_err(ov_err("model outputs"))?, &|i| ov_model.get_output_by_index(i))?;
        let io = check_contract(&inputs, &outputs)?;
        // On the CPU a dynamic batch dimension costs time in every inference (6.5 % on the
        // real-size Swin-T here): compile for batch 1, the common case, and a second time
        // for larger batches when one comes.
        let mut ov_model = ov_model;
        let batch_one = io.fixed_batch.is_none() && device.to_ascii_uppercase().starts_with("CPU");
        if batch_one {
            let (h, w) = (io.input_hw.0 as i64, io.input_hw.1 as i64);
            let dims = [Dimension::new(1, 1), Dimension::new(3, 3), Dimension::new(h, h), Dimension::new(w, w)];
            let shape = PartialShape::new(4, &dims).map_err(ov_err("input shape"))?;
            ov_model.reshape_input_by_name(INPUT_NAME, &shape).map_err(ov_err("reshape to batch 1"))?;
        }

        let mut compiled = core
            .compile_model(&ov_model, dev.to_owned())
            .map_err(|e| Error::Inference(format!("OpenVINO cannot compile {} for {device}: {e}", model.display())))?;
        // What the device compiled, not what was asked: said, and checked.
        let compiled_in = compiled
            .get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision))
            .map(|s| s.into_owned());
        let confirmed = match &compiled_in {
            Ok(s) => match Precision::from_hint(s) {
                Some(p) if p == precision => String::new(),
                Some(p) => {
                    return Err(Error::Inference(format!(
                        "OpenVINO compiled {} for {device} in {p}, not the {precision} asked for ({why})",
                        model.display()
                    )));
                }
                None => format!(" (the device reports the precision as {s:?})"),
            },
            Err(_) => " (the device does not report its inference precision)".to_string(),
        };
        let request = compiled.create_infer_request().map_err(ov_err("infer request"))?;
        let name = format!("openvino-{}-{}", device.to_ascii_lowercase(), precision);
        let details = format!(
            "OpenVINO {} ({}) on {device}: {why}{confirmed}; performance hint {}{}; {cache_note}",
            runtime.version,
            runtime.path.display(),
            opts.hint.as_str(),
            opts.threads.map(|n| format!(", {n} threads")).unwrap_or_default(),
        );
        Ok(OpenVinoBackend {
            request,
            _compiled: compiled,
            batched: None,
            batch_one,
            model_path: model.to_path_buf(),
            device: device.to_string(),
            core,
            name,
            details,
            precision,
            input_hw: io.input_hw,
            fixed_batch: io.fixed_batch,
            queries: io.queries,
            classes_plus_one: io.classes_plus_one,
        })
    }

    /// The precision the model was compiled in (never [`Precision::Auto`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }
}

impl Backend for OpenVinoBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_size(&self) -> (usize, usize) {
        self.input_hw
    }
    fn output_dims(&self) -> (usize, usize) {
        (self.queries, self.classes_plus_one)
    }
    /// As ONNX Runtime: a dynamic batch dimension runs any batch in one call.
    fn max_batch(&self) -> usize {
        match self.fixed_batch {
            None => usize::MAX,
            Some(_) => 1,
        }
    }
    fn details(&self) -> Option<String> {
        Some(self.details.clone())
    }

    fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        let n = input.check(self.input_hw, self.fixed_batch)?;
        if n > 1 && self.batch_one && self.batched.is_none() {
            // The model as exported (dynamic batch), compiled once for larger batches.
            let path = self.model_path.to_str().unwrap_or_default().to_string();
            let model = self.core.read_model_from_file(&path, "").map_err(ov_err("read model"))?;
            let mut compiled = self
                .core
                .compile_model(&model, DeviceType::Other(self.device.clone().into()))
                .map_err(|e| Error::Inference(format!("OpenVINO cannot compile {path} for batches: {e}")))?;
            let request = compiled.create_infer_request().map_err(ov_err("infer request"))?;
            self.batched = Some((request, compiled));
        }
        let request = match &mut self.batched {
            Some((r, _)) if n > 1 => r,
            _ => &mut self.request,
        };
        let dims: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        let shape = Shape::new(&dims).map_err(ov_err("input shape"))?;
        let mut tensor = Tensor::new(ElementType::F32, &shape).map_err(ov_err("input tensor"))?;
        tensor.get_data_mut::<f32>().map_err(ov_err("input tensor"))?.copy_from_slice(&input.data);
        request.set_tensor(INPUT_NAME, &tensor).map_err(ov_err("set input"))?;
        request.infer().map_err(ov_err("infer"))?;
        let output = |name: &str| -> Result<(Vec<i64>, Vec<f32>)> {
            let t = request.get_tensor(name).map_err(ov_err(name))?;
            let ty = t.get_element_type().map_err(ov_err(name))?;
            if ty != ElementType::F32 {
                return Err(Error::ModelContract(format!("output {name:?} is {ty}, not f32")));
            }
            let dims = t.get_shape().map_err(ov_err(name))?.get_dimensions().to_vec();
            Ok((dims, t.get_data::<f32>().map_err(ov_err(name))?.to_vec()))
        };
        let (cs, cls) = output(CLASS_OUTPUT)?;
        let (ms, msk) = output(MASK_OUTPUT)?;
        if cs.len() != 3 || ms.len() != 4 || cs[0] as usize != n || ms[0] as usize != n || ms[1] != cs[1] {
            return Err(Error::ModelContract(format!("unexpected output shapes {cs:?} and {ms:?}")));
        }
        Ok(Logits {
            batch: n,
            num_queries: cs[1] as usize,
            num_classes_plus_one: cs[2] as usize,
            mask_height: ms[2] as usize,
            mask_width: ms[3] as usize,
            class_logits: cls,
            mask_logits: msk,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_hint_names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("FP32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!("bfloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("f16".parse::<Precision>().unwrap_err().to_string().contains("auto, f32, bf16"));
        for h in PerformanceHint::ALL {
            assert_eq!(h.as_str().parse::<PerformanceHint>().unwrap(), h);
        }
        assert!("fast".parse::<PerformanceHint>().is_err());
        assert_eq!(Precision::from_hint("bf16"), Some(Precision::Bf16));
        assert_eq!(Precision::from_hint("f32"), Some(Precision::F32));
        assert_eq!(Precision::from_hint("f16"), None);
    }

    #[test]
    fn auto_picks_bf16_only_with_device_support_amx_on_the_cpu_and_the_cards_consent() {
        let with: Vec<String> = ["BF16", "FP32", "INT8"].map(String::from).to_vec();
        let without: Vec<String> = ["FP32", "INT8"].map(String::from).to_vec();
        let pick = |asked, caps: &[String], card| pick_precision(asked, "CPU", caps, card, true);
        assert_eq!(pick(Precision::Auto, &with, true).unwrap().0, Precision::Bf16);
        // A CPU with AVX-512-bf16 but no AMX: auto keeps f32 and says why; bf16 on request.
        let (p, why) = pick_precision(Precision::Auto, "CPU", &with, true, false).unwrap();
        assert_eq!(p, Precision::F32);
        assert!(why.contains("no AMX"), "{why}");
        assert_eq!(pick_precision(Precision::Bf16, "CPU", &with, true, false).unwrap().0, Precision::Bf16);
        // Another device: its BF16 capability is enough.
        assert_eq!(pick_precision(Precision::Auto, "GPU", &with, true, false).unwrap().0, Precision::Bf16);
        let (p, why) = pick(Precision::Auto, &with, false).unwrap();
        assert_eq!(p, Precision::F32);
        assert!(why.contains("\"bf16\": false"), "{why}");
        let (p, why) = pick(Precision::Auto, &without, true).unwrap();
        assert_eq!(p, Precision::F32);
        assert!(why.contains("no bfloat16"), "{why}");
        assert_eq!(pick(Precision::F32, &with, true).unwrap().0, Precision::F32);
        // An explicit bf16 runs against the card's advice, but never silently in f32.
        assert_eq!(pick(Precision::Bf16, &with, false).unwrap().0, Precision::Bf16);
        let e = pick(Precision::Bf16, &without, true).unwrap_err().to_string();
        assert!(e.contains("no bfloat16 support") && e.contains("AVX-512-bf16"), "{e}");
    }

    #[test]
    fn library_search_order() {
        let d = std::env::temp_dir().join(format!("segstream-ov-find-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        // A folder: the highest versioned library in it.
        for v in ["2541", "2641"] {
            std::fs::write(d.join(format!("libopenvino_c.so.{v}")), b"").unwrap();
        }
        assert_eq!(library_candidates(Some(d.clone().into())), vec![d.join("libopenvino_c.so.2641")]);
        // The plain name wins.
        std::fs::write(d.join("libopenvino_c.so"), b"").unwrap();
        assert_eq!(library_candidates(Some(d.clone().into())), vec![d.join("libopenvino_c.so")]);
        // A file is taken as it is, even when absent (the error names it).
        assert_eq!(library_candidates(Some("/nowhere/lib.so".into())), vec![PathBuf::from("/nowhere/lib.so")]);
        // Unset: the project folders, the current directory first.
        let v = library_candidates(None);
        assert!(v[0].starts_with(std::env::current_dir().unwrap().join(".openvino/lib")), "{v:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cache_folder_is_beside_the_model() {
        assert_eq!(openvino_cache_dir(Path::new("/m/x.onnx")), PathBuf::from("/m/x.openvino-cache"));
    }
}
