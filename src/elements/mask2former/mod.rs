//! `mask2former`: in-place video filter that segments each frame with a Mask2Former
//! model and attaches a [`SegmentationMeta`](crate::elements::SegmentationMeta).
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert \
//!     ! mask2former model=samples/models/shapes-m2f.onnx ! segoverlay ! videoconvert ! autovideosink
//! ```
//!
//! The model (`model` property, `x.onnx` with its card `x.json` beside it) is opened when
//! the element starts (READY → PAUSED). Rust applications can hand the element an already
//! opened [`Segmenter`] instead with [`Mask2Former::set_segmenter`] (the CLI does this to
//! load a model once for a batch of files; the element tests do it with a fake backend).

mod imp;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstreamer as gst;

use crate::backend::select::{BackendKind, Device};
use crate::segmenter::{Segmenter, SegmenterConfig};

glib::wrapper! {
    pub struct Mask2Former(ObjectSubclass<imp::Mask2Former>)
        @extends gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

impl Mask2Former {
    /// Use `segmenter` instead of opening the `model` property on the next start. The
    /// element keeps it across restarts (it goes back to this slot on stop) until
    /// [`Mask2Former::take_segmenter`] takes it out. Rust-only: not a GObject property.
    pub fn set_segmenter(&self, segmenter: Segmenter) {
        self.imp().set_segmenter(segmenter);
    }

    /// Take back a segmenter given with [`Mask2Former::set_segmenter`] (only while the
    /// element is stopped, i.e. in READY or NULL; `None` otherwise).
    pub fn take_segmenter(&self) -> Option<Segmenter> {
        self.imp().take_segmenter()
    }
}

/// The `task` property: which inference to run.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamTask")]
pub enum TaskSetting {
    /// The model card's default task.
    #[default]
    #[enum_value(name = "The model card's default task", nick = "default")]
    Default = 0,
    #[enum_value(name = "Panoptic: things and stuff, one segment per instance", nick = "panoptic")]
    Panoptic = 1,
    #[enum_value(
        name = "Instance: things only, segments may overlap in score order",
        nick = "instance"
    )]
    Instance = 2,
    #[enum_value(name = "Semantic: one segment per class", nick = "semantic")]
    Semantic = 3,
}

/// The `semantics` property: whose post-processing to reproduce (see
/// [`crate::postprocess::Semantics`]).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamSemantics")]
pub enum SemanticsSetting {
    #[default]
    #[enum_value(
        name = "detectron2: crop the padding, then resize the masks to the frame",
        nick = "detectron2"
    )]
    Detectron2 = 0,
    #[enum_value(
        name = "transformers: post_process_*_segmentation exactly (masks through a 384x384 square)",
        nick = "transformers"
    )]
    Transformers = 1,
}

impl From<SemanticsSetting> for crate::postprocess::Semantics {
    fn from(s: SemanticsSetting) -> Self {
        match s {
            SemanticsSetting::Detectron2 => crate::postprocess::Semantics::Detectron2,
            SemanticsSetting::Transformers => crate::postprocess::Semantics::Transformers,
        }
    }
}

impl TaskSetting {
    pub fn task(self) -> Option<crate::segmentation::Task> {
        use crate::segmentation::Task;
        match self {
            TaskSetting::Default => None,
            TaskSetting::Panoptic => Some(Task::Panoptic),
            TaskSetting::Instance => Some(Task::Instance),
            TaskSetting::Semantic => Some(Task::Semantic),
        }
    }
}

impl From<crate::segmentation::Task> for TaskSetting {
    fn from(t: crate::segmentation::Task) -> Self {
        use crate::segmentation::Task;
        match t {
            Task::Panoptic => TaskSetting::Panoptic,
            Task::Instance => TaskSetting::Instance,
            Task::Semantic => TaskSetting::Semantic,
        }
    }
}

/// The `mode` property: where inference runs.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamMode")]
pub enum ModeSetting {
    /// On the streaming thread: each frame waits for its own result.
    #[default]
    #[enum_value(name = "Sync: inference on the streaming thread", nick = "sync")]
    Sync = 0,
    /// On a worker thread; the `overload` policy applies while it is busy.
    #[enum_value(
        name = "Async: inference on a worker thread, frames pushed from it in order",
        nick = "async"
    )]
    Async = 1,
}

/// The `overload` property: what `mode=async` does with a frame that arrives while the
/// worker is busy with an earlier one.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamOverload")]
pub enum OverloadSetting {
    /// Pass the frame on with the last result, marked stale.
    #[default]
    #[enum_value(name = "Drop: pass the frame on with the last result, marked stale", nick = "drop")]
    Drop = 0,
    /// Pass the frame on without a SegmentationMeta.
    #[enum_value(name = "Skip: pass the frame on without a result", nick = "skip")]
    Skip = 1,
    /// Block the streaming thread until the worker is free (back-pressure, as sync).
    #[enum_value(name = "Wait: block upstream until the worker is free", nick = "wait")]
    Wait = 2,
}

/// The `backend` property (names and meaning: [`BackendKind`]).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamBackend")]
pub enum BackendSetting {
    #[default]
    #[enum_value(name = "ONNX Runtime (CUDA or CPU, as the device property says)", nick = "onnxruntime")]
    OnnxRuntime = 0,
    #[enum_value(name = "ONNX Runtime's CUDA execution provider", nick = "onnxruntime-cuda")]
    OnnxRuntimeCuda = 1,
    #[enum_value(
        name = "ONNX Runtime's TensorRT execution provider (engine cache beside the model)",
        nick = "onnxruntime-tensorrt"
    )]
    OnnxRuntimeTensorRt = 2,
    #[enum_value(
        name = "Native TensorRT: a .engine file, or an .onnx built into one beside it on first use (needs the tensorrt feature)",
        nick = "tensorrt"
    )]
    TensorRt = 3,
}

impl From<BackendSetting> for BackendKind {
    fn from(b: BackendSetting) -> Self {
        match b {
            BackendSetting::OnnxRuntime => BackendKind::OnnxRuntime,
            BackendSetting::OnnxRuntimeCuda => BackendKind::OnnxRuntimeCuda,
            BackendSetting::OnnxRuntimeTensorRt => BackendKind::OnnxRuntimeTensorRt,
            BackendSetting::TensorRt => BackendKind::TensorRt,
        }
    }
}

/// The `device` property.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamDevice")]
pub enum DeviceSetting {
    /// The backend's best device, falling back in the documented order.
    #[default]
    #[enum_value(
        name = "Best available: the backend's GPU provider, falling back towards the CPU (ONNX Runtime only)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "CPU (ONNX Runtime)", nick = "cpu")]
    Cpu = 1,
    #[enum_value(name = "CUDA device, no fallback: an error if the runtime lacks it", nick = "cuda")]
    Cuda = 2,
}

/// Name of the element message `mask2former` posts at end of stream (and that its `stats`
/// property holds at any time): `frames`, `inferred`, `stale`, `dropped`, `skipped` (all
/// `u64`). `stale`: frames that carried an earlier frame's result (`interval` > 1 or
/// `overload=drop`); `dropped`: frames whose inference was dropped because the worker was
/// busy (`overload=drop` or `skip`); `skipped`: frames passed on without a result
/// (`overload=skip`).
pub const SUMMARY_MESSAGE: &str = "segstream-summary";

impl From<DeviceSetting> for Device {
    fn from(d: DeviceSetting) -> Self {
        match d {
            DeviceSetting::Auto => Device::Auto,
            DeviceSetting::Cpu => Device::Cpu,
            DeviceSetting::Cuda => Device::Cuda,
        }
    }
}

/// Open a model with `cfg.backend` on `device` (overriding `cfg.device`), falling back as
/// [`crate::backend::select`] documents: with `Auto`, ONNX Runtime tries its GPU providers
/// first and ends on the CPU (a CPU-only runtime fails those at once); an explicit device
/// or the native TensorRT backend does not fall back.
pub fn open_segmenter(cfg: &SegmenterConfig, device: DeviceSetting) -> crate::Result<Segmenter> {
    let mut cfg = cfg.clone();
    cfg.device = device.into();
    Segmenter::open_auto(&cfg)
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "mask2former", gst::Rank::NONE, Mask2Former::static_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property nick is the name the CLI and the library parse to the same backend.
    #[test]
    fn property_nicks_are_the_backend_and_device_names() {
        use BackendSetting as B;
        use DeviceSetting as D;
        let class = glib::EnumClass::with_type(B::static_type()).unwrap();
        let all = [B::OnnxRuntime, B::OnnxRuntimeCuda, B::OnnxRuntimeTensorRt, B::TensorRt];
        assert_eq!(class.values().len(), all.len());
        for b in all {
            let nick = class.value(b as i32).unwrap().nick();
            assert_eq!(nick.parse::<BackendKind>().unwrap(), BackendKind::from(b), "{nick}");
        }
        let class = glib::EnumClass::with_type(D::static_type()).unwrap();
        let all = [D::Auto, D::Cpu, D::Cuda];
        assert_eq!(class.values().len(), all.len());
        for d in all {
            let nick = class.value(d as i32).unwrap().nick();
            assert_eq!(nick.parse::<Device>().unwrap(), Device::from(d), "{nick}");
        }
    }
}
