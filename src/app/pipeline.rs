//! Pipelines the `segstream` command builds and runs.
//!
//! ```text
//! uridecodebin ─ [queue leaky, live only] ─ videoconvert ─ mask2former ─ tee
//!     tee ─ queue ─ segoverlay ─ videoconvert ─ x264enc ─ mp4mux ─ filesink  (overlay video)
//!     tee ─ queue ─ segmetaenc ─ filesink                                  (JSON Lines)
//! ```
//!
//! With `--device cuda` or `auto` on a machine where the GPU path works ([`frame_path`]),
//! frames stay in CUDA memory from the decoder to the encoder:
//!
//! ```text
//! uridecodebin (nvh264dec first) ─ cudaupload ─ cudaconvert ─ mask2former ─ tee
//!     tee ─ queue ─ segoverlay ─ nvh264enc ─ h264parse ─ mp4mux ─ filesink
//!                              (or cudadownload ─ videoconvert ─ x264enc where there is no NVENC)
//! ```
//!
//! `cudaupload` and `cudaconvert` pass CUDA frames through untouched; they upload and
//! convert what a software decoder produces.
//!
//! Live sources (`rtsp://` and other network URIs, cameras) reconnect when they drop: an
//! error or end-of-stream from the decoder, or no frame for `--timeout`, tears down just
//! `uridecodebin` (the rest of the pipeline keeps running), posts a bus warning naming the
//! drop and the delay, and builds a new decoder after a back-off (0.5 s doubling to 8 s,
//! back to 0.5 s once a frame has come through again). Timestamps: the new decoder joins
//! the running pipeline (same clock and base time), so a live source's buffers keep the
//! pipeline's running time and go on increasing; a buffer whose pts would not be after the
//! last one passed on is dropped, so that the outputs' pts always increase.
//!
//! Outputs are written to `NAME.partial` beside their final name and renamed only when
//! the input was processed to its end; a failed or interrupted run leaves the `.partial`
//! files (finalized when possible, so that what was decoded is still playable).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_pbutils as gst_pbutils;

use crate::elements::{FRAME_MESSAGE, Mask2Former};
use crate::util::lock;
use crate::segmenter::{Segmenter, Timings};
use crate::settings::Settings;

/// File extensions taken as videos when a folder is given.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "flv", "wmv", "ogv", "3gp",
];
/// File extensions taken as still images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// One thing to segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A video file.
    File(PathBuf),
    /// A still image (one frame; the overlay is written as an image).
    Image(PathBuf),
    /// A URI: `rtsp://`, `http(s)://`, `file://`, ...
    Uri(String),
    /// A V4L2 camera device such as `/dev/video0`.
    Camera(PathBuf),
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

impl Source {
    /// Turn one command-line input into sources: a folder gives every video in it (sorted
    /// by name), a missing path is an error.
    pub fn expand(input: &str) -> Result<Vec<Source>> {
        if input.contains("://") {
            if let Some(path) = input.strip_prefix("file://")
                && !Path::new(path).exists()
            {
                bail!("input not found: {input}");
            }
            return Ok(vec![Source::Uri(input.to_owned())]);
        }
        let path = PathBuf::from(input);
        if input.starts_with("/dev/video") {
            if !path.exists() {
                bail!("camera not found: {input}");
            }
            return Ok(vec![Source::Camera(path)]);
        }
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("input not found: {input}"),
            _ => anyhow!("cannot read input {input}: {e}"),
        })?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list folder {input}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_ext(p, VIDEO_EXTENSIONS))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!(
                    "no videos in folder {input} (looked for {})",
                    VIDEO_EXTENSIONS.join(", ")
                );
            }
            return Ok(files.into_iter().map(Source::File).collect());
        }
        if has_ext(&path, IMAGE_EXTENSIONS) {
            Ok(vec![Source::Image(path)])
        } else {
            Ok(vec![Source::File(path)])
        }
    }

    /// The URI `uridecodebin` opens.
    pub fn uri(&self) -> Result<String> {
        match self {
            Source::File(p) | Source::Image(p) => {
                let abs = std::fs::canonicalize(p).with_context(|| format!("input not found: {}", p.display()))?;
                gst::glib::filename_to_uri(&abs, None)
                    .map(|u| u.to_string())
                    .map_err(|e| anyhow!("cannot make a URI of {}: {e}", abs.display()))
            }
            Source::Uri(u) => Ok(u.clone()),
            Source::Camera(p) => Ok(format!("v4l2://{}", p.display())),
        }
    }

    /// Short name: file stem, or the last path segment of a URI / device.
    pub fn stem(&self) -> String {
        let s = match self {
            Source::File(p) | Source::Image(p) | Source::Camera(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Source::Uri(u) => {
                let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
                let last = rest.trim_end_matches('/').rsplit('/').next().unwrap_or(rest);
                Path::new(last)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }
        };
        let s: String = s
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.is_empty() { "stream".into() } else { s }
    }

    /// What the user typed, for messages and the records' `stream` field.
    pub fn display(&self) -> String {
        match self {
            Source::File(p) | Source::Image(p) | Source::Camera(p) => p.display().to_string(),
            Source::Uri(u) => u.clone(),
        }
    }

    /// Live sources: bounded queue that drops frames instead of growing.
    pub fn is_live(&self) -> bool {
        match self {
            Source::Camera(_) => true,
            Source::Uri(u) => !u.starts_with("file://"),
            _ => false,
        }
    }

    pub fn is_image(&self) -> bool {
        matches!(self, Source::Image(_))
    }
}

/// What the preflight learned about a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub duration: Option<Duration>,
    /// Frames per second, if the stream says.
    pub fps: Option<f64>,
    pub is_image: bool,
}

impl Probe {
    /// Expected number of frames (duration × fps), if both are known.
    pub fn total_frames(&self) -> Option<u64> {
        if self.is_image {
            return Some(1);
        }
        let (d, f) = (self.duration?, self.fps?);
        let n = (d.as_secs_f64() * f).round();
        (n >= 1.0).then_some(n as u64)
    }
}

/// Check that a source opens and has a video stream, within `timeout`.
pub fn probe(source: &Source, timeout: Duration) -> Result<Probe> {
    if let Source::Camera(p) = source {
        // Opening the device twice is slow and may fail for busy cameras: check that it
        // exists and let the pipeline report the rest.
        if !p.exists() {
            bail!("camera not found: {}", p.display());
        }
        return Ok(Probe::default());
    }
    let what = source.display();
    if let Source::File(p) | Source::Image(p) = source {
        let meta = std::fs::metadata(p).map_err(|e| anyhow!("cannot read {what}: {e}"))?;
        if meta.len() == 0 {
            bail!("{what}: empty file, not a video");
        }
    }
    let uri = source.uri()?;
    let secs = timeout.as_secs().max(1);
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(secs))
        .map_err(|e| anyhow!("cannot create a GStreamer discoverer: {e}"))?;
    let info = match discoverer.discover_uri(&uri) {
        Ok(info) => info,
        Err(e) => {
            let msg = one_line(e.message());
            return Err(if e.matches(gst::ResourceError::NotFound) {
                anyhow!("{what}: not found ({msg})")
            } else if msg.contains("imeout") {
                anyhow!("{what}: no answer within {secs} s (unreachable?)")
            } else if matches!(source, Source::Uri(_)) {
                anyhow!("cannot open {what}: {msg}")
            } else if msg.contains("plugin") || msg.contains("type") || msg.contains("demux") {
                anyhow!("{what}: not a video file or unsupported format ({msg})")
            } else {
                anyhow!("{what}: cannot decode: {msg}")
            });
        }
    };
    use gst_pbutils::DiscovererResult as R;
    match info.result() {
        R::Ok => {}
        R::Timeout => bail!("{what}: no answer within {secs} s (unreachable?)"),
        R::MissingPlugins => {
            let missing: Vec<String> = info
                .missing_elements_installer_details()
                .iter()
                .map(|s| s.to_string())
                .collect();
            bail!(
                "{what}: not a video file or missing GStreamer plugins ({})",
                one_line(&missing.join("; "))
            )
        }
        R::UriInvalid => bail!("{what}: invalid URI"),
        R::Error => bail!("{what}: cannot decode"),
        R::Busy => bail!("{what}: discoverer busy"),
        _ => bail!("{what}: cannot inspect"),
    }
    let Some(v) = info.video_streams().into_iter().next() else {
        bail!("{what}: no video stream (not a video file)");
    };
    let fr = v.framerate();
    let fps = (fr.numer() > 0 && fr.denom() > 0).then(|| fr.numer() as f64 / fr.denom() as f64);
    Ok(Probe {
        width: v.width(),
        height: v.height(),
        duration: info.duration().map(|d| Duration::from_nanos(d.nseconds())),
        fps,
        is_image: v.is_image() || source.is_image(),
    })
}

/// `run --publish URL...`: the URLs checked before any work (a bad one is one error that
/// shows it without credentials).
pub fn parse_publish(urls: &[String]) -> Result<Vec<crate::broker::BrokerUrl>> {
    urls.iter().map(|u| crate::broker::BrokerUrl::parse(u).map_err(|e| anyhow!("--publish: {e}"))).collect()
}

/// Final output paths of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Overlay video (or image); `None` with `--no-overlay`.
    pub video: Option<PathBuf>,
    /// JSON Lines records.
    pub json: Option<PathBuf>,
}

/// `x.mp4` → `x.mp4.partial`.
pub fn partial_path(p: &Path) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    p.with_file_name(name)
}

impl Outputs {
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.video.iter().chain(self.json.iter())
    }

    /// Create the output folders and check that files can be written there (a file is
    /// created and removed), so that a bad output path fails before any work.
    pub fn check_writable(&self) -> Result<()> {
        for p in self.paths() {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if dir.exists() && !dir.is_dir() {
                bail!("cannot write {}: {} is not a folder", p.display(), dir.display());
            }
            std::fs::create_dir_all(&dir).map_err(|e| anyhow!("cannot create output folder {}: {e}", dir.display()))?;
            let probe = partial_path(p);
            std::fs::File::create(&probe)
                .map_err(|e| anyhow!("cannot write {} (output folder not writable): {e}", probe.display()))?;
            let _ = std::fs::remove_file(&probe);
        }
        Ok(())
    }
}

/// A built pipeline, ready to run.
pub struct SegPipeline {
    pub pipeline: gst::Pipeline,
    pub mask2former: Mask2Former,
    /// Frames that left `mask2former`.
    pub frames: Arc<AtomicU64>,
    /// The element right after the decoder (EOS is sent there to finish the outputs
    /// after a decode error).
    head: gst::Element,
    outputs: Outputs,
    live: bool,
    /// Set when the decoder exposed a video pad.
    linked: Arc<AtomicBool>,
    /// The URI the decoder opens (rebuilt from it on reconnection).
    uri: String,
    /// Live sources: state shared with the pad probe at the head of the pipeline.
    live_state: Arc<LiveState>,
    /// Called at once with each drop / reconnection line (also kept in the report).
    on_event: Mutex<Option<Box<dyn FnMut(&str) + Send>>>,
}

/// Shared between the run loop and the probe on the head's sink pad.
#[derive(Default)]
struct LiveState {
    /// The decoder ended its stream (EOS was held back at the head).
    source_eos: AtomicBool,
    /// The run is finishing: EOS passes the head.
    finishing: AtomicBool,
    /// Times the timeline was shifted because a pts was not after the last one
    /// (a reconnection that started from 0 again).
    backwards: AtomicU64,
}

/// The reconnection back-off of live sources (the same as the brokers').
pub use crate::util::{RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY};

/// Make a `uridecodebin` for `uri` whose first video pad links to `head_sink`; any other
/// pad goes to a fakesink.
fn make_decoder(
    uri: &str,
    pipeline: &gst::Pipeline,
    head_sink: gst::Pad,
    linked: Arc<AtomicBool>,
) -> Result<gst::Element> {
    let decode = make("uridecodebin", Some("decode"))?;
    decode.set_property("uri", uri);
    let pipeline_weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video && !linked.load(Ordering::SeqCst) && pad.link(&head_sink).is_ok() {
            linked.store(true, Ordering::SeqCst);
            return;
        }
        // Not (the first) video: swallow it so that it does not stop the pipeline.
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        if let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("async", false)
            .property("sync", false)
            .build()
            && pipeline.add(&sink).is_ok()
        {
            let _ = sink.sync_state_with_parent();
            if let Some(sp) = sink.static_pad("sink") {
                let _ = pad.link(&sp);
            }
        }
    });
    Ok(decode)
}

/// Whether `obj` is `ancestor` or inside it.
fn is_within(obj: &gst::Object, ancestor: &gst::Element) -> bool {
    let mut cur = Some(obj.clone());
    while let Some(o) = cur {
        if o == *ancestor.upcast_ref::<gst::Object>() {
            return true;
        }
        cur = o.parent();
    }
    false
}

/// How frames travel through a run's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePath {
    /// System memory throughout.
    Cpu,
    /// CUDA memory from the decoder to the encoder; `nvenc`: `nvh264enc` is registered
    /// (data-centre GPUs have no NVENC: then `cudadownload ! x264enc`).
    Gpu { nvenc: bool },
}

/// The frame path for `device`, and why it is the CPU one when the device is not `cpu`:
/// the GPU path needs a build with the `cuda` feature, libgstcuda (GStreamer ≥ 1.22), a
/// CUDA driver with NVRTC, and nvcodec's `cudaupload` / `cudaconvert` / `cudadownload`
/// (registered only where a device is).
pub fn frame_path(device: crate::backend::select::Device) -> (FramePath, Option<String>) {
    use crate::backend::select::Device;
    if device == Device::Cpu {
        return (FramePath::Cpu, None);
    }
    let have = |f: &str| gst::ElementFactory::find(f).is_some();
    let why = if !cfg!(feature = "cuda") {
        Some("this build has no `cuda` feature (cargo build --release --features cuda)".to_string())
    } else if let Err(e) = crate::cuda::memory::GstCuda::get() {
        Some(e.to_string())
    } else if let Err(e) = crate::cuda::probe() {
        Some(e.to_string())
    } else {
        ["cudaupload", "cudaconvert", "cudadownload"]
            .into_iter()
            .find(|f| !have(f))
            .map(|f| format!("GStreamer's nvcodec element `{f}` is not registered (gstreamer1.0-plugins-bad with a usable NVIDIA device)"))
    };
    match why {
        Some(why) => (FramePath::Cpu, Some(why)),
        None => (FramePath::Gpu { nvenc: have("nvh264enc") }, None),
    }
}

/// Prefer NVIDIA's decoders in `uridecodebin` (they output CUDA memory).
fn prefer_nvdec() {
    for name in ["nvh264dec", "nvh265dec", "nvvp9dec", "nvav1dec"] {
        if let Some(f) = gst::Registry::get().lookup_feature(name) {
            f.set_rank(gst::Rank::PRIMARY + 100);
        }
    }
}

fn make(factory: &str, name: Option<&str>) -> Result<gst::Element> {
    let mut b = gst::ElementFactory::make(factory);
    if let Some(n) = name {
        b = b.name(n);
    }
    b.build()
        .map_err(|_| anyhow!("GStreamer element `{factory}` is missing (install the GStreamer plugins it belongs to)"))
}

/// Encoder chain for an overlay output, chosen by its extension, for frames on `path`.
fn encoder_chain(path: &Path, frames: FramePath) -> Result<Vec<gst::Element>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mux = |ext: &str| match ext {
        "mkv" => make("matroskamux", None),
        "mov" => make("qtmux", None),
        _ => make("mp4mux", None),
    };
    let video = matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "mkv");
    if video && frames == (FramePath::Gpu { nvenc: true }) {
        let enc = make("nvh264enc", None)?;
        return Ok(vec![enc, make("h264parse", None)?, mux(&ext)?]);
    }
    let mut chain = match frames {
        FramePath::Gpu { .. } => vec![make("cudadownload", None)?],
        FramePath::Cpu => Vec::new(),
    };
    chain.push(make("videoconvert", None)?);
    chain.extend(match ext.as_str() {
        "mp4" | "m4v" | "mov" | "mkv" => {
            let caps = make("capsfilter", None)?;
            caps.set_property(
                "caps",
                gst::Caps::builder("video/x-raw").field("format", "I420").build(),
            );
            let enc = make("x264enc", None)?;
            enc.set_property_from_str("speed-preset", "veryfast");
            vec![caps, enc, mux(&ext)?]
        }
        "png" => {
            let enc = make("pngenc", None)?;
            enc.set_property("snapshot", true);
            vec![enc]
        }
        "jpg" | "jpeg" => {
            let enc = make("jpegenc", None)?;
            enc.set_property("snapshot", true);
            vec![enc]
        }
        other => bail!(
            "unsupported output type .{other} for {} (use .mp4, .mkv, .mov, .png or .jpg)",
            path.display()
        ),
    });
    Ok(chain)
}

/// Build the pipeline for one source. `mask2former` takes `settings` (with
/// `post-messages` on: the run's timings come from those messages). `segmenter`, if
/// given, is injected into it (see [`Mask2Former::set_segmenter`]); otherwise the element
/// opens `settings.model` itself when it starts.
pub fn build(source: &Source, outputs: &Outputs, settings: &Settings, segmenter: Option<Segmenter>) -> Result<SegPipeline> {
    let pipeline = gst::Pipeline::with_name("segstream");
    let uri = source.uri()?;
    let live = source.is_live();

    let (frames, _) = frame_path(settings.device);
    let gpu = matches!(frames, FramePath::Gpu { .. });
    if gpu {
        prefer_nvdec();
    }
    // What the decoder feeds: videoconvert, or on the GPU path cudaupload ! cudaconvert
    // (both pass CUDA frames through; `convert` is the last of them).
    let front: Vec<gst::Element> = if gpu {
        vec![make("cudaupload", Some("upload"))?, make("cudaconvert", Some("convert"))?]
    } else {
        vec![make("videoconvert", Some("convert"))?]
    };
    let convert = front[front.len() - 1].clone();
    let head = if live {
        // Bounded latency: drop old frames instead of queueing without bound.
        let q = make("queue", Some("livequeue"))?;
        q.set_property("max-size-buffers", 2u32);
        q.set_property("max-size-bytes", 0u32);
        q.set_property("max-size-time", 0u64);
        q.set_property_from_str("leaky", "downstream");
        q
    } else {
        front[0].clone()
    };
    let m2f = make("mask2former", Some("mask2former"))?;
    let mask2former: Mask2Former = m2f
        .clone()
        .downcast()
        .map_err(|_| anyhow!("element `mask2former` is not segstream's (plugin conflict?)"))?;
    mask2former.set_settings(Settings { post_messages: true, ..settings.clone() });
    if let Some(s) = segmenter {
        mask2former.set_segmenter(s);
    }
    let tee = make("tee", Some("tee"))?;

    pipeline.add_many(front.iter()).context("cannot assemble the pipeline")?;
    pipeline.add_many([&m2f, &tee]).context("cannot assemble the pipeline")?;
    if live {
        pipeline.add(&head)?;
        head.link(&front[0])?;
    }
    gst::Element::link_many(front.iter()).context("cannot link the converter")?;
    gst::Element::link_many([&convert, &m2f, &tee]).context("cannot link the converter ! mask2former ! tee")?;

    if let Some(video) = &outputs.video {
        let q = make("queue", None)?;
        let overlay = make("segoverlay", Some("segoverlay"))?;
        // A readable overlay: masks, every segment's contour, and its class and score
        // inside it (CUDA frames then composite through system memory).
        overlay.set_property("contours", true);
        overlay.set_property("labels", true);
        let sink = make("filesink", Some("videosink"))?;
        sink.set_property("location", partial_path(video).to_string_lossy().as_ref());
        sink.set_property("async", false);
        let mut chain = vec![q, overlay];
        chain.extend(encoder_chain(video, frames)?);
        chain.push(sink);
        pipeline.add_many(chain.iter())?;
        gst::Element::link_many(chain.iter())
            .with_context(|| format!("cannot build the encoder for {}", video.display()))?;
        tee.link(&chain[0])?;
    }
    if let Some(json) = &outputs.json {
        let q = make("queue", None)?;
        let enc = make("segmetaenc", Some("segmetaenc"))?;
        enc.set_property("stream-name", source.display());
        let sink = make("filesink", Some("jsonsink"))?;
        sink.set_property("location", partial_path(json).to_string_lossy().as_ref());
        sink.set_property("async", false);
        if live {
            // A record reaches the file as soon as it is made (`tail -f` works).
            sink.set_property_from_str("buffer-mode", "unbuffered");
        }
        pipeline.add_many([&q, &enc, &sink])?;
        gst::Element::link_many([&q, &enc, &sink])?;
        tee.link(&q)?;
    }
    if outputs.video.is_none() && outputs.json.is_none() {
        let sink = make("fakesink", None)?;
        sink.set_property("async", false);
        pipeline.add(&sink)?;
        tee.link(&sink)?;
    }

    // Link the decoder's first video pad; anything else goes to a fakesink.
    let linked = Arc::new(AtomicBool::new(false));
    let head_sink = head.static_pad("sink").context("head element has no sink pad")?;
    let decode = make_decoder(&uri, &pipeline, head_sink.clone(), linked.clone())?;
    pipeline.add(&decode).context("cannot assemble the pipeline")?;

    let live_state = Arc::new(LiveState::default());
    if live {
        // Hold back the decoder's EOS (a drop, handled by the run loop) unless finishing,
        // and keep the pts strictly increasing across reconnections: a new connection's
        // timeline (which may start again from 0) is shifted to go on one frame after the
        // last pts passed on.
        let state = live_state.clone();
        // Last pts passed on, plus one (0: none yet), and the shift of the current timeline.
        let last_pts = AtomicU64::new(0);
        let offset = AtomicU64::new(0);
        head_sink.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                match &mut info.data {
                    Some(gst::PadProbeData::Event(ev))
                        if ev.type_() == gst::EventType::Eos && !state.finishing.load(Ordering::SeqCst) =>
                    {
                        state.source_eos.store(true, Ordering::SeqCst);
                        // `Handled` consumes it (`Drop` makes the bindings and GStreamer
                        // both release it: a GStreamer-CRITICAL).
                        return gst::PadProbeReturn::Handled;
                    }
                    Some(gst::PadProbeData::Buffer(buf)) => {
                        if let Some(pts) = buf.pts() {
                            let last = last_pts.load(Ordering::Relaxed);
                            let mut shift = offset.load(Ordering::Relaxed);
                            if last > 0 && pts.nseconds() + shift < last {
                                let step = buf.duration().map_or(33_333_333, |d| d.nseconds().max(1));
                                shift = (last - 1 + step).saturating_sub(pts.nseconds());
                                offset.store(shift, Ordering::Relaxed);
                                state.backwards.fetch_add(1, Ordering::Relaxed);
                            }
                            let out = pts.nseconds() + shift;
                            if shift > 0 {
                                let b = buf.make_mut();
                                b.set_pts(gst::ClockTime::from_nseconds(out));
                                b.set_dts(gst::ClockTime::NONE);
                            }
                            last_pts.store(out + 1, Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    let frames = Arc::new(AtomicU64::new(0));
    let frames_cb = frames.clone();
    m2f.static_pad("src")
        .context("mask2former has no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            frames_cb.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });

    Ok(SegPipeline {
        pipeline,
        mask2former,
        frames,
        head,
        outputs: outputs.clone(),
        live,
        linked,
        uri,
        live_state,
        on_event: Mutex::new(None),
    })
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The input was processed to its end; outputs renamed to their final names.
    Complete,
    /// Stopped by Ctrl-C; outputs finalized; renamed for live sources (which have no end),
    /// left as `.partial` for files.
    Interrupted,
    /// Failed; `.partial` outputs kept (finalized when frames had been processed).
    Failed(String),
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: Outcome,
    pub frames: u64,
    pub wall: Duration,
    /// Timings of the frames the network ran on (stale frames excluded).
    pub timings: Vec<Timings>,
    /// Outputs that exist after the run (final or `.partial` names).
    pub written: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Live sources: times the source dropped, and times it came back.
    pub drops: u32,
    pub reconnects: u32,
    /// `run --publish`: one entry per broker, in the order of the flags.
    pub publish: Vec<PublishReport>,
    /// `backend=triton`: frames that met an unreachable server (`mask2former`'s
    /// `unavailable` counter); `stale` / `skipped`: what frames got without a fresh result.
    pub unavailable: u64,
    pub stale: u64,
    pub skipped: u64,
}

/// What one `--publish` branch delivered: the broker URL without credentials and the
/// `segpublish` element's counters at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishReport {
    pub url: String,
    #[serde(flatten)]
    pub stats: crate::broker::StatsSnapshot,
}

impl RunReport {
    /// Frames per second over the whole run.
    pub fn fps(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 { self.frames as f64 / s } else { 0.0 }
    }
}

/// The `q`-quantile (0..1) of `values` (nearest rank), `None` if empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.saturating_sub(1).min(v.len() - 1)])
}

/// Error text of a bus error message, on one line.
fn error_text(err: &gst::message::Error) -> String {
    let src = err.src().map(|s| s.name().to_string()).unwrap_or_default();
    let msg = one_line(&err.error().to_string());
    if src.is_empty() { msg } else { format!("{src}: {msg}") }
}

/// Collapse whitespace (newlines included) so that a message fits one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Set by Ctrl-C (SIGINT/SIGTERM): finish the current outputs and stop.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Install SIGINT/SIGTERM handlers: the first signal sets [`INTERRUPTED`] (checked by
/// [`SegPipeline::run`], which then finishes the outputs); a second one exits at once.
pub fn install_signal_handlers() {
    #[cfg(unix)]
    {
        extern "C" fn on_signal(_sig: libc::c_int) {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                // SAFETY: `_exit` is async-signal-safe.
                unsafe { libc::_exit(130) };
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only touches an atomic and calls `_exit`, both
            // async-signal-safe; the function pointer has the signature `signal` expects.
            unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
        }
    }
}

impl SegPipeline {
    /// `run --publish`: one `queue ! segpublish` branch per broker URL on the tee, named
    /// `stream` (the records' `stream` field and `{stream}` in the topic / key). Call before
    /// [`run`](Self::run); a broker that cannot be reached fails the run when it starts.
    pub fn publish(&self, urls: &[crate::broker::BrokerUrl], stream: &str) -> Result<()> {
        let tee = self.pipeline.by_name("tee").context("the run pipeline has no tee")?;
        for (i, url) in urls.iter().enumerate() {
            let q = make("queue", None)?;
            let sink = make("segpublish", Some(&format!("publish{i}")))?;
            // Credentials travel in the property (never printed: the element redacts).
            sink.set_property("location", url.to_url_string());
            sink.set_property("stream-name", stream);
            sink.set_property("async", false);
            self.pipeline.add_many([&q, &sink])?;
            q.link(&sink).with_context(|| format!("cannot link the publisher for {}", url.redacted()))?;
            tee.link(&q).with_context(|| format!("cannot link the publisher for {}", url.redacted()))?;
        }
        Ok(())
    }

    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// Process at most `max` frames: later decoded frames are dropped and EOS goes down
    /// the pipeline instead, so the outputs are finished as for a complete input.
    pub fn limit_frames(&self, max: u64) -> Result<()> {
        let pad = self.head.static_pad("sink").context("head element has no sink pad")?;
        let seen = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= max {
                return gst::PadProbeReturn::Ok;
            }
            if n == max + 1 {
                // From another thread, once this buffer is gone.
                let pad = pad.clone();
                std::thread::spawn(move || pad.send_event(gst::event::Eos::new()));
            }
            // `Handled`: the buffer is consumed here (unreffed with the probe info).
            // (`Drop` trips a GStreamer-CRITICAL double unref through the bindings.)
            gst::PadProbeReturn::Handled
        });
        Ok(())
    }

    /// Call `f` at once with each drop / reconnection line of a live source.
    pub fn set_on_event(&self, f: impl FnMut(&str) + Send + 'static) {
        *lock(&self.on_event) = Some(Box::new(f));
    }

    /// Post a warning on the bus (kept in the report) and tell `on_event`.
    fn live_warning(&self, text: &str) {
        let _ = self.pipeline.post_message(
            gst::message::Warning::builder(gst::ResourceError::Read, text)
                .src(&self.pipeline)
                .build(),
        );
        if let Some(f) = lock(&self.on_event).as_mut() {
            f(text);
        }
    }

    /// The current decoder, if any.
    fn decoder(&self) -> Option<gst::Element> {
        self.pipeline.by_name("decode")
    }

    /// Push EOS right after the decoder so that encoders and muxers finish their files.
    fn finish(&self) -> bool {
        self.live_state.finishing.store(true, Ordering::SeqCst);
        self.head
            .static_pad("sink")
            .is_some_and(|p| p.send_event(gst::event::Eos::new()))
    }

    /// Run to the end of the input. `timeout`: how long to wait for the first frame
    /// (and, for live sources, the longest gap between frames) before giving up.
    /// `progress` is called about ten times a second with the frame count.
    ///
    /// `expected_frames` (from [`Probe::total_frames`]): when the input ends clearly
    /// earlier (a truncated file that the demuxer ends quietly), the run counts as failed
    /// and its outputs keep their `.partial` names.
    pub fn run(&self, timeout: Duration, expected_frames: Option<u64>, mut progress: impl FnMut(u64)) -> RunReport {
        let timings: Mutex<Vec<Timings>> = Mutex::default();
        let start = Instant::now();
        let mut warnings = Vec::new();
        let Some(bus) = self.pipeline.bus() else {
            return self.report(Outcome::Failed("pipeline has no bus".into()), start, &timings, warnings);
        };
        let mut failure: Option<String> = None;
        let mut eos_sent_at: Option<Instant> = None;
        let mut interrupted = false;
        let mut last_frames = 0u64;
        let mut last_change = Instant::now();
        // Live reconnection: when to rebuild the decoder, the next delay, and the frame
        // count when it was rebuilt (a frame beyond it means it is back).
        let mut reconnect_at: Option<Instant> = None;
        let mut down_since: Option<Instant> = None;
        let mut frames_at_rebuild: Option<u64> = None;
        let mut delay = RECONNECT_FIRST_DELAY;
        let (mut drops, mut reconnects) = (0u32, 0u32);

        if let Err(e) = self.pipeline.set_state(gst::State::Playing) {
            // The reason is on the bus (e.g. the model failed to open in start()).
            let mut msg = format!("cannot start the pipeline: {e}");
            while let Some(m) = bus.pop() {
                if let gst::MessageView::Error(err) = m.view() {
                    msg = error_text(err);
                    break;
                }
            }
            let _ = self.pipeline.set_state(gst::State::Null);
            return self.report(Outcome::Failed(msg), start, &timings, warnings);
        }

        loop {
            if INTERRUPTED.load(Ordering::SeqCst) && !interrupted {
                interrupted = true;
                if eos_sent_at.is_none() {
                    // Sources get EOS (live sources stop cleanly), and the head too.
                    self.live_state.finishing.store(true, Ordering::SeqCst);
                    reconnect_at = None;
                    self.pipeline.send_event(gst::event::Eos::new());
                    self.finish();
                    eos_sent_at = Some(Instant::now());
                }
            }
            let frames = self.frames.load(Ordering::Relaxed);
            progress(frames);
            if frames != last_frames {
                last_frames = frames;
                last_change = Instant::now();
                if let (Some(at), Some(down)) = (frames_at_rebuild, down_since)
                    && frames > at
                {
                    reconnects += 1;
                    self.live_warning(&format!(
                        "source reconnected after {:.1} s (drop {drops})",
                        down.elapsed().as_secs_f64()
                    ));
                    frames_at_rebuild = None;
                    down_since = None;
                    delay = RECONNECT_FIRST_DELAY;
                }
            }
            // A live source that dropped (error, end of stream or stall): tear the decoder
            // down now and rebuild it after `delay`.
            let mut drop_reason: Option<String> = None;
            if self.live && eos_sent_at.is_none() && self.live_state.source_eos.swap(false, Ordering::SeqCst) {
                drop_reason = Some("end of stream".into());
            }

            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
                match msg.view() {
                    gst::MessageView::Eos(_) => break,
                    gst::MessageView::Error(err)
                        if self.live
                            && eos_sent_at.is_none()
                            && err
                                .src()
                                .zip(self.decoder())
                                .is_some_and(|(src, dec)| is_within(src, &dec)) =>
                    {
                        drop_reason = Some(error_text(err));
                    }
                    gst::MessageView::Error(err) if self.live && eos_sent_at.is_none() && reconnect_at.is_some() => {
                        // A late error of a decoder already torn down.
                        let _ = err;
                    }
                    gst::MessageView::Error(err) => {
                        if failure.is_none() {
                            failure = Some(error_text(err));
                        }
                        if frames > 0 && eos_sent_at.is_none() && self.finish() {
                            // Keep what decoded: wait (briefly) for the outputs to finish.
                            eos_sent_at = Some(Instant::now());
                        } else if eos_sent_at.is_none() {
                            break;
                        }
                    }
                    gst::MessageView::Warning(w) => {
                        let src = w.src().map(|s| s.name().to_string()).unwrap_or_default();
                        warnings.push(format!("{src}: {}", one_line(&w.error().to_string())));
                    }
                    gst::MessageView::Element(el) => {
                        if let Some(s) = el.structure()
                            && s.name() == FRAME_MESSAGE
                            && !s.get::<bool>("stale").unwrap_or(false)
                        {
                            lock(&timings).push(Timings {
                                preprocess_ms: s.get("preprocess-ms").unwrap_or(0.0),
                                inference_ms: s.get("inference-ms").unwrap_or(0.0),
                                postprocess_ms: s.get("postprocess-ms").unwrap_or(0.0),
                            });
                        }
                    }
                    _ => {}
                }
            }

            let now = Instant::now();
            if self.live && eos_sent_at.is_none() && drop_reason.is_none() && reconnect_at.is_none() && last_frames > 0 && now.duration_since(last_change) > timeout {
                drop_reason = Some(format!("no frame for {} s", timeout.as_secs_f64()));
            }
            if let Some(reason) = drop_reason {
                if down_since.is_none() {
                    drops += 1;
                    down_since = Some(now);
                }
                if let Some(dec) = self.decoder() {
                    let _ = dec.set_state(gst::State::Null);
                    let _ = self.pipeline.remove(&dec);
                }
                self.live_warning(&format!(
                    "source dropped ({reason}); reconnecting in {:.1} s",
                    delay.as_secs_f64()
                ));
                reconnect_at = Some(now + delay);
                delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                frames_at_rebuild = None;
            }
            if let Some(at) = reconnect_at
                && now >= at
            {
                reconnect_at = None;
                self.linked.store(false, Ordering::SeqCst);
                match self.head.static_pad("sink").context("head has no sink pad").and_then(|sink| {
                    make_decoder(&self.uri, &self.pipeline, sink, self.linked.clone())
                }) {
                    Ok(dec) => {
                        if self.pipeline.add(&dec).is_ok() {
                            let _ = dec.set_state(gst::State::Playing);
                        }
                        frames_at_rebuild = Some(last_frames);
                    }
                    Err(e) => {
                        failure = Some(format!("cannot rebuild the source: {e}"));
                        break;
                    }
                }
                // The stall clock restarts with each attempt.
                last_change = now;
            }
            if reconnect_at.is_none()
                && down_since.is_some()
                && let Some(dec) = self.decoder()
            {
                // A decoder added to a playing pipeline can settle in PAUSED once its
                // asynchronous state change completes (then a live source never starts):
                // ask again.
                let (_, current, pending) = dec.state(gst::ClockTime::ZERO);
                if current == gst::State::Paused && pending == gst::State::VoidPending {
                    let _ = dec.set_state(gst::State::Playing);
                }
            }
            if reconnect_at.is_some() || (frames_at_rebuild.is_some() && down_since.is_some()) {
                // Waiting for the source to come back: neither stalled nor failed.
                if now.duration_since(last_change) > timeout + delay {
                    // The rebuilt decoder neither errored nor delivered: try again.
                    self.live_state.source_eos.store(true, Ordering::SeqCst);
                }
                continue;
            }
            if let Some(t) = eos_sent_at {
                if now.duration_since(t) > Duration::from_secs(10) {
                    failure.get_or_insert_with(|| "outputs did not finish within 10 s of the end of input".into());
                    break;
                }
                continue;
            }
            if last_frames == 0 && now.duration_since(start) > timeout {
                let what = if self.linked.load(Ordering::SeqCst) {
                    "no frame processed"
                } else {
                    "no video"
                };
                failure = Some(format!(
                    "{what} within {} s (source unreachable or stalled)",
                    timeout.as_secs_f64()
                ));
                break;
            }
            if self.live && last_frames > 0 && now.duration_since(last_change) > timeout {
                failure = Some(format!("stream stalled: no frame for {} s", timeout.as_secs_f64()));
                if self.finish() {
                    eos_sent_at = Some(now);
                    continue;
                }
                break;
            }
        }
        progress(self.frames.load(Ordering::Relaxed));
        let _ = self.pipeline.set_state(gst::State::Null);

        let outcome = match failure {
            Some(f) => Outcome::Failed(f),
            None if self.frames.load(Ordering::Relaxed) == 0 => Outcome::Failed("no video frame decoded".into()),
            None if interrupted => Outcome::Interrupted,
            None => {
                let got = self.frames.load(Ordering::Relaxed);
                match expected_frames {
                    Some(want) if !self.live && got + (want / 20).max(2) < want => Outcome::Failed(format!(
                        "input ended after {got} of {want} frames (truncated or corrupt file)"
                    )),
                    _ => Outcome::Complete,
                }
            }
        };
        let mut report = self.report(outcome, start, &timings, warnings);
        report.drops = drops;
        report.reconnects = reconnects;
        report
    }

    fn report(
        &self,
        mut outcome: Outcome,
        start: Instant,
        timings: &Mutex<Vec<Timings>>,
        warnings: Vec<String>,
    ) -> RunReport {
        let mut written = Vec::new();
        for p in self.outputs.paths() {
            let partial = partial_path(p);
            if !partial.exists() {
                continue;
            }
            // An interrupted live stream has no end: what was recorded is the output. An
            // interrupted file is incomplete and keeps its `.partial` name.
            let keep = matches!(outcome, Outcome::Complete) || (outcome == Outcome::Interrupted && self.live);
            if keep {
                match std::fs::rename(&partial, p) {
                    Ok(()) => written.push(p.clone()),
                    Err(e) => {
                        outcome =
                            Outcome::Failed(format!("cannot rename {} to {}: {e}", partial.display(), p.display()));
                        written.push(partial);
                    }
                }
            } else if std::fs::metadata(&partial).map(|m| m.len() > 0).unwrap_or(false) {
                written.push(partial);
            } else {
                let _ = std::fs::remove_file(&partial);
            }
        }
        RunReport {
            outcome,
            frames: self.frames.load(Ordering::Relaxed),
            wall: start.elapsed(),
            timings: lock(timings).clone(),
            written,
            warnings,
            drops: 0,
            reconnects: 0,
            publish: self.publish_reports(),
            unavailable: self.counter("unavailable"),
            stale: self.counter("stale"),
            skipped: self.counter("skipped"),
        }
    }

    /// One of `mask2former`'s `stats` counters.
    fn counter(&self, name: &str) -> u64 {
        self.mask2former.property::<gst::Structure>("stats").get::<u64>(name).unwrap_or(0)
    }

    /// The counters of the `publish{i}` branches [`publish`](Self::publish) added.
    fn publish_reports(&self) -> Vec<PublishReport> {
        (0..)
            .map_while(|i| self.pipeline.by_name(&format!("publish{i}")))
            .map(|e| PublishReport {
                // The element reads its location back without credentials.
                url: e.property::<Option<String>>("location").unwrap_or_default(),
                stats: crate::elements::segpublish::stats_from_structure(&e.property::<gst::Structure>("stats")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.95), Some(3.0));
    }

    #[test]
    fn partial_names() {
        assert_eq!(partial_path(Path::new("out/a.mp4")), PathBuf::from("out/a.mp4.partial"));
    }

    #[test]
    fn stems() {
        assert_eq!(Source::Uri("rtsp://127.0.0.1:8554/cam1".into()).stem(), "cam1");
        assert_eq!(Source::File("/x/clip.mp4".into()).stem(), "clip");
        assert_eq!(Source::Camera("/dev/video0".into()).stem(), "video0");
    }

    #[test]
    fn probe_totals() {
        let p = Probe {
            duration: Some(Duration::from_secs(2)),
            fps: Some(30.0),
            ..Probe::default()
        };
        assert_eq!(p.total_frames(), Some(60));
        assert_eq!(Probe::default().total_frames(), None);
    }
}
