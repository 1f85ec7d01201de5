//! `segstream bench --live`: the figures of live use, measured with `mask2former` elements
//! in real pipelines on decoded frames of one input.
//!
//! - **Latency**: `appsrc is-live=true ! mask2former mode=… overload=… ! appsink`. Frame `i`
//!   is pushed at `t0 + i / rate`; its latency is the time from that push to its arrival at
//!   the appsink. Two input rates, both relative to the mean inference time `t` measured
//!   first on a few frames: `under` = `0.5 / t` (the element is never behind) and `over` =
//!   `4 / t` (the source outruns inference four times). In sync mode at the `over` rate
//!   frames queue up without bound in front of the element — that is the case `overload`
//!   exists for — and its latency is reported as measured.
//! - **Throughput**: N streams, each `appsrc ! mask2former ! appsink` pushing frames as fast
//!   as they are taken, every stream on its own thread, either sharing one batching group
//!   (`batch-group`, `batch-size` = N) or each running its own model (the threads split
//!   between them); frames/s of all streams together.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use serde::{Deserialize, Serialize};

use super::{Decoded, Machine, decode, unix_now};
use crate::elements::SegmentationMeta;
use crate::app::pipeline::percentile;

pub const LIVE_SCHEMA: &str = "segstream.bench-live/1";

/// What to measure.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub input_uri: String,
    pub input_name: String,
    pub model: PathBuf,
    /// Frames pushed in each latency run.
    pub frames: usize,
    /// Frames per stream in each throughput run.
    pub stream_frames: usize,
    /// ONNX Runtime intra-op threads (per process: split between separate models).
    pub threads: u32,
    /// Stream counts of the throughput runs.
    pub streams: Vec<usize>,
}

/// One latency run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRun {
    pub mode: String,
    pub overload: String,
    /// `under` or `over` (see the module docs).
    pub load: String,
    pub input_fps: f64,
    pub frames_in: usize,
    pub frames_out: usize,
    /// Output frames over the time from the first push to the last output.
    pub output_fps: f64,
    /// Output frames carrying a result.
    pub with_result: usize,
    /// Output frames whose result was computed for an earlier frame.
    pub stale: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One throughput run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRun {
    pub streams: usize,
    /// One batching group for all streams (else one model per stream).
    #[serde(alias = "shared_engine")]
    pub shared_batch: bool,
    pub frames: usize,
    pub wall_s: f64,
    pub fps: f64,
    /// Batches the shared group formed and how many held more than one frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_frame_batches: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    pub schema: String,
    pub version: String,
    pub started_unix: u64,
    pub machine: Machine,
    pub input: String,
    pub model: String,
    pub threads: u32,
    pub width: u32,
    pub height: u32,
    /// Mean inference time of one frame (sync, nothing else running), ms.
    pub inference_ms: f64,
    pub latency: Vec<LatencyRun>,
    pub throughput: Vec<ThroughputRun>,
}

fn element(factory: &str, props: &[(&str, &str)]) -> Result<gst::Element> {
    let e = gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| anyhow!("GStreamer element `{factory}` is missing"))?;
    for (k, v) in props {
        e.set_property_from_str(k, v);
    }
    Ok(e)
}

/// Arrival of one frame at the appsink.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    index: usize,
    at: Instant,
    result: bool,
    stale: bool,
}

/// `appsrc ! mask2former(props) ! appsink`, with arrivals recorded.
struct Chain {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    period: gst::ClockTime,
}

impl Chain {
    fn new(info: &gst_video::VideoInfo, live: bool, props: &[(&str, &str)], period: gst::ClockTime) -> Result<Chain> {
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(&info.to_caps()?)
            .format(gst::Format::Time)
            .is_live(live)
            .block(!live)
            .max_buffers(if live { 0 } else { 2 })
            .build();
        let m2f = element("mask2former", props)?;
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample({
                        let arrivals = arrivals.clone();
                        move |sink| {
                            let at = Instant::now();
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                            let index = buf.offset() as usize;
                            let meta = buf.meta::<SegmentationMeta>();
                            let a = Arrival {
                                index,
                                at,
                                result: meta.is_some(),
                                stale: meta.is_some_and(|m| m.info().stale),
                            };
                            arrivals.lock().unwrap_or_else(|e| e.into_inner()).push(a);
                            Ok(gst::FlowSuccess::Ok)
                        }
                    })
                    .build(),
            )
            .build();
        pipeline.add_many([src.upcast_ref(), &m2f, sink.upcast_ref()])?;
        gst::Element::link_many([src.upcast_ref(), &m2f, sink.upcast_ref()])?;
        Ok(Chain { pipeline, src, arrivals, period })
    }

    fn start(&self) -> Result<()> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| anyhow!("pipeline did not start: {}", self.error().unwrap_or_default()))?;
        Ok(())
    }

    /// Push frame `i` (the frame's number goes in the buffer offset).
    fn push(&self, d: &Decoded, i: usize) -> Result<()> {
        let mut b = gst::Buffer::from_slice(d.data.clone());
        {
            let b = b.get_mut().context("fresh buffer")?;
            b.set_pts(self.period * i as u64);
            b.set_duration(self.period);
            b.set_offset(i as u64);
        }
        self.src
            .push_buffer(b)
            .map_err(|e| anyhow!("push refused ({e:?}): {}", self.error().unwrap_or_default()))?;
        Ok(())
    }

    /// Send EOS and wait for it at the sink (or an error).
    fn finish(&self, limit: Duration) -> Result<()> {
        let _ = self.src.end_of_stream();
        let bus = self.pipeline.bus().context("pipeline without bus")?;
        let result = match bus.timed_pop_filtered(gst::ClockTime::from_nseconds(limit.as_nanos() as u64), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(m) => match m.view() {
                gst::MessageView::Error(e) => Err(anyhow!("pipeline error: {}", e.error())),
                _ => Ok(()),
            },
            None => Err(anyhow!("no end of stream within {limit:?}")),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }

    fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(m) = bus.pop() {
            if let gst::MessageView::Error(e) = m.view() {
                return Some(e.error().to_string());
            }
        }
        None
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn video_info(w: u32, h: u32, fps: f64) -> Result<gst_video::VideoInfo> {
    let fr = gst::Fraction::approximate_f64(fps).unwrap_or(gst::Fraction::new(30, 1));
    gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
        .fps(fr)
        .build()
        .map_err(|e| anyhow!("{e}"))
}

fn period_of(fps: f64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds((1e9 / fps) as u64)
}

fn base_props<'a>(model: &'a str, threads: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("model", model), ("device", "cpu"), ("threads", threads)]
}

/// Push `n` frames at `fps` through one element set up with `props`; latency figures.
#[allow(clippy::too_many_arguments)]
fn latency_run(cfg: &LiveConfig, frames: &[Decoded], w: u32, h: u32, fps: f64, mode: &str, overload: &str, load: &str) -> Result<LatencyRun> {
    let model = cfg.model.display().to_string();
    let threads = cfg.threads.to_string();
    let mut props = base_props(&model, &threads);
    props.push(("mode", mode));
    props.push(("overload", overload));
    let chain = Chain::new(&video_info(w, h, fps)?, true, &props, period_of(fps))?;
    chain.start()?;
    let t0 = Instant::now();
    let mut pushed = Vec::with_capacity(cfg.frames);
    for i in 0..cfg.frames {
        let due = t0 + Duration::from_secs_f64(i as f64 / fps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        pushed.push(Instant::now());
        chain.push(&frames[i % frames.len()], i)?;
    }
    // Whatever queued up is worked off before EOS arrives.
    chain.finish(Duration::from_secs(600))?;
    let arrivals = chain.arrivals();
    let lat: Vec<f64> = arrivals
        .iter()
        .filter_map(|a| pushed.get(a.index).map(|p| (a.at - *p).as_secs_f64() * 1e3))
        .collect();
    let last = arrivals.iter().map(|a| a.at).max().unwrap_or(t0);
    let span = (last - t0).as_secs_f64();
    Ok(LatencyRun {
        mode: mode.into(),
        overload: overload.into(),
        load: load.into(),
        input_fps: fps,
        frames_in: cfg.frames,
        frames_out: arrivals.len(),
        output_fps: if span > 0.0 { arrivals.len() as f64 / span } else { 0.0 },
        with_result: arrivals.iter().filter(|a| a.result).count(),
        stale: arrivals.iter().filter(|a| a.stale).count(),
        p50_ms: percentile(&lat, 0.5).unwrap_or(0.0),
        p95_ms: percentile(&lat, 0.95).unwrap_or(0.0),
        p99_ms: percentile(&lat, 0.99).unwrap_or(0.0),
        max_ms: lat.iter().copied().fold(0.0, f64::max),
    })
}

/// `n` streams pushing `cfg.stream_frames` frames each as fast as they are taken.
fn throughput_run(cfg: &LiveConfig, frames: &[Decoded], w: u32, h: u32, n: usize, shared: bool) -> Result<ThroughputRun> {
    let model = cfg.model.display().to_string();
    let group = format!("bench-live-{n}");
    let batch = n.to_string();
    let threads = if shared { cfg.threads.to_string() } else { (cfg.threads as usize / n).max(1).to_string() };
    let mut props = base_props(&model, &threads);
    if shared {
        props.extend([("batch-group", group.as_str()), ("batch-size", batch.as_str()), ("batch-timeout", "50000000")]);
    }
    let chains: Vec<Chain> = (0..n)
        .map(|_| Chain::new(&video_info(w, h, 30.0)?, false, &props, period_of(30.0)))
        .collect::<Result<_>>()?;
    for c in &chains {
        c.start()?;
    }
    // The model loads when the elements start: time from here.
    let t0 = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .iter()
            .map(|c| {
                s.spawn(move || -> Result<()> {
                    for i in 0..cfg.stream_frames {
                        c.push(&frames[i % frames.len()], i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("stream thread panicked")))).collect()
    });
    for r in results {
        r?;
    }
    // Wait for every frame at the sinks (the group's statistics are read while its
    // members, the elements, still run), then stop.
    let want = n * cfg.stream_frames;
    let limit = Instant::now() + Duration::from_secs(600);
    let arrived = || chains.iter().map(|c| c.arrivals.lock().unwrap_or_else(|e| e.into_inner()).len()).sum::<usize>();
    while arrived() < want {
        if let Some(e) = chains.iter().find_map(Chain::error) {
            bail!("{n} streams: pipeline error: {e}");
        }
        if Instant::now() > limit {
            bail!("{n} streams: {} of {want} frames out after 600 s", arrived());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let stats = if shared { crate::backend::batching::stats(&group) } else { None };
    for c in &chains {
        c.finish(Duration::from_secs(60))?;
    }
    let total: usize = chains.iter().map(|c| c.arrivals().len()).sum();
    let (batches, multi) = (stats.map(|s| s.batches), stats.map(|s| s.multi_image_batches));
    Ok(ThroughputRun { streams: n, shared_batch: shared, frames: total, wall_s, fps: total as f64 / wall_s, batches, multi_frame_batches: multi })
}

/// Mean inference time of one frame on this model and thread count (after one warm-up).
fn inference_ms(cfg: &LiveConfig, frames: &[Decoded], w: u32, h: u32) -> Result<f64> {
    let mut scfg = crate::segmenter::SegmenterConfig::new(&cfg.model);
    scfg.ort.intra_threads = (cfg.threads > 0).then_some(cfg.threads as usize);
    let mut seg = crate::segmenter::Segmenter::open(&scfg).map_err(|e| anyhow!("cannot open model {}: {e}", cfg.model.display()))?;
    let mut times = Vec::new();
    for (i, d) in frames.iter().cycle().take(4).enumerate() {
        let frame = crate::frame::Frame::new(crate::frame::PixelFormat::I420, w as usize, h as usize, d.planes(), d.strides)?;
        let (_, t) = seg.segment(&frame, &crate::settings::PostSettings::default())?;
        if i > 0 {
            times.push(t.inference_ms);
        }
    }
    Ok(times.iter().sum::<f64>() / times.len() as f64)
}

/// All the runs: latency (sync and async, under and over capacity), then throughput.
pub fn run(cfg: &LiveConfig, mut progress: impl FnMut(&str)) -> Result<LiveReport> {
    if cfg.frames == 0 || cfg.stream_frames == 0 {
        bail!("frame counts must be at least 1");
    }
    let started_unix = unix_now();
    let machine = Machine::now();
    let (frames, _, w, h, _) = decode(&cfg.input_uri, cfg.frames.clamp(1, 30))?;
    progress("measuring the inference time");
    let t_ms = inference_ms(cfg, &frames, w, h)?;
    let capacity = 1e3 / t_ms;
    let mut latency = Vec::new();
    for (load, fps) in [("under", 0.5 * capacity), ("over", 4.0 * capacity)] {
        for (mode, overload) in [("sync", "wait"), ("async", "wait"), ("async", "drop"), ("async", "skip")] {
            if load == "under" && overload == "skip" {
                continue; // same as drop when the worker is never busy
            }
            progress(&format!("latency: {mode} overload={overload}, input {fps:.2} frames/s ({load} capacity)"));
            latency.push(latency_run(cfg, &frames, w, h, fps, mode, overload, load)?);
        }
    }
    let mut throughput = Vec::new();
    for &n in &cfg.streams {
        for shared in [true, false] {
            if n == 1 && !shared {
                continue; // one stream: the same as its own model
            }
            progress(&format!("throughput: {n} stream(s), {}", if shared { "one batch group" } else { "one model each" }));
            throughput.push(throughput_run(cfg, &frames, w, h, n, shared)?);
        }
    }
    Ok(LiveReport {
        schema: LIVE_SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_unix,
        machine,
        input: cfg.input_name.clone(),
        model: cfg.model.display().to_string(),
        threads: cfg.threads,
        width: w,
        height: h,
        inference_ms: t_ms,
        latency,
        throughput,
    })
}

impl LiveReport {
    /// The human-readable tables.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ({}x{}), model {} ({} threads): inference {:.1} ms a frame ({:.2} frames/s)\n\n",
            self.input,
            self.width,
            self.height,
            self.model,
            self.threads,
            self.inference_ms,
            1e3 / self.inference_ms
        );
        s += &format!(
            "{:<6} {:<5} {:<6} {:>7} {:>5} {:>5} {:>7} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9}\n",
            "mode", "over", "load", "in fps", "in", "out", "out fps", "result", "stale", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for r in &self.latency {
            s += &format!(
                "{:<6} {:<5} {:<6} {:>7.2} {:>5} {:>5} {:>7.2} {:>6} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
                r.mode, r.overload, r.load, r.input_fps, r.frames_in, r.frames_out, r.output_fps, r.with_result, r.stale, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms
            );
        }
        s += &format!("\n{:<8} {:<14} {:>7} {:>8} {:>9} {:>8} {:>12}\n", "streams", "inference", "frames", "wall s", "frames/s", "batches", "multi-frame");
        for r in &self.throughput {
            let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
            s += &format!(
                "{:<8} {:<14} {:>7} {:>8.2} {:>9.2} {:>8} {:>12}\n",
                r.streams,
                if r.shared_batch { "shared" } else { "one per stream" },
                r.frames,
                r.wall_s,
                r.fps,
                opt(r.batches),
                opt(r.multi_frame_batches)
            );
        }
        s += &format!(
            "\n{} CPUs, load average {}\n",
            self.machine.cpus,
            self.machine.load_text()
        );
        s
    }
}
