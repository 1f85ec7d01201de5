//! libgstcuda-1.0 and the few CUDA driver calls this layer makes, bound at run time.
//!
//! Nothing here is linked: GStreamer 1.20 (JetPack 6) has no public libgstcuda, and a
//! machine without the NVIDIA driver has no libcuda. [`GstCuda::get`] opens
//! `libgstcuda-1.0.so.0` once, binds the 1.22 symbols (1.24's `gst_cuda_memory_sync` when
//! present) and calls `gst_cuda_load_library()` before anything else: without a driver it
//! returns FALSE, and context creation or pool configuration would then abort the process.
//! `gst_cuda_allocator_alloc` is not bound: its signature changed in 1.24 under the same
//! soname.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

use gst::glib;
use gstreamer as gst;

use crate::{Error, Result};

type GstObj = *mut gst::ffi::GstObject;
pub(crate) type CuResult = c_int;

/// The bound functions. Every pointer was resolved from a library that stays loaded for
/// the life of the process (the handles are never closed).
pub struct GstCuda {
    pub(crate) context_get_type: unsafe extern "C" fn() -> glib::ffi::GType,
    pub(crate) context_new_wrapped: unsafe extern "C" fn(*mut c_void, c_int) -> GstObj,
    pub(crate) context_get_handle: unsafe extern "C" fn(GstObj) -> *mut c_void,
    pub(crate) handle_context_query:
        unsafe extern "C" fn(*mut gst::ffi::GstElement, *mut gst::ffi::GstQuery, GstObj) -> glib::ffi::gboolean,
    pub(crate) handle_set_context: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstContext,
        c_int,
        *mut GstObj,
    ) -> glib::ffi::gboolean,
    pub(crate) context_new_cuda_context: unsafe extern "C" fn(GstObj) -> *mut gst::ffi::GstContext,
    pub(crate) is_cuda_memory: unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> glib::ffi::gboolean,
    pub(crate) buffer_pool_new: unsafe extern "C" fn(GstObj) -> *mut gst::ffi::GstBufferPool,
    /// 1.24+: wait for the work pending on a memory's stream.
    pub(crate) memory_sync: Option<unsafe extern "C" fn(*mut gst::ffi::GstMemory)>,
    pub(crate) driver: Driver,
}

/// Driver entry points for the primary context (libgstcuda has no call for it).
pub(crate) struct Driver {
    pub init: unsafe extern "C" fn(c_uint) -> CuResult,
    pub device_get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult,
    pub device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    pub primary_ctx_retain: unsafe extern "C" fn(*mut *mut c_void, c_int) -> CuResult,
}

// SAFETY: plain function pointers into libraries that are never unloaded.
unsafe impl Send for GstCuda {}
// SAFETY: as above; the functions themselves are thread-safe (GStreamer and the driver
// document them so).
unsafe impl Sync for GstCuda {}

impl std::fmt::Debug for GstCuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GstCuda").field("memory_sync", &self.memory_sync.is_some()).finish()
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc, valid until
    // the next dl* call on this thread; it is copied at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() { "unknown error".into() } else { CStr::from_ptr(e).to_string_lossy().into_owned() }
    }
}

fn open(name: &CStr) -> std::result::Result<*mut c_void, String> {
    // SAFETY: `name` is NUL-terminated; dlopen has no other precondition. The handle is
    // never closed, so every symbol taken from it stays valid.
    let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() { Err(format!("{}: {}", name.to_string_lossy(), dlerror())) } else { Ok(h) }
}

fn sym(handle: *mut c_void, name: &CStr) -> std::result::Result<*mut c_void, String> {
    // SAFETY: `handle` came from dlopen and is never closed; `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, name.as_ptr() as *const c_char) };
    if p.is_null() { Err(format!("symbol {} not found: {}", name.to_string_lossy(), dlerror())) } else { Ok(p) }
}

/// Bind `$name` from `$h` as the function pointer type the field declares.
macro_rules! bind {
    ($h:expr, $name:literal) => {{
        let p = sym($h, $name)?;
        // SAFETY: the symbol has the C signature of the field it is assigned to (checked
        // against the 1.22 headers and the CUDA driver API); a data pointer and a function
        // pointer have the same size on every platform GStreamer supports.
        unsafe { std::mem::transmute::<*mut c_void, _>(p) }
    }};
}

impl GstCuda {
    /// libgstcuda with a working CUDA driver, or why not (a typed
    /// [`Error::CudaUnavailable`]). Loaded once per process; never panics or aborts.
    pub fn get() -> Result<&'static GstCuda> {
        static LIB: OnceLock<std::result::Result<GstCuda, String>> = OnceLock::new();
        LIB.get_or_init(|| {
            std::panic::catch_unwind(Self::load).unwrap_or_else(|p| {
                Err(format!("loading libgstcuda panicked: {}", crate::util::panic_message(&p)))
            })
        })
            .as_ref()
            .map_err(|e| Error::CudaUnavailable(e.clone()))
    }

    /// Whether [`GstCuda::get`] succeeds (cheap after the first call).
    pub fn available() -> bool {
        Self::get().is_ok()
    }

    fn load() -> std::result::Result<GstCuda, String> {
        let h = open(c"libgstcuda-1.0.so.0").map_err(|e| {
            format!("GStreamer's CUDA library is not there (GStreamer 1.22+ with gst-plugins-bad): {e}")
        })?;
        let load_library: unsafe extern "C" fn() -> glib::ffi::gboolean = bind!(h, c"gst_cuda_load_library");
        // SAFETY: no arguments; it dlopens libcuda.so.1 and resolves its symbols, returning
        // FALSE when that fails. Safe to call more than once.
        if unsafe { load_library() } == glib::ffi::GFALSE {
            return Err("libgstcuda could not load the CUDA driver (libcuda.so.1): no NVIDIA driver on this machine".into());
        }
        let memory_init_once: unsafe extern "C" fn() = bind!(h, c"gst_cuda_memory_init_once");
        // SAFETY: registers the CUDA allocator once; no arguments.
        unsafe { memory_init_once() };
        let cu = open(c"libcuda.so.1")?;
        let driver = Driver {
            init: bind!(cu, c"cuInit"),
            device_get: bind!(cu, c"cuDeviceGet"),
            device_get_count: bind!(cu, c"cuDeviceGetCount"),
            primary_ctx_retain: bind!(cu, c"cuDevicePrimaryCtxRetain"),
        };
        // SAFETY: cuInit(0) has no precondition; a failure is an error code.
        let rc = unsafe { (driver.init)(0) };
        if rc != 0 {
            return Err(format!("cuInit failed with CUDA error {rc}"));
        }
        let mut count = 0;
        // SAFETY: `count` is a valid out pointer.
        let rc = unsafe { (driver.device_get_count)(&mut count) };
        if rc != 0 || count <= 0 {
            return Err(format!("the CUDA driver reports no device (error {rc}, {count} devices)"));
        }
        Ok(GstCuda {
            context_get_type: bind!(h, c"gst_cuda_context_get_type"),
            context_new_wrapped: bind!(h, c"gst_cuda_context_new_wrapped"),
            context_get_handle: bind!(h, c"gst_cuda_context_get_handle"),
            handle_context_query: bind!(h, c"gst_cuda_handle_context_query"),
            handle_set_context: bind!(h, c"gst_cuda_handle_set_context"),
            context_new_cuda_context: bind!(h, c"gst_context_new_cuda_context"),
            is_cuda_memory: bind!(h, c"gst_is_cuda_memory"),
            buffer_pool_new: bind!(h, c"gst_cuda_buffer_pool_new"),
            memory_sync: sym(h, c"gst_cuda_memory_sync").ok().map(|p| {
                // SAFETY: 1.24's `void gst_cuda_memory_sync (GstCudaMemory *)`.
                unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut gst::ffi::GstMemory)>(p) }
            }),
            driver,
        })
    }
}
