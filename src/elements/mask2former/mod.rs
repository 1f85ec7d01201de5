//! `mask2former`: in-place video filter that segments each frame with a Mask2Former
//! model and attaches a [`SegmentationMeta`](crate::elements::SegmentationMeta).
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert \
//!     ! mask2former model=samples/models/shapes-m2f.onnx ! segoverlay ! videoconvert ! autovideosink
//! ```
//!
//! The model (`model` property, `x.onnx` with its card `x.json` beside it) is opened when
//! the element starts (READY → PAUSED). Rust applications can set every property at once
//! with [`Mask2Former::set_settings`] (the library's [`Settings`], the type the properties
//! write into), and hand the element an already opened [`Segmenter`] with
//! [`Mask2Former::set_segmenter`] (the command does both to load a model once for a batch
//! of files; the element tests inject a fake backend).
//!
//! Files: `imp.rs` is the GObject / BaseTransform glue; `properties.rs` maps properties to
//! [`Settings`]; `inference.rs` holds the per-stream inference state; `worker.rs` is
//! `mode=async`; `stats.rs` the counters and messages.

mod imp;
mod inference;
mod properties;
mod stats;
mod worker;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstreamer as gst;

use crate::segmenter::Segmenter;
use crate::settings::Settings;

glib::wrapper! {
    pub struct Mask2Former(ObjectSubclass<imp::Mask2Former>)
        @extends gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

impl Mask2Former {
    /// Use `segmenter` instead of opening the `model` setting on the next start. The
    /// element keeps it across restarts (it goes back to this slot on stop) until
    /// [`Mask2Former::take_segmenter`] takes it out. Rust-only: not a GObject property.
    /// The segmenter holds no user setting: task, semantics and thresholds come from the
    /// element's settings on every frame.
    pub fn set_segmenter(&self, segmenter: Segmenter) {
        self.imp().set_segmenter(segmenter);
    }

    /// Take back a segmenter given with [`Mask2Former::set_segmenter`] (only while the
    /// element is stopped, i.e. in READY or NULL; `None` otherwise).
    pub fn take_segmenter(&self) -> Option<Segmenter> {
        self.imp().take_segmenter()
    }

    /// Run frames in CUDA memory through `stages` instead of the CUDA kernels the `device`
    /// setting would open (`None`: back to those). Rust-only, taken on the next start; the
    /// test suite gives [`HostStages`](crate::cuda::stages::HostStages) here to test the
    /// CUDA memory plumbing with a host double of the driver.
    pub fn set_device_stages(&self, stages: Option<std::sync::Arc<dyn crate::cuda::stages::DeviceStages>>) {
        self.imp().set_device_stages(stages);
    }

    /// Set every property at once (what the properties write into). Like the properties,
    /// the model, backend, device, threads, mode and batching take effect on the next start.
    pub fn set_settings(&self, settings: Settings) {
        self.imp().set_settings(settings);
    }

    /// The current settings (`None` post-processing fields: the model card's value).
    pub fn settings(&self) -> Settings {
        self.imp().settings()
    }
}

/// Name of the element message `mask2former` posts at end of stream (and that its `stats`
/// property holds at any time): `frames`, `inferred`, `stale`, `dropped`, `skipped` (all
/// `u64`; also `cuda-frames` and `cuda-copied`). `stale`: frames that carried an earlier frame's result (`interval` > 1 or
/// `overload=drop`); `dropped`: frames whose inference was dropped because the worker was
/// busy (`overload=drop` or `skip`); `skipped`: frames passed on without a result
/// (`overload=skip`).
pub const SUMMARY_MESSAGE: &str = "segstream-summary";

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "mask2former", gst::Rank::NONE, Mask2Former::static_type())
}
