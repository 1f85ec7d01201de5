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

/// Why a frame has no fresh result.
#[derive(Debug)]
pub(super) enum Failure {
    /// Fatal: posted as the element's error, the stream stops.
    Error(gst::ErrorMessage),
    /// The inference server is unreachable or missed its deadline (`backend=triton`): the
    /// frame follows the overload policy and the stream goes on.
    Unavailable(String),
}

impl From<gst::ErrorMessage> for Failure {
    fn from(e: gst::ErrorMessage) -> Self {
        Failure::Error(e)
    }
}

/// How often `overload=wait` asks an unreachable server again (the backend itself waits
/// 0.5 s doubling to 8 s between real attempts; calls in between fail at once).
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Open the model of `settings` (backend, device, threads), falling back as
/// [`crate::backend::select`] documents. `note` receives each earlier attempt's failure and
/// whether the user asked for that backend by name (then it is worth a warning).
pub(super) fn open(settings: &Settings, mut note: impl FnMut(&str, bool)) -> Result<Segmenter, gst::ErrorMessage> {
    let model = match settings.model.clone() {
        Some(m) => m,
        // Triton may serve the card with the model.
        None if settings.backend == crate::backend::select::BackendKind::Triton => std::path::PathBuf::new(),
        None => {
            return Err(gst::error_msg!(
            gst::ResourceError::NotFound,
            ("no model: set the `model` property to a Mask2Former .onnx file (with its .json card beside it)")
            ));
        }
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
    /// Frames since the inference server became unreachable (`None`: it answers).
    outage: Option<u64>,
}

impl Inference {
    pub fn new(segmenter: Segmenter, stages: Option<Arc<dyn DeviceStages>>, counters: Arc<Counters>) -> Self {
        Inference { segmenter, stages, counters, copied_why: None, tracker: None, last: None, outage: None }
    }

    /// Forget the last result and the tracks (flush).
    pub fn reset(&mut self) {
        self.last = None;
        if let Some(t) = self.tracker.as_mut() {
            t.reset();
        }
    }

    /// [`Inference::segment`], and while the inference server is unreachable: with
    /// `overload=wait`, ask again every [`WAIT_POLL`] while `keep_waiting()` says so (the
    /// element runs and is not flushing). The frame counts once as `unavailable`; `say`
    /// receives one line when an outage starts and one when the server is back.
    pub fn segment_or_wait(
        &mut self,
        settings: &Settings,
        buf: &gst::BufferRef,
        video: &Video,
        frame_no: u64,
        keep_waiting: impl Fn() -> bool,
        say: impl Fn(&str),
    ) -> Result<Computed, Failure> {
        let mut counted = false;
        loop {
            match self.segment(settings, buf, video, frame_no) {
                Err(Failure::Unavailable(why)) => {
                    if !counted {
                        counted = true;
                        Counters::add(&self.counters.unavailable);
                        let n = self.outage.get_or_insert(0);
                        *n += 1;
                        if *n == 1 {
                            say(&format!(
                                "frame {frame_no}: {why}; frames get {} until it answers again",
                                match settings.overload {
                                    crate::settings::Overload::Drop => "the last result, marked stale,",
                                    crate::settings::Overload::Skip => "no result",
                                    crate::settings::Overload::Wait => "held (overload=wait)",
                                }
                            ));
                        }
                    }
                    if settings.overload != crate::settings::Overload::Wait || !keep_waiting() {
                        return Err(Failure::Unavailable(why));
                    }
                    std::thread::sleep(WAIT_POLL);
                }
                other => {
                    if other.is_ok()
                        && let Some(n) = self.outage.take()
                    {
                        say(&format!("frame {frame_no}: the inference server answers again after {n} frames without it"));
                    }
                    return other;
                }
            }
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
    ) -> Result<Computed, Failure> {
        let failed = |e: crate::Error| match e {
            crate::Error::Unavailable(why) => Failure::Unavailable(why),
            e => Failure::Error(gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} failed: {e}"))),
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
            // The tracker also compares colours (a segment that looks like a lost track may
            // continue it): it reads the frame through a system-memory map (a download for a
            // frame in CUDA memory); a frame it cannot map is tracked by masks and motion.
            let seen = with_host_frame(buf, video, frame_no, |frame| tracker.update_with_frame(&mut seg, frame));
            if let Err(e) = seen {
                gst::debug!(CAT, "frame {frame_no}: tracked without colours: {e:?}");
                tracker.update(&mut seg);
            }
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
    ) -> Result<(Segmentation, Timings), Failure> {
        let segmenter = &mut self.segmenter;
        let result = with_host_frame(buf, video, frame_no, |frame| {
            std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.segment(frame, &settings.post)))
        })?;
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(crate::Error::Unavailable(why))) => Err(Failure::Unavailable(why)),
            Ok(Err(e)) => Err(gst::error_msg!(gst::StreamError::Failed, ("segmentation of frame {frame_no} failed: {e}")).into()),
            Err(p) => Err(gst::error_msg!(
                gst::StreamError::Failed,
                ("segmentation of frame {frame_no} panicked: {}", panic_message(&p))
            )
            .into()),
        }
    }

    /// What a `width`x`height` frame gets in place of a fresh result: the last result (to
    /// mark stale) when `with_last` (`overload=drop`) and one fits, else nothing. Counted as
    /// `stale` or `skipped`.
    pub fn stand_in(&self, with_last: bool, (width, height): (u32, u32)) -> Option<Computed> {
        let last = with_last.then(|| self.last_for(width, height)).flatten();
        Counters::add(if last.is_some() { &self.counters.stale } else { &self.counters.skipped });
        last
    }

    /// The last result if it fits a `width`x`height` frame.
    pub fn last_for(&self, width: u32, height: u32) -> Option<Computed> {
        self.last.clone().filter(|c| (c.seg.width, c.seg.height) == (width, height))
    }
}

/// Run `f` on `buf` mapped for reading in system memory (a download for a frame in CUDA
/// memory); the map ends when `f` returns.
fn with_host_frame<R>(
    buf: &gst::BufferRef,
    video: &Video,
    frame_no: u64,
    f: impl FnOnce(&Frame<'_>) -> R,
) -> Result<R, gst::ErrorMessage> {
    let Video { info, format, .. } = video;
    let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info)
        .map_err(|_| gst::error_msg!(gst::StreamError::Failed, ("cannot map frame {frame_no} for reading")))?;
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
    Ok(f(&frame))
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
