//! `segstream bench`: where the time of one frame goes, and how fast the whole pipeline is.
//!
//! Two measurements on the same first `frames` frames of one input, in one process:
//!
//! 1. **Stages, one at a time** (every stage of a frame runs to completion before the next
//!    starts, so the stage times add up to the time of a frame and nothing overlaps):
//!    - `decode`: `uridecodebin ! videoconvert ! appsink` (I420, the decoder's own format
//!      and what `mask2former` receives in `segstream run`), all frames pulled first; a
//!      frame's time is the interval between two pulls while the consumer does nothing
//!      else (the decoder's throughput);
//!    - `preprocess`, `inference`, `postprocess`: [`Segmenter::segment`]'s own timings;
//!    - `overlay`: [`render::overlay`] on a copy of the frame (what `segoverlay` runs);
//!    - `json`: [`FrameRecord::new`] + serialization (COCO RLE of every segment, what
//!      `segmetaenc` runs);
//!    - `encode`: the overlaid frames through `appsrc ! videoconvert ! x264enc
//!      speed-preset=veryfast ! mp4mux ! filesink` (the `run` encoder); a frame's time is
//!      the interval between two encoded buffers (x264's throughput, its look-ahead
//!      latency left out), their mean the encoder's wall time over the frames.
//! 2. **End to end**: the pipeline `segstream run` builds (decode → mask2former → tee →
//!    segoverlay → x264enc → mp4mux, and → segmetaenc → JSON Lines), with the segmenter
//!    already opened, stopped after `frames` frames: frames/s as users get it, process
//!    CPU time (getrusage) and peak RSS. `overhead` is the share of a frame's wall time
//!    that is not the network forward: `1 − mean(inference) / (wall / frames)`.

pub mod chart;
pub mod live;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, FrameMut, PixelFormat};
use crate::app::pipeline::{self, Outputs, Source, percentile};
use crate::render::{self, OverlayOptions};
use crate::schema::{FrameInfo, FrameRecord};
use crate::segmenter::Segmenter;
use crate::settings::{PostSettings, Settings};

pub const BENCH_SCHEMA: &str = "segstream.bench/1";

/// The stages, in pipeline order.
pub const STAGES: [&str; 7] = ["decode", "preprocess", "inference", "postprocess", "overlay", "encode", "json"];

/// One stage's per-frame times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    pub name: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    pub samples: usize,
}

impl StageStats {
    pub fn from_samples(name: &str, v: &[f64]) -> StageStats {
        let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        StageStats {
            name: name.to_string(),
            p50_ms: percentile(v, 0.5).unwrap_or(0.0),
            p95_ms: percentile(v, 0.95).unwrap_or(0.0),
            mean_ms: mean,
            samples: v.len(),
        }
    }
}

/// The whole pipeline, as `segstream run` runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndToEnd {
    pub frames: u64,
    pub wall_s: f64,
    pub fps: f64,
    /// Mean network forward (ONNX Runtime `run`) per frame in this run.
    pub inference_mean_ms: f64,
    /// `1 − inference_mean_ms / (wall / frames)`, in percent.
    pub overhead_pct: f64,
    /// Process CPU time (user + system) over the run, seconds.
    pub cpu_s: f64,
    /// `cpu_s / wall_s` in percent (200 = two cores busy).
    pub cpu_pct: f64,
}

/// Where and with what it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    /// 1-, 5-, 15-minute load averages at the start.
    pub load_avg: Option<[f64; 3]>,
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub version: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub machine: Machine,
    pub input: String,
    pub model: String,
    pub backend: String,
    pub threads: u32,
    pub semantics: String,
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    /// Per-stage times (see the module docs), in [`STAGES`] order.
    pub stages: Vec<StageStats>,
    /// Sum of the stage means: the time of a frame when nothing overlaps.
    pub sequential_ms: f64,
    pub sequential_fps: f64,
    pub end_to_end: Option<EndToEnd>,
    /// Peak resident set size of the process, MiB.
    pub peak_rss_mib: f64,
    /// The reference pipeline's report (`engines/peer_bench.py --json`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<serde_json::Value>,
    /// segstream against the reference, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// segstream against a reference pipeline measured on the same frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub peer_name: String,
    /// End-to-end frames/s: segstream ÷ reference.
    pub fps_ratio: f64,
    /// Stages one at a time: reference ms per frame ÷ segstream's.
    pub sequential_ratio: f64,
    pub peer_fps: f64,
    pub peer_overhead_pct: f64,
}

impl BenchReport {
    /// Attach a reference report (the JSON `engines/peer_bench.py` writes: `stages`
    /// like ours, `end_to_end.fps`, `end_to_end.overhead_pct`) and compute the ratios.
    pub fn attach_peer(&mut self, peer: serde_json::Value) -> Result<()> {
        let fps = peer.pointer("/end_to_end/fps").and_then(|v| v.as_f64()).ok_or_else(|| anyhow!("reference report has no end_to_end.fps"))?;
        let overhead = peer.pointer("/end_to_end/overhead_pct").and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let seq: f64 = peer
            .get("stages")
            .and_then(|v| v.as_array())
            .ok_or_else(|| anyhow!("reference report has no stages"))?
            .iter()
            .filter_map(|s| s.get("mean_ms").and_then(|v| v.as_f64()))
            .sum();
        if let Some(pf) = peer.get("frames").and_then(|v| v.as_u64())
            && pf as usize != self.frames
        {
            bail!("the reference measured {pf} frames, segstream {}: not the same frames", self.frames);
        }
        let ours = self.end_to_end.as_ref().map(|e| e.fps).unwrap_or(self.sequential_fps);
        self.comparison = Some(Comparison {
            peer_name: peer.get("name").and_then(|v| v.as_str()).unwrap_or("reference").to_string(),
            fps_ratio: if fps > 0.0 { ours / fps } else { f64::NAN },
            sequential_ratio: if self.sequential_ms > 0.0 { seq / self.sequential_ms } else { f64::NAN },
            peer_fps: fps,
            peer_overhead_pct: overhead,
        });
        self.peer = Some(peer);
        Ok(())
    }

    /// The chart's bars: segstream's stages and, when attached, the reference's.
    pub fn chart_bars(&self) -> Vec<chart::Bar> {
        let mut bars = vec![chart::Bar {
            name: "segstream".into(),
            pieces: self.stages.iter().map(|s| (s.name.clone(), s.mean_ms)).collect(),
        }];
        if let Some(p) = &self.peer {
            let pieces = p
                .get("stages")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|s| Some((s.get("name")?.as_str()?.to_string(), s.get("mean_ms")?.as_f64()?)))
                .collect();
            let name = p.get("name").and_then(|v| v.as_str()).unwrap_or("reference");
            bars.push(chart::Bar { name: name.chars().take(22).collect(), pieces });
        }
        bars
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub input: PathBuf,
    pub frames: usize,
    /// Frames segmented before timing starts (ONNX Runtime's first runs are slower).
    pub warmup: usize,
    pub threads: u32,
    /// Also run the end-to-end pipeline.
    pub end_to_end: bool,
    /// Post-processing (task, semantics, thresholds) of the stages and the pipeline.
    pub post: PostSettings,
    /// Where the end-to-end run writes its video and JSON Lines (a temporary folder).
    pub scratch: PathBuf,
}

/// Process CPU seconds (user + system) and peak RSS (MiB).
pub fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as f64 / 1024.0)
}

fn load_avg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = s.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

/// One decoded I420 frame.
struct Decoded {
    data: Vec<u8>,
    offsets: [usize; 3],
    strides: [usize; 3],
}

impl Decoded {
    fn planes(&self) -> [&[u8]; 3] {
        let [a, b, c] = self.offsets;
        [&self.data[a..b], &self.data[b..c], &self.data[c..]]
    }
}

fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| anyhow!("GStreamer element `{factory}` is missing"))
}

/// Decode the first `n` frames: (frames, per-frame ms, width, height, framerate).
fn decode(uri: &str, n: usize) -> Result<(Vec<Decoded>, Vec<f64>, u32, u32, gst::Fraction)> {
    let pipeline = gst::Pipeline::new();
    let src = make("uridecodebin")?;
    src.set_property("uri", uri);
    let conv = make("videoconvert")?;
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder("video/x-raw").field("format", "I420").build())
        .sync(false)
        .max_buffers(2)
        .build();
    pipeline.add_many([&src, &conv, sink.upcast_ref()])?;
    conv.link(&sink)?;
    let conv_sink = conv.static_pad("sink").context("videoconvert has no sink pad")?;
    src.connect_pad_added(move |_, pad| {
        let video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if video && !conv_sink.is_linked() {
            let _ = pad.link(&conv_sink);
        }
    });
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let mut times = Vec::new();
    let (mut w, mut h, mut fr) = (0, 0, gst::Fraction::new(0, 1));
    let mut last = Instant::now();
    let result = (|| -> Result<()> {
        while frames.len() < n {
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
                if sink.is_eos() {
                    break;
                }
                let bus = pipeline.bus().context("no bus")?;
                while let Some(m) = bus.pop() {
                    if let gst::MessageView::Error(e) = m.view() {
                        bail!("cannot decode: {}", pipeline::one_line(&e.error().to_string()));
                    }
                }
                bail!("no frame decoded within 30 s");
            };
            let now = Instant::now();
            times.push((now - last).as_secs_f64() * 1e3);
            let caps = sample.caps().context("sample without caps")?;
            let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| anyhow!("bad caps: {e}"))?;
            let buf = sample.buffer().context("sample without buffer")?;
            let map = buf.map_readable()?;
            let off = info.offset();
            let st = info.stride();
            (w, h, fr) = (info.width(), info.height(), info.fps());
            frames.push(Decoded {
                data: map.as_slice().to_vec(),
                offsets: [off[0], off[1], off[2]],
                strides: [st[0] as usize, st[1] as usize, st[2] as usize],
            });
            last = Instant::now();
        }
        Ok(())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    if frames.is_empty() {
        bail!("no video frame decoded");
    }
    Ok((frames, times, w, h, fr))
}

/// Encode I420 frames as the `run` pipeline does; per-frame ms between encoded buffers,
/// normalized so that their sum is the encoder's wall time.
fn encode(frames: &[Vec<u8>], w: u32, h: u32, fr: gst::Fraction, out: &Path) -> Result<Vec<f64>> {
    let pipeline = gst::Pipeline::new();
    let fr = if fr.numer() > 0 { fr } else { gst::Fraction::new(15, 1) };
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
        .fps(fr)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let src = gst_app::AppSrc::builder()
        .caps(&info.to_caps()?)
        .format(gst::Format::Time)
        .build();
    let conv = make("videoconvert")?;
    let caps = make("capsfilter")?;
    caps.set_property("caps", gst::Caps::builder("video/x-raw").field("format", "I420").build());
    let enc = make("x264enc")?;
    enc.set_property_from_str("speed-preset", "veryfast");
    let mux = make("mp4mux")?;
    let sink = make("filesink")?;
    sink.set_property("location", out.to_string_lossy().as_ref());
    let chain = [src.upcast_ref(), &conv, &caps, &enc, &mux, &sink];
    pipeline.add_many(chain)?;
    gst::Element::link_many(chain)?;
    let stamps: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stamps_cb = stamps.clone();
    enc.static_pad("src").context("x264enc has no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        crate::util::lock(&stamps_cb).push(Instant::now());
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing)?;
    let start = Instant::now();
    let dur = gst::ClockTime::from_nseconds(1_000_000_000 * fr.denom() as u64 / fr.numer() as u64);
    for (i, f) in frames.iter().enumerate() {
        let mut buf = gst::Buffer::from_slice(f.clone());
        if let Some(b) = buf.get_mut() {
            b.set_pts(dur * i as u64);
            b.set_duration(dur);
        }
        src.push_buffer(buf).map_err(|e| anyhow!("encoder refused a frame: {e:?}"))?;
    }
    src.end_of_stream().map_err(|e| anyhow!("{e:?}"))?;
    let bus = pipeline.bus().context("no bus")?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let wall = start.elapsed().as_secs_f64() * 1e3;
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => bail!("encoder: {}", pipeline::one_line(&e.error().to_string())),
        _ => bail!("encoder did not finish within 120 s"),
    }
    let stamps = crate::util::lock(&stamps).clone();
    let mut v: Vec<f64> = std::iter::once(start)
        .chain(stamps.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|p| (p[1] - p[0]).as_secs_f64() * 1e3)
        .collect();
    // The first interval holds x264's look-ahead latency: leave it out of the per-frame
    // distribution, and scale so that the mean is the wall time per frame.
    if v.len() > 2 {
        v.remove(0);
    }
    let sum: f64 = v.iter().sum();
    let per = wall / frames.len() as f64;
    if sum > 0.0 {
        let k = per * v.len() as f64 / sum;
        v.iter_mut().for_each(|x| *x *= k);
    }
    Ok(v)
}

/// Run both measurements. `segmenter` is used for the stages and then handed to the
/// end-to-end pipeline.
/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Machine {
    /// The load averages as `1.00 2.00 3.00` (`-` when unknown).
    pub fn load_text(&self) -> String {
        self.load_avg.map(|l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])).unwrap_or_else(|| "-".into())
    }

    /// This machine now: CPUs, load average, OS.
    pub fn now() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            load_avg: load_avg(),
            os: std::env::consts::OS.to_string(),
        }
    }
}

pub fn run(cfg: &BenchConfig, mut segmenter: Segmenter) -> Result<BenchReport> {
    let started_unix = unix_now();
    let machine = Machine::now();
    let source = Source::File(cfg.input.clone());
    let uri = source.uri()?;
    if cfg.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let (decoded, mut decode_ms, w, h, fr) = decode(&uri, cfg.frames)?;
    // The first pull includes the pipeline's start: not a decode time.
    if decode_ms.len() > 1 {
        decode_ms.remove(0);
    }
    let n = decoded.len();
    let labels = segmenter.card().labels.clone();
    let model_name = segmenter.card().name.clone();
    fn frame_of(d: &Decoded, w: u32, h: u32) -> crate::Result<Frame<'_>> {
        Frame::new(PixelFormat::I420, w as usize, h as usize, d.planes(), d.strides)
    }
    for d in decoded.iter().cycle().take(cfg.warmup) {
        segmenter.segment(&frame_of(d, w, h)?, &cfg.post)?;
    }
    let mut pre = Vec::new();
    let mut inf = Vec::new();
    let mut post = Vec::new();
    let mut over = Vec::new();
    let mut json = Vec::new();
    let mut overlaid = Vec::with_capacity(n);
    let opts = OverlayOptions::default();
    for (i, d) in decoded.iter().enumerate() {
        let (seg, t) = segmenter.segment(&frame_of(d, w, h)?, &cfg.post)?;
        pre.push(t.preprocess_ms);
        inf.push(t.inference_ms);
        post.push(t.postprocess_ms);
        let mut data = d.data.clone();
        let t0 = Instant::now();
        {
            let [a, b, c] = d.offsets;
            let (p0, rest) = data[a..].split_at_mut(b - a);
            let (p1, p2) = rest.split_at_mut(c - b);
            let mut fm = FrameMut::new(PixelFormat::I420, w as usize, h as usize, [p0, p1, p2], d.strides)?;
            render::overlay(&mut fm, &seg, &labels, &opts)?;
        }
        over.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let info = FrameInfo { stream: cfg.input.display().to_string(), frame: i as u64, pts: None, model: model_name.clone(), timings: t, stale: false };
        let line = FrameRecord::new(&seg, &info).to_json_line();
        std::hint::black_box(&line);
        json.push(t0.elapsed().as_secs_f64() * 1e3);
        overlaid.push(data);
    }
    std::fs::create_dir_all(&cfg.scratch).with_context(|| format!("cannot create {}", cfg.scratch.display()))?;
    let enc_ms = encode(&overlaid, w, h, fr, &cfg.scratch.join("bench-encode.mp4"))?;
    drop(overlaid);
    drop(decoded);

    let stages = vec![
        StageStats::from_samples("decode", &decode_ms),
        StageStats::from_samples("preprocess", &pre),
        StageStats::from_samples("inference", &inf),
        StageStats::from_samples("postprocess", &post),
        StageStats::from_samples("overlay", &over),
        StageStats::from_samples("encode", &enc_ms),
        StageStats::from_samples("json", &json),
    ];
    let sequential_ms: f64 = stages.iter().map(|s| s.mean_ms).sum();
    let backend = segmenter.backend_name().to_string();
    let semantics = cfg.post.semantics.as_str().to_string();

    let end_to_end = if cfg.end_to_end { Some(end_to_end(cfg, &source, segmenter, n as u64)?) } else { None };
    let (_, rss) = rusage();
    Ok(BenchReport {
        schema: BENCH_SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_unix,
        machine,
        input: cfg.input.display().to_string(),
        model: model_name,
        backend,
        threads: cfg.threads,
        semantics,
        width: w,
        height: h,
        frames: n,
        stages,
        sequential_ms,
        sequential_fps: if sequential_ms > 0.0 { 1e3 / sequential_ms } else { 0.0 },
        end_to_end,
        peak_rss_mib: rss,
        peer: None,
        comparison: None,
    })
}

fn end_to_end(cfg: &BenchConfig, source: &Source, segmenter: Segmenter, frames: u64) -> Result<EndToEnd> {
    let outputs = Outputs {
        video: Some(cfg.scratch.join("bench-e2e.mp4")),
        json: Some(cfg.scratch.join("bench-e2e.jsonl")),
    };
    outputs.check_writable()?;
    let settings = Settings { threads: cfg.threads, post: cfg.post, ..Settings::default() };
    let built = pipeline::build(source, &outputs, &settings, Some(segmenter))?;
    built.limit_frames(frames)?;
    let (cpu0, _) = rusage();
    let report = built.run(Duration::from_secs(30), Some(frames), |_| {});
    let (cpu1, _) = rusage();
    if let pipeline::Outcome::Failed(e) = &report.outcome {
        bail!("end-to-end run failed: {e}");
    }
    let wall_s = report.wall.as_secs_f64();
    let inf: Vec<f64> = report.timings.iter().map(|t| t.inference_ms).collect();
    let inference_mean_ms = if inf.is_empty() { 0.0 } else { inf.iter().sum::<f64>() / inf.len() as f64 };
    let per_frame_ms = if report.frames > 0 { wall_s * 1e3 / report.frames as f64 } else { 0.0 };
    Ok(EndToEnd {
        frames: report.frames,
        wall_s,
        fps: report.fps(),
        inference_mean_ms,
        overhead_pct: if per_frame_ms > 0.0 { 100.0 * (1.0 - inference_mean_ms / per_frame_ms) } else { 0.0 },
        cpu_s: cpu1 - cpu0,
        cpu_pct: if wall_s > 0.0 { 100.0 * (cpu1 - cpu0) / wall_s } else { 0.0 },
    })
}

impl BenchReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ({}x{}, {} frames), model {} on {} ({} threads, {} semantics)\n",
            self.input, self.width, self.height, self.frames, self.model, self.backend, self.threads, self.semantics
        );
        s += &format!("{:<14} {:>9} {:>9} {:>9} {:>6}\n", "stage (ms)", "p50", "p95", "mean", "share");
        for st in &self.stages {
            let share = if self.sequential_ms > 0.0 { 100.0 * st.mean_ms / self.sequential_ms } else { 0.0 };
            s += &format!("{:<14} {:>9.2} {:>9.2} {:>9.2} {:>5.1}%\n", st.name, st.p50_ms, st.p95_ms, st.mean_ms, share);
        }
        s += &format!("{:<14} {:>29.2}   ({:.2} frames/s, stages one at a time)\n", "sum", self.sequential_ms, self.sequential_fps);
        if let Some(e) = &self.end_to_end {
            s += &format!(
                "end to end (segstream run pipeline): {} frames in {:.2} s = {:.2} frames/s; inference {:.1} ms/frame, \
                 overhead {:.1}% of the frame time; CPU {:.1} s ({:.0}%)\n",
                e.frames, e.wall_s, e.fps, e.inference_mean_ms, e.overhead_pct, e.cpu_s, e.cpu_pct
            );
        }
        s += &format!(
            "peak RSS {:.0} MiB; {} CPUs, load average {}\n",
            self.peak_rss_mib,
            self.machine.cpus,
            self.machine.load_text()
        );
        if let (Some(c), Some(p)) = (&self.comparison, &self.peer) {
            s += &format!("\nreference: {}\n", c.peer_name);
            for st in p.get("stages").and_then(|v| v.as_array()).into_iter().flatten() {
                let g = |k: &str| st.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                s += &format!(
                    "{:<14} {:>9.2} {:>9.2} {:>9.2}\n",
                    st.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                    g("p50_ms"),
                    g("p95_ms"),
                    g("mean_ms")
                );
            }
            s += &format!(
                "end to end: segstream {:.2} frames/s, reference {:.2} frames/s: ratio {:.2}x (target >= 2x: {}); \
                 stages one at a time: {:.2}x\n",
                self.end_to_end.as_ref().map(|e| e.fps).unwrap_or(self.sequential_fps),
                c.peer_fps,
                c.fps_ratio,
                if c.fps_ratio >= 2.0 { "met" } else { "MISSED" },
                c.sequential_ratio
            );
            if let Some(e) = &self.end_to_end {
                s += &format!(
                    "overhead (all but the network forward): segstream {:.1}% (target <= 10%: {}), reference {:.1}%\n",
                    e.overhead_pct,
                    if e.overhead_pct <= 10.0 { "met" } else { "MISSED" },
                    c.peer_overhead_pct
                );
            }
        }
        s
    }
}
