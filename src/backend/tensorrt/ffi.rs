//! Declarations of the C shim (shim/segstream_trt.h). Raw and unsafe: use `engine.rs`.

use std::ffi::{c_char, c_void};

pub const OK: i32 = 0;
pub const UNSUPPORTED: i32 = 2;
pub const CANCELLED: i32 = 3;
pub const MAX_DIMS: usize = 8;

// Progress events (SSTRT_PHASE_*): see `super::progress`.

pub type LogFn = unsafe extern "C" fn(user: *mut c_void, severity: i32, msg: *const c_char);
pub type ProgressFn = unsafe extern "C" fn(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    parent: *const c_char,
    step: i32,
    nb_steps: i32,
) -> i32;

#[repr(C)]
pub struct BuildOptions {
    pub onnx_path: *const c_char,
    pub precision: i32,
    pub workspace_bytes: u64,
    pub input_name: *const c_char,
    pub batch_min: i32,
    pub batch_opt: i32,
    pub batch_max: i32,
    pub use_timing_cache: i32,
    pub timing_cache: *const c_void,
    pub timing_cache_len: usize,
}

// The layout of `SegstreamTrtBuildOptions` on LP64 (x86-64, aarch64), asserted on both
// sides (the shim has the same static_asserts), so that the two declarations cannot drift.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(BuildOptions, precision) == 8);
    assert!(offset_of!(BuildOptions, workspace_bytes) == 16);
    assert!(offset_of!(BuildOptions, input_name) == 24);
    assert!(offset_of!(BuildOptions, batch_max) == 40);
    assert!(offset_of!(BuildOptions, use_timing_cache) == 44);
    assert!(offset_of!(BuildOptions, timing_cache) == 48);
    assert!(offset_of!(BuildOptions, timing_cache_len) == 56);
    assert!(size_of::<BuildOptions>() == 64);
};

#[repr(C)]
pub struct Engine {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Context {
    _private: [u8; 0],
}
#[repr(C)]
pub struct HostRunner {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub fn sstrt_compiled_version(major: *mut i32, minor: *mut i32, patch: *mut i32);
    pub fn sstrt_linked_version(major: *mut i32, minor: *mut i32, patch: *mut i32);
    pub fn sstrt_linked_build_version() -> i32;
    pub fn sstrt_set_logger(f: Option<LogFn>, user: *mut c_void);
    pub fn sstrt_device_info(
        device: i32,
        name: *mut c_char,
        name_len: usize,
        cc_major: *mut i32,
        cc_minor: *mut i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn sstrt_set_device(device: i32, err: *mut c_char, err_len: usize) -> i32;
    pub fn sstrt_load_plugins(library: *const c_char, err: *mut c_char, err_len: usize) -> i32;
    pub fn sstrt_build(
        opts: *const BuildOptions,
        progress: Option<ProgressFn>,
        progress_user: *mut c_void,
        plan: *mut *mut u8,
        plan_len: *mut usize,
        cache_out: *mut *mut u8,
        cache_out_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn sstrt_timing_cache_combine(
        ours: *const c_void,
        ours_len: usize,
        theirs: *const c_void,
        theirs_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn sstrt_free(p: *mut c_void);
    pub fn sstrt_engine_load(plan: *const c_void, plan_len: usize, err: *mut c_char, err_len: usize) -> *mut Engine;
    pub fn sstrt_engine_free(engine: *mut Engine);
    pub fn sstrt_engine_nb_io(engine: *const Engine) -> i32;
    pub fn sstrt_engine_io(
        engine: *const Engine,
        index: i32,
        name: *mut c_char,
        name_len: usize,
        is_input: *mut i32,
        dtype: *mut i32,
        nb_dims: *mut i32,
        dims: *mut i64,
    ) -> i32;
    pub fn sstrt_engine_profile(
        engine: *const Engine,
        name: *const c_char,
        nb_dims: *mut i32,
        min: *mut i64,
        opt: *mut i64,
        max: *mut i64,
    ) -> i32;
    pub fn sstrt_context_create(engine: *mut Engine, err: *mut c_char, err_len: usize) -> *mut Context;
    pub fn sstrt_context_free(ctx: *mut Context);
    pub fn sstrt_context_set_input_shape(
        ctx: *mut Context,
        name: *const c_char,
        nb_dims: i32,
        dims: *const i64,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn sstrt_context_tensor(
        ctx: *const Context,
        name: *const c_char,
        dtype: *mut i32,
        nb_dims: *mut i32,
        dims: *mut i64,
    ) -> i32;
    pub fn sstrt_context_enqueue(
        ctx: *mut Context,
        nb_tensors: i32,
        names: *const *const c_char,
        ptrs: *const *mut c_void,
        sizes: *const usize,
        stream: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn sstrt_host_runner_create(
        engine: *mut Engine,
        input_name: *const c_char,
        class_name: *const c_char,
        mask_name: *const c_char,
        max_batch: i32,
        input_per_image: usize,
        class_per_image: usize,
        mask_per_image: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut HostRunner;
    pub fn sstrt_stream_synchronize(stream: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
    pub fn sstrt_host_runner_free(runner: *mut HostRunner);
    /// Borrowed: valid while the runner lives, never freed with `sstrt_context_free`.
    pub fn sstrt_host_runner_context(runner: *mut HostRunner) -> *mut Context;
    pub fn sstrt_host_runner_infer(
        runner: *mut HostRunner,
        input: *const f32,
        batch: i32,
        channels: i32,
        height: i32,
        width: i32,
        class_out: *mut f32,
        mask_out: *mut f32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}
