//! Per-stream inference state of `mask2former`: opening the model, segmenting one buffer
//! with the element's settings, tracking, the last result, and attaching the meta.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use gstreamer as gst;
use gst_video::prelude::*;
use gstreamer_video as gst_video;

use super::imp::CAT;
use crate::elements::meta::{SegmentationInfo, SegmentationMeta};
use crate::frame::{Frame, PixelFormat};
use crate::model::Label;
use crate::segmentation::Segmentation;
use crate::segmenter::{Segmenter, SegmenterConfig, Timings};
use crate::settings::Settings;
use crate::tracking::Tracker;
use crate::util::panic_message;

/// The negotiated input: video info and the pixel format the library reads.
pub(super) type Video = (gst_video::VideoInfo, PixelFormat);

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
    tracker: Option<Tracker>,
    /// Last computed result, reused for `interval` > 1 and `overload=drop`.
    last: Option<(Arc<Segmentation>, Timings)>,
}

impl Inference {
    pub fn new(segmenter: Segmenter) -> Self {
        Inference { segmenter, tracker: None, last: None }
    }

    /// Forget the last result and the tracks (flush).
    pub fn reset(&mut self) {
        self.last = None;
        if let Some(t) = self.tracker.as_mut() {
            t.reset();
        }
    }

    /// Segment `buf` with the post-processing of `settings`, track it if asked, and
    /// remember it.
    pub fn segment(
        &mut self,
        settings: &Settings,
        buf: &gst::BufferRef,
        video: &Video,
        frame_no: u64,
    ) -> Result<(Arc<Segmentation>, Timings), gst::ErrorMessage> {
        let (info, format) = video;
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
        let (mut seg, timings) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} failed: {e}")));
            }
            Err(p) => {
                return Err(gst::error_msg!(
                    gst::StreamError::Failed,
                    ("segmentation of frame {frame_no} panicked: {}", panic_message(&p))
                ));
            }
        };
        if settings.track {
            let tracker = match &mut self.tracker {
                Some(t) if *t.config() == settings.tracker => t,
                slot => slot.insert(Tracker::new(settings.tracker)),
            };
            tracker.update(&mut seg);
        } else {
            self.tracker = None;
        }
        let seg = Arc::new(seg);
        self.last = Some((seg.clone(), timings));
        Ok((seg, timings))
    }

    /// The last result if it fits a `width`x`height` frame.
    pub fn last_for(&self, width: u32, height: u32) -> Option<(Arc<Segmentation>, Timings)> {
        self.last.clone().filter(|(s, _)| (s.width, s.height) == (width, height))
    }
}

/// What every frame's meta carries about the stream.
pub(super) struct StreamInfo {
    pub labels: Arc<[Label]>,
    pub model_name: String,
}

/// One result, ready to attach to its frame.
pub(super) struct Outcome {
    pub seg: Arc<Segmentation>,
    pub timings: Timings,
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
    let Outcome { seg, timings, frame_no, stale } = out;
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
    SegmentationMeta::replace(buf, seg, stream.labels.clone(), info)
        .map(|_| ())
        .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ("cannot attach SegmentationMeta: {e}")))
}
