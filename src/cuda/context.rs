//! The CUDA context / stream owner and the NVRTC module cache.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{self as cu, DevicePtr, DevicePtrMut};
use cudarc::nvrtc;

use crate::{Error, Result};

/// A CUDA C source compiled at run time: its name (the cache key) and text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelSource {
    pub name: &'static str,
    pub source: &'static str,
}

pub(crate) const PREPROCESS: KernelSource = KernelSource { name: "preprocess", source: include_str!("kernels/preprocess.cu") };
pub(crate) const PANOPTIC: KernelSource = KernelSource { name: "panoptic", source: include_str!("kernels/panoptic.cu") };
pub(crate) const OVERLAY: KernelSource = KernelSource { name: "overlay", source: include_str!("kernels/overlay.cu") };

pub(crate) fn driver_err(what: &str) -> impl FnOnce(cu::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// Run `f`, turning a panic inside cudarc (a symbol its loader cannot find) into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::CudaUnavailable(format!("{what}: {}", crate::util::panic_message(&p)))),
    }
}

/// Looks for libcuda and libnvrtc and counts the devices. Cached: the answer does not
/// change while the process runs.
pub(crate) fn probe() -> Result<usize> {
    static PROBE: OnceLock<std::result::Result<usize, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            // SAFETY: is_culib_present only tries to dlopen the candidate library names
            // (and drops what it opened); it calls no CUDA function.
            if !unsafe { cu::sys::is_culib_present() } {
                return Err("the CUDA driver library (libcuda.so.1) was not found: no NVIDIA driver on this machine".into());
            }
            // SAFETY: as above, for libnvrtc.
            if !unsafe { nvrtc::sys::is_culib_present() } {
                return Err("NVRTC (libnvrtc.so.13 / .12) was not found: add the CUDA runtime libraries' folder to LD_LIBRARY_PATH".into());
            }
            match guarded("cuInit", || cu::CudaContext::device_count().map_err(driver_err("cuInit / cuDeviceGetCount"))) {
                Ok(0) => Err("the CUDA driver reports no device".into()),
                Ok(n) => Ok(n as usize),
                Err(e) => Err(e.to_string()),
            }
        })
        .clone()
        .map_err(Error::CudaUnavailable)
}

/// What a [`CudaContext`] runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
}

/// Per device: the cudarc context (the device's primary context) and the compiled
/// modules, shared by every [`CudaContext`] on that device.
struct DeviceShared {
    ctx: Arc<cu::CudaContext>,
    info: DeviceInfo,
    modules: Mutex<HashMap<&'static str, Arc<cu::CudaModule>>>,
}

fn devices() -> &'static Mutex<HashMap<usize, Arc<DeviceShared>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<DeviceShared>>>> = OnceLock::new();
    DEVICES.get_or_init(Default::default)
}

fn shared(ordinal: usize) -> Result<Arc<DeviceShared>> {
    let mut map = devices().lock().map_err(|_| Error::Cuda("device table poisoned".into()))?;
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = guarded("opening the CUDA device", || {
        let ctx = cu::CudaContext::new(ordinal).map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
        let name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
        let cc = ctx.compute_capability().map_err(driver_err("compute capability"))?;
        Ok(Arc::new(DeviceShared { ctx, info: DeviceInfo { ordinal, name, compute_capability: cc }, modules: Mutex::new(HashMap::new()) }))
    })?;
    map.insert(ordinal, d.clone());
    Ok(d)
}

/// NVRTC: `src` → CUBIN for this device's architecture (no PTX JIT, so a newer NVRTC than
/// the driver is fine), with `--fmad=false` so float results round as on the CPU.
fn compile(src: &KernelSource, cc: (i32, i32)) -> Result<Vec<u8>> {
    use std::ffi::{CStr, CString};
    let fail = |what: &str, e: nvrtc::result::NvrtcError| Error::Cuda(format!("NVRTC {what} of {}.cu: {e:?}", src.name));
    let code = CString::new(src.source).map_err(|_| Error::Cuda(format!("{}.cu holds a NUL byte", src.name)))?;
    let name = CString::new(format!("{}.cu", src.name)).map_err(|_| Error::Cuda("bad kernel name".into()))?;
    let prog = nvrtc::result::create_program(&code, Some(&name)).map_err(|e| fail("create", e))?;
    let opts = [format!("--gpu-architecture=sm_{}{}", cc.0, cc.1), "--fmad=false".into(), "--std=c++17".into(), "-default-device".into()];
    // SAFETY: `prog` was created above and is destroyed once, at the end of this block;
    // the buffers handed to nvrtcGetCUBIN are sized by nvrtcGetCUBINSize.
    unsafe {
        let res = (|| {
            if let Err(e) = nvrtc::result::compile_program(prog, &opts) {
                let log = nvrtc::result::get_program_log(prog).ok().map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned()).unwrap_or_default();
                return Err(Error::Cuda(format!("NVRTC could not compile {}.cu for sm_{}{} ({e:?}):\n{log}", src.name, cc.0, cc.1)));
            }
            let mut size = 0usize;
            nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| fail("nvrtcGetCUBINSize", e))?;
            let mut cubin = vec![0u8; size];
            nvrtc::sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()).result().map_err(|e| fail("nvrtcGetCUBIN", e))?;
            Ok(cubin)
        })();
        let _ = nvrtc::result::destroy_program(prog);
        res
    }
}

/// Owns a stream on one device and reaches that device's compiled kernels. Cheap to
/// create; one per element instance / pipeline branch.
pub struct CudaContext {
    dev: Arc<DeviceShared>,
    stream: Arc<cu::CudaStream>,
}

impl std::fmt::Debug for CudaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaContext").field("device", &self.dev.info).finish()
    }
}

impl CudaContext {
    /// Open device `ordinal` (its primary context, shared with every other user of the
    /// device in this process, GStreamer's CUDA elements included) and a new stream.
    pub fn new(ordinal: usize) -> Result<Arc<CudaContext>> {
        let n = probe()?;
        if ordinal >= n {
            return Err(Error::CudaUnavailable(format!("CUDA device {ordinal} does not exist ({n} device(s))")));
        }
        let dev = shared(ordinal)?;
        let stream = guarded("creating a CUDA stream", || dev.ctx.new_stream().map_err(driver_err("cuStreamCreate")))?;
        Ok(Arc::new(CudaContext { dev, stream }))
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    /// The cudarc context (the device's primary context).
    pub fn cudarc(&self) -> &Arc<cu::CudaContext> {
        &self.dev.ctx
    }

    /// The device's primary `CUcontext`, as an address (to compare with the context of a
    /// GStreamer CUDA memory).
    pub fn cu_context_handle(&self) -> usize {
        self.dev.ctx.cu_ctx() as usize
    }

    pub fn stream(&self) -> &Arc<cu::CudaStream> {
        &self.stream
    }

    /// The raw `CUstream`, for a backend that enqueues on the same stream (TensorRT).
    pub fn raw_stream(&self) -> cu::sys::CUstream {
        self.stream.cu_stream()
    }

    /// Wait for everything enqueued on the stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver_err("cuStreamSynchronize"))
    }

    /// Kernel `func` of `src`, compiling the source on first use on this device.
    pub(crate) fn function(&self, src: &KernelSource, func: &str) -> Result<cu::CudaFunction> {
        let module = {
            let mut mods = self.dev.modules.lock().map_err(|_| Error::Cuda("module cache poisoned".into()))?;
            match mods.get(src.name) {
                Some(m) => m.clone(),
                None => {
                    let cubin = guarded("NVRTC", || compile(src, self.dev.info.compute_capability))?;
                    let m = self.dev.ctx.load_module(nvrtc::Ptx::from_binary(cubin)).map_err(driver_err("cuModuleLoadData"))?;
                    mods.insert(src.name, m.clone());
                    m
                }
            }
        };
        module.load_function(func).map_err(driver_err(func))
    }

    /// Is `src` compiled for this device already (the per-device cache)?
    pub fn is_compiled(&self, name: &str) -> bool {
        self.dev.modules.lock().map(|m| m.contains_key(name)).unwrap_or(false)
    }

    /// Upload a host slice into a new device buffer.
    pub fn upload<T: cu::DeviceRepr>(&self, data: &[T]) -> Result<cu::CudaSlice<T>> {
        self.stream.clone_htod(data).map_err(driver_err("cuMemcpyHtoD"))
    }

    /// A zeroed device buffer of `n` elements.
    pub fn zeros<T: cu::DeviceRepr + cu::ValidAsZeroBits>(&self, n: usize) -> Result<cu::CudaSlice<T>> {
        self.stream.alloc_zeros(n.max(1)).map_err(driver_err("cuMemAlloc"))
    }

    /// Copy a device buffer to the host (waits for the stream).
    pub fn download<T: cu::DeviceRepr + Default + Clone>(&self, buf: &cu::CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(buf).map_err(driver_err("cuMemcpyDtoH"))
    }

    /// Raw device address of a buffer (for kernel arguments and raw-pointer APIs).
    pub fn ptr<T>(&self, buf: &cu::CudaSlice<T>) -> u64 {
        let (p, _sync) = buf.device_ptr(&self.stream);
        p
    }

    /// Raw device address of a buffer the caller will write through.
    pub fn ptr_mut<T>(&self, buf: &mut cu::CudaSlice<T>) -> u64 {
        let (p, _sync) = buf.device_ptr_mut(&self.stream);
        p
    }
}

/// Device-side kernel arguments passed by value (layout shared with the `.cu` structs).
pub(crate) mod args {
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Yuv {
        pub y: i32,
        pub cr: i32,
        pub cb: i32,
        pub g1: i32,
        pub g2: i32,
    }
    // SAFETY: plain #[repr(C)] i32 fields, the layout of `struct Yuv` in preprocess.cu.
    unsafe impl cudarc::driver::DeviceRepr for Yuv {}

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Norm {
        pub scale: [f32; 3],
        pub bias: [f32; 3],
        pub order: [i32; 3],
    }
    // SAFETY: #[repr(C)] arrays of f32 / i32, the layout of `struct Norm` in preprocess.cu.
    unsafe impl cudarc::driver::DeviceRepr for Norm {}
}
