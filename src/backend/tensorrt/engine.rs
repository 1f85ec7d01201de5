//! Safe wrapper over the C shim: logging, engine builds, engines, execution contexts, and
//! the TensorRT [`Backend`].
//!
//! Zero-copy execution ([`ExecutionContext::enqueue`]) takes device pointers and a CUDA
//! stream. Two callers: the host path ([`HostRunner`]: [`Backend::infer`]), whose stream
//! and device buffers the shim allocates with the CUDA runtime, and the device path
//! ([`Backend::infer_device`], fed by the GPU stages of `src/cuda/`), which binds the
//! caller's buffers (the GPU preprocess' output, logits buffers of the GPU post-process)
//! and enqueues on the caller's stream, on the runner's execution context.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Once;
use std::time::SystemTime;

use super::cache::{self, FileLock, LoadedPlugins};
use super::contract::{self, DeviceIoPlan, EngineIo, IoTensor, ModelFile};
use super::ffi;
use super::header::{BuildRecord, EngineHeader, Expected, Gpu, TrtVersion, card_hash, file_sha256};
use super::options::{BatchProfile, BuildOptions, Precision, cached_engine_path, default_timing_cache};
use super::progress::{ProgressFn, ProgressState, progress_trampoline};
use super::{BuildEvent, LogLevel, log};
use crate::backend::onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
use crate::backend::{Backend, DeviceIo, InputTensor, Logits};
use crate::model::ModelCard;
use crate::{Error, Result};

const ERR_LEN: usize = 2048;
/// Start of the message of a build the compiled TensorRT cannot do (FP16 from an FP32
/// graph on TensorRT 11); `TrtBackend::open` then builds FP32.
const UNSUPPORTED: &str = "unsupported by TensorRT";
/// The message of a build cancelled by its progress callback (no fallback, no retry).
const CANCELLED: &str = "engine build cancelled";

fn is_cancelled(e: &Error) -> bool {
    matches!(e, Error::TensorRt(m) if m == CANCELLED)
}

/// Whether another source is worth a try after `e`: not after a cancel, nor after a
/// build the compiled TensorRT cannot do at all (`TrtBackend::open` handles that one).
fn worth_another_source(e: &Error) -> bool {
    !is_cancelled(e) && !matches!(e, Error::TensorRt(m) if m.starts_with(UNSUPPORTED))
}

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

/// Build number of the TensorRT library loaded at run time (`getInferLibBuildVersion`).
pub fn linked_build_version() -> u32 {
    // SAFETY: no arguments; the shim only reads TensorRT's version.
    unsafe { ffi::sstrt_linked_build_version() }.max(0) as u32
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

/// The plugin libraries this process has loaded (each once: TensorRT refuses to register
/// a library's plugins twice).
static PLUGINS: LoadedPlugins = LoadedPlugins::new();

/// Load TensorRT's plugin library (or `library`) into the plugin registry, once per
/// library and process.
pub fn load_plugins(library: Option<&Path>) -> Result<()> {
    install_logger();
    let lib = library.map(path_cstring).transpose()?;
    PLUGINS
        .ensure(library, || {
            let (rc, msg) = with_err(|e, l| {
                // SAFETY: `lib` is NUL-terminated or null; `e` holds `l` bytes.
                unsafe { ffi::sstrt_load_plugins(lib.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), e, l) }
            });
            check(rc, msg)
        })
        .map(|_| ())
}

/// Take ownership of a buffer the shim malloc'd: copy it out and free it.
///
/// # Safety
/// `p` is null or a buffer of `len` bytes from the shim's allocator, not used afterwards.
unsafe fn take_shim_buffer(p: *mut u8, len: usize) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `len` readable bytes at `p`.
    let v = unsafe { std::slice::from_raw_parts(p, len) }.to_vec();
    // SAFETY: from the shim's allocator, freed once.
    unsafe { ffi::sstrt_free(p as *mut c_void) };
    Some(v)
}

/// Merge two serialized timing caches with TensorRT; `None` when they do not combine.
fn combine_timing_caches(ours: &[u8], theirs: &[u8]) -> Option<Vec<u8>> {
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: both slices are valid for the call; the out-pointers are valid.
        unsafe {
            ffi::sstrt_timing_cache_combine(
                ours.as_ptr() as *const c_void,
                ours.len(),
                theirs.as_ptr() as *const c_void,
                theirs.len(),
                &mut out,
                &mut len,
                e,
                l,
            )
        }
    });
    if rc != ffi::OK {
        log(LogLevel::Warning, &format!("timing cache: {msg}; keeping this build's"));
        return None;
    }
    // SAFETY: on success `out` holds `len` bytes from the shim's allocator.
    unsafe { take_shim_buffer(out, len) }
}

/// Write this build's timing cache: under the cache file's lock, combined with whatever
/// another build wrote since this one read it (`started_from`).
fn store_timing_cache(path: &Path, started_from: Option<&[u8]>, ours: Vec<u8>) -> Result<()> {
    cache::merge_locked(path, |current| {
        Ok(Some(cache::timing_cache_to_write(started_from, current, ours, combine_timing_caches)))
    })
}

/// Build a plan (without header) from an ONNX file.
///
/// The plugin library must be loaded before (see [`load_plugins`]) when the ONNX file
/// holds plugin nodes. The timing cache `opts.timing_cache` is read before the build and
/// merged back under its lock after it.
pub fn build_plan(onnx: &Path, opts: &BuildOptions, progress: &mut ProgressFn<'_>) -> Result<Vec<u8>> {
    install_logger();
    set_device(opts.device)?;
    let onnx_c = path_cstring(onnx)?;
    let input = cstring(INPUT_NAME)?;
    let started_from: Option<Vec<u8>> = opts.timing_cache.as_deref().and_then(|p| std::fs::read(p).ok());
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
        use_timing_cache: opts.timing_cache.is_some() as i32,
        timing_cache: started_from.as_ref().map_or(std::ptr::null(), |b| b.as_ptr() as *const c_void),
        timing_cache_len: started_from.as_ref().map_or(0, |b| b.len()),
    };
    let state = ProgressState::new(progress);
    let mut plan: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    let mut cache_out: *mut u8 = std::ptr::null_mut();
    let mut cache_len = 0usize;
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: every pointer in `o` points into CStrings and a buffer alive until the
        // call returns; `state` outlives the call and its closure is only reached through
        // its Mutex (TensorRT may call the monitor from several threads); the out pointers
        // are valid.
        unsafe {
            ffi::sstrt_build(
                &o,
                Some(progress_trampoline),
                state.as_user(),
                &mut plan,
                &mut len,
                &mut cache_out,
                &mut cache_len,
                e,
                l,
            )
        }
    });
    // SAFETY: null, or (on success) a buffer of `cache_len` bytes from the shim's allocator.
    let updated_cache = unsafe { take_shim_buffer(cache_out, cache_len) };
    match rc {
        ffi::OK => {}
        ffi::CANCELLED => return Err(Error::TensorRt(CANCELLED.into())),
        ffi::UNSUPPORTED => return Err(Error::TensorRt(format!("{UNSUPPORTED} {}: {msg}", compiled_version()))),
        _ => return Err(Error::TensorRt(msg)),
    }
    // SAFETY: on success the shim returns a malloc'd buffer of `len` bytes.
    let v = unsafe { take_shim_buffer(plan, len) }.ok_or_else(|| Error::TensorRt("the shim returned no plan".into()))?;
    if let (Some(path), Some(updated)) = (opts.timing_cache.as_deref(), updated_cache) {
        // A cache that cannot be written costs the next build time, not this one its engine.
        if let Err(e) = store_timing_cache(path, started_from.as_deref(), updated) {
            log(LogLevel::Warning, &format!("cannot write the timing cache: {e}"));
        }
    }
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

    /// An execution context for zero-copy execution on device pointers. An engine may have
    /// several; each borrows the engine, which therefore outlives them.
    pub fn context(&self) -> Result<ExecutionContext<'_>> {
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
    _engine: PhantomData<&'e Engine>,
}

/// One tensor bound for [`ExecutionContext::enqueue`]: its name, the device address and
/// the size in bytes of the buffer there.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub name: &'a CStr,
    pub ptr: *mut c_void,
    pub bytes: usize,
}

impl Drop for ExecutionContext<'_> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sstrt_context_create and is freed once, before the
        // engine it borrows.
        unsafe { ffi::sstrt_context_free(self.ptr.as_ptr()) }
    }
}

impl ExecutionContext<'_> {
    /// Data type and shape of tensor `name` as the context resolves it now (after the
    /// input shape is set: outputs have their real batch, not the engine's -1).
    pub fn tensor(&self, name: &CStr) -> Result<(i32, Vec<i64>)> {
        // SAFETY: a live context, owned by `self`.
        unsafe { context_tensor(self.ptr, name) }
    }

    /// Zero-copy execution: set the input shape, check every binding against the shape
    /// the context resolves for it (a buffer too small for its tensor, or an address not
    /// aligned to [`contract::IO_ALIGNMENT`], is an error and nothing is enqueued), bind
    /// each tensor to its device pointer and `enqueueV3` on `stream`. Returns once the
    /// work is enqueued. Every I/O tensor of the engine must be bound.
    ///
    /// # Safety
    /// Every `ptr` must be device memory of the current device holding at least `bytes`
    /// bytes, aligned to 256 bytes (TensorRT's requirement for I/O addresses: `cudaMalloc`
    /// returns such addresses, a sub-buffer at an offset, such as one image of a batch,
    /// may not be; a misaligned one is refused with an error). `stream` must be a valid
    /// `cudaStream_t` of the current device (or null for the legacy default stream). All
    /// of them must stay valid until the stream has finished this work.
    pub unsafe fn enqueue(&mut self, input_dims: [i64; 4], bindings: &[Binding<'_>], stream: *mut c_void) -> Result<()> {
        // SAFETY: a live context owned by `self` (`&mut`: no other call on it); the
        // caller's guarantees are this function's.
        unsafe { context_enqueue(self.ptr, input_dims, bindings, stream) }
    }
}

/// [`ExecutionContext::tensor`] on a raw context.
///
/// # Safety
/// `ctx` is a live context.
unsafe fn context_tensor(ctx: NonNull<ffi::Context>, name: &CStr) -> Result<(i32, Vec<i64>)> {
    let (mut dtype, mut nb) = (0, 0);
    let mut dims = [0i64; ffi::MAX_DIMS];
    // SAFETY: a live context (caller), a NUL-terminated name, MAX_DIMS values of room.
    let rc = unsafe { ffi::sstrt_context_tensor(ctx.as_ptr(), name.as_ptr(), &mut dtype, &mut nb, dims.as_mut_ptr()) };
    if rc != ffi::OK {
        return Err(Error::InvalidArgument(format!("the engine has no I/O tensor {name:?}")));
    }
    Ok((dtype, dims[..(nb.max(0) as usize).min(ffi::MAX_DIMS)].to_vec()))
}

/// [`ExecutionContext::enqueue`] on a raw context.
///
/// # Safety
/// `ctx` is a live context that no other thread uses during the call; the bindings and
/// the stream as for [`ExecutionContext::enqueue`].
unsafe fn context_enqueue(ctx: NonNull<ffi::Context>, input_dims: [i64; 4], bindings: &[Binding<'_>], stream: *mut c_void) -> Result<()> {
    let input = cstring(INPUT_NAME)?;
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: a live context, a NUL-terminated name, 4 dims; `e` holds `l` bytes.
        unsafe { ffi::sstrt_context_set_input_shape(ctx.as_ptr(), input.as_ptr(), 4, input_dims.as_ptr(), e, l) }
    });
    check(rc, msg)?;
    for b in bindings {
        // SAFETY: a live context (caller).
        let (dtype, dims) = unsafe { context_tensor(ctx, b.name) }?;
        contract::check_binding(&b.name.to_string_lossy(), &dims, dtype, b.ptr as usize, b.bytes)?;
    }
    let names: Vec<*const c_char> = bindings.iter().map(|b| b.name.as_ptr()).collect();
    let ptrs: Vec<*mut c_void> = bindings.iter().map(|b| b.ptr).collect();
    let sizes: Vec<usize> = bindings.iter().map(|b| b.bytes).collect();
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: a live context; names/ptrs/sizes hold `bindings.len()` entries; the
        // caller guarantees the device pointers and the stream (the shim checks sizes
        // and alignment again).
        unsafe {
            ffi::sstrt_context_enqueue(
                ctx.as_ptr(),
                bindings.len() as i32,
                names.as_ptr(),
                ptrs.as_ptr(),
                sizes.as_ptr(),
                stream,
                e,
                l,
            )
        }
    });
    check(rc, msg)
}

/// Wait for everything enqueued on `stream` (a `cudaStream_t`; null = the legacy default
/// stream).
///
/// # Safety
/// `stream` is null or a live stream of the current device.
unsafe fn stream_synchronize(stream: *mut c_void) -> Result<()> {
    let (rc, msg) = with_err(|e, l| {
        // SAFETY: the caller guarantees the stream; `e` holds `l` bytes.
        unsafe { ffi::sstrt_stream_synchronize(stream, e, l) }
    });
    check(rc, msg)
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
    /// The CUDA device the engine and the runner live on.
    device: u32,
    /// Bindings of [`Backend::infer_device`]; `None` when the engine cannot run one f32
    /// image.
    device_plan: Option<DeviceIoPlan>,
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
    Ok(Expected {
        tensorrt: linked_version(),
        tensorrt_build: linked_build_version(),
        gpu: gpu(device)?,
        card_sha256: card_hash(card),
    })
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

/// Build an engine file from `onnx` for `card` and write it to `out` (through a unique
/// temporary file renamed when complete), holding `out`'s lock file for the whole build
/// so that two builds of one engine do not run at once. Returns the header written.
pub fn build_engine_file(
    onnx: &Path,
    card: &ModelCard,
    out: &Path,
    opts: &BuildOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<EngineHeader> {
    if !onnx.is_file() {
        return Err(Error::ModelNotFound(onnx.to_path_buf()));
    }
    let _lock = FileLock::acquire(&cache::lock_path(out))?;
    build_engine_file_locked(onnx, card, out, opts, progress)
}

/// A build's result before it is written.
struct Built {
    plan: Vec<u8>,
    plugin: bool,
    onnx_sha256: String,
    batch: BatchProfile,
}

/// [`build_engine_file`] with `out`'s lock held by the caller.
fn build_engine_file_locked(
    onnx: &Path,
    card: &ModelCard,
    out: &Path,
    opts: &BuildOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<EngineHeader> {
    let want = BuildRecord::for_build(onnx, opts);
    let mut sources = want.sources.clone();
    // The plugin export first, when preferred and present, if the plugin library loads;
    // the portable file is the fallback (also when the plugin export fails to parse,
    // build or load: `build_with_fallback`).
    if sources.len() > 1 {
        match load_plugins(opts.plugin_library.as_deref()) {
            Ok(()) => log(LogLevel::Info, &format!("using {} (deformable attention as TensorRT's plugin)", sources[0].display())),
            Err(e) => {
                log(
                    LogLevel::Warning,
                    &format!("{} found but the plugin cannot be loaded ({e}); building from {}", sources[0].display(), onnx.display()),
                );
                sources.remove(0);
            }
        }
    }
    let mut opts = opts.clone();
    if opts.timing_cache.is_none() {
        opts.timing_cache = Some(default_timing_cache(out));
    }
    let exp = expected(card, opts.device)?;
    let (built, source) = cache::build_with_fallback(
        &sources,
        |source| {
            let plugin = contract::onnx_uses_plugin(source)?;
            if plugin {
                load_plugins(opts.plugin_library.as_deref())?;
            }
            let onnx_sha256 = file_sha256(source)?;
            let plan = build_plan(source, &opts, &mut *progress)?;
            // Check the contract before writing anything (on the device it was built for),
            // and record the batch range the engine really has (a fixed-batch export
            // ignores the profile).
            set_device(opts.device)?;
            let engine = Engine::load(&plan)?;
            let io = contract::check_io(&engine.io())?;
            let batch = match (io.fixed_batch, engine.batch_range()) {
                (Some(b), _) => BatchProfile { min: b as u32, opt: b as u32, max: b as u32 },
                (None, Some((a, b, c))) => BatchProfile { min: a as u32, opt: b as u32, max: c as u32 },
                (None, None) => opts.batch,
            };
            Ok(Built { plan, plugin, onnx_sha256, batch })
        },
        worth_another_source,
        |w| log(LogLevel::Warning, w),
    )?;
    let header = EngineHeader {
        tensorrt: exp.tensorrt,
        tensorrt_build: exp.tensorrt_build,
        gpu: exp.gpu,
        card_sha256: exp.card_sha256,
        model: card.name.clone(),
        precision: opts.precision,
        batch: built.batch,
        input: (card.input.height, card.input.width),
        plugin: built.plugin,
        source: source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        onnx_sha256: built.onnx_sha256,
        requested_batch: want.batch,
        plugin_library: want.plugin_library,
        segstream: env!("CARGO_PKG_VERSION").into(),
        plan_len: built.plan.len() as u64,
    };
    cache::write_atomic(out, &header.encode(&built.plan))?;
    Ok(header)
}

/// Size and modification time of a file, to recognise "the same file" later.
type Stamp = (u64, SystemTime);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Whether the engine file at `cached` can be reused as is (header decodes, matches this
/// TensorRT build, GPU and card, and would be built the same way now).
fn reusable(cached: &Path, exp: &Expected, want: &BuildRecord) -> Result<()> {
    let bytes = std::fs::read(cached).map_err(|e| Error::io(cached, e))?;
    let (h, _) = EngineHeader::decode(&bytes, cached)?;
    h.check(exp, cached)?;
    h.check_build(want, cached)
}

/// The engine cached beside `onnx` for `opts.precision`, (re)built when missing or stale.
/// Concurrent callers (several pipelines on one model) build it once: the others wait on
/// its lock file and reuse it. `refused`: the stamp of a cached file that TensorRT failed
/// to load; that file is rebuilt even though its header matches.
fn cached_or_built(onnx: &Path, card: &ModelCard, opts: &BuildOptions, refused: Option<Stamp>) -> Result<PathBuf> {
    let cached = cached_engine_path(onnx, opts.precision);
    let want = BuildRecord::for_build(onnx, opts);
    let exp = expected(card, opts.device)?;
    let reason: Cell<Option<String>> = Cell::new(None);
    let fresh = || {
        if !cached.exists() {
            reason.set(Some("no engine built yet".into()));
            return false;
        }
        if refused.is_some() && stamp(&cached) == refused {
            reason.set(Some("TensorRT could not load the cached engine".into()));
            return false;
        }
        match reusable(&cached, &exp, &want) {
            Ok(()) => true,
            Err(e) => {
                reason.set(Some(e.to_string()));
                false
            }
        }
    };
    cache::build_once(&cache::lock_path(&cached), fresh, || {
        if let Some(r) = reason.take() {
            log(LogLevel::Warning, &format!("building {}: {r}", cached.display()));
        }
        build_engine_file_locked(onnx, card, &cached, opts, &mut stderr_progress).map(|_| ())
    })?;
    Ok(cached)
}

/// Read, check and deserialize an engine file; check its I/O contract.
fn load_engine_file(path: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<(EngineHeader, Engine, EngineIo)> {
    if !path.is_file() {
        return Err(Error::ModelNotFound(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (header, plan) = EngineHeader::decode(&bytes, path)?;
    header.check(&expected(card, opts.device)?, path)?;
    set_device(opts.device)?;
    if header.plugin {
        load_plugins(opts.plugin_library.as_deref().or(header.plugin_library.as_deref().map(Path::new)))?;
    }
    let engine = Engine::load(plan)?;
    let io = contract::check_io(&engine.io())?;
    Ok((header, engine, io))
}

/// Open the engine cached beside `onnx`, building it when needed; a cached engine that
/// matches but does not load (TensorRT refuses the plan) is rebuilt once.
fn open_cached(onnx: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<(PathBuf, EngineHeader, Engine, EngineIo)> {
    let path = cached_or_built(onnx, card, opts, None)?;
    let (h, e, io) = cache::load_or_rebuild_once(
        || load_engine_file(&path, card, opts),
        |err| {
            log(LogLevel::Warning, &format!("{} does not load ({err}); rebuilding it once", path.display()));
            cached_or_built(onnx, card, opts, Some(stamp(&path).unwrap_or((0, SystemTime::UNIX_EPOCH)))).map(|_| ())
        },
    )?;
    Ok((path, h, e, io))
}

impl TrtBackend {
    /// Open `model` (an engine file, or an ONNX file whose engine is built and cached
    /// beside it on first use) for `card`.
    pub fn open(model: &Path, card: &ModelCard, opts: &BuildOptions) -> Result<TrtBackend> {
        install_logger();
        let (path, header, engine, io) = match ModelFile::classify(model)? {
            ModelFile::Engine(p) => {
                let (h, e, io) = load_engine_file(&p, card, opts)?;
                (p, h, e, io)
            }
            ModelFile::Onnx(onnx) => {
                if !onnx.is_file() {
                    return Err(Error::ModelNotFound(onnx));
                }
                match open_cached(&onnx, card, opts) {
                    // TensorRT 11 and an FP32 graph: no FP16 without an FP16 export.
                    Err(Error::TensorRt(m)) if opts.precision == Precision::Fp16 && m.starts_with(UNSUPPORTED) => {
                        log(LogLevel::Warning, &format!("{m}; building an FP32 engine instead"));
                        let fp32 = BuildOptions { precision: Precision::Fp32, ..opts.clone() };
                        open_cached(&onnx, card, &fp32)?
                    }
                    other => other?,
                }
            }
        };
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
        let device_plan = contract::device_io_plan(&engine.io(), &io, min_batch, max_batch);
        if device_plan.is_none() {
            log(
                LogLevel::Info,
                &format!("{}: no device path (batch {min_batch}..={max_batch}); frames on the GPU go through host copies", path.display()),
            );
        }
        Ok(TrtBackend {
            runner,
            engine,
            name: format!("tensorrt-{}", header.precision),
            io,
            max_batch,
            min_batch,
            device: opts.device,
            device_plan,
            header,
            path,
        })
    }

    pub fn header(&self) -> &EngineHeader {
        &self.header
    }

    /// [`Backend::infer_device`] once the plan and the device are known to fit: on the
    /// host runner's execution context (no second copy of the activation memory), on the
    /// caller's stream, synchronised before returning.
    ///
    /// # Safety
    /// As [`Backend::infer_device`], with `io.device` this backend's device.
    unsafe fn run_device(&mut self, plan: &DeviceIoPlan, io: &DeviceIo) -> Result<()> {
        // The primary context of the engine's device: the caller's (same device).
        set_device(self.device)?;
        // SAFETY: a live runner; the context is borrowed for this call, during which
        // nothing else uses the runner (`&mut self`), and its work is finished (the stream
        // synchronised below) before the runner's next use.
        let ctx = unsafe { ffi::sstrt_host_runner_context(self.runner.ptr.as_ptr()) };
        let ctx = NonNull::new(ctx).ok_or_else(|| Error::TensorRt("the host runner has no execution context".into()))?;
        let names = plan.tensors.map(|(n, _)| cstring(n));
        let [Ok(input), Ok(class), Ok(mask)] = &names else {
            return Err(Error::TensorRt("an I/O tensor name holds a NUL byte".into()));
        };
        let [(_, input_bytes), (_, class_bytes), (_, mask_bytes)] = plan.tensors;
        let bindings = [
            Binding { name: input, ptr: io.input as *mut c_void, bytes: input_bytes },
            Binding { name: class, ptr: io.class_logits as *mut c_void, bytes: class_bytes },
            Binding { name: mask, ptr: io.mask_logits as *mut c_void, bytes: mask_bytes },
        ];
        // SAFETY: a live context used by this call only; the caller guarantees the
        // addresses (device memory of this device's primary context, current, sizes of a
        // batch-1 f32 image, 256-byte aligned) and the stream.
        let enqueued = unsafe { context_enqueue(ctx, plan.input_dims, &bindings, io.stream) };
        // Synchronised even when the enqueue failed: whatever part of it reached the
        // stream is finished before the caller may free the buffers.
        // SAFETY: the caller's stream, of the current device.
        let synced = unsafe { stream_synchronize(io.stream) };
        enqueued?;
        synced
    }

    /// The engine, e.g. for an execution context of the device path. Shared only: the
    /// host runner's context lives on it, so it cannot be replaced.
    pub fn engine(&self) -> &Engine {
        &self.engine
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

    /// Binds the caller's device buffers and runs `enqueueV3` on the caller's stream
    /// (the host runner's execution context, shared with [`Backend::infer`]), then
    /// synchronises that stream. `None` when the engine cannot run one f32 image (see
    /// [`contract::device_io_plan`]) or `io` is on another device than the engine.
    unsafe fn infer_device(&mut self, io: &DeviceIo) -> Option<Result<()>> {
        let plan = self.device_plan?;
        if io.device != self.device as usize {
            return None;
        }
        // SAFETY: the caller's guarantees (Backend::infer_device), and `io.device` is ours.
        let r = unsafe { self.run_device(&plan, io) };
        Some(r.map_err(|e| Error::Inference(format!("TensorRT on device buffers ({}): {e}", self.path.display()))))
    }
}
