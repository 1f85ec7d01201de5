//! Safe wrapper over the C shim: logging, engine builds, engines, execution contexts, and
//! the TensorRT [`Backend`].
//!
//! Zero-copy execution ([`ExecutionContext::enqueue`]) takes device pointers and a CUDA
//! stream. Until the GPU path (`src/cuda/`, feature `cuda`) lands, the only caller is the
//! host path ([`HostRunner`]), whose stream and device buffers the shim allocates with the
//! CUDA runtime; once it lands, frames preprocessed on the device are bound directly and
//! buffers and stream come from there.

use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Once;

use super::contract::{self, EngineIo, IoTensor, ModelFile};
use super::ffi;
use super::header::{EngineHeader, Expected, Gpu, TrtVersion, card_hash};
use super::options::{BatchProfile, BuildOptions, Precision, cached_engine_path, default_timing_cache};
use super::{BuildEvent, LogLevel, log};
use crate::backend::onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
use crate::backend::{Backend, InputTensor, Logits};
use crate::model::ModelCard;
use crate::{Error, Result};

const ERR_LEN: usize = 2048;
/// Start of the message of a build the compiled TensorRT cannot do (FP16 from an FP32
/// graph on TensorRT 11); `TrtBackend::open` then builds FP32.
const UNSUPPORTED: &str = "unsupported by TensorRT";

/// Run a shim call that reports failures through an error buffer.
fn with_err<T>(f: impl FnOnce(*mut c_char, usize) -> T) -> (T, String) {
    let mut buf = vec![0 as c_char; ERR_LEN];
    let r = f(buf.as_mut_ptr(), ERR_LEN);
    // SAFETY: the buffer is NUL-initialized and the shim writes at most ERR_LEN - 1 bytes
    // plus a NUL, so it always holds a NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    (r, msg)
}

fn check(rc: i32, msg: String) -> Result<()> {
    if rc == ffi::OK { Ok(()) } else { Err(Error::TensorRt(if msg.is_empty() { format!("error code {rc}") } else { msg })) }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{s:?} contains a NUL byte")))
}

fn path_cstring(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::InvalidArgument(format!("{} contains a NUL byte", p.display())))
}

/// TensorRT's log callback (installed by [`install_logger`]): to [`super::log`].
unsafe extern "C" fn log_trampoline(_user: *mut c_void, severity: i32, msg: *const c_char) {
    // No panic may unwind into C++: catch it and drop the message.
    let _ = catch_unwind(|| {
        if msg.is_null() {
            return;
        }
        // SAFETY: the shim passes a NUL-terminated string valid for this call.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        let level = match severity {
            0 | 1 => LogLevel::Error,
            2 => LogLevel::Warning,
            3 => LogLevel::Info,
            _ => LogLevel::Verbose,
        };
        log(level, &text);
    });
}

/// Route TensorRT's logger to segstream's log (see [`super::log`]); idempotent.
pub fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the trampoline is a plain function valid for the life of the process and
        // takes no user data.
        unsafe { ffi::sstrt_set_logger(Some(log_trampoline), std::ptr::null_mut()) }
    });
}

/// The TensorRT version the shim was compiled against.
pub fn compiled_version() -> TrtVersion {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { ffi::sstrt_compiled_version(&mut a, &mut b, &mut c) };
    TrtVersion(a as u32, b as u32, c as u32)
}

/// The version of the TensorRT library loaded at run time (what plans must match).
pub fn linked_version() -> TrtVersion {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { ffi::sstrt_linked_version(&mut a, &mut b, &mut c) };
    TrtVersion(a as u32, b as u32, c as u32)
}

/// Name and compute capability of CUDA device `device`.
pub fn gpu(device: u32) -> Result<Gpu> {
    let mut name = vec![0 as c_char; 256];
    let (mut maj, mut min) = (0, 0);
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: `name` holds 256 bytes, the out-pointers are valid, `e` holds `l` bytes.
        unsafe { ffi::sstrt_device_info(device as i32, name.as_mut_ptr(), name.len(), &mut maj, &mut min, e, l) }
    });
    check(rc, msg)?;
    // SAFETY: the shim wrote a NUL-terminated name into the zeroed buffer.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    Ok(Gpu { name, compute_capability: (maj as u32, min as u32) })
}

/// Make CUDA device `device` current on the calling thread.
pub fn set_device(device: u32) -> Result<()> {
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: `e` holds `l` bytes.
        unsafe { ffi::sstrt_set_device(device as i32, e, l) }
    });
    check(rc, msg)
}

/// Load TensorRT's plugin library (or `library`) into the plugin registry.
pub fn load_plugins(library: Option<&Path>) -> Result<()> {
    install_logger();
    let lib = library.map(path_cstring).transpose()?;
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: `lib` is NUL-terminated or null; `e` holds `l` bytes.
        unsafe { ffi::sstrt_load_plugins(lib.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), e, l) }
    });
    check(rc, msg)
}

struct ProgressState<'a> {
    f: &'a mut dyn FnMut(&BuildEvent<'_>) -> bool,
}

/// TensorRT's progress monitor callback: to the closure given to [`build_plan`]; returns
/// non-zero to cancel.
unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    parent: *const c_char,
    step: i32,
    nb_steps: i32,
) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user` is the `ProgressState` that `build_plan` keeps alive for the whole
        // `sstrt_build` call, and TensorRT calls the monitor from the building thread.
        let state = unsafe { &mut *(user as *mut ProgressState<'_>) };
        let s = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: the shim passes NUL-terminated strings valid for this call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let phase = s(phase);
        let ev = match event {
            ffi::PHASE_START => BuildEvent::PhaseStart { phase: &phase, parent: &s(parent), steps: nb_steps.max(0) as u32 },
            ffi::PHASE_STEP => BuildEvent::Step { phase: &phase, step: step.max(0) as u32 },
            ffi::PHASE_FINISH => BuildEvent::PhaseFinish { phase: &phase },
            _ => return true,
        };
        (state.f)(&ev)
    }));
    match r {
        Ok(true) => 0,
        // A `false` answer or a panic in the callback cancels the build.
        _ => 1,
    }
}

/// Build a plan (without header) from an ONNX file.
pub fn build_plan(
    onnx: &Path,
    opts: &BuildOptions,
    plugin: bool,
    progress: &mut dyn FnMut(&BuildEvent<'_>) -> bool,
) -> Result<Vec<u8>> {
    install_logger();
    set_device(opts.device)?;
    let onnx_c = path_cstring(onnx)?;
    let input = cstring(INPUT_NAME)?;
    let cache = opts.timing_cache.as_deref().map(path_cstring).transpose()?;
    let plugin_lib = opts.plugin_library.as_deref().map(path_cstring).transpose()?;
    let o = ffi::BuildOptions {
        onnx_path: onnx_c.as_ptr(),
        precision: match opts.precision {
            Precision::Fp32 => 0,
            Precision::Fp16 => 1,
        },
        workspace_bytes: opts.workspace_bytes,
        input_name: input.as_ptr(),
        batch_min: opts.batch.min as i32,
        batch_opt: opts.batch.opt as i32,
        batch_max: opts.batch.max as i32,
        timing_cache_path: cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        load_plugins: plugin as i32,
        plugin_library: plugin_lib.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
    };
    let mut state = ProgressState { f: progress };
    let mut plan: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: every pointer in `o` points into CStrings alive until the call returns;
        // `state` outlives the call and is only used from the calling thread; the out
        // pointers are valid.
        unsafe {
            ffi::sstrt_build(
                &o,
                Some(progress_trampoline),
                &mut state as *mut ProgressState<'_> as *mut c_void,
                &mut plan,
                &mut len,
                e,
                l,
            )
        }
    });
    match rc {
        ffi::OK => {}
        ffi::CANCELLED => return Err(Error::TensorRt("engine build cancelled".into())),
        ffi::UNSUPPORTED => return Err(Error::TensorRt(format!("{UNSUPPORTED} {}: {msg}", compiled_version()))),
        _ => return Err(Error::TensorRt(msg)),
    }
    // SAFETY: on success the shim returns a malloc'd buffer of `len` bytes; it is copied
    // and then released with the shim's free.
    let v = unsafe { std::slice::from_raw_parts(plan, len) }.to_vec();
    // SAFETY: `plan` came from the shim's allocator and is freed once.
    unsafe { ffi::sstrt_free(plan as *mut c_void) };
    Ok(v)
}

/// A deserialized engine.
pub struct Engine {
    ptr: NonNull<ffi::Engine>,
}

// SAFETY: an ICudaEngine (with the runtime that owns it) may be used from any thread;
// segstream uses it from one thread at a time (`&mut` for execution).
unsafe impl Send for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sstrt_engine_load and is freed once.
        unsafe { ffi::sstrt_engine_free(self.ptr.as_ptr()) }
    }
}

impl Engine {
    /// Deserialize a plan (without segstream's header).
    pub fn load(plan: &[u8]) -> Result<Engine> {
        install_logger();
        let (p, msg) = with_err(|e, l| {
            // SAFETY: `plan` is a valid slice for the call; `e` holds `l` bytes.
            unsafe { ffi::sstrt_engine_load(plan.as_ptr() as *const c_void, plan.len(), e, l) }
        });
        NonNull::new(p).map(|ptr| Engine { ptr }).ok_or(Error::TensorRt(msg))
    }

    /// The engine's I/O tensors.
    pub fn io(&self) -> Vec<IoTensor> {
        // SAFETY: a live engine.
        let n = unsafe { ffi::sstrt_engine_nb_io(self.ptr.as_ptr()) };
        let mut v = Vec::new();
        for i in 0..n {
            let mut name = vec![0 as c_char; 512];
            let (mut is_input, mut dtype, mut nb) = (0, 0, 0);
            let mut dims = [0i64; ffi::MAX_DIMS];
            // SAFETY: a live engine; `name` holds 512 bytes; `dims` holds MAX_DIMS values.
            let rc = unsafe {
                ffi::sstrt_engine_io(
                    self.ptr.as_ptr(),
                    i,
                    name.as_mut_ptr(),
                    name.len(),
                    &mut is_input,
                    &mut dtype,
                    &mut nb,
                    dims.as_mut_ptr(),
                )
            };
            if rc != ffi::OK {
                continue;
            }
            // SAFETY: the shim wrote a NUL-terminated name into the zeroed buffer.
            let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
            let nb = (nb.max(0) as usize).min(ffi::MAX_DIMS);
            v.push(IoTensor { name, is_input: is_input != 0, dtype, dims: dims[..nb].to_vec() });
        }
        v
    }

    /// Batch range `(min, opt, max)` of profile 0 for the input, when the batch is dynamic.
    pub fn batch_range(&self) -> Option<(usize, usize, usize)> {
        let name = CString::new(INPUT_NAME).ok()?;
        let (mut min, mut opt, mut max) = ([0i64; ffi::MAX_DIMS], [0i64; ffi::MAX_DIMS], [0i64; ffi::MAX_DIMS]);
        let mut nb = 0;
        // SAFETY: a live engine, a NUL-terminated name, three MAX_DIMS buffers.
        let rc = unsafe {
            ffi::sstrt_engine_profile(self.ptr.as_ptr(), name.as_ptr(), &mut nb, min.as_mut_ptr(), opt.as_mut_ptr(), max.as_mut_ptr())
        };
        (rc == ffi::OK && nb >= 1 && min[0] > 0).then(|| (min[0] as usize, opt[0] as usize, max[0] as usize))
    }

    /// An execution context for zero-copy execution on device pointers.
    pub fn context(&mut self) -> Result<ExecutionContext<'_>> {
        let (p, msg) = with_err(|e, l| {
            // SAFETY: a live engine; `e` holds `l` bytes.
            unsafe { ffi::sstrt_context_create(self.ptr.as_ptr(), e, l) }
        });
        NonNull::new(p).map(|ptr| ExecutionContext { ptr, _engine: PhantomData }).ok_or(Error::TensorRt(msg))
    }
}

/// An execution context borrowing its engine.
pub struct ExecutionContext<'e> {
    ptr: NonNull<ffi::Context>,
    _engine: PhantomData<&'e mut Engine>,
}

impl Drop for ExecutionContext<'_> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sstrt_context_create and is freed once, before the
        // engine it borrows.
        unsafe { ffi::sstrt_context_free(self.ptr.as_ptr()) }
    }
}

impl ExecutionContext<'_> {
    /// Zero-copy execution: set the input shape, bind each named tensor to its device
    /// pointer and `enqueueV3` on `stream`. Returns once the work is enqueued.
    ///
    /// # Safety
    /// Every pointer must be device memory large enough for its tensor at `input_dims`,
    /// `stream` a valid `cudaStream_t` of the current device (or null for the legacy
    /// default stream), and all of them must stay valid until the stream has finished
    /// this work.
    pub unsafe fn enqueue(&mut self, input_dims: [i64; 4], bindings: &[(&CStr, *mut c_void)], stream: *mut c_void) -> Result<()> {
        let input = cstring(INPUT_NAME)?;
        let names: Vec<*const c_char> = bindings.iter().map(|(n, _)| n.as_ptr()).collect();
        let ptrs: Vec<*mut c_void> = bindings.iter().map(|(_, p)| *p).collect();
        let (rc, msg) = with_err(|e, l| {
            // SAFETY: a live context; names/ptrs hold `bindings.len()` entries; the caller
            // guarantees the device pointers and the stream.
            unsafe {
                ffi::sstrt_context_enqueue(
                    self.ptr.as_ptr(),
                    input.as_ptr(),
                    4,
                    input_dims.as_ptr(),
                    bindings.len() as i32,
                    names.as_ptr(),
                    ptrs.as_ptr(),
                    stream,
                    e,
                    l,
                )
            }
        });
        check(rc, msg)
    }
}

/// Host path: the shim's own stream and device buffers for up to `max_batch` images.
struct HostRunner {
    ptr: NonNull<ffi::HostRunner>,
}

// SAFETY: the runner (context, stream, buffers) is used from one thread at a time
// (`&mut self` in `infer`); CUDA objects are not tied to the creating thread.
unsafe impl Send for HostRunner {}

impl Drop for HostRunner {
    fn drop(&mut self) {
        // SAFETY: created by sstrt_host_runner_create, freed once (before the engine: see
        // the field order of `TrtBackend`).
        unsafe { ffi::sstrt_host_runner_free(self.ptr.as_ptr()) }
    }
}

/// The native TensorRT backend.
pub struct TrtBackend {
    // Field order matters: the runner (with its context) is dropped before the engine.
    runner: HostRunner,
    engine: Engine,
    name: String,
    io: EngineIo,
    max_batch: usize,
    min_batch: usize,
    header: EngineHeader,
    path: PathBuf,
}

impl std::fmt::Debug for TrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrtBackend").field("engine", &self.path).field("io", &self.io).finish()
    }
}

/// What the running system says an engine must match.
pub fn expected(card: &ModelCard, device: u32) -> Result<Expected> {
    Ok(Expected { tensorrt: linked_version(), gpu: gpu(device)?, card_sha256: card_hash(card) })
}

/// Print build progress on stderr (the default when no callback is given).
pub fn stderr_progress(ev: &BuildEvent<'_>) -> bool {
    match ev {
        BuildEvent::PhaseStart { phase, parent: "", steps } => {
            eprintln!("segstream: building TensorRT engine: {phase} ({steps} steps)")
        }
        BuildEvent::PhaseFinish { phase } => log(LogLevel::Info, &format!("engine build: {phase} done")),
        _ => {}
    }
    true
}

/// Build an engine file from `onnx` for `card` and write it to `out` (through a temporary
/// file renamed when complete). Returns the header written.
pub fn build_engine_file(
    onnx: &Path,
    card: &ModelCard,
    out: &Path,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&BuildEvent<'_>) -> bool,
) -> Result<EngineHeader> {
    if !onnx.is_file() {
        return Err(Error::ModelNotFound(onnx.to_path_buf()));
    }
    // The deformable-attention plugin export beside the portable one is preferred when
    // TensorRT's plugin library loads; the portable file is the fallback.
    let mut source = onnx.to_path_buf();
    if opts.prefer_plugin_model
        && let Some(v) = contract::plugin_variant(onnx)
    {
        match load_plugins(opts.plugin_library.as_deref()) {
            Ok(()) => {
                log(LogLevel::Info, &format!("using {} (deformable attention as TensorRT's plugin)", v.display()));
                source = v;
            }
            Err(e) => log(
                LogLevel::Warning,
                &format!("{} found but the plugin cannot be loaded ({e}); building from {}", v.display(), onnx.display()),
            ),
        }
    }
    let plugin = contract::onnx_uses_plugin(&source)?;
    let mut opts = opts.clone();
    if opts.timing_cache.is_none() {
        opts.timing_cache = Some(default_timing_cache(out));
    }
    let exp = expected(card, opts.device)?;
    let plan = build_plan(&source, &opts, plugin, progress)?;
    let header = EngineHeader {
        tensorrt: exp.tensorrt,
        gpu: exp.gpu,
        card_sha256: exp.card_sha256,
        model: card.name.clone(),
        precision: opts.precision,
        batch: opts.batch,
        input: (card.input.height, card.input.width),
        plugin,
        source: source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        segstream: env!("CARGO_PKG_VERSION").into(),
        plan_len: plan.len() as u64,
    };
    // Check the contract before writing anything (on the device it was built for), and
    // record the batch range the engine really has (a fixed-batch export ignores the profile).
    set_device(opts.device)?;
    let engine = Engine::load(&plan)?;
    let io = contract::check_io(&engine.io())?;
    let mut header = header;
    header.batch = match (io.fixed_batch, engine.batch_range()) {
        (Some(b), _) => BatchProfile { min: b as u32, opt: b as u32, max: b as u32 },
        (None, Some((a, b, c))) => BatchProfile { min: a as u32, opt: b as u32, max: c as u32 },
        (None, None) => header.batch,
    };
    drop(engine);
    let bytes = header.encode(&plan);
    let tmp = out.with_extension("engine.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(header)
}

/// The engine cached beside `onnx` for `opts.precision`, (re)built when missing or stale.
fn cached_or_built(onnx: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<PathBuf> {
    let cached = cached_engine_path(onnx, opts.precision);
    let usable = match std::fs::read(&cached) {
        Ok(bytes) => match EngineHeader::decode(&bytes, &cached).and_then(|(h, _)| h.check(&expected(card, opts.device)?, &cached)) {
            Ok(()) => true,
            Err(e) => {
                log(LogLevel::Warning, &format!("rebuilding: {e}"));
                false
            }
        },
        Err(_) => false,
    };
    if !usable {
        build_engine_file(onnx, card, &cached, opts, &mut stderr_progress)?;
    }
    Ok(cached)
}

impl TrtBackend {
    /// Open `model` (an engine file, or an ONNX file whose engine is built and cached
    /// beside it on first use) for `card`.
    pub fn open(model: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<TrtBackend> {
        install_logger();
        let path = match ModelFile::classify(model)? {
            ModelFile::Engine(p) => p,
            ModelFile::Onnx(onnx) => {
                if !onnx.is_file() {
                    return Err(Error::ModelNotFound(onnx));
                }
                match cached_or_built(&onnx, card, opts) {
                    // TensorRT 11 and an FP32 graph: no FP16 without an FP16 export.
                    Err(Error::TensorRt(m)) if opts.precision == Precision::Fp16 && m.starts_with(UNSUPPORTED) => {
                        log(LogLevel::Warning, &format!("{m}; building an FP32 engine instead"));
                        let fp32 = BuildOptions { precision: Precision::Fp32, ..opts.clone() };
                        cached_or_built(&onnx, card, &fp32)?
                    }
                    other => other?,
                }
            }
        };
        if !path.is_file() {
            return Err(Error::ModelNotFound(path));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (header, plan) = EngineHeader::decode(&bytes, &path)?;
        header.check(&expected(card, opts.device)?, &path)?;
        set_device(opts.device)?;
        if header.plugin {
            load_plugins(opts.plugin_library.as_deref())?;
        }
        let engine = Engine::load(plan)?;
        let io = contract::check_io(&engine.io())?;
        let (min_batch, max_batch) = match io.fixed_batch {
            Some(b) => (b, b),
            None => engine.batch_range().map(|(a, _, c)| (a, c)).unwrap_or((1, 1)),
        };
        let (h, w) = io.input_hw;
        let (mh, mw) = io.mask_hw;
        let names = [cstring(INPUT_NAME)?, cstring(CLASS_OUTPUT)?, cstring(MASK_OUTPUT)?];
        let (p, msg) = with_err(|e, l| {
            // SAFETY: a live engine; NUL-terminated names; `e` holds `l` bytes.
            unsafe {
                ffi::sstrt_host_runner_create(
                    engine.ptr.as_ptr(),
                    names[0].as_ptr(),
                    names[1].as_ptr(),
                    names[2].as_ptr(),
                    max_batch as i32,
                    3 * h * w,
                    io.queries * io.classes_plus_one,
                    io.queries * mh * mw,
                    e,
                    l,
                )
            }
        });
        let runner = NonNull::new(p).map(|ptr| HostRunner { ptr }).ok_or(Error::TensorRt(msg))?;
        Ok(TrtBackend {
            runner,
            engine,
            name: format!("tensorrt-{}", header.precision),
            io,
            max_batch,
            min_batch,
            header,
            path,
        })
    }

    pub fn header(&self) -> &EngineHeader {
        &self.header
    }

    /// The engine, e.g. for an execution context of the device path.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

impl Backend for TrtBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_size(&self) -> (usize, usize) {
        self.io.input_hw
    }
    fn output_dims(&self) -> (usize, usize) {
        (self.io.queries, self.io.classes_plus_one)
    }
    fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        let [n, c, h, w] = input.shape;
        if c != 3 || (h, w) != self.io.input_hw {
            return Err(Error::InvalidArgument(format!(
                "input tensor is {:?}, the engine takes [N,3,{},{}]",
                input.shape, self.io.input_hw.0, self.io.input_hw.1
            )));
        }
        if n < self.min_batch || n > self.max_batch {
            return Err(Error::InvalidArgument(format!(
                "batch {n} is outside the engine's batch range {}..={}",
                self.min_batch, self.max_batch
            )));
        }
        if input.data.len() != n * c * h * w {
            return Err(Error::InvalidArgument(format!("input tensor holds {} values, shape needs {}", input.data.len(), n * c * h * w)));
        }
        let (q, k1) = (self.io.queries, self.io.classes_plus_one);
        let (mh, mw) = self.io.mask_hw;
        let mut class_logits = vec![0f32; n * q * k1];
        let mut mask_logits = vec![0f32; n * q * mh * mw];
        let (rc, msg) = with_err(|e, l| {
            // SAFETY: a live runner with buffers for max_batch >= n images; the host slices
            // hold exactly n images of input and outputs; `e` holds `l` bytes.
            unsafe {
                ffi::sstrt_host_runner_infer(
                    self.runner.ptr.as_ptr(),
                    input.data.as_ptr(),
                    n as i32,
                    c as i32,
                    h as i32,
                    w as i32,
                    class_logits.as_mut_ptr(),
                    mask_logits.as_mut_ptr(),
                    e,
                    l,
                )
            }
        });
        check(rc, msg).map_err(|e| Error::Inference(e.to_string()))?;
        Ok(Logits { batch: n, num_queries: q, num_classes_plus_one: k1, mask_height: mh, mask_width: mw, class_logits, mask_logits })
    }
}
