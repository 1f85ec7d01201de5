//! The GObject / BaseTransform glue of `mask2former`. What it does lives beside it:
//! [`super::properties`] (settings), [`super::inference`] (per-stream inference state),
//! [`super::worker`] (async mode), [`super::stats`] (counters and messages).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gstreamer as gst;
use gstreamer_base as gst_base;
use gstreamer_video as gst_video;

use super::inference::{self, Failure, Inference, Outcome, StreamInfo, Video};
use super::stats::{self, Counters};
use super::worker::{self, Worker};
use super::properties;
use crate::backend::select::Device;
use crate::cuda::memory::{self as cuda_memory, ElementContext, GstCuda};
use crate::cuda::stages::DeviceStages;
use crate::frame::PixelFormat;
use crate::model::Defaults;
use crate::segmenter::{Segmenter, Timings};
use crate::settings::{Mode, Overload, Settings};
use crate::util::lock;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("mask2former", gst::DebugColorFlags::empty(), Some("Mask2Former segmentation"))
});

/// Per-stream state: created in `start`, dropped in `stop`.
struct State {
    /// `None` while the async worker holds it.
    inference: Option<Inference>,
    worker: Option<Worker>,
    /// The segmenter came from `set_segmenter` and goes back there on stop.
    injected: bool,
    stream: Arc<StreamInfo>,
    /// Negotiated input, set in `set_caps`.
    video: Option<Video>,
    /// Frames seen since start or the last flush.
    frames: u64,
    /// The segmenter's own backend while it infers through a batching group; put back on
    /// stop. `None` when its backend moved into the group.
    own_backend: Option<Box<dyn crate::backend::Backend>>,
}

/// Whether CUDA memory caps are offered: decided in `start` (GPU stages opened and
/// libgstcuda there), guessed before.
const CUDA_UNKNOWN: u8 = 0;
const CUDA_YES: u8 = 1;
const CUDA_NO: u8 = 2;

#[derive(Default)]
pub struct Mask2Former {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    injected: Mutex<Option<Segmenter>>,
    /// Defaults of the last model card seen, for the property getters (kept apart from
    /// `state`, which is held during inference).
    card_defaults: Mutex<Option<Defaults>>,
    /// Between `start` and `stop`.
    running: AtomicBool,
    counters: Arc<Counters>,
    /// The latency this element adds (ns), answered to LATENCY queries: the longest
    /// preprocess + inference + postprocess seen since start (0 before the first frame).
    latency_ns: AtomicU64,
    /// The CUDA context shared with the neighbours (CUDA memory caps).
    cuda: ElementContext,
    /// GPU stages given with `set_device_stages` (tests: the driver double's host stages).
    injected_stages: Mutex<Option<Arc<dyn DeviceStages>>>,
    /// `CUDA_*`: whether CUDA memory caps are offered.
    cuda_memory: AtomicU8,
    /// Where pre/post-processing runs (the `processing` property).
    processing: Mutex<String>,
    /// Where and how the network runs (the `inference` property).
    inference: Mutex<String>,
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

    pub(super) fn set_device_stages(&self, stages: Option<Arc<dyn DeviceStages>>) {
        gst::debug!(CAT, imp = self, "device stages injected: {stages:?}");
        *lock(&self.injected_stages) = stages;
    }

    /// The GPU stages for `settings`: the injected ones, else the CUDA kernels when
    /// `device` is not `cpu` and CUDA works. `device=auto` stays on the CPU with one info
    /// line saying why; `device=cuda` without CUDA is an error.
    fn open_stages(&self, settings: &Settings) -> Result<Option<Arc<dyn DeviceStages>>, gst::ErrorMessage> {
        let (stages, what) = match (lock(&self.injected_stages).clone(), settings.device) {
            (Some(s), _) => {
                let what = format!("{} stages (injected)", s.name());
                (Some(s), what)
            }
            (None, Device::Cpu) => (None, "cpu".to_string()),
            (None, device) => {
                let ordinal = settings.cuda_device_id.max(0) as usize;
                match open_gpu_stages(device, ordinal) {
                    Ok(r) => r,
                    Err(e) => {
                        *lock(&self.processing) = format!("none: {e}");
                        return Err(gst::error_msg!(
                            gst::ResourceError::Settings,
                            ("device=cuda: the GPU stages cannot run: {e}")
                        ));
                    }
                }
            }
        };
        let memory = match (&stages, GstCuda::get()) {
            (Some(_), Ok(_)) => "frames in CUDA memory stay on the device",
            (Some(_), Err(_)) => "frames in system memory only (no libgstcuda / CUDA memory)",
            (None, _) => "",
        };
        let line = if memory.is_empty() { what } else { format!("{what}; {memory}") };
        gst::info!(CAT, imp = self, "processing: {line}");
        *lock(&self.processing) = line;
        Ok(stages)
    }

    /// Whether to offer CUDA memory caps: decided in `start`; before it, whether `start`
    /// could say yes (libgstcuda loads and GPU stages could open).
    fn cuda_memory_offered(&self) -> bool {
        match self.cuda_memory.load(Ordering::SeqCst) {
            CUDA_YES => true,
            CUDA_NO => false,
            _ => {
                GstCuda::available()
                    && (lock(&self.injected_stages).is_some()
                        || (lock(&self.settings).device != Device::Cpu && cfg!(feature = "cuda") && crate::cuda::probe().is_ok()))
            }
        }
    }

    pub(super) fn set_settings(&self, settings: Settings) {
        gst::debug!(CAT, imp = self, "settings: {settings:?}");
        *lock(&self.settings) = settings;
    }

    pub(super) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// The injected segmenter, or the model of the settings opened.
    fn open_segmenter(&self, settings: &Settings) -> Result<(Segmenter, bool), gst::ErrorMessage> {
        if let Some(s) = lock(&self.injected).take() {
            return Ok((s, true));
        }
        let s = inference::open(settings, |line, asked| {
            if asked {
                gst::warning!(CAT, imp = self, "{line}");
            } else {
                gst::info!(CAT, imp = self, "{line}");
            }
        })?;
        Ok((s, false))
    }

    /// Join the batching group of the settings, if any: returns the segmenter's own
    /// backend to give back on stop.
    fn join_batch_group(
        &self,
        settings: &Settings,
        segmenter: &mut Segmenter,
    ) -> Result<Option<Box<dyn crate::backend::Backend>>, gst::ErrorMessage> {
        let Some(name) = settings.batch_group.as_deref() else { return Ok(None) };
        let own = segmenter.join_batch_group(name, settings.batch).map_err(|e| {
            gst::error_msg!(gst::ResourceError::Settings, ("cannot join batch group {name:?}: {e}"))
        })?;
        gst::info!(
            CAT,
            imp = self,
            "{} batch group {name:?} (batch-size {}, batch-timeout {:?})",
            if own.is_some() { "joined" } else { "created" },
            settings.batch.batch_size,
            settings.batch.timeout
        );
        Ok(own)
    }

    fn post_summary(&self) {
        let s = self.counters.structure(super::SUMMARY_MESSAGE);
        gst::info!(CAT, imp = self, "end of stream: {s}");
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Raise the reported latency to a longer frame time than seen so far; past a quarter
    /// more than the reported value, post a LATENCY message so that the pipeline asks again
    /// (live sinks then wait for the frames instead of dropping them as late).
    pub(super) fn observe_latency(&self, t: &Timings) {
        let ns = ((t.preprocess_ms + t.inference_ms + t.postprocess_ms) * 1e6) as u64;
        let old = self.latency_ns.fetch_max(ns, Ordering::Relaxed);
        if ns > old + old / 4 {
            gst::debug!(CAT, imp = self, "latency {} ms (was {} ms)", ns / 1_000_000, old / 1_000_000);
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
    }

    fn worker_handle(&self) -> Option<worker::Handle> {
        lock(&self.state).as_ref().and_then(|s| s.worker.as_ref().map(Worker::handle))
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
        properties::specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.name() == "model" && self.running.load(Ordering::SeqCst) {
            gst::warning!(CAT, imp = self, "model changed while running: takes effect on the next start");
        }
        if !properties::set(&mut lock(&self.settings), pspec.name(), value) {
            gst::warning!(CAT, imp = self, "unknown property {}", pspec.name());
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings).clone();
        match pspec.name() {
            "batch-stats" => stats::batch_stats(settings.batch_group.as_deref()).to_value(),
            "stats" => self.counters.structure("stats").to_value(),
            "processing" => lock(&self.processing).to_value(),
            "inference" => lock(&self.inference).to_value(),
            name => properties::get(&settings, lock(&self.card_defaults).as_ref(), name)
                .unwrap_or_else(|| pspec.default_value().clone()),
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
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::elements::video_filter_templates);
        TEMPLATES.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        let id = lock(&self.settings).cuda_device_id;
        self.cuda.set_context(self.obj().upcast_ref(), context, id);
        self.parent_set_context(context)
    }
}

impl BaseTransformImpl for Mask2Former {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let (mut segmenter, injected) = self.open_segmenter(&settings)?;
        let line = match segmenter.backend_details() {
            Some(d) => format!("{}: {d}", segmenter.backend_name()),
            None => segmenter.backend_name().to_string(),
        };
        gst::info!(CAT, imp = self, "inference: {line}");
        *lock(&self.inference) = line;
        let own_backend = match self.join_batch_group(&settings, &mut segmenter) {
            Ok(own) => own,
            Err(e) => {
                if injected {
                    *lock(&self.injected) = Some(segmenter);
                }
                return Err(e);
            }
        };
        let stages = match self.open_stages(&settings) {
            Ok(s) => s,
            Err(e) => {
                if injected {
                    *lock(&self.injected) = Some(segmenter);
                }
                return Err(e);
            }
        };
        let offered = stages.is_some() && GstCuda::available();
        self.cuda_memory.store(if offered { CUDA_YES } else { CUDA_NO }, Ordering::SeqCst);
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
        let inference = Inference::new(segmenter, stages, self.counters.clone());
        let (inference, worker) = match settings.mode {
            Mode::Sync => (Some(inference), None),
            Mode::Async => (None, Some(Worker::start(&self.obj(), inference, self.counters.clone(), stream.clone())?)),
        };
        self.running.store(true, Ordering::SeqCst);
        self.latency_ns.store(0, Ordering::Relaxed);
        *lock(&self.state) = Some(State { inference, worker, injected, stream, video: None, frames: 0, own_backend });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        self.cuda_memory.store(CUDA_UNKNOWN, Ordering::SeqCst);
        let state = lock(&self.state).take();
        if let Some(mut state) = state {
            if let Some(worker) = state.worker.take() {
                match worker.stop() {
                    Ok(inference) => state.inference = Some(inference),
                    Err(p) => gst::error!(CAT, imp = self, "inference thread panicked: {p}"),
                }
            }
            // Leave the batching group: the segmenter gets its own backend back (its member,
            // dropped here, no longer keeps the group alive).
            if let (Some(own), Some(inference)) = (state.own_backend.take(), state.inference.as_mut())
                && let Err(e) = inference.segmenter.replace_backend(own)
            {
                gst::warning!(CAT, imp = self, "cannot put the own backend back: {e}");
            }
            if state.injected
                && let Some(inference) = state.inference
            {
                *lock(&self.injected) = Some(inference.segmenter);
            }
        }
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let format = PixelFormat::from_name(info.format().to_str()).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            return Err(gst::loggable_error!(CAT, "caps set before the element started"));
        };
        let cuda = cuda_memory::is_cuda_caps(incaps);
        gst::debug!(CAT, imp = self, "negotiated {}x{} {:?}{}", info.width(), info.height(), format, if cuda { " in CUDA memory" } else { "" });
        // A last result of another size is not reused (`Inference::last_for`).
        state.video = Some(Video { info, format, cuda });
        drop(guard);
        if cuda {
            let id = lock(&self.settings).cuda_device_id;
            crate::elements::ensure_cuda_context(self.obj().upcast_ref(), &self.cuda, id, *CAT)?;
        }
        Ok(())
    }

    /// The same caps on both sides; CUDA memory only when [`Self::cuda_memory_offered`].
    fn transform_caps(
        &self,
        _direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        Some(cuda_memory::same_caps(caps, filter, self.cuda_memory_offered()))
    }

    /// Allocation is decided downstream (the query is forwarded); in async mode the frames
    /// the worker holds are added to the pools' minimum so that upstream's pool does not
    /// run dry.
    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_propose_allocation(decide_query, query)?;
        if lock(&self.settings).mode == Mode::Async {
            let held = worker::QUEUE as u32 + 1;
            let pools: Vec<_> = query.allocation_pools().into_iter().collect();
            for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
                let max = if max == 0 { 0 } else { max.saturating_add(held) };
                query.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min.saturating_add(held), max);
            }
        }
        Ok(())
    }

    /// LATENCY (on the source pad): upstream's latency plus the longest frame time seen
    /// (a frame leaves after its inference, in both modes). The maximum grows by the
    /// frames that may wait: one in sync mode, the async queue in async mode.
    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if query.type_() == gst::QueryType::Context {
            let id = lock(&self.settings).cuda_device_id;
            if self.cuda.query(self.obj().upcast_ref(), query, id, self.cuda_memory_offered()) {
                return true;
            }
        }
        if direction == gst::PadDirection::Src && query.type_() == gst::QueryType::Latency {
            if !self.obj().sink_pad().peer_query(query) {
                return false;
            }
            if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                let (live, min, max) = q.result();
                let ours = gst::ClockTime::from_nseconds(self.latency_ns.load(Ordering::Relaxed));
                let waiting = if lock(&self.settings).mode == Mode::Async { worker::QUEUE as u64 + 1 } else { 1 };
                let max = max.map(|m| m + ours * waiting);
                gst::debug!(CAT, imp = self, "latency: upstream {min}, ours {ours}, live {live}");
                q.set(live, min + ours, max);
            }
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let worker = self.worker_handle();
        match event.view() {
            gst::EventView::FlushStart(_) => {}
            gst::EventView::FlushStop(_) => {
                if let Some(w) = &worker {
                    w.reset();
                }
                if let Some(state) = lock(&self.state).as_mut() {
                    gst::debug!(CAT, imp = self, "flush: frame count reset");
                    state.frames = 0;
                    if let Some(inference) = state.inference.as_mut() {
                        inference.reset();
                    }
                }
            }
            gst::EventView::Eos(_) => {
                if let Some(w) = &worker {
                    w.drain();
                }
                self.post_summary();
            }
            // Serialized events (caps, segment, gap, ...) must follow the frames queued
            // before them.
            _ if event.is_serialized() => {
                if let Some(w) = &worker {
                    w.drain();
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
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("buffer before caps were negotiated"));
            return Err(gst::FlowError::NotNegotiated);
        };
        if buf.flags().contains(gst::BufferFlags::GAP) && buf.size() == 0 {
            return Ok(gst::FlowSuccess::Ok);
        }
        let frame_no = state.frames;
        state.frames += 1;
        Counters::add(&self.counters.frames);
        let due = frame_no % u64::from(settings.interval.max(1)) == 0;

        if let Some(w) = state.worker.as_ref().map(Worker::handle) {
            drop(guard);
            return w.submit(self, buf, frame_no, due, settings, video, &self.running, &self.counters);
        }

        let Some(inference) = state.inference.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("no inference state"));
            return Err(gst::FlowError::Error);
        };
        let out = match (inference.last_for(video.info.width(), video.info.height()), due) {
            (Some(done), false) => {
                Counters::add(&self.counters.stale);
                Outcome { done, frame_no, stale: true }
            }
            _ => match inference.segment_or_wait(
                &settings,
                buf,
                &video,
                frame_no,
                || self.keep_waiting(),
                |line| self.say_outage(line),
            ) {
                Ok(done) => {
                    Counters::add(&self.counters.inferred);
                    self.observe_latency(&done.timings);
                    Outcome { done, frame_no, stale: false }
                }
                Err(Failure::Error(msg)) => {
                    self.post_error_message(msg);
                    return Err(gst::FlowError::Error);
                }
                // The server is unreachable: the overload policy (wait ended by a stop or
                // a flush).
                Err(Failure::Unavailable(_)) if settings.overload == Overload::Wait => {
                    return Err(gst::FlowError::Flushing);
                }
                Err(Failure::Unavailable(_)) => match inference
                    .stand_in(settings.overload == Overload::Drop, (video.info.width(), video.info.height()))
                {
                    Some(done) => Outcome { done, frame_no, stale: true },
                    None => return Ok(gst::FlowSuccess::Ok),
                },
            },
        };
        let stream = state.stream.clone();
        drop(guard);
        inference::attach(&self.obj(), buf, &stream, out, settings.post_messages).map_err(|msg| {
            self.post_error_message(msg);
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}

impl Mask2Former {
    /// `overload=wait` with an unreachable server: go on waiting while the element runs
    /// and its sink pad is not flushing.
    pub(super) fn keep_waiting(&self) -> bool {
        self.running.load(Ordering::SeqCst) && !self.obj().sink_pad().pad_flags().contains(gst::PadFlags::FLUSHING)
    }

    /// An outage of the inference server started or ended: a warning on the bus (the
    /// command prints it).
    pub(super) fn say_outage(&self, line: &str) {
        gst::warning!(CAT, imp = self, "{line}");
        gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", line));
    }
}

/// The CUDA stages for `device` (not `cpu`) on device `ordinal`: `Ok((None, why))` when
/// `device=auto` stays on the CPU, an error when `device=cuda` cannot have them.
fn open_gpu_stages(device: Device, ordinal: usize) -> crate::Result<(Option<Arc<dyn DeviceStages>>, String)> {
    let opened = match crate::cuda::select(device, ordinal) {
        Ok(crate::cuda::Processing::Cpu { fallback }) => {
            return Ok((None, fallback.map_or_else(|| "cpu".to_string(), |f| format!("cpu ({f})"))));
        }
        #[cfg(feature = "cuda")]
        Ok(crate::cuda::Processing::Cuda(ctx)) => {
            let name = format!("cuda:{ordinal} ({})", ctx.info().name);
            crate::cuda::stages::gpu::CudaStages::new(ctx).map(|s| (Some(Arc::new(s) as Arc<dyn DeviceStages>), name))
        }
        Err(e) => Err(e),
    };
    match opened {
        Err(e) if device == Device::Auto => Ok((None, format!("cpu (GPU processing unavailable, using the CPU: {e})"))),
        other => other,
    }
}
