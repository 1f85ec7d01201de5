//! The user's settings, each with one type shared by the library, the elements and the
//! command, and one default.
//!
//! - [`PostSettings`]: which post-processing to run (task, semantics, thresholds). `None`
//!   means "the model card's value"; [`PostSettings::resolve`] is the one place where the
//!   card's defaults meet the user's settings.
//! - [`Settings`]: everything `mask2former` takes, one field per property. The element
//!   keeps one of these behind its properties; the command builds one and hands it to the
//!   element ([`crate::elements::Mask2Former::set_settings`]).
//!
//! The enums that are properties ([`crate::segmentation::Task`],
//! [`crate::postprocess::Semantics`], [`BackendKind`], [`Device`], [`Mode`], [`Overload`],
//! [`Precision`], [`PerformanceHint`])
//! derive `glib::Enum` where they are defined, so a property and a command-line flag parse
//! to the same value.

use std::path::PathBuf;
use std::time::Duration;

use gstreamer::glib;

use crate::backend::batching::BatchConfig;
use crate::backend::openvino::{self, PerformanceHint, Precision};
use crate::backend::select::{BackendKind, Device};
use crate::model::Defaults;
use crate::postprocess::{Params, Semantics};
use crate::segmentation::Task;
use crate::tracking::TrackerConfig;
use crate::{Error, Result};

/// Post-processing as the user asked for it; `None` fields take the model card's value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PostSettings {
    pub task: Option<Task>,
    pub semantics: Semantics,
    pub score_threshold: Option<f32>,
    pub overlap_threshold: Option<f32>,
    pub mask_threshold: Option<f32>,
}

impl PostSettings {
    /// The thresholds and task to run: each field the user set, else the card's default.
    pub fn resolve(&self, card: &Defaults) -> Params {
        Params {
            task: self.task.unwrap_or(card.task),
            score_threshold: self.score_threshold.unwrap_or(card.score_threshold),
            overlap_threshold: self.overlap_threshold.unwrap_or(card.overlap_threshold),
            mask_threshold: self.mask_threshold.unwrap_or(card.mask_threshold),
            ..Params::default()
        }
    }
}

/// Where `mask2former` runs inference (the `mode` property, the command's `--async`).
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamMode")]
pub enum Mode {
    /// On the streaming thread: each frame waits for its own result.
    #[default]
    #[enum_value(name = "Sync: inference on the streaming thread", nick = "sync")]
    Sync = 0,
    /// On a worker thread; the [`Overload`] policy applies while it is busy.
    #[enum_value(name = "Async: inference on a worker thread, frames pushed from it in order", nick = "async")]
    Async = 1,
}

/// What `mode=async` does with a frame that arrives while the worker is busy with an
/// earlier one (the `overload` property, the value of the command's `--async`).
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamOverload")]
pub enum Overload {
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

impl Overload {
    pub const ALL: [Overload; 3] = [Overload::Drop, Overload::Skip, Overload::Wait];

    pub fn as_str(self) -> &'static str {
        match self {
            Overload::Drop => "drop",
            Overload::Skip => "skip",
            Overload::Wait => "wait",
        }
    }
}

impl std::str::FromStr for Overload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Overload::ALL
            .into_iter()
            .find(|o| o.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::InvalidArgument(format!("unknown overload policy {s:?} (drop, skip, wait)")))
    }
}

/// Defaults of the [`Settings`] fields that are plain numbers (the property specs show them).
pub const DEFAULT_INTERVAL: u32 = 1;
pub const DEFAULT_BATCH_SIZE: u32 = 4;
/// 10 ms, in nanoseconds (GStreamer's unit of time).
pub const DEFAULT_BATCH_TIMEOUT_NS: u64 = 10_000_000;
pub const MAX_BATCH_TIMEOUT_NS: u64 = 10_000_000_000;

/// Everything `mask2former` takes: one field per property (see `gst-inspect-1.0
/// mask2former` for each one's meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The ONNX model (or a TensorRT `.engine`), its card beside it.
    pub model: Option<PathBuf>,
    pub backend: BackendKind,
    pub device: Device,
    /// Inference threads: ONNX Runtime's intra-op threads, OpenVINO's
    /// `INFERENCE_NUM_THREADS` (0: the runtime's default).
    pub threads: u32,
    /// OpenVINO: the precision to compute in (auto: bf16 where the device and the card allow it).
    pub precision: Precision,
    /// OpenVINO: latency or throughput performance hint.
    pub performance_hint: PerformanceHint,
    /// OpenVINO: the device name (`CPU`, `GPU`, `NPU`, ...).
    pub openvino_device: String,
    /// Triton: the server's gRPC `host:port`.
    pub triton_url: String,
    /// Triton: the served model, `name` or `name:version`.
    pub triton_model: String,
    /// Triton: deadline of the connection and of each request.
    pub triton_timeout: Duration,
    /// CUDA device of the GPU stages and the shared CUDA context (-1: device 0, or a
    /// neighbour's).
    pub cuda_device_id: i32,
    pub post: PostSettings,
    /// Run the network on every Nth frame (≥ 1).
    pub interval: u32,
    /// Post a `segstream-frame` element message per frame.
    pub post_messages: bool,
    pub mode: Mode,
    pub overload: Overload,
    /// Persistent track ids, with this tracker configuration.
    pub track: bool,
    pub tracker: TrackerConfig,
    /// Cross-stream batching group to join (`None`: this element runs its own model).
    pub batch_group: Option<String>,
    pub batch: BatchConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            backend: BackendKind::default(),
            device: Device::default(),
            threads: 0,
            precision: Precision::default(),
            performance_hint: PerformanceHint::default(),
            openvino_device: openvino::DEFAULT_DEVICE.to_string(),
            triton_url: crate::backend::triton::DEFAULT_URL.to_string(),
            triton_model: String::new(),
            triton_timeout: crate::backend::triton::DEFAULT_TIMEOUT,
            cuda_device_id: -1,
            post: PostSettings::default(),
            interval: DEFAULT_INTERVAL,
            post_messages: false,
            mode: Mode::default(),
            overload: Overload::default(),
            track: false,
            tracker: TrackerConfig::default(),
            batch_group: None,
            batch: BatchConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_the_card_defaults() {
        let card = Defaults { task: Task::Semantic, score_threshold: 0.3, overlap_threshold: 0.6, mask_threshold: 0.4 };
        let p = PostSettings::default().resolve(&card);
        assert_eq!((p.task, p.score_threshold, p.overlap_threshold, p.mask_threshold), (Task::Semantic, 0.3, 0.6, 0.4));
        let user = PostSettings { task: Some(Task::Instance), mask_threshold: Some(0.9), ..PostSettings::default() };
        let p = user.resolve(&card);
        assert_eq!((p.task, p.score_threshold, p.overlap_threshold, p.mask_threshold), (Task::Instance, 0.3, 0.6, 0.9));
        assert_eq!((p.top_k, p.merge_stuff), (Params::default().top_k, Params::default().merge_stuff));
    }

    #[test]
    fn overload_names_round_trip() {
        for o in Overload::ALL {
            assert_eq!(o.as_str().parse::<Overload>().unwrap(), o);
        }
        assert!("later".parse::<Overload>().unwrap_err().to_string().contains("drop, skip, wait"));
    }
}
