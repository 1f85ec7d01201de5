//! GPU path (cargo feature `cuda`): frames stay on the device. A cudarc-based context and
//! stream owner ([`CudaContext`]), kernels compiled at run time with NVRTC and cached per
//! device, and the three GPU stages with the CPU functions as their reference:
//!
//! * [`preprocess`]: NV12 / I420 / RGB / RGBA / BGRx device frame → resized, normalized,
//!   padded NCHW f32 or f16 tensor in a device buffer the backend can bind;
//! * [`postprocess`]: panoptic post-process from the two logits tensors, the mask tensor
//!   never leaving the device: frame-size id map, per-segment area, bbox and score;
//! * [`overlay`]: alpha compositing in place on NV12 and RGBA / BGRx / RGB device frames.
//!
//! The build needs neither a GPU nor the CUDA toolkit: cudarc loads libcuda and libnvrtc
//! at run time. cudarc panics when it first touches a library that is absent, so
//! [`probe`] looks for both first and turns absence into [`Error::CudaUnavailable`];
//! [`select`] then keeps `device=auto` on the CPU with the reason, while `device=cuda`
//! returns the error.
//!
//! Without the feature only the host-side tables ([`taps`], tested on every machine) and
//! [`select`] exist; `device=cuda` then says the build lacks the feature.

pub mod frame;
pub mod memory;
pub mod stages;
pub mod taps;

#[cfg(feature = "cuda")]
mod context;
#[cfg(feature = "cuda")]
pub use context::{CudaContext, DeviceInfo};
#[cfg(feature = "cuda")]
pub mod bench;
#[cfg(feature = "cuda")]
pub mod overlay;
#[cfg(feature = "cuda")]
pub mod postprocess;
#[cfg(feature = "cuda")]
pub mod preprocess;

use crate::backend::select::Device;
use crate::Result;
#[cfg(any(test, not(feature = "cuda")))]
use crate::Error;

/// Where pre/post-processing and overlay run, as decided by [`select`].
#[derive(Debug, Clone)]
pub enum Processing {
    /// On the CPU. `fallback` says why the GPU was not used when `device=auto` asked
    /// for the best device (None when the CPU was asked for).
    Cpu { fallback: Option<String> },
    /// On this CUDA device.
    #[cfg(feature = "cuda")]
    Cuda(std::sync::Arc<CudaContext>),
}

impl Processing {
    pub fn is_cuda(&self) -> bool {
        !matches!(self, Processing::Cpu { .. })
    }
}

/// Is a CUDA driver (libcuda) and NVRTC (libnvrtc) loadable, and is there a device?
/// `Ok` with the device count, or the reason as [`Error::CudaUnavailable`] /
/// [`Error::FeatureDisabled`]. Never panics.
pub fn probe() -> Result<usize> {
    #[cfg(feature = "cuda")]
    {
        context::probe()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(Error::FeatureDisabled { feature: "cuda", what: "GPU pre/post-processing (device=cuda)".into() })
    }
}

/// Decide where processing runs for `device` on CUDA device `ordinal`:
/// `cpu` → CPU; `cuda` → that device or the error (never a silent fallback); `auto` → the
/// device when CUDA works, else the CPU with the reason in `fallback`.
pub fn select(device: Device, ordinal: usize) -> Result<Processing> {
    select_with(device, || open(ordinal))
}

#[cfg(feature = "cuda")]
fn open(ordinal: usize) -> Result<Processing> {
    Ok(Processing::Cuda(CudaContext::new(ordinal)?))
}

#[cfg(not(feature = "cuda"))]
fn open(_ordinal: usize) -> Result<Processing> {
    probe().map(|_| Processing::Cpu { fallback: None })
}

/// [`select`] with the device opener given (tests inject an absent driver).
pub(crate) fn select_with(device: Device, open: impl FnOnce() -> Result<Processing>) -> Result<Processing> {
    match device {
        Device::Cpu => Ok(Processing::Cpu { fallback: None }),
        Device::Cuda => open(),
        Device::Auto => match open() {
            Ok(p) => Ok(p),
            Err(e) => Ok(Processing::Cpu { fallback: Some(format!("GPU processing unavailable, using the CPU: {e}")) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absent() -> Result<Processing> {
        Err(Error::CudaUnavailable("libcuda.so not found (no NVIDIA driver)".into()))
    }

    #[test]
    fn auto_falls_back_to_cpu_with_the_reason() {
        match select_with(Device::Auto, absent).unwrap() {
            Processing::Cpu { fallback: Some(msg) } => {
                assert!(msg.contains("using the CPU") && msg.contains("libcuda.so not found"), "{msg}");
            }
            other => panic!("expected a CPU fallback, got {other:?}"),
        }
    }

    #[test]
    fn explicit_cuda_is_a_typed_error() {
        let e = select_with(Device::Cuda, absent).unwrap_err();
        assert!(matches!(e, Error::CudaUnavailable(_)), "{e:?}");
        assert!(e.to_string().starts_with("CUDA is not available: "), "{e}");
    }

    #[test]
    fn cpu_never_opens_the_device() {
        let p = select_with(Device::Cpu, || panic!("must not be called")).unwrap();
        assert!(matches!(p, Processing::Cpu { fallback: None }));
    }

    /// The real probe on this machine: either a device is there and `auto` uses it, or
    /// the probe's typed error is what `auto` reports and `cuda` returns. Both branches
    /// check something; neither panics (cudarc's missing-library panic must not escape).
    #[test]
    fn real_probe_and_selection_agree() {
        match probe() {
            Ok(n) => {
                assert!(n > 0);
                assert!(select(Device::Auto, 0).unwrap().is_cuda());
            }
            Err(e) => {
                assert!(matches!(e, Error::CudaUnavailable(_) | Error::FeatureDisabled { .. }), "{e:?}");
                match select(Device::Auto, 0).unwrap() {
                    Processing::Cpu { fallback: Some(msg) } => assert!(msg.contains(&e.to_string()), "{msg} vs {e}"),
                    other => panic!("expected a CPU fallback, got {other:?}"),
                }
                let err = select(Device::Cuda, 0).unwrap_err();
                assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&e));
            }
        }
    }
}
