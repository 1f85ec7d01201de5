//! libgstcuda-1.0 over the CUDA driver double.

use std::ffi::{CStr, c_void};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use gst::glib;
use gst::glib::translate::{FromGlibPtrFull, ToGlibPtr};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::cuda_double::{self, Counters, since};

type GBool = glib::ffi::gboolean;
type CudaContextPtr = *mut gst::ffi::GstObject;

/// The few libgstcuda-1.0 functions used here, looked up with dlsym so that no test binary
/// links the library.
struct GstCuda {
    load_library: unsafe extern "C" fn() -> GBool,
    memory_init_once: unsafe extern "C" fn(),
    context_new: unsafe extern "C" fn(u32) -> CudaContextPtr,
    context_get_handle: unsafe extern "C" fn(CudaContextPtr) -> *mut c_void,
    context_get_type: unsafe extern "C" fn() -> glib::ffi::GType,
    buffer_pool_new: unsafe extern "C" fn(CudaContextPtr) -> *mut gst::ffi::GstBufferPool,
    is_cuda_memory: unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> GBool,
    handle_context_query: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstQuery,
        CudaContextPtr,
    ) -> GBool,
    /// `cuCtxGetCurrent` of the double (the calling thread's current context).
    cu_ctx_get_current: unsafe extern "C" fn(*mut *mut c_void) -> i32,
}

/// `GST_MAP_CUDA` (gstcudamemory.h).
const GST_MAP_CUDA: gst::ffi::GstMapFlags = gst::ffi::GST_MAP_FLAG_LAST << 1;
const CUDA_CAPS: &str =
    "video/x-raw(memory:CUDAMemory),format=NV12,width=64,height=48,framerate=30/1";
const W: usize = 64;
const H: usize = 48;
/// The double pads device rows to 512 bytes (`cuMemAllocPitch_v2`).
const PITCH: usize = 512;

/// Looks `name` up in `handle` as a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `unsafe extern "C" fn` type matching the C prototype of `name`.
unsafe fn sym<F: Copy>(handle: *mut c_void, name: &CStr) -> F {
    assert_eq!(
        size_of::<F>(),
        size_of::<*mut c_void>(),
        "F is a function pointer"
    );
    // SAFETY: `handle` is a live dlopen handle (or RTLD_DEFAULT) and `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert!(!p.is_null(), "dlsym {name:?} failed");
    // SAFETY: `p` is the non-null address of the function `name`; F is a function pointer
    // type of the same size (checked above) and, by the caller's contract, of the right
    // prototype; data and function pointers share a representation on the test platforms.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) }
}

/// Loads the double, initialises GStreamer, opens libgstcuda-1.0 and loads its driver
/// table; once per process.
fn gst_cuda() -> &'static GstCuda {
    static CUDA: OnceLock<GstCuda> = OnceLock::new();
    CUDA.get_or_init(|| {
        // First, so that libgstcuda's dlopen("libcuda.so.1") gets the double.
        cuda_double::load();
        gst::init().expect("gst::init");
        // SAFETY: a NUL-terminated library name; the handle is never closed, so the
        // function pointers below stay valid for the life of the process.
        let lib = unsafe { libc::dlopen(c"libgstcuda-1.0.so.0".as_ptr(), libc::RTLD_NOW) };
        assert!(
            !lib.is_null(),
            "libgstcuda-1.0.so.0 is not installed (GStreamer ≥ 1.22)"
        );
        // SAFETY: each field's type in GstCuda is the C prototype of the libgstcuda 1.22 (or
        // double) function of that name (gstcudaloader.h, gstcudacontext.h,
        // gstcudabufferpool.h, gstcudamemory.h, gstcudautils.h; GstCudaContext* is passed as
        // a GstObject*, its parent type; cuCtxGetCurrent(CUcontext*) -> CUresult).
        let cuda = unsafe {
            GstCuda {
                load_library: sym(lib, c"gst_cuda_load_library"),
                memory_init_once: sym(lib, c"gst_cuda_memory_init_once"),
                context_new: sym(lib, c"gst_cuda_context_new"),
                context_get_handle: sym(lib, c"gst_cuda_context_get_handle"),
                context_get_type: sym(lib, c"gst_cuda_context_get_type"),
                buffer_pool_new: sym(lib, c"gst_cuda_buffer_pool_new"),
                is_cuda_memory: sym(lib, c"gst_is_cuda_memory"),
                handle_context_query: sym(lib, c"gst_cuda_handle_context_query"),
                cu_ctx_get_current: sym(libc::RTLD_DEFAULT, c"cuCtxGetCurrent"),
            }
        };
        // SAFETY: no arguments; GStreamer is initialised.
        let loaded = unsafe { (cuda.load_library)() };
        assert_ne!(
            loaded,
            glib::ffi::GFALSE,
            "gst_cuda_load_library() failed over the double"
        );
        // Registers the "gst.cuda.memory" allocator; without it a CUDA pool refuses every
        // config ("CudaAllocator is unavailable"). nvcodec calls it in its plugin init.
        // SAFETY: no arguments; idempotent (g_once inside).
        unsafe { (cuda.memory_init_once)() };
        cuda
    })
}

impl GstCuda {
    /// `gst_cuda_context_new(0)`, owned.
    fn context(&self) -> gst::Object {
        // SAFETY: the driver table is loaded (gst_cuda()); device 0 exists in the double.
        let ptr = unsafe { (self.context_new)(0) };
        assert!(!ptr.is_null(), "gst_cuda_context_new(0) returned NULL");
        // SAFETY: a non-null GstCudaContext (a GstObject) returned with a full reference.
        unsafe { gst::Object::from_glib_full(ptr) }
    }

    /// A CUDA buffer pool for `CUDA_CAPS` with video meta, active.
    fn pool(&self, ctx: &gst::Object) -> gst::BufferPool {
        // SAFETY: `ctx` is a live GstCudaContext; the pool is returned with a full reference
        // and takes its own reference on the context.
        let pool = unsafe {
            let p = (self.buffer_pool_new)(ctx.to_glib_none().0);
            assert!(!p.is_null(), "gst_cuda_buffer_pool_new returned NULL");
            gst::BufferPool::from_glib_full(p)
        };
        let caps: gst::Caps = CUDA_CAPS.parse().unwrap();
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 0, 0);
        config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
        pool.set_config(config)
            .expect("CUDA pool accepts the config");
        pool.set_active(true).expect("CUDA pool activates");
        pool
    }

    fn is_cuda_memory(&self, mem: &gst::MemoryRef) -> bool {
        // SAFETY: `mem` is a live GstMemory; the function only reads its allocator.
        unsafe { (self.is_cuda_memory)(mem.as_ptr() as *mut _) != glib::ffi::GFALSE }
    }

    /// The calling thread's current CUDA context in the double.
    fn current(&self) -> *mut c_void {
        let mut c = std::ptr::null_mut();
        // SAFETY: cuCtxGetCurrent writes one pointer through a valid out pointer.
        assert_eq!(unsafe { (self.cu_ctx_get_current)(&mut c) }, 0);
        c
    }
}

/// A raw map of one memory with `flags`, unmapped on drop.
struct RawMap<'a> {
    mem: &'a gst::MemoryRef,
    info: gst::ffi::GstMapInfo,
}

impl<'a> RawMap<'a> {
    fn new(mem: &'a gst::MemoryRef, flags: gst::ffi::GstMapFlags) -> Self {
        let mut info = MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
        // SAFETY: `mem` is a live GstMemory that outlives the map (the borrow); `info` is
        // writable storage for one GstMapInfo. libgstcuda's map function accepts
        // GST_MAP_CUDA as an extra flag bit.
        let ok =
            unsafe { gst::ffi::gst_memory_map(mem.as_ptr() as *mut _, info.as_mut_ptr(), flags) };
        assert_ne!(
            ok,
            glib::ffi::GFALSE,
            "gst_memory_map(flags {flags:#x}) failed"
        );
        // SAFETY: a successful gst_memory_map filled `info`.
        Self {
            mem,
            info: unsafe { info.assume_init() },
        }
    }

    fn ptr(&self) -> *mut u8 {
        self.info.data
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: a mapped GstMapInfo describes `size` readable bytes at `data` until unmap
        // (on drop, after this borrow ends).
        unsafe { std::slice::from_raw_parts(self.info.data, self.info.size) }
    }
}

impl Drop for RawMap<'_> {
    fn drop(&mut self) {
        // SAFETY: `info` came from a successful gst_memory_map of this very memory and is
        // unmapped exactly once.
        unsafe { gst::ffi::gst_memory_unmap(self.mem.as_ptr() as *mut _, &mut self.info) };
    }
}

#[test]
fn library_loads_and_makes_a_context() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let before = cuda_double::counters();
    let ctx = cuda.context();
    // SAFETY: `ctx` is a live GstCudaContext.
    assert!(!unsafe { (cuda.context_get_handle)(ctx.to_glib_none().0) }.is_null());
    assert_eq!(
        since(before).contexts_created,
        1,
        "gst_cuda_context_new makes a new context"
    );
    assert!(
        cuda.current().is_null(),
        "gst_cuda_context_new leaves no context current"
    );
    drop(ctx);
    assert_eq!(
        since(before).contexts_destroyed,
        1,
        "the last unref destroys the context"
    );
}

#[test]
fn pool_allocates_pitched_cuda_memory() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let ctx = cuda.context();
    let before = cuda_double::counters();
    let pool = cuda.pool(&ctx);
    let buffer = pool.acquire_buffer(None).expect("a buffer");
    assert_eq!(buffer.n_memory(), 1);
    assert!(cuda.is_cuda_memory(buffer.peek_memory(0)));
    let meta = buffer.meta::<gst_video::VideoMeta>().expect("video meta");
    assert_eq!(
        meta.stride()[0],
        PITCH as i32,
        "device pitch, not the caps' 64"
    );
    assert_eq!(meta.stride()[1], PITCH as i32);
    assert!(
        meta.offset()[1] >= PITCH * H,
        "UV after the pitched Y plane"
    );
    assert!(buffer.size() >= meta.offset()[1] + PITCH * H / 2);
    let d = since(before);
    assert!(
        d.pitched_allocs >= 1 && d.h2d_copies + d.d2h_copies == 0,
        "{d:?}"
    );
    drop(buffer);
    pool.set_active(false).unwrap();
    let d = since(before);
    assert_eq!(
        d.frees, d.allocs,
        "a deactivated pool frees its device memory: {d:?}"
    );
}

/// A context, an active pool and one buffer from it, with the buffer's plane layout.
struct Fixture {
    _ctx: gst::Object,
    pool: gst::BufferPool,
    buffer: gst::Buffer,
    stride: [usize; 2],
    offset: [usize; 2],
}

impl Fixture {
    fn new(cuda: &GstCuda) -> Self {
        let ctx = cuda.context();
        let pool = cuda.pool(&ctx);
        let buffer = pool.acquire_buffer(None).expect("a buffer");
        let meta = buffer.meta::<gst_video::VideoMeta>().expect("video meta");
        let stride = [meta.stride()[0] as usize, meta.stride()[1] as usize];
        let offset = [meta.offset()[0], meta.offset()[1]];
        Self {
            _ctx: ctx,
            pool,
            buffer,
            stride,
            offset,
        }
    }

    fn mem(&self) -> &gst::MemoryRef {
        self.buffer.peek_memory(0)
    }

    /// Byte `x` of row `y` of `plane` (0: Y, 64 x 48; 1: UV, 64 x 24) in a mapping that has
    /// the video meta's layout.
    fn at(&self, plane: usize, x: usize, y: usize) -> usize {
        self.offset[plane] + y * self.stride[plane] + x
    }

    /// Every (plane, x, y) of the NV12 frame.
    fn pixels() -> impl Iterator<Item = (usize, usize, usize)> {
        [(0, H), (1, H / 2)]
            .into_iter()
            .flat_map(|(p, rows)| (0..rows).flat_map(move |y| (0..W).map(move |x| (p, x, y))))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

fn pattern(seed: usize, plane: usize, x: usize, y: usize) -> u8 {
    ((x * 7 + y * 13 + plane * 101 + seed) % 251) as u8 + 1
}

#[test]
fn cuda_map_is_the_device_pointer_without_a_copy() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let f = Fixture::new(cuda);

    let before = cuda_double::counters();
    let device = RawMap::new(f.mem(), gst::ffi::GST_MAP_READ | GST_MAP_CUDA).ptr();
    assert!(!device.is_null());
    let again = RawMap::new(f.mem(), gst::ffi::GST_MAP_READ | GST_MAP_CUDA).ptr();
    assert_eq!(device, again, "the same device pointer each time");
    assert_eq!(
        since(before),
        Counters::default(),
        "a CUDA map makes no driver copy"
    );

    let before = cuda_double::counters();
    let system = RawMap::new(f.mem(), gst::ffi::GST_MAP_READ).ptr();
    let d = since(before);
    assert_ne!(system, device, "a system map is a staging copy");
    assert_eq!(
        (d.d2h_copies, d.host_allocs),
        (1, 1),
        "the first system map downloads into pinned staging: {d:?}"
    );
    let before = cuda_double::counters();
    drop(RawMap::new(f.mem(), gst::ffi::GST_MAP_READ));
    assert_eq!(
        since(before),
        Counters::default(),
        "the staging copy is still current"
    );
}

#[test]
fn system_map_has_the_pitched_device_layout() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let f = Fixture::new(cuda);
    assert_eq!(f.stride, [PITCH, PITCH]);

    let before = cuda_double::counters();
    {
        let map = RawMap::new(f.mem(), gst::ffi::GST_MAP_WRITE | GST_MAP_CUDA);
        for (p, x, y) in Fixture::pixels() {
            // SAFETY: every (plane, x, y) of the frame lies inside the mapped device
            // allocation (`at` < offset[1] + 24 * stride[1] <= size), which in the double is
            // host memory.
            unsafe { *map.ptr().add(f.at(p, x, y)) = pattern(0, p, x, y) };
        }
    }
    assert_eq!(
        since(before),
        Counters::default(),
        "a CUDA write map makes no copy either"
    );

    let before = cuda_double::counters();
    let map = RawMap::new(f.mem(), gst::ffi::GST_MAP_READ);
    let d = since(before);
    assert_eq!(
        d.d2h_copies, 1,
        "a CUDA write makes the staging copy stale: {d:?}"
    );
    assert!(d.d2h_bytes as usize >= W * H * 3 / 2, "{d:?}");
    let bytes = map.bytes();
    assert_eq!(bytes.len(), f.buffer.size(), "the whole pitched allocation");
    for (p, x, y) in Fixture::pixels() {
        assert_eq!(
            bytes[f.at(p, x, y)],
            pattern(0, p, x, y),
            "plane {p} x {x} y {y}"
        );
    }
}

#[test]
fn system_write_is_uploaded_before_a_cuda_map() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let f = Fixture::new(cuda);

    {
        let map = RawMap::new(f.mem(), gst::ffi::GST_MAP_WRITE);
        for (p, x, y) in Fixture::pixels() {
            // SAFETY: as above; the system mapping has the video meta's layout and size.
            unsafe { *map.ptr().add(f.at(p, x, y)) = pattern(1, p, x, y) };
        }
    }
    let before = cuda_double::counters();
    let map = RawMap::new(f.mem(), gst::ffi::GST_MAP_READ | GST_MAP_CUDA);
    let d = since(before);
    assert_eq!(
        d.h2d_copies, 1,
        "a system write is uploaded before the device is used: {d:?}"
    );
    let device = map.bytes();
    for (p, x, y) in Fixture::pixels() {
        assert_eq!(
            device[f.at(p, x, y)],
            pattern(1, p, x, y),
            "plane {p} x {x} y {y}"
        );
    }
}

#[test]
fn context_query_is_answered() {
    let cuda = gst_cuda();
    let _serial = cuda_double::load().serial();
    let ctx = cuda.context();
    let element = gst::Bin::new();
    let query = gst::query::Context::new("gst.cuda.context");
    // SAFETY: live element, query (writable: we hold its only reference) and context.
    let ok = unsafe {
        (cuda.handle_context_query)(
            element.upcast_ref::<gst::Element>().to_glib_none().0,
            query.as_mut_ptr(),
            ctx.to_glib_none().0,
        )
    };
    assert_ne!(
        ok,
        glib::ffi::GFALSE,
        "gst_cuda_handle_context_query answers"
    );
    let answer = query.context().expect("a context in the answer");
    assert_eq!(answer.context_type(), "gst.cuda.context");
    let s = answer.structure();
    // SAFETY: no arguments; the type is registered once libgstcuda is loaded.
    let ty: glib::Type = unsafe { glib::translate::from_glib((cuda.context_get_type)()) };
    let field = s.value("gst.cuda.context").expect("the context field");
    assert_eq!(field.type_(), ty);
    let got = field.get::<gst::Object>().unwrap();
    assert_eq!(got, ctx);
    assert_eq!(s.get::<u32>("cuda-device-id").ok(), Some(0));
}

/// A new, non-primary context (`gst_cuda_context_new(0)`) for the element tests.
pub(crate) fn new_context() -> gst::Object {
    gst_cuda().context()
}
