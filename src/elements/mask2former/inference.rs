//! Per-stream inference state of `mask2former`: opening the model, segmenting one buffer
//! with the element's settings, tracking, the last result, and attaching the meta.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use gstreamer as gst;
use gst_video::prelude::*;
use gstreamer_video as gst_video;

use super::imp::CAT;
use super::stats::Counters;
use crate::cuda::memory::{NotMapped, map_device};
use crate::cuda::stages::{DeviceIds, DeviceStages};
use crate::elements::meta::{SegmentationInfo, SegmentationMeta};
use crate::frame::{Frame, PixelFormat};
use crate::model::Label;
use crate::segmentation::Segmentation;
use crate::segmenter::{Segmenter, SegmenterConfig, Timings};
use crate::settings::Settings;
use crate::tracking::Tracker;
use crate::util::panic_message;

/// The negotiated input.
#[derive(Debug, Clone)]
pub(super) struct Video {
    pub info: gst_video::VideoInfo,
    /// The pixel format the library reads.
    pub format: PixelFormat,
    /// The caps are CUDA memory (`memory:CUDAMemory`).
    pub cuda: bool,
}

/// A result: the segmentation, its timings, and its id map on the device when the GPU
/// stages made it.
#[derive(Debug, Clone)]
pub(super) struct Computed {
    pub seg: Arc<Segmentation>,
    pub timings: Timings,
    pub device: Option<Arc<dyn DeviceIds>>,
}

/// Open the model of `settings` (backend, device, threads), falling back as
/// [`crate::backend::select`] documents. `note` receives each earlier attempt's failure and
/// whether the user asked for that backend by name (then it is worth a warning).
pub(super) fn open(settings: &Settings, mut note: impl FnMut(&str, bool)) -> Result<Segmenter, gst::ErrorMessage> {
    let Some(model) = settings.model.clone() else {
        return Err(gst::error_msg!(
            gst::ResourceError::NotFound,
            ("no model: set the `model` property to a Mask2Former .onnx file (with its .json card beside it)")
        ));
    };
    let cfg = SegmenterConfig::from_settings(&model, settings);
    let model = model.display();
    match std::panic::catch_unwind(AssertUnwindSafe(|| Segmenter::open_auto(&cfg))) {
        Ok(Ok(s)) => {
            for n in s.fallbacks() {
                note(&format!("using {}: {n}", s.backend_name()), cfg.backend != Default::default());
            }
            Ok(s)
        }
        Ok(Err(e @ crate::Error::FeatureDisabled { .. })) => Err(gst::error_msg!(
            gst::CoreError::MissingPlugin,
            ("cannot open model {model} with backend={}: {e}", cfg.backend)
        )),
        Ok(Err(e)) => Err(gst::error_msg!(gst::ResourceError::OpenRead, ("cannot open model {model}: {e}"))),
        Err(p) => Err(gst::error_msg!(
            gst::ResourceError::OpenRead,
            ("cannot open model {model}: panic while loading: {}", panic_message(&p))
        )),
    }
}

/// Inference and what it remembers between frames. Lives in the element's state in sync
/// mode and on the worker thread in async mode.
pub(super) struct Inference {
    pub segmenter: Segmenter,
    /// The GPU stages, for frames in CUDA memory (`None`: everything on the CPU).
    stages: Option<Arc<dyn DeviceStages>>,
    counters: Arc<Counters>,
    /// Why the last CUDA frame was read through system memory (logged when it changes).
    copied_why: Option<NotMapped>,
    tracker: Option<Tracker>,
    /// Last computed result, reused for `interval` > 1 and `overload=drop`.
    last: Option<Computed>,
}

impl Inference {
    pub fn new(segmenter: Segmenter, stages: Option<Arc<dyn DeviceStages>>, counters: Arc<Counters>) -> Self {
        Inference { segmenter, stages, counters, copied_why: None, tracker: None, last: None }
    }

    /// Forget the last result and the tracks (flush).
    pub fn reset(&mut self) {
        self.last = None;
        if let Some(t) = self.tracker.as_mut() {
            t.reset();
        }
    }

    /// Segment `buf` with the post-processing of `settings`, track it if asked, and
    /// remember it. CUDA frames go to the GPU stages when they are in the stages' context,
    /// else (and system-memory frames always) through a system-memory map to the CPU stages.
    pub fn segment(
        &mut self,
        settings: &Settings,
        buf: &gst::BufferRef,
        video: &Video,
        frame_no: u64,
    ) -> Result<Computed, gst::ErrorMessage> {
        let failed = |e: crate::Error| {
            gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} failed: {e}"))
        };
        let panicked = |p: Box<dyn std::any::Any + Send>| {
            gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} panicked: {}", panic_message(&p)))
        };
        let mut on_device = None;
        if video.cuda
            && let Some(stages) = self.stages.clone()
        {
            match map_device(buf, &video.info, video.format, false, stages.cu_context()) {
                Ok(Ok(mapping)) => {
                    let segmenter = &mut self.segmenter;
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        stages.segment(segmenter, mapping.frame(), &settings.post)
                    }));
                    drop(mapping);
                    let r = r.map_err(panicked)?.map_err(failed)?;
                    Counters::add(&self.counters.cuda_frames);
                    self.copied_why = None;
                    on_device = Some(r);
                }
                Ok(Err(why)) => {
                    if self.copied_why.as_ref() != Some(&why) {
                        gst::warning!(CAT, "frame {frame_no}: {why}; the frame is read through system memory");
                        self.copied_why = Some(why);
                    }
                    Counters::add(&self.counters.cuda_copied);
                }
                Err(e) => return Err(failed(e)),
            }
        } else if video.cuda {
            Counters::add(&self.counters.cuda_copied);
        }
        let (mut seg, timings, mut device) = match on_device {
            Some(r) => (r.segmentation, r.timings, r.ids),
            None => {
                let (seg, timings) = self.segment_host(settings, buf, video, frame_no)?;
                (seg, timings, None)
            }
        };
        if settings.track {
            let tracker = match &mut self.tracker {
                Some(t) if *t.config() == settings.tracker => t,
                slot => slot.insert(Tracker::new(settings.tracker)),
            };
            tracker.update(&mut seg);
            if !tracker.split().is_empty() {
                // The tracker split a segment: the id map on the device no longer matches.
                device = None;
            }
        } else {
            self.tracker = None;
        }
        let done = Computed { seg: Arc::new(seg), timings, device };
        self.last = Some(done.clone());
        Ok(done)
    }

    /// The CPU stages on a system-memory map of `buf`.
    fn segment_host(
        &mut self,
        settings: &Settings,
        buf: &gst::BufferRef,
        video: &Video,
        frame_no: u64,
    ) -> Result<(Segmentation, Timings), gst::ErrorMessage> {
        let Video { info, format, .. } = video;
        let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
            gst::error_msg!(gst::StreamError::Failed, ("cannot map frame {frame_no} for reading"))
        })?;
        let mut planes: [&[u8]; 3] = [&[], &[], &[]];
        let mut strides = [0usize; 3];
        for p in 0..format.num_planes() {
            planes[p] = vframe
                .plane_data(p as u32)
                .map_err(|e| gst::error_msg!(gst::StreamError::Failed, ("frame {frame_no}: plane {p}: {e}")))?;
            strides[p] = vframe.plane_stride()[p].max(0) as usize;
        }
        let frame = Frame::new(*format, info.width() as usize, info.height() as usize, planes, strides)
            .map_err(|e| gst::error_msg!(gst::StreamError::Format, ("frame {frame_no}: {e}")))?;
        let segmenter = &mut self.segmenter;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.segment(&frame, &settings.post)));
        drop(vframe);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} failed: {e}"))),
            Err(p) => Err(gst::error_msg!(
                gst::StreamError::Failed,
                ("segmentation of frame {frame_no} panicked: {}", panic_message(&p))
            )),
        }
    }

    /// The last result if it fits a `width`x`height` frame.
    pub fn last_for(&self, width: u32, height: u32) -> Option<Computed> {
        self.last.clone().filter(|c| (c.seg.width, c.seg.height) == (width, height))
    }
}

/// What every frame's meta carries about the stream.
pub(super) struct StreamInfo {
    pub labels: Arc<[Label]>,
    pub model_name: String,
}

/// One result, ready to attach to its frame.
pub(super) struct Outcome {
    pub done: Computed,
    pub frame_no: u64,
    /// Computed for an earlier frame.
    pub stale: bool,
}

/// Attach `out` to `buf` as its SegmentationMeta (and post the frame message if asked).
pub(super) fn attach(
    element: &super::Mask2Former,
    buf: &mut gst::BufferRef,
    stream: &StreamInfo,
    out: Outcome,
    post_messages: bool,
) -> Result<(), gst::ErrorMessage> {
    let Outcome { done: Computed { seg, timings, device }, frame_no, stale } = out;
    let info = SegmentationInfo { frame: frame_no, model: stream.model_name.clone(), timings, stale };
    gst::trace!(
        CAT,
        obj = element,
        "frame {frame_no}: {} segments{} ({:.1}/{:.1}/{:.1} ms)",
        seg.segments.len(),
        if stale { " (stale)" } else { "" },
        timings.preprocess_ms,
        timings.inference_ms,
        timings.postprocess_ms
    );
    if post_messages {
        super::stats::post_frame_message(element, buf, &seg, &info);
    }
    SegmentationMeta::replace_with_device(buf, seg, stream.labels.clone(), info, device)
        .map(|_| ())
        .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ("cannot attach SegmentationMeta: {e}")))
}
