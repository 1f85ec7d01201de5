//! GStreamer's CUDA memory (`memory:CUDAMemory`, libgstcuda-1.0, GStreamer ≥ 1.22) for the
//! elements: the library bound at run time ([`GstCuda`]), the context a chain shares
//! ([`CudaCtx`], [`ElementContext`]), caps ([`cuda_caps`]) and mapping a buffer to a
//! [`DeviceFrame`](super::frame::DeviceFrame) ([`map_device`]).
//!
//! No cargo feature: the binding costs nothing where libgstcuda or the driver is absent
//! (every entry point then returns [`Error::CudaUnavailable`](crate::Error) or `false`),
//! and it is what the test suite's CUDA driver double exercises on machines without a GPU.
//! What runs on the mapped frames is [`super::stages`].

mod context;
mod ffi;
mod map;

pub use context::{CONTEXT_TYPE, CudaCtx, ElementContext};
pub use ffi::GstCuda;
pub use map::{DeviceMapping, MAP_CUDA, NotMapped, map_device, memory_context};

use gstreamer as gst;

/// The caps feature of CUDA memory.
pub const CAPS_FEATURE: &str = "memory:CUDAMemory";

/// Formats the elements take in CUDA memory.
pub const CUDA_FORMATS: [&str; 4] = ["NV12", "I420", "RGBA", "BGRx"];

/// `video/x-raw(memory:CUDAMemory)` in [`CUDA_FORMATS`], any size and rate.
pub fn cuda_caps() -> gst::Caps {
    let mut caps = gst::Caps::builder("video/x-raw")
        .field("format", gst::List::new(CUDA_FORMATS))
        .field("width", gst::IntRange::new(1, i32::MAX))
        .field("height", gst::IntRange::new(1, i32::MAX))
        .field("framerate", gst::FractionRange::new(gst::Fraction::new(0, 1), gst::Fraction::new(i32::MAX, 1)))
        .build();
    caps.make_mut().set_features_simple(Some(gst::CapsFeatures::new([CAPS_FEATURE])));
    caps
}

/// Whether `caps` (fixed, negotiated) are CUDA memory.
pub fn is_cuda_caps(caps: &gst::CapsRef) -> bool {
    caps.features(0).is_some_and(|f| f.contains(CAPS_FEATURE))
}

/// `caps` without the structures that carry the CUDA memory feature.
pub fn without_cuda(caps: &gst::Caps) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.make_mut();
        for (s, f) in caps.iter_with_features() {
            if !f.contains(CAPS_FEATURE) {
                out.append_structure_full(s.to_owned(), Some(f.to_owned()));
            }
        }
    }
    out
}

/// `transform_caps` of an in-place filter that may take CUDA memory: the same caps on both
/// sides, without the CUDA memory structures unless `cuda`, intersected with `filter`.
pub fn same_caps(caps: &gst::Caps, filter: Option<&gst::Caps>, cuda: bool) -> gst::Caps {
    let caps = if cuda { caps.clone() } else { without_cuda(caps) };
    match filter {
        Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
        None => caps,
    }
}
