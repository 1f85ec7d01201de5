//! What `mask2former` reports: the counters of its `stats` property and end-of-stream
//! `segstream-summary` message, the per-frame `segstream-frame` message, and the
//! `batch-stats` of its batching group.

use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;
use gstreamer as gst;

use crate::elements::meta::SegmentationInfo;
use crate::segmentation::Segmentation;

/// Counters since start.
#[derive(Default)]
pub(super) struct Counters {
    pub frames: AtomicU64,
    pub inferred: AtomicU64,
    pub stale: AtomicU64,
    pub dropped: AtomicU64,
    pub skipped: AtomicU64,
    /// CUDA frames the GPU stages read on the device.
    pub cuda_frames: AtomicU64,
    /// CUDA frames read through system memory (a copy: another context, or no GPU stages).
    pub cuda_copied: AtomicU64,
    /// Frames that met an unreachable inference server (`backend=triton`): each then got
    /// the last result (stale), none (skipped) or waited, as `overload` says.
    pub unavailable: AtomicU64,
}

impl Counters {
    pub fn reset(&self) {
        for c in [
            &self.frames,
            &self.inferred,
            &self.stale,
            &self.dropped,
            &self.skipped,
            &self.cuda_frames,
            &self.cuda_copied,
            &self.unavailable,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as a structure named `name` (`stats`, or the summary message).
    pub fn structure(&self, name: &str) -> gst::Structure {
        gst::Structure::builder(name)
            .field("frames", self.frames.load(Ordering::Relaxed))
            .field("inferred", self.inferred.load(Ordering::Relaxed))
            .field("stale", self.stale.load(Ordering::Relaxed))
            .field("dropped", self.dropped.load(Ordering::Relaxed))
            .field("skipped", self.skipped.load(Ordering::Relaxed))
            .field("cuda-frames", self.cuda_frames.load(Ordering::Relaxed))
            .field("cuda-copied", self.cuda_copied.load(Ordering::Relaxed))
            .field("unavailable", self.unavailable.load(Ordering::Relaxed))
            .build()
    }
}

/// Post the per-frame `segstream-frame` element message.
pub(super) fn post_frame_message(
    element: &super::Mask2Former,
    buf: &gst::BufferRef,
    seg: &Segmentation,
    info: &SegmentationInfo,
) {
    let labels: Vec<String> = seg.segments.iter().map(|s| s.label.clone()).collect();
    let s = gst::Structure::builder(crate::elements::FRAME_MESSAGE)
        .field("frame", info.frame)
        .field("pts", buf.pts())
        .field("width", seg.width)
        .field("height", seg.height)
        .field("model", info.model.as_str())
        .field("task", seg.task.as_str())
        .field("stale", info.stale)
        .field("segments", seg.segments.len() as u32)
        .field("labels", gst::Array::new(labels))
        .field("preprocess-ms", info.timings.preprocess_ms)
        .field("inference-ms", info.timings.inference_ms)
        .field("postprocess-ms", info.timings.postprocess_ms)
        .build();
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
}

/// The `batch-stats` property: the counters of the batching group `name` (empty when
/// there is none).
pub(super) fn batch_stats(name: Option<&str>) -> gst::Structure {
    let mut b = gst::Structure::builder("batch-stats");
    if let Some(s) = name.and_then(crate::backend::batching::stats) {
        b = b
            .field("requests", s.requests)
            .field("images", s.images)
            .field("batches", s.batches)
            .field("backend-calls", s.backend_calls)
            .field("multi-image-batches", s.multi_image_batches)
            .field("max-batch", s.max_batch as u64)
            .field("members", s.members as u64);
    }
    b.build()
}
