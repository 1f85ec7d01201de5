use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer_base as gst_base;
use gstreamer_video as gst_video;

use super::{BackendSetting, DeviceSetting, TaskSetting};
use crate::elements::meta::{SegmentationInfo, SegmentationMeta};
use crate::elements::{lock, panic_message};
use crate::frame::{Frame, PixelFormat};
use crate::model::{Defaults, Label};
use crate::segmentation::Segmentation;
use crate::segmenter::{Segmenter, SegmenterConfig, Timings};

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

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    backend: BackendSetting,
    device: DeviceSetting,
    task: TaskSetting,
    /// `None`: not set by the user, the model card's value applies.
    score_threshold: Option<f32>,
    overlap_threshold: Option<f32>,
    mask_threshold: Option<f32>,
    interval: u32,
    post_messages: bool,
    threads: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            backend: BackendSetting::default(),
            device: DeviceSetting::default(),
            task: TaskSetting::default(),
            score_threshold: None,
            overlap_threshold: None,
            mask_threshold: None,
            interval: DEFAULT_INTERVAL,
            post_messages: DEFAULT_POST_MESSAGES,
            threads: DEFAULT_THREADS,
        }
    }
}

/// Per-stream state: created in `start`, dropped in `stop`.
struct State {
    segmenter: Segmenter,
    /// The segmenter came from `set_segmenter` and goes back there on stop.
    injected: bool,
    labels: Arc<[Label]>,
    model_name: String,
    /// Negotiated input, set in `set_caps`.
    video: Option<(gst_video::VideoInfo, PixelFormat)>,
    /// Frames seen since start or the last flush.
    frames: u64,
    /// Last computed result, reused for `interval` > 1.
    last: Option<(Arc<Segmentation>, Timings)>,
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

    fn post_frame_message(&self, buf: &gst::BufferRef, seg: &Segmentation, info: &SegmentationInfo) {
        let labels: Vec<String> = seg.segments.iter().map(|s| s.label.clone()).collect();
        let s = gst::Structure::builder("segstream-frame")
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
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }
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
            "score-threshold" => s.score_threshold = value.get().ok(),
            "overlap-threshold" => s.overlap_threshold = value.get().ok(),
            "mask-threshold" => s.mask_threshold = value.get().ok(),
            "interval" => s.interval = value.get::<u32>().unwrap_or(DEFAULT_INTERVAL).max(1),
            "post-messages" => s.post_messages = value.get().unwrap_or(DEFAULT_POST_MESSAGES),
            "threads" => s.threads = value.get().unwrap_or(DEFAULT_THREADS),
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
        let (segmenter, injected) = self.open_segmenter(&settings)?;
        let card = segmenter.card();
        let labels: Arc<[Label]> = card.labels.clone().into();
        let model_name = card.name.clone();
        gst::info!(
            CAT,
            imp = self,
            "opened {segmenter:?} ({model_name}, {} labels)",
            labels.len()
        );
        *lock(&self.card_defaults) = Some(card.defaults.clone());
        self.running.store(true, Ordering::SeqCst);
        *lock(&self.state) = Some(State {
            segmenter,
            injected,
            labels,
            model_name,
            video: None,
            frames: 0,
            last: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        let state = lock(&self.state).take();
        if let Some(state) = state
            && state.injected
        {
            *lock(&self.injected) = Some(state.segmenter);
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
        if state
            .video
            .as_ref()
            .is_some_and(|(old, _)| (old.width(), old.height()) != (info.width(), info.height()))
        {
            state.last = None;
        }
        gst::debug!(
            CAT,
            imp = self,
            "negotiated {}x{} {:?}",
            info.width(),
            info.height(),
            format
        );
        state.video = Some((info, format));
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view()
            && let Some(state) = lock(&self.state).as_mut()
        {
            gst::debug!(CAT, imp = self, "flush: frame count reset");
            state.frames = 0;
            state.last = None;
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
        let Some((info, format)) = state.video.clone() else {
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

        let due = frame_no % u64::from(settings.interval.max(1)) == 0;
        let (seg, timings, stale) = match (&state.last, due) {
            (Some((seg, t)), false) => (seg.clone(), *t, true),
            _ => {
                // Apply the (possibly changed) thresholds, falling back to the card's.
                let defaults = state.segmenter.card().defaults.clone();
                let p = state.segmenter.params_mut();
                p.task = settings.task.task().unwrap_or(defaults.task);
                p.score_threshold = settings.score_threshold.unwrap_or(defaults.score_threshold);
                p.overlap_threshold = settings.overlap_threshold.unwrap_or(defaults.overlap_threshold);
                p.mask_threshold = settings.mask_threshold.unwrap_or(defaults.mask_threshold);

                let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ("cannot map frame {frame_no} for reading")
                    );
                    gst::FlowError::Error
                })?;
                let mut planes: [&[u8]; 3] = [&[], &[], &[]];
                let mut strides = [0usize; 3];
                for p in 0..format.num_planes() {
                    planes[p] = vframe.plane_data(p as u32).map_err(|e| {
                        gst::element_imp_error!(self, gst::StreamError::Failed, ("frame {frame_no}: plane {p}: {e}"));
                        gst::FlowError::Error
                    })?;
                    strides[p] = vframe.plane_stride()[p].max(0) as usize;
                }
                let frame = Frame::new(format, info.width() as usize, info.height() as usize, planes, strides)
                    .map_err(|e| {
                        gst::element_imp_error!(self, gst::StreamError::Format, ("frame {frame_no}: {e}"));
                        gst::FlowError::Error
                    })?;
                let segmenter = &mut state.segmenter;
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.segment(&frame)));
                drop(vframe);
                let (seg, timings) = match result {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("segmentation of frame {frame_no} failed: {e}")
                        );
                        return Err(gst::FlowError::Error);
                    }
                    Err(p) => {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("segmentation of frame {frame_no} panicked: {}", panic_message(&p))
                        );
                        return Err(gst::FlowError::Error);
                    }
                };
                let seg = Arc::new(seg);
                state.last = Some((seg.clone(), timings));
                (seg, timings, false)
            }
        };
        let meta_info = SegmentationInfo {
            frame: frame_no,
            model: state.model_name.clone(),
            timings,
            stale,
        };
        let labels = state.labels.clone();
        drop(guard);

        gst::trace!(
            CAT,
            imp = self,
            "frame {frame_no}: {} segments{} ({:.1}/{:.1}/{:.1} ms)",
            seg.segments.len(),
            if stale { " (stale)" } else { "" },
            timings.preprocess_ms,
            timings.inference_ms,
            timings.postprocess_ms
        );
        if settings.post_messages {
            self.post_frame_message(buf, &seg, &meta_info);
        }
        SegmentationMeta::replace(buf, seg, labels, meta_info).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("cannot attach SegmentationMeta: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
