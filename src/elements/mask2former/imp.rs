use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer_base as gst_base;
use gstreamer_video as gst_video;

use super::{BackendSetting, DeviceSetting, ModeSetting, OverloadSetting, SemanticsSetting, TaskSetting};
use crate::elements::meta::{SegmentationInfo, SegmentationMeta};
use crate::elements::{lock, panic_message};
use crate::frame::{Frame, PixelFormat};
use crate::model::{Defaults, Label};
use crate::segmentation::Segmentation;
use crate::segmenter::{Segmenter, SegmenterConfig, Timings};
use crate::tracking::{Tracker, TrackerConfig};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mask2former",
        gst::DebugColorFlags::empty(),
        Some("Mask2Former segmentation"),
    )
});

const DEFAULT_SCORE_THRESHOLD: f32 = 0.8;
const DEFAULT_OVERLAP_THRESHOLD: f32 = 0.8;
const DEFAULT_MASK_THRESHOLD: f32 = 0.5;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_POST_MESSAGES: bool = false;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_TRACK: bool = false;
const DEFAULT_TRACK_MAX_AGE: u32 = 30;
const DEFAULT_TRACK_IOU: f32 = 0.3;
const DEFAULT_BATCH_SIZE: u32 = 4;
/// 10 ms, in nanoseconds (GStreamer's unit of time).
const DEFAULT_BATCH_TIMEOUT: u64 = 10_000_000;
const MAX_BATCH_TIMEOUT: u64 = 10_000_000_000;
/// Frames that may wait in async mode behind the one being inferred (in `drop`/`skip`
/// mode they are pushed as soon as that inference ends). When full, upstream blocks.
const ASYNC_QUEUE: usize = 64;

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    backend: BackendSetting,
    device: DeviceSetting,
    task: TaskSetting,
    semantics: SemanticsSetting,
    /// `None`: not set by the user, the model card's value applies.
    score_threshold: Option<f32>,
    overlap_threshold: Option<f32>,
    mask_threshold: Option<f32>,
    interval: u32,
    post_messages: bool,
    threads: u32,
    mode: ModeSetting,
    overload: OverloadSetting,
    track: bool,
    track_max_age: u32,
    track_iou: f32,
    /// Shared batching engine to join (`None`: this element runs its own model).
    engine_name: Option<String>,
    batch_size: u32,
    /// Nanoseconds.
    batch_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            backend: BackendSetting::default(),
            device: DeviceSetting::default(),
            task: TaskSetting::default(),
            semantics: SemanticsSetting::default(),
            score_threshold: None,
            overlap_threshold: None,
            mask_threshold: None,
            interval: DEFAULT_INTERVAL,
            post_messages: DEFAULT_POST_MESSAGES,
            threads: DEFAULT_THREADS,
            mode: ModeSetting::default(),
            overload: OverloadSetting::default(),
            track: DEFAULT_TRACK,
            track_max_age: DEFAULT_TRACK_MAX_AGE,
            track_iou: DEFAULT_TRACK_IOU,
            engine_name: None,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout: DEFAULT_BATCH_TIMEOUT,
        }
    }
}

/// Inference and what it remembers between frames. Lives in [`State`] in sync mode and
/// on the worker thread in async mode.
struct Engine {
    segmenter: Segmenter,
    tracker: Option<Tracker>,
    /// Last computed result, reused for `interval` > 1 and `overload=drop`.
    last: Option<(Arc<Segmentation>, Timings)>,
}

impl Engine {
    fn reset(&mut self) {
        self.last = None;
        if let Some(t) = self.tracker.as_mut() {
            t.reset();
        }
    }

    /// Segment `buf` with the thresholds of `settings`, track it if asked, and remember it.
    fn segment(
        &mut self,
        settings: &Settings,
        buf: &gst::BufferRef,
        video: &(gst_video::VideoInfo, PixelFormat),
        frame_no: u64,
    ) -> Result<(Arc<Segmentation>, Timings), gst::ErrorMessage> {
        let (info, format) = video;
        let defaults = self.segmenter.card().defaults.clone();
        let p = self.segmenter.params_mut();
        p.task = settings.task.task().unwrap_or(defaults.task);
        p.score_threshold = settings.score_threshold.unwrap_or(defaults.score_threshold);
        p.overlap_threshold = settings.overlap_threshold.unwrap_or(defaults.overlap_threshold);
        p.mask_threshold = settings.mask_threshold.unwrap_or(defaults.mask_threshold);
        self.segmenter.set_semantics(settings.semantics.into());

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
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.segment(&frame)));
        drop(vframe);
        let (mut seg, timings) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(gst::error_msg!(
                    gst::StreamError::Failed,
                    ("segmentation of frame {frame_no} failed: {e}")
                ));
            }
            Err(p) => {
                return Err(gst::error_msg!(
                    gst::StreamError::Failed,
                    ("segmentation of frame {frame_no} panicked: {}", panic_message(&p))
                ));
            }
        };
        if settings.track {
            let cfg = TrackerConfig { iou_threshold: settings.track_iou, max_age: settings.track_max_age };
            let tracker = match &mut self.tracker {
                Some(t) if *t.config() == cfg => t,
                slot => slot.insert(Tracker::new(cfg)),
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
    fn last_for(&self, width: u32, height: u32) -> Option<(Arc<Segmentation>, Timings)> {
        self.last.clone().filter(|(s, _)| (s.width, s.height) == (width, height))
    }
}

/// Counters of the `stats` property and the end-of-stream summary.
#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    inferred: AtomicU64,
    stale: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        for c in [&self.frames, &self.inferred, &self.stale, &self.dropped, &self.skipped] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn structure(&self, name: &str) -> gst::Structure {
        gst::Structure::builder(name)
            .field("frames", self.frames.load(Ordering::Relaxed))
            .field("inferred", self.inferred.load(Ordering::Relaxed))
            .field("stale", self.stale.load(Ordering::Relaxed))
            .field("dropped", self.dropped.load(Ordering::Relaxed))
            .field("skipped", self.skipped.load(Ordering::Relaxed))
            .build()
    }
}

/// What the async worker is asked to do, in arrival order.
enum Job {
    /// Segment the frame, attach the result, push it.
    Infer {
        buf: gst::Buffer,
        frame_no: u64,
        settings: Box<Settings>,
        video: (gst_video::VideoInfo, PixelFormat),
    },
    /// Push the frame with the last result marked stale (`with_last`) or without a result.
    Pass {
        buf: gst::Buffer,
        frame_no: u64,
        post_messages: bool,
        size: (u32, u32),
        with_last: bool,
    },
    /// Forget the last result and the tracks (flush).
    Reset,
    /// Answer when every earlier job is done.
    Drain(crossbeam_channel::Sender<()>),
}

/// State shared by the streaming thread and the async worker.
struct Shared {
    /// An `Infer` job is queued or running.
    busy: Mutex<bool>,
    idle: Condvar,
    /// First failed push (or inference error) of the worker, returned upstream.
    flow: Mutex<Option<gst::FlowError>>,
}

struct Worker {
    tx: crossbeam_channel::Sender<Job>,
    handle: JoinHandle<Engine>,
    shared: Arc<Shared>,
}

/// What both modes need to attach a meta.
struct StreamInfo {
    labels: Arc<[Label]>,
    model_name: String,
}

/// Per-stream state: created in `start`, dropped in `stop`.
struct State {
    /// `None` while the async worker holds the engine.
    engine: Option<Engine>,
    worker: Option<Worker>,
    /// The segmenter came from `set_segmenter` and goes back there on stop.
    injected: bool,
    stream: Arc<StreamInfo>,
    /// Negotiated input, set in `set_caps`.
    video: Option<(gst_video::VideoInfo, PixelFormat)>,
    /// Frames seen since start or the last flush.
    frames: u64,
    /// The segmenter's own backend while it infers through a shared batching engine
    /// (`engine-name`); put back on stop. `None` when it gave its backend to the engine.
    own_backend: Option<Box<dyn crate::backend::Backend>>,
}

#[derive(Default)]
pub struct Mask2Former {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    injected: Mutex<Option<Segmenter>>,
    /// Threshold defaults of the last model card seen, for the property getters (kept
    /// apart from `state`, which is held during inference).
    card_defaults: Mutex<Option<Defaults>>,
    /// Between `start` and `stop`.
    running: AtomicBool,
    counters: Arc<Counters>,
    /// The latency this element adds (ns), answered to LATENCY queries: the longest
    /// preprocess + inference + postprocess seen since start (0 before the first frame).
    latency_ns: AtomicU64,
}

impl Mask2Former {
    pub(super) fn set_segmenter(&self, segmenter: Segmenter) {
        gst::debug!(CAT, imp = self, "segmenter injected: {segmenter:?}");
        *lock(&self.card_defaults) = Some(segmenter.card().defaults.clone());
        *lock(&self.injected) = Some(segmenter);
    }

    pub(super) fn take_segmenter(&self) -> Option<Segmenter> {
        lock(&self.injected).take()
    }

    fn open_segmenter(&self, settings: &Settings) -> Result<(Segmenter, bool), gst::ErrorMessage> {
        if let Some(s) = lock(&self.injected).take() {
            return Ok((s, true));
        }
        let Some(model) = settings.model.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no model: set the `model` property to a Mask2Former .onnx file (with its .json card beside it)")
            ));
        };
        let mut cfg = SegmenterConfig::new(&model);
        cfg.ort.intra_threads = (settings.threads > 0).then_some(settings.threads as usize);
        cfg.backend = settings.backend.into();
        match std::panic::catch_unwind(AssertUnwindSafe(|| super::open_segmenter(&cfg, settings.device))) {
            Ok(Ok(s)) => {
                for note in s.fallbacks() {
                    if settings.backend == BackendSetting::OnnxRuntime {
                        gst::info!(CAT, imp = self, "using {}: {note}", s.backend_name());
                    } else {
                        gst::warning!(CAT, imp = self, "using {}: {note}", s.backend_name());
                    }
                }
                Ok((s, false))
            }
            Ok(Err(e @ crate::Error::FeatureDisabled { .. })) => Err(gst::error_msg!(
                gst::CoreError::MissingPlugin,
                ("cannot open model {model} with backend={}: {e}", cfg.backend)
            )),
            Ok(Err(e)) => Err(gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("cannot open model {model}: {e}")
            )),
            Err(p) => Err(gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("cannot open model {model}: panic while loading: {}", panic_message(&p))
            )),
        }
    }

    /// Model-card defaults of the open (or injected) segmenter, if any.
    fn card_defaults(&self) -> Option<Defaults> {
        lock(&self.card_defaults).clone()
    }

    /// Wait until the async worker has done every job sent so far.
    fn drain(&self, tx: &crossbeam_channel::Sender<Job>) {
        let (reply, done) = crossbeam_channel::bounded(1);
        if tx.send(Job::Drain(reply)).is_ok() {
            let _ = done.recv();
        }
    }

    fn post_summary(&self) {
        let s = self.counters.structure(super::SUMMARY_MESSAGE);
        gst::info!(CAT, imp = self, "end of stream: {s}");
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }
}

/// Post the per-frame `segstream-frame` element message.
fn post_frame_message(element: &super::Mask2Former, buf: &gst::BufferRef, seg: &Segmentation, info: &SegmentationInfo) {
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

/// Attach `seg` to `buf` as its SegmentationMeta (and post the frame message if asked).
#[allow(clippy::too_many_arguments)]
fn attach(
    element: &super::Mask2Former,
    buf: &mut gst::BufferRef,
    stream: &StreamInfo,
    seg: Arc<Segmentation>,
    timings: Timings,
    frame_no: u64,
    stale: bool,
    post_messages: bool,
) -> Result<(), gst::ErrorMessage> {
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
        post_frame_message(element, buf, &seg, &info);
    }
    SegmentationMeta::replace(buf, seg, stream.labels.clone(), info)
        .map(|_| ())
        .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ("cannot attach SegmentationMeta: {e}")))
}

/// The `engine-stats` property.
fn engine_stats(name: Option<&str>) -> gst::Structure {
    let mut b = gst::Structure::builder("engine-stats");
    if let Some(s) = name.and_then(crate::batching::stats) {
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

/// The async worker: runs the jobs in order, pushes every frame downstream itself, and
/// gives the engine back when the channel closes (on stop).
fn worker_loop(
    weak: glib::WeakRef<super::Mask2Former>,
    mut engine: Engine,
    rx: crossbeam_channel::Receiver<Job>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    stream: Arc<StreamInfo>,
) -> Engine {
    let fail = |e: gst::FlowError| {
        let mut f = lock(&shared.flow);
        if f.is_none() {
            *f = Some(e);
        }
    };
    for job in rx.iter() {
        let buf = match job {
            Job::Drain(reply) => {
                let _ = reply.send(());
                continue;
            }
            Job::Reset => {
                engine.reset();
                continue;
            }
            Job::Infer { mut buf, frame_no, settings, video } => {
                let result = engine.segment(&settings, &buf, &video, frame_no);
                *lock(&shared.busy) = false;
                shared.idle.notify_all();
                let Some(element) = weak.upgrade() else { continue };
                let attached = result.and_then(|(seg, t)| {
                    counters.inferred.fetch_add(1, Ordering::Relaxed);
                    element.imp().observe_latency(&t);
                    attach(&element, buf.make_mut(), &stream, seg, t, frame_no, false, settings.post_messages)
                });
                if let Err(msg) = attached {
                    element.imp().post_error_message(msg);
                    fail(gst::FlowError::Error);
                    continue;
                }
                buf
            }
            Job::Pass { mut buf, frame_no, post_messages, size, with_last } => {
                let Some(element) = weak.upgrade() else { continue };
                match with_last.then(|| engine.last_for(size.0, size.1)).flatten() {
                    Some((seg, t)) => {
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                        if let Err(msg) = attach(&element, buf.make_mut(), &stream, seg, t, frame_no, true, post_messages) {
                            element.imp().post_error_message(msg);
                            fail(gst::FlowError::Error);
                            continue;
                        }
                    }
                    None => {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                buf
            }
        };
        let Some(element) = weak.upgrade() else { continue };
        if let Err(e) = element.src_pad().push(buf) {
            gst::debug!(CAT, obj = &element, "worker push: {e:?}");
            fail(e);
        }
    }
    engine
}

#[glib::object_subclass]
impl ObjectSubclass for Mask2Former {
    const NAME: &'static str = "GstMask2Former";
    type Type = super::Mask2Former;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for Mask2Former {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Path of the Mask2Former ONNX model (or, with backend=tensorrt, a .engine built by `segstream build-engine`); its model card (same name, .json) must sit beside it. Read when the element starts.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", BackendSetting::default())
                    .nick("Backend")
                    .blurb("Inference backend: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt (ONNX Runtime's providers, where the loaded ONNX Runtime build has them) or tensorrt (native TensorRT, builds with the tensorrt feature)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", DeviceSetting::default())
                    .nick("Device")
                    .blurb("Device to run the network on; auto falls back from the backend's GPU provider towards ONNX Runtime's CPU provider, cpu and cuda never fall back")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("task", TaskSetting::default())
                    .nick("Task")
                    .blurb("Segmentation task; `default` uses the model card's default task. Can change while playing.")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("semantics", SemanticsSetting::default())
                    .nick("Semantics")
                    .blurb("Post-processing semantics: detectron2 (crop the padding, then resize; the default) or transformers (reproduce post_process_*_segmentation exactly). Can change while playing.")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("score-threshold")
                    .nick("Score threshold")
                    .blurb("Panoptic/instance: minimum class score of a kept segment (default: the model card's value, 0.8 unless the card says otherwise)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCORE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("overlap-threshold")
                    .nick("Overlap threshold")
                    .blurb("Panoptic: minimum fraction of a segment's own mask that must remain visible (default: the model card's value, 0.8 unless the card says otherwise)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_OVERLAP_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("mask-threshold")
                    .nick("Mask threshold")
                    .blurb("Binarization threshold of mask probabilities (default: the model card's value, 0.5 unless the card says otherwise)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MASK_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Run the network on every Nth frame; frames in between get the last result, marked stale")
                    .minimum(1)
                    .maximum(u32::MAX)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post a `segstream-frame` element message per frame (frame, pts, width, height, model, task, stale, segments, labels, preprocess-ms, inference-ms, postprocess-ms)")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads (0 = the runtime's default)")
                    .minimum(0)
                    .maximum(1024)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", ModeSetting::default())
                    .nick("Mode")
                    .blurb("sync: infer on the streaming thread; async: infer on a worker thread that pushes the frames downstream in order, so upstream never waits on the network (see `overload`). A frame waits at most one inference time.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("overload", OverloadSetting::default())
                    .nick("Overload policy")
                    .blurb("mode=async: a frame that arrives while the worker is busy is passed on with the last result marked stale (drop), passed on without a result (skip), or waits for the worker (wait)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("track")
                    .nick("Track")
                    .blurb("Give segments a persistent track_id: things by mask IoU with the previous frames, stuff one id per class")
                    .default_value(DEFAULT_TRACK)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("track-max-age")
                    .nick("Track max age")
                    .blurb("track=true: frames a thing track survives unmatched (e.g. hidden) before it is forgotten")
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(DEFAULT_TRACK_MAX_AGE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("track-iou-threshold")
                    .nick("Track IoU threshold")
                    .blurb("track=true: minimum mask IoU (after motion prediction) for a thing to continue a track")
                    .minimum(0.01)
                    .maximum(1.0)
                    .default_value(DEFAULT_TRACK_IOU)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("engine-name")
                    .nick("Engine name")
                    .blurb("Share one batching inference engine with every mask2former of this process that has the same engine-name (and the same model, backend, batch-size and batch-timeout; a mismatch is an error at start). Frames of all these streams are inferred in batches of up to batch-size; each stream keeps its own preprocess, thresholds, postprocess and tracking. Empty: this element runs its own model.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("With engine-name: most frames (from all the engine's streams) inferred in one network call")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("batch-timeout")
                    .nick("Batch timeout")
                    .blurb("With engine-name: nanoseconds the first frame of a batch waits for frames of other streams before the batch runs incomplete (0: run what is already waiting)")
                    .minimum(0)
                    .maximum(MAX_BATCH_TIMEOUT)
                    .default_value(DEFAULT_BATCH_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("engine-stats")
                    .nick("Engine statistics")
                    .blurb("Counters of the shared batching engine (engine-name) since it was created: requests, images, batches, backend-calls, multi-image-batches, max-batch, members; empty when there is none")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Counters since start, as the `segstream-summary` message posted at end of stream: frames, inferred, stale (an earlier result reused), dropped (inference dropped, worker busy), skipped (passed on without a result)")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "model" => {
                let v: Option<String> = value.get().unwrap_or(None);
                if self.running.load(Ordering::SeqCst) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "model changed while running: takes effect on the next start"
                    );
                }
                s.model = v.filter(|p| !p.is_empty());
            }
            "backend" => s.backend = value.get().unwrap_or_default(),
            "device" => s.device = value.get().unwrap_or_default(),
            "task" => s.task = value.get().unwrap_or_default(),
            "semantics" => s.semantics = value.get().unwrap_or_default(),
            "score-threshold" => s.score_threshold = value.get().ok(),
            "overlap-threshold" => s.overlap_threshold = value.get().ok(),
            "mask-threshold" => s.mask_threshold = value.get().ok(),
            "interval" => s.interval = value.get::<u32>().unwrap_or(DEFAULT_INTERVAL).max(1),
            "post-messages" => s.post_messages = value.get().unwrap_or(DEFAULT_POST_MESSAGES),
            "threads" => s.threads = value.get().unwrap_or(DEFAULT_THREADS),
            "mode" => s.mode = value.get().unwrap_or_default(),
            "overload" => s.overload = value.get().unwrap_or_default(),
            "track" => s.track = value.get().unwrap_or(DEFAULT_TRACK),
            "track-max-age" => s.track_max_age = value.get().unwrap_or(DEFAULT_TRACK_MAX_AGE),
            "track-iou-threshold" => s.track_iou = value.get().unwrap_or(DEFAULT_TRACK_IOU),
            "engine-name" => {
                let v: Option<String> = value.get().unwrap_or(None);
                s.engine_name = v.filter(|n| !n.is_empty());
            }
            "batch-size" => s.batch_size = value.get::<u32>().unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            "batch-timeout" => s.batch_timeout = value.get().unwrap_or(DEFAULT_BATCH_TIMEOUT),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings).clone();
        match pspec.name() {
            "model" => s.model.to_value(),
            "backend" => s.backend.to_value(),
            "device" => s.device.to_value(),
            "task" => s.task.to_value(),
            "semantics" => s.semantics.to_value(),
            "score-threshold" => s
                .score_threshold
                .or_else(|| self.card_defaults().map(|d| d.score_threshold))
                .unwrap_or(DEFAULT_SCORE_THRESHOLD)
                .to_value(),
            "overlap-threshold" => s
                .overlap_threshold
                .or_else(|| self.card_defaults().map(|d| d.overlap_threshold))
                .unwrap_or(DEFAULT_OVERLAP_THRESHOLD)
                .to_value(),
            "mask-threshold" => s
                .mask_threshold
                .or_else(|| self.card_defaults().map(|d| d.mask_threshold))
                .unwrap_or(DEFAULT_MASK_THRESHOLD)
                .to_value(),
            "interval" => s.interval.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "threads" => s.threads.to_value(),
            "mode" => s.mode.to_value(),
            "overload" => s.overload.to_value(),
            "track" => s.track.to_value(),
            "track-max-age" => s.track_max_age.to_value(),
            "track-iou-threshold" => s.track_iou.to_value(),
            "engine-name" => s.engine_name.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "batch-timeout" => s.batch_timeout.to_value(),
            "engine-stats" => engine_stats(s.engine_name.as_deref()).to_value(),
            "stats" => self.counters.structure("stats").to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for Mask2Former {}

impl ElementImpl for Mask2Former {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Mask2Former segmentation",
                "Filter/Analyzer/Video",
                "Segments each frame with a Mask2Former model (panoptic, instance or semantic) and attaches the result as SegmentationMeta",
                "segstream developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = crate::elements::video_caps();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
                    .expect("valid src template"),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                    .expect("valid sink template"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for Mask2Former {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let (mut segmenter, injected) = self.open_segmenter(&settings)?;
        let own_backend = match settings.engine_name.as_deref() {
            None => None,
            Some(name) => {
                let cfg = crate::batching::BatchConfig {
                    batch_size: settings.batch_size.max(1) as usize,
                    timeout: std::time::Duration::from_nanos(settings.batch_timeout),
                };
                match crate::batching::join(&mut segmenter, name, cfg) {
                    Ok(own) => {
                        gst::info!(
                            CAT,
                            imp = self,
                            "{} batching engine {name:?} (batch-size {}, batch-timeout {:?})",
                            if own.is_some() { "joined" } else { "created" },
                            cfg.batch_size,
                            cfg.timeout
                        );
                        own
                    }
                    Err(e) => {
                        if injected {
                            *lock(&self.injected) = Some(segmenter);
                        }
                        return Err(gst::error_msg!(
                            gst::ResourceError::Settings,
                            ("cannot join batching engine {name:?}: {e}")
                        ));
                    }
                }
            }
        };
        let card = segmenter.card();
        let stream = Arc::new(StreamInfo { labels: card.labels.clone().into(), model_name: card.name.clone() });
        gst::info!(
            CAT,
            imp = self,
            "opened {segmenter:?} ({}, {} labels), mode {:?}",
            stream.model_name,
            stream.labels.len(),
            settings.mode
        );
        *lock(&self.card_defaults) = Some(card.defaults.clone());
        self.counters.reset();
        let engine = Engine { segmenter, tracker: None, last: None };
        let (engine, worker) = match settings.mode {
            ModeSetting::Sync => (Some(engine), None),
            ModeSetting::Async => {
                let (tx, rx) = crossbeam_channel::bounded(ASYNC_QUEUE);
                let shared = Arc::new(Shared { busy: Mutex::new(false), idle: Condvar::new(), flow: Mutex::new(None) });
                let (weak, sh, counters, st) = (self.obj().downgrade(), shared.clone(), self.counters.clone(), stream.clone());
                let handle = std::thread::Builder::new()
                    .name("mask2former-worker".into())
                    .spawn(move || worker_loop(weak, engine, rx, sh, counters, st))
                    .map_err(|e| gst::error_msg!(gst::ResourceError::Failed, ("cannot start the inference thread: {e}")))?;
                (None, Some(Worker { tx, handle, shared }))
            }
        };
        self.running.store(true, Ordering::SeqCst);
        self.latency_ns.store(0, Ordering::Relaxed);
        *lock(&self.state) = Some(State { engine, worker, injected, stream, video: None, frames: 0, own_backend });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        let state = lock(&self.state).take();
        if let Some(mut state) = state {
            if let Some(worker) = state.worker.take() {
                // Closing the channel ends the worker once it has run what is queued (its
                // pushes fail fast: the pads are already flushing).
                drop(worker.tx);
                {
                    *lock(&worker.shared.busy) = false;
                    worker.shared.idle.notify_all();
                }
                match worker.handle.join() {
                    Ok(engine) => state.engine = Some(engine),
                    Err(p) => gst::error!(CAT, imp = self, "inference thread panicked: {}", panic_message(&p)),
                }
            }
            // Leave the batching engine: the segmenter gets its own backend back (its
            // engine member, dropped here, no longer keeps the engine alive).
            if let (Some(own), Some(engine)) = (state.own_backend.take(), state.engine.as_mut())
                && let Err(e) = engine.segmenter.replace_backend(own)
            {
                gst::warning!(CAT, imp = self, "cannot put the own backend back: {e}");
            }
            if state.injected
                && let Some(engine) = state.engine
            {
                *lock(&self.injected) = Some(engine.segmenter);
            }
        }
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let format = PixelFormat::from_name(info.format().to_str()).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        let mut state = lock(&self.state);
        let Some(state) = state.as_mut() else {
            return Err(gst::loggable_error!(CAT, "caps set before the element started"));
        };
        gst::debug!(
            CAT,
            imp = self,
            "negotiated {}x{} {:?}",
            info.width(),
            info.height(),
            format
        );
        // A last result of another size is not reused (`Engine::last_for`).
        state.video = Some((info, format));
        Ok(())
    }

    /// LATENCY (on the source pad): upstream's latency plus the longest frame time seen
    /// (a frame leaves after its inference, in both modes). The maximum grows by the
    /// frames that may wait: one in sync mode, the async queue in async mode.
    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src && query.type_() == gst::QueryType::Latency {
            if !self.obj().sink_pad().peer_query(query) {
                return false;
            }
            if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                let (live, min, max) = q.result();
                let ours = gst::ClockTime::from_nseconds(self.latency_ns.load(Ordering::Relaxed));
                let waiting = if lock(&self.settings).mode == ModeSetting::Async { ASYNC_QUEUE as u64 + 1 } else { 1 };
                let max = max.map(|m| m + ours * waiting);
                gst::debug!(CAT, imp = self, "latency: upstream {min}, ours {ours}, live {live}");
                q.set(live, min + ours, max);
            }
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let worker_tx = lock(&self.state)
            .as_ref()
            .and_then(|s| s.worker.as_ref().map(|w| (w.tx.clone(), w.shared.clone())));
        match event.view() {
            gst::EventView::FlushStart(_) => {}
            gst::EventView::FlushStop(_) => {
                if let Some((tx, shared)) = &worker_tx {
                    self.drain(tx);
                    let _ = tx.send(Job::Reset);
                    *lock(&shared.flow) = None;
                }
                if let Some(state) = lock(&self.state).as_mut() {
                    gst::debug!(CAT, imp = self, "flush: frame count reset");
                    state.frames = 0;
                    if let Some(engine) = state.engine.as_mut() {
                        engine.reset();
                    }
                }
            }
            gst::EventView::Eos(_) => {
                if let Some((tx, _)) = &worker_tx {
                    self.drain(tx);
                }
                self.post_summary();
            }
            // Serialized events (caps, segment, gap, ...) must follow the frames queued
            // before them.
            _ if event.is_serialized() => {
                if let Some((tx, _)) = &worker_tx {
                    self.drain(tx);
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("buffer before the element started"));
            return Err(gst::FlowError::NotNegotiated);
        };
        let Some(video) = state.video.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("buffer before caps were negotiated")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        if buf.flags().contains(gst::BufferFlags::GAP) && buf.size() == 0 {
            return Ok(gst::FlowSuccess::Ok);
        }
        let frame_no = state.frames;
        state.frames += 1;
        self.counters.frames.fetch_add(1, Ordering::Relaxed);
        let due = frame_no % u64::from(settings.interval.max(1)) == 0;

        if let Some(worker) = &state.worker {
            let (tx, shared) = (worker.tx.clone(), worker.shared.clone());
            drop(guard);
            return self.submit_async(buf, frame_no, due, settings, video, &tx, &shared);
        }

        let Some(engine) = state.engine.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("no inference engine"));
            return Err(gst::FlowError::Error);
        };
        let (seg, timings, stale) = match (engine.last_for(video.0.width(), video.0.height()), due) {
            (Some((seg, t)), false) => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                (seg, t, true)
            }
            _ => match engine.segment(&settings, buf, &video, frame_no) {
                Ok((seg, t)) => {
                    self.counters.inferred.fetch_add(1, Ordering::Relaxed);
                    self.observe_latency(&t);
                    (seg, t, false)
                }
                Err(msg) => {
                    self.post_error_message(msg);
                    return Err(gst::FlowError::Error);
                }
            },
        };
        let stream = state.stream.clone();
        drop(guard);
        attach(&self.obj(), buf, &stream, seg, timings, frame_no, stale, settings.post_messages).map_err(|msg| {
            self.post_error_message(msg);
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}

impl Mask2Former {
    /// Raise the reported latency to a longer frame time than seen so far; past a quarter
    /// more than the reported value, post a LATENCY message so that the pipeline asks again
    /// (live sinks then wait for the frames instead of dropping them as late).
    fn observe_latency(&self, t: &Timings) {
        let ns = ((t.preprocess_ms + t.inference_ms + t.postprocess_ms) * 1e6) as u64;
        let old = self.latency_ns.fetch_max(ns, Ordering::Relaxed);
        if ns > old + old / 4 {
            gst::debug!(CAT, imp = self, "latency {} ms (was {} ms)", ns / 1_000_000, old / 1_000_000);
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
    }

    /// mode=async: hand a copy of the frame (its memory is shared, not copied) to the
    /// worker, which pushes it; the base class drops the original.
    #[allow(clippy::too_many_arguments)]
    fn submit_async(
        &self,
        buf: &gst::BufferRef,
        frame_no: u64,
        due: bool,
        settings: Settings,
        video: (gst_video::VideoInfo, PixelFormat),
        tx: &crossbeam_channel::Sender<Job>,
        shared: &Shared,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if let Some(e) = *lock(&shared.flow) {
            return Err(e);
        }
        let owned = buf.copy();
        let size = (video.0.width(), video.0.height());
        let pass = |buf, with_last| Job::Pass { buf, frame_no, post_messages: settings.post_messages, size, with_last };
        let job = if !due {
            pass(owned, true)
        } else {
            let mut busy = lock(&shared.busy);
            if settings.overload == OverloadSetting::Wait {
                while *busy && self.running.load(Ordering::SeqCst) {
                    busy = shared
                        .idle
                        .wait_timeout(busy, std::time::Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            if !*busy {
                *busy = true;
                Job::Infer { buf: owned, frame_no, settings: Box::new(settings.clone()), video }
            } else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                gst::log!(CAT, imp = self, "frame {frame_no}: worker busy, {:?}", settings.overload);
                pass(owned, settings.overload != OverloadSetting::Skip)
            }
        };
        if tx.send(job).is_err() {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("the inference thread is gone"));
            return Err(gst::FlowError::Error);
        }
        Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED)
    }
}
