//! Test support: the host-memory double of the CUDA driver (`tests/cuda_double/libcuda_double.c`).
//!
//! [`load`] compiles the C file into `libcuda.so.1` under the test's
//! `CARGO_TARGET_TMPDIR` (with `$CC`, else `cc`; only when the source is newer than the
//! library) and loads it with `RTLD_GLOBAL`, once per process. Afterwards every
//! `dlopen("libcuda.so.1")` in the process (libgstcuda's, cudarc's, ours) gets the double,
//! since the dynamic loader matches already-loaded objects by SONAME. Call it before
//! anything loads the CUDA driver: a process that loaded a real driver first keeps it.
//!
//! The double is not a driver: "device" memory is host memory, there is one device, every
//! call is synchronous, and kernels, modules, textures and GL interop answer
//! `CUDA_ERROR_NOT_SUPPORTED`. Its counters record which driver calls were made.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Counters kept by the double since load or the last [`CudaDouble::reset`]; the layout
/// is `struct segstream_double_counters` in the C file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `cuCtxCreate_v2` calls that made a context.
    pub contexts_created: libc::c_ulong,
    /// `cuCtxDestroy_v2` calls.
    pub contexts_destroyed: libc::c_ulong,
    /// `cuDevicePrimaryCtxRetain` calls.
    pub primary_retains: libc::c_ulong,
    /// Device allocations: `cuMemAlloc_v2` and `cuMemAllocPitch_v2`.
    pub allocs: libc::c_ulong,
    /// `cuMemAllocPitch_v2` calls (rows padded to 512 bytes).
    pub pitched_allocs: libc::c_ulong,
    /// `cuMemFree_v2` calls.
    pub frees: libc::c_ulong,
    /// `cuMemAllocHost_v2` calls (pinned host memory, e.g. staging for system-memory maps).
    pub host_allocs: libc::c_ulong,
    /// Device → host copies (`cuMemcpy2D*` with a device source and a host destination,
    /// `cuMemcpyDtoH_v2`); one 2D copy counts once, whatever its height.
    pub d2h_copies: libc::c_ulong,
    /// Host → device copies.
    pub h2d_copies: libc::c_ulong,
    /// Device → device copies.
    pub d2d_copies: libc::c_ulong,
    /// Bytes copied device → host (`WidthInBytes * Height` for a 2D copy).
    pub d2h_bytes: libc::c_ulong,
    /// Bytes copied host → device.
    pub h2d_bytes: libc::c_ulong,
    /// Bytes copied device → device.
    pub d2d_bytes: libc::c_ulong,
}

impl std::ops::Sub for Counters {
    type Output = Counters;

    /// Field by field: what happened between two snapshots (`later - earlier`).
    fn sub(self, earlier: Counters) -> Counters {
        let d = |a: libc::c_ulong, b: libc::c_ulong| a.wrapping_sub(b);
        Counters {
            contexts_created: d(self.contexts_created, earlier.contexts_created),
            contexts_destroyed: d(self.contexts_destroyed, earlier.contexts_destroyed),
            primary_retains: d(self.primary_retains, earlier.primary_retains),
            allocs: d(self.allocs, earlier.allocs),
            pitched_allocs: d(self.pitched_allocs, earlier.pitched_allocs),
            frees: d(self.frees, earlier.frees),
            host_allocs: d(self.host_allocs, earlier.host_allocs),
            d2h_copies: d(self.d2h_copies, earlier.d2h_copies),
            h2d_copies: d(self.h2d_copies, earlier.h2d_copies),
            d2d_copies: d(self.d2d_copies, earlier.d2d_copies),
            d2h_bytes: d(self.d2h_bytes, earlier.d2h_bytes),
            h2d_bytes: d(self.h2d_bytes, earlier.h2d_bytes),
            d2d_bytes: d(self.d2d_bytes, earlier.d2d_bytes),
        }
    }
}

/// The loaded double.
pub struct CudaDouble {
    path: PathBuf,
    counters_fn: unsafe extern "C" fn(*mut Counters),
    reset_fn: unsafe extern "C" fn(),
    serial: Mutex<()>,
}

// SAFETY: the struct holds a path, two function pointers into a library that is never
// unloaded, and a Mutex; the C functions use only atomics, so calling them from any thread
// is sound.
unsafe impl Sync for CudaDouble {}
// SAFETY: as above; nothing in it is tied to the thread that loaded it.
unsafe impl Send for CudaDouble {}

impl CudaDouble {
    /// Where the built `libcuda.so.1` lies.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        // SAFETY: `counters_fn` is `segstream_double_counters` from the loaded double (kept
        // loaded for the life of the process); it writes exactly one
        // `struct segstream_double_counters`, whose layout `Counters` repeats (#[repr(C)],
        // the same 13 `unsigned long` fields in the same order), into a valid &mut.
        unsafe { (self.counters_fn)(&mut c) };
        c
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        // SAFETY: `reset_fn` is `segstream_double_reset` from the loaded double; it takes no
        // arguments and only stores zeros atomically into the double's own counters.
        unsafe { (self.reset_fn)() }
    }

    /// Serialises the tests of one binary that read the counters (the harness runs tests
    /// on several threads of one process, and the counters are process-wide). A test that
    /// panicked while holding the guard does not poison it for the others.
    pub fn serial(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The double, built and loaded once per process.
pub fn load() -> &'static CudaDouble {
    static DOUBLE: OnceLock<CudaDouble> = OnceLock::new();
    DOUBLE.get_or_init(|| {
        let path = build();
        open(path)
    })
}

/// Shorthand for `load().counters()`.
pub fn counters() -> Counters {
    load().counters()
}

/// What happened since the snapshot `before`: `counters() - before`.
pub fn since(before: Counters) -> Counters {
    counters() - before
}

/// Shorthand for `load().reset()`.
pub fn reset() {
    load().reset()
}

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_double/libcuda_double.c")
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Compiles the double unless `libcuda.so.1` is newer than its source; returns its path.
fn build() -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_TARGET_TMPDIR"), "/cuda-double"));
    let lib = dir.join("libcuda.so.1");
    let src = source();
    let src_time =
        modified(&src).unwrap_or_else(|| panic!("cuda double: {} is missing", src.display()));
    if modified(&lib).is_some_and(|t| t >= src_time) {
        return lib;
    }
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("cuda double: create {}: {e}", dir.display()));
    // Build under a name of this process, then rename: other test binaries may build at
    // the same time, and a reader must never see a half-written library.
    let tmp = dir.join(format!("libcuda.so.1.{}", std::process::id()));
    let cc = std::env::var_os("CC")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cuda double: cannot run the C compiler {:?} ({e}); the CUDA memory tests build \
                 tests/cuda_double/libcuda_double.c and need a C compiler (install gcc, or set CC)",
                cc
            )
        });
    assert!(
        out.status.success(),
        "cuda double: {:?} failed to compile {}:\n{}",
        cc,
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &lib)
        .unwrap_or_else(|e| panic!("cuda double: rename to {}: {e}", lib.display()));
    lib
}

fn open(path: PathBuf) -> CudaDouble {
    let c_path =
        CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in the target dir");
    // SAFETY: `c_path` is a NUL-terminated path that outlives the call. Loading the double
    // runs no initialisers (the C file has none). The handle is never closed, so the
    // symbols looked up below stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        panic!("cuda double: dlopen {}: {}", path.display(), dl_error());
    }
    let sym = |name: &CStr| {
        // SAFETY: `handle` is a live handle from dlopen and `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        assert!(
            !p.is_null(),
            "cuda double: {} lacks {name:?}: {}",
            path.display(),
            dl_error()
        );
        p
    };
    let counters = sym(c"segstream_double_counters");
    let reset = sym(c"segstream_double_reset");
    // SAFETY: both are non-null addresses of functions defined in the C file with exactly
    // these signatures: `void segstream_double_counters(struct segstream_double_counters *)`
    // and `void segstream_double_reset(void)`; data and function pointers have the same
    // size and representation on the platforms that run these tests.
    let (counters_fn, reset_fn) = unsafe {
        (
            std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(*mut Counters)>(counters),
            std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(reset),
        )
    };
    CudaDouble {
        path,
        counters_fn,
        reset_fn,
        serial: Mutex::new(()),
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc, valid until
    // the next dl* call on this thread; it is copied out at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".to_owned()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}
