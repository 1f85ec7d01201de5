//! The bridge from TensorRT's progress monitor (shim: `Progress`) to a Rust closure.
//!
//! TensorRT calls its `IProgressMonitor` from several internal threads. The shim
//! serializes those calls, and this side does not rely on it: the closure sits behind a
//! [`Mutex`] reached through a shared reference, and it must be `Send` because it runs on
//! TensorRT's threads. Always compiled (no TensorRT symbol is used), so that it is tested
//! everywhere.

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use super::BuildEvent;

/// `SSTRT_PHASE_*` of shim/segstream_trt.h.
pub const PHASE_START: i32 = 0;
pub const PHASE_STEP: i32 = 1;
pub const PHASE_FINISH: i32 = 2;

/// A progress callback: return `false` to cancel the build.
pub type ProgressFn<'a> = dyn FnMut(&BuildEvent<'_>) -> bool + Send + 'a;

/// What the shim's `progress_user` points to during one build.
pub struct ProgressState<'a> {
    f: Mutex<&'a mut ProgressFn<'a>>,
}

impl<'a> ProgressState<'a> {
    pub fn new(f: &'a mut ProgressFn<'a>) -> Self {
        ProgressState { f: Mutex::new(f) }
    }

    /// The `progress_user` pointer for the shim; valid while `self` is.
    pub fn as_user(&self) -> *mut c_void {
        self as *const ProgressState<'a> as *mut c_void
    }
}

/// TensorRT's progress callback: to the closure of the [`ProgressState`] at `user`.
/// Returns non-zero to cancel: when the closure says so, panics, or its lock is poisoned.
///
/// # Safety
/// `user` must come from [`ProgressState::as_user`] of a state alive for the call; `phase`
/// and `parent` must be null or NUL-terminated strings valid for the call.
pub unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    parent: *const c_char,
    step: i32,
    nb_steps: i32,
) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if user.is_null() {
            return true;
        }
        // SAFETY: `user` points to a live ProgressState (the caller's contract); only a
        // shared reference is made, and the closure inside is reached through its Mutex,
        // so concurrent calls from several TensorRT threads are sound.
        let state = unsafe { &*(user as *const ProgressState<'_>) };
        let s = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: the shim passes NUL-terminated strings valid for this call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let phase = s(phase);
        let parent = s(parent);
        let ev = match event {
            PHASE_START => BuildEvent::PhaseStart { phase: &phase, parent: &parent, steps: nb_steps.max(0) as u32 },
            PHASE_STEP => BuildEvent::Step { phase: &phase, step: step.max(0) as u32 },
            PHASE_FINISH => BuildEvent::PhaseFinish { phase: &phase },
            _ => return true,
        };
        // A poisoned lock (an earlier call panicked) cancels.
        let Ok(mut f) = state.f.lock() else { return false };
        (*f)(&ev)
    }));
    match r {
        Ok(true) => 0,
        // A `false` answer or a panic in the callback cancels the build.
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn call(state: &ProgressState<'_>, event: i32, phase: &CStr, step: i32) -> i32 {
        // SAFETY: `state` is alive; the strings are NUL-terminated.
        unsafe { progress_trampoline(state.as_user(), event, phase.as_ptr(), c"".as_ptr(), step, 10) }
    }

    /// Item 12: calls from several threads at once reach the closure one at a time.
    #[test]
    fn concurrent_calls_are_serialized() {
        let mut steps = 0u32;
        let mut inside = false;
        let mut overlapped = false;
        let mut f = |ev: &BuildEvent<'_>| {
            if inside {
                overlapped = true;
            }
            inside = true;
            if let BuildEvent::Step { .. } = ev {
                steps += 1;
            }
            std::thread::yield_now();
            inside = false;
            true
        };
        {
            let state = ProgressState::new(&mut f);
            let phase = CString::new("Building").unwrap();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for i in 0..250 {
                            assert_eq!(call(&state, PHASE_STEP, &phase, i), 0);
                        }
                    });
                }
            });
            assert_eq!(call(&state, PHASE_START, &phase, 0), 0);
            assert_eq!(call(&state, PHASE_FINISH, &phase, 0), 0);
            assert_eq!(call(&state, 99, &phase, 0), 0);
        }
        assert_eq!(steps, 1000);
        assert!(!overlapped);
    }

    #[test]
    fn false_or_panic_cancels_without_unwinding() {
        let phase = CString::new("p").unwrap();
        let mut n = 0;
        let mut stop_at_3 = |_: &BuildEvent<'_>| {
            n += 1;
            n < 3
        };
        let state = ProgressState::new(&mut stop_at_3);
        assert_eq!(call(&state, PHASE_STEP, &phase, 0), 0);
        assert_eq!(call(&state, PHASE_STEP, &phase, 1), 0);
        assert_eq!(call(&state, PHASE_STEP, &phase, 2), 1);
        let mut boom = |_: &BuildEvent<'_>| -> bool { panic!("callback bug") };
        let state = ProgressState::new(&mut boom);
        assert_eq!(call(&state, PHASE_STEP, &phase, 0), 1);
        // The lock is poisoned now: still a cancel, still no unwind.
        assert_eq!(call(&state, PHASE_STEP, &phase, 1), 1);
        // Null user pointer: ignored.
        // SAFETY: null is handled before any dereference.
        assert_eq!(unsafe { progress_trampoline(std::ptr::null_mut(), PHASE_STEP, phase.as_ptr(), std::ptr::null(), 0, 0) }, 0);
    }
}
