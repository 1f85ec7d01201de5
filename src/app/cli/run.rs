//! `segstream run`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use gstreamer::prelude::GstBinExt;
use indicatif::{ProgressBar, ProgressStyle};

use segstream::app::eval::coco;
use segstream::app::shard::{self, InputSummary, Shard, Summary};
use segstream::app::pipeline::{
    self, IMAGE_EXTENSIONS, INTERRUPTED, Outcome, Outputs, Probe, RunReport, Source, VIDEO_EXTENSIONS, percentile,
};
use segstream::backend::openvino::{PerformanceHint, Precision};
use segstream::backend::select::{BackendKind, Device};
use segstream::postprocess::Semantics;
use segstream::segmentation::Task;
use segstream::segmenter::{Segmenter, SegmenterConfig};
use segstream::settings::{Mode, Overload, PostSettings, Settings};

use super::{SAMPLE_MODEL, SAMPLE_VIDEO, fail, find_shipped};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Video files, folders (every video in them), images, URIs (rtsp://, http://,
    /// file://) or cameras (/dev/video0); globs the shell did not expand ('videos/*.mp4');
    /// @LIST: a file with one input a line (blank lines and # comments skipped, relative
    /// paths relative to the list's folder). Default: the shipped sample.
    pub inputs: Vec<String>,
    /// Take only part I (0-based) of N of the inputs, for N workers sharing a batch: the
    /// expanded inputs sorted by path and deduplicated, the k-th going to shard k mod N.
    /// Output names are chosen over the whole list, so shards never collide.
    /// (Checked in `run`, for a one-line error.)
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write a JSON summary of the run (inputs taken, status, frames, seconds and outputs of
    /// each, totals). Default with --shard: shard-I-of-N.json in the output folder (-o, else
    /// --json, else out/).
    #[arg(long, value_name = "PATH.json")]
    pub summary: Option<PathBuf>,
    /// Overlay output (.mp4, .mkv, .mov, .png, .jpg); a folder with several inputs.
    /// Default: out/NAME.mp4 (out/NAME.png for an image).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// JSON Lines output (one segstream.frame/1 record per frame); a folder with several
    /// inputs. Default: the overlay output with the extension .jsonl (out/NAME.jsonl).
    #[arg(long, value_name = "OUT.jsonl")]
    pub json: Option<PathBuf>,
    /// Write no overlay video, only the JSON Lines.
    #[arg(long, conflicts_with = "output")]
    pub no_overlay: bool,
    /// Model file (.onnx with its .json card). Default: the shipped sample model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Task: panoptic, instance or semantic (default: the model card's).
    #[arg(long, value_parser = parse_name::<Task>)]
    pub task: Option<Task>,
    /// Minimum score of a kept segment, 0..1 (default: the model card's).
    #[arg(long, value_parser = parse_unit)]
    pub score_threshold: Option<f32>,
    /// Panoptic: minimum fraction of a segment's own mask that must stay visible, 0..1
    /// (default: the model card's).
    #[arg(long, value_parser = parse_unit)]
    pub overlap_threshold: Option<f32>,
    /// Binarization threshold of mask probabilities, 0..1 (default: the model card's).
    #[arg(long, value_parser = parse_unit)]
    pub mask_threshold: Option<f32>,
    /// Run the network on every Nth frame; the frames between get the last result, marked
    /// stale.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub interval: u32,
    /// Inference backend: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, tensorrt
    /// (native; MODEL may then be a .engine, or an .onnx built into MODEL.fp16.engine on first
    /// use), openvino (OpenVINO's library from OPENVINO_LIB_PATH or .openvino/lib), or triton
    /// (a Triton Inference Server: --triton-url, --triton-model).
    #[arg(long, default_value = "onnxruntime", value_parser = parse_name::<BackendKind>)]
    pub backend: BackendKind,
    /// Device: auto (the backend's GPU provider, or OpenVINO, falling back towards ONNX
    /// Runtime's CPU provider), cpu, or cuda (no fallback).
    #[arg(long, default_value = "auto", value_parser = parse_name::<Device>)]
    pub device: Device,
    /// Inference threads: ONNX Runtime's intra-op threads, OpenVINO's inference threads
    /// (0 = the runtime's default).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    #[command(flatten)]
    pub openvino: OpenVinoArgs,
    #[command(flatten)]
    pub triton: TritonArgs,
    /// Post-processing semantics: detectron2's (crops the padding; the default) or
    /// transformers' `post_process_*_segmentation` (masks through a fixed 384×384 square),
    /// to reproduce either reference exactly.
    #[arg(long, default_value = "detectron2", value_parser = parse_name::<Semantics>)]
    pub semantics: Semantics,
    /// Stop after this many frames (of each input).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frames: Option<u64>,
    /// Also write the predictions in COCO panoptic format: DIR/panoptic.json and one PNG
    /// per frame in DIR/panoptic/ (image id = frame number). One input only.
    #[arg(long, value_name = "DIR")]
    pub coco_panoptic: Option<PathBuf>,
    /// Also write the thing segments as COCO instance results (JSON array, compressed-RLE
    /// masks, image id = frame number). One input only.
    #[arg(long, value_name = "OUT.json")]
    pub coco_instances: Option<PathBuf>,
    /// Seconds to wait for a source to answer and for the first frame (and, for live
    /// sources, the longest gap between frames); with --backend triton also the deadline
    /// of the connection and of each request.
    #[arg(long, default_value_t = 20.0, value_parser = parse_secs)]
    pub timeout: f64,
    /// Give segments persistent track ids (things by mask IoU, stuff one id per class).
    #[arg(long)]
    pub track: bool,
    /// With --track: frames a thing track survives unmatched before it is forgotten.
    #[arg(long, value_name = "FRAMES", default_value_t = segstream::tracking::TrackerConfig::default().max_age)]
    pub track_max_age: u32,
    /// With --track: minimum mask IoU for a thing to continue a track, 0.01..1.
    #[arg(long, value_name = "IOU", default_value_t = segstream::tracking::TrackerConfig::default().iou_threshold, value_parser = parse_unit)]
    pub track_iou_threshold: f32,
    /// Run inference on a worker thread (`mask2former mode=async`); with `drop` or `skip`,
    /// frames that arrive while it is busy get the last result (stale) or none.
    #[arg(long = "async", value_name = "OVERLOAD", value_parser = parse_name::<Overload>, num_args = 0..=1, default_missing_value = "drop")]
    pub async_overload: Option<Overload>,
    /// Serve the overlay stream over RTSP (gst-rtsp-server) at [HOST]:PORT/PATH, e.g.
    /// `:8554/seg` (all interfaces) or `127.0.0.1:8554/seg`. One input only.
    #[arg(long, value_name = "[HOST]:PORT/PATH", value_parser = parse_rtsp_out)]
    pub rtsp_out: Option<segstream::app::rtsp_out::RtspOut>,
    /// Also publish each frame's record to a broker (repeatable):
    /// mqtt://[user:pass@]host:port/topic[?qos=0&masks=false] or
    /// redis://[user:pass@]host:port/key[?maxlen=N&masks=false]; {stream} in the topic / key
    /// is the input's name. Credentials may come from SEGSTREAM_BROKER_USER /
    /// SEGSTREAM_BROKER_PASSWORD instead (not visible in `ps`).
    #[arg(long, value_name = "URL")]
    pub publish: Vec<String>,
}

/// The Triton flags of `run` and `bench` (the `mask2former` properties of the same names;
/// the deadline is `--timeout`).
#[derive(Debug, Clone, Args)]
pub struct TritonArgs {
    /// --backend triton: host:port of the Triton server's gRPC endpoint.
    #[arg(long, value_name = "HOST:PORT", default_value = segstream::backend::triton::DEFAULT_URL)]
    pub triton_url: String,
    /// --backend triton: the served model, NAME or NAME:VERSION. Its card: --model (CARD.json,
    /// or the .onnx with its card beside it) when given, else the one served with the model.
    #[arg(long, value_name = "NAME[:VERSION]")]
    pub triton_model: Option<String>,
}

impl TritonArgs {
    pub fn apply(&self, settings: &mut Settings, timeout: Duration) {
        settings.triton_url = self.triton_url.clone();
        settings.triton_model = self.triton_model.clone().unwrap_or_default();
        settings.triton_timeout = timeout;
    }
}

/// The OpenVINO flags of `run` and `bench` (the `mask2former` properties of the same names).
#[derive(Debug, Clone, Args)]
pub struct OpenVinoArgs {
    /// --backend openvino: auto (bf16 where the CPU has AMX and the model
    /// card allows it, else f32; what it picked is printed), f32, or bf16.
    #[arg(long, default_value = "auto", value_parser = parse_name::<Precision>)]
    pub precision: Precision,
    /// --backend openvino: latency (one execution stream) or throughput (several).
    #[arg(long, default_value = "latency", value_parser = parse_name::<PerformanceHint>)]
    pub performance_hint: PerformanceHint,
    /// --backend openvino: OpenVINO's device name (CPU; GPU, NPU untested).
    #[arg(long, value_name = "NAME", default_value = segstream::backend::openvino::DEFAULT_DEVICE)]
    pub openvino_device: String,
}

impl OpenVinoArgs {
    /// Copy the flags into `settings` (each flag is the property of the same name).
    pub fn apply(&self, settings: &mut Settings) {
        settings.precision = self.precision;
        settings.performance_hint = self.performance_hint;
        settings.openvino_device = self.openvino_device.clone();
    }
}

/// Print how the backend runs the model where it chose something (OpenVINO's precision).
pub fn print_backend_details(segmenter: &Segmenter) {
    if let Some(d) = segmenter.backend_details() {
        eprintln!("segstream: {}: {d}", segmenter.backend_name());
    }
}

fn parse_rtsp_out(s: &str) -> Result<segstream::app::rtsp_out::RtspOut, String> {
    s.parse()
}

/// A setting named as the library parses it (the same names as the element properties).
pub(super) fn parse_name<T: std::str::FromStr<Err = segstream::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: segstream::Error| e.to_string())
}

/// The `mask2former` settings these arguments ask for: the one mapping from flags to the
/// element's settings (each flag is the property of the same name).
pub fn element_settings(args: &RunArgs, model: &Path) -> Settings {
    let d = Settings::default();
    let mut s = Settings {
        // Empty with --backend triton and no --model: the card the server serves.
        model: (!model.as_os_str().is_empty()).then(|| model.to_path_buf()),
        backend: args.backend,
        device: args.device,
        threads: args.threads,
        post: PostSettings {
            task: args.task,
            semantics: args.semantics,
            score_threshold: args.score_threshold,
            overlap_threshold: args.overlap_threshold,
            mask_threshold: args.mask_threshold,
        },
        interval: args.interval,
        mode: if args.async_overload.is_some() { Mode::Async } else { Mode::Sync },
        overload: args.async_overload.unwrap_or(d.overload),
        track: args.track,
        tracker: segstream::tracking::TrackerConfig { iou_threshold: args.track_iou_threshold, max_age: args.track_max_age },
        ..d
    };
    args.openvino.apply(&mut s);
    args.triton.apply(&mut s, Duration::from_secs_f64(args.timeout));
    s
}

fn parse_unit(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0..1"))
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v > 0.0 && v < 1e6 {
        Ok(v)
    } else {
        Err(format!("{v} must be a positive number of seconds"))
    }
}

fn media_ext(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        VIDEO_EXTENSIONS
            .iter()
            .chain(IMAGE_EXTENSIONS)
            .any(|x| x.eq_ignore_ascii_case(e))
            || e == "jsonl"
    })
}

/// Output paths of every source (see `RunArgs` for the rules).
fn plan_outputs(sources: &[Source], args: &RunArgs) -> Result<Vec<Outputs>> {
    let default_dir = PathBuf::from("out");
    let ext_for = |s: &Source| if s.is_image() { "png" } else { "mp4" };
    if sources.len() == 1 {
        let s = &sources[0];
        let stem = s.stem();
        let video = if args.no_overlay {
            None
        } else {
            Some(match &args.output {
                Some(o) if o.is_dir() => o.join(format!("{stem}.{}", ext_for(s))),
                Some(o) => o.clone(),
                None => default_dir.join(format!("{stem}.{}", ext_for(s))),
            })
        };
        let json = match &args.json {
            Some(j) if j.is_dir() => j.join(format!("{stem}.jsonl")),
            Some(j) => j.clone(),
            None => match &video {
                Some(v) => v.with_extension("jsonl"),
                None => default_dir.join(format!("{stem}.jsonl")),
            },
        };
        if video.as_ref() == Some(&json) {
            bail!("the overlay and JSON outputs are the same file {}", json.display());
        }
        return Ok(vec![Outputs {
            video,
            json: Some(json),
        }]);
    }
    for (flag, p) in [("-o", &args.output), ("--json", &args.json)] {
        if let Some(p) = p
            && !p.is_dir()
            && media_ext(p)
        {
            bail!(
                "with several inputs, {flag} names a folder, not a file ({})",
                p.display()
            );
        }
    }
    let vdir = args.output.clone().unwrap_or_else(|| default_dir.clone());
    let jdir = args.json.clone().unwrap_or_else(|| vdir.clone());
    let mut used = HashSet::new();
    Ok(sources
        .iter()
        .map(|s| {
            let mut stem = s.stem();
            let mut n = 1;
            while !used.insert(stem.clone()) {
                n += 1;
                stem = format!("{}-{n}", s.stem());
            }
            Outputs {
                video: (!args.no_overlay).then(|| vdir.join(format!("{stem}.{}", ext_for(s)))),
                json: Some(jdir.join(format!("{stem}.jsonl"))),
            }
        })
        .collect())
}

/// One input of a batch, and how it went.
struct Item {
    source: Source,
    outputs: Outputs,
    probe: Result<Probe, String>,
    report: Option<RunReport>,
}

impl Item {
    fn error(&self) -> Option<String> {
        match (&self.probe, &self.report) {
            (Err(e), _) => Some(e.clone()),
            (
                _,
                Some(RunReport {
                    outcome: Outcome::Failed(e),
                    ..
                }),
            ) => Some(e.clone()),
            _ => None,
        }
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => fail(e.to_string()),
    }
}

fn run_inner(args: RunArgs) -> Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout);
    // --publish URLs are checked before any work.
    pipeline::parse_publish(&args.publish)?;
    let inputs = if args.inputs.is_empty() {
        let sample = find_shipped(SAMPLE_VIDEO)
            .ok_or_else(|| anyhow!("no INPUT given and the sample {SAMPLE_VIDEO} was not found"))?;
        vec![sample.to_string_lossy().into_owned()]
    } else {
        args.inputs.clone()
    };

    // 1. Inputs exist (list files and globs expanded, folders listed); with --shard, this
    //    worker's part of the sorted, deduplicated list (see segstream::app::shard).
    let shard: Option<Shard> =
        args.shard.as_deref().map(str::parse).transpose().map_err(|e: String| anyhow!(e))?;
    let mut sources = segstream::app::inputs::expand_sources(&inputs)?;
    let mut inputs_total = sources.len();
    if inputs_total == 0 && shard.is_none() {
        // Only from list files with no entries (with --shard, a shard with none is fine).
        bail!("no inputs: the list files name none ({})", inputs.join(" "));
    }
    let mut shard_plans = None;
    if let Some(shard) = shard {
        let all = shard::sorted_unique(sources, |s| s.display());
        inputs_total = all.len();
        // Output names over the whole list: two shards never pick the same name.
        let all_plans = plan_outputs(&all, &args)?;
        let (mine, plans): (Vec<_>, Vec<_>) = all
            .into_iter()
            .zip(all_plans)
            .enumerate()
            .filter(|(k, _)| shard.takes(*k))
            .map(|(_, p)| p)
            .unzip();
        sources = mine;
        shard_plans = Some(plans);
    }
    if inputs_total > 1 && (args.coco_panoptic.is_some() || args.coco_instances.is_some()) {
        bail!("--coco-panoptic and --coco-instances take one input ({inputs_total} given)");
    }
    if args.rtsp_out.is_some() && inputs_total > 1 {
        bail!("--rtsp-out serves one stream: give one input");
    }
    // 2. Outputs can be written.
    let plans = match shard_plans {
        Some(p) => p,
        None => plan_outputs(&sources, &args)?,
    };
    let summary_path = summary_path(&args, shard);
    if let Some(d) = &args.coco_panoptic {
        std::fs::create_dir_all(d).map_err(|e| anyhow!("cannot create {}: {e}", d.display()))?;
    }
    if let Some(p) = &args.coco_instances {
        Outputs { video: None, json: Some(p.clone()) }.check_writable()?;
    }
    for o in &plans {
        o.check_writable()?;
    }
    if let Some(path) = &summary_path {
        // Written now (every input "not started") to find out early that it can be.
        let pending: Vec<Item> = sources
            .iter()
            .map(|s| Item {
                source: s.clone(),
                outputs: Outputs::default(),
                probe: Err(NOT_STARTED.into()),
                report: None,
            })
            .collect();
        write_summary(path, shard, inputs_total, &pending, None)?;
    }
    if sources.is_empty() {
        // Only with --shard: the other shards took every input.
        eprintln!(
            "segstream: note: shard {} has no inputs ({inputs_total} in all, taken by the other shards); nothing to do",
            shard.map(|s| s.to_string()).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // 3. Inputs open and hold video (a failing input of a batch is reported, the rest go on).
    let batch = sources.len() > 1 || shard.is_some();
    let mut items: Vec<Item> = Vec::new();
    for (source, outputs) in sources.into_iter().zip(plans) {
        let probe = pipeline::probe(&source, timeout).map_err(|e| e.to_string());
        if let Err(e) = &probe {
            if !batch {
                bail!("{e}");
            }
            eprintln!("segstream: error: {}", pipeline::one_line(e));
        }
        items.push(Item {
            source,
            outputs,
            probe,
            report: None,
        });
    }
    let result = run_items(&args, &mut items, batch, timeout);
    if let Some(path) = &summary_path {
        let error = result.as_ref().err().map(|e| pipeline::one_line(&format!("{e:#}")));
        let written = write_summary(path, shard, inputs_total, &items, error);
        // The run's own error comes first; then the summary's.
        let code = result?;
        written?;
        println!("summary: {}", path.display());
        return Ok(code);
    }
    result
}

/// Steps 4 and on: the model, then every input that opened.
fn run_items(args: &RunArgs, items: &mut [Item], batch: bool, timeout: Duration) -> Result<ExitCode> {
    if items.iter().all(|i| i.probe.is_err()) {
        bail!("none of the {} inputs could be opened", items.len());
    }
    // 4. The model, opened once for all inputs.
    let triton = args.backend == BackendKind::Triton;
    let model = match &args.model {
        Some(m) => m.clone(),
        // The card served with the Triton model.
        None if triton => PathBuf::new(),
        None => find_shipped(SAMPLE_MODEL).ok_or_else(|| {
            anyhow!("model not found: {SAMPLE_MODEL} (not shipped in this checkout?); pass --model MODEL.onnx")
        })?,
    };
    if !model.as_os_str().is_empty() && !model.is_file() {
        bail!("model not found: {}", model.display());
    }
    let settings = element_settings(args, &model);
    let cfg = SegmenterConfig::from_settings(&model, &settings);
    let shown = if triton {
        format!("triton model {:?} at {}", settings.triton_model, settings.triton_url)
    } else {
        model.display().to_string()
    };
    let first = Segmenter::open_auto(&cfg).map_err(|e| anyhow!("cannot open model {shown}: {e}"))?;
    // The default (onnxruntime, auto) falls back to the CPU quietly, as it always has; a
    // backend asked for by name says why it is not the one in use.
    if args.backend != BackendKind::OnnxRuntime {
        for note in first.fallbacks() {
            eprintln!("segstream: warning: using {}: {note}", first.backend_name());
        }
    }
    print_backend_details(&first);
    // Where the frames travel: said in one line when CUDA was asked for and they stay in
    // system memory.
    if args.device == Device::Cuda
        && let (pipeline::FramePath::Cpu, Some(why)) = pipeline::frame_path(args.device)
    {
        eprintln!("segstream: note: frames stay in system memory (the network still runs on CUDA): {why}");
    }
    let labels = first.card().labels.clone();
    let mut segmenter = Some(first);

    pipeline::install_signal_handlers();
    let n = items.len();
    for (idx, item) in items.iter_mut().enumerate() {
        let Ok(probe) = &item.probe else { continue };
        if INTERRUPTED.load(Ordering::SeqCst) {
            item.probe = Err("not started (interrupted)".into());
            continue;
        }
        let bar = progress_bar(probe.total_frames());
        bar.set_prefix(if batch {
            format!("[{}/{n}] {}", idx + 1, item.source.stem())
        } else {
            item.source.stem()
        });
        let built = match pipeline::build(&item.source, &item.outputs, &settings, segmenter.take()) {
            Ok(b) => b,
            Err(e) => {
                bar.finish_and_clear();
                if !batch {
                    return Err(e);
                }
                eprintln!(
                    "segstream: error: {}: {}",
                    item.source.display(),
                    pipeline::one_line(&e.to_string())
                );
                item.probe = Err(e.to_string());
                continue;
            }
        };
        built.publish(&pipeline::parse_publish(&args.publish)?, &item.source.display())?;
        // Stopped when dropped, at the end of this input.
        let _rtsp_server = match &args.rtsp_out {
            Some(out) => {
                let tee = built.pipeline.by_name("tee").ok_or_else(|| anyhow!("the run pipeline has no tee"))?;
                let server = segstream::app::rtsp_out::serve(&built.pipeline, &tee, out)?;
                bar.suspend(|| eprintln!("segstream: serving the overlay at {}", server.url()));
                Some(server)
            }
            None => None,
        };
        {
            let bar = bar.clone();
            let name = item.source.display();
            built.set_on_event(move |line| {
                bar.suspend(|| eprintln!("segstream: warning: {name}: {line}"));
            });
        }
        let mut expected = probe.total_frames();
        if let Some(n) = args.max_frames {
            built.limit_frames(n)?;
            expected = Some(expected.map_or(n, |t| t.min(n)));
        }
        let report = built.run(timeout, expected, |f| bar.set_position(f));
        bar.finish_and_clear();
        if args.async_overload.is_some() {
            print_overload_stats(&built.mask2former);
        }
        // The element gives the injected segmenter back when it stops.
        segmenter = built.mask2former.take_segmenter();
        if segmenter.is_none() {
            let s = Segmenter::open_auto(&cfg).map_err(|e| anyhow!("cannot reopen model {shown}: {e}"))?;
            segmenter = Some(s);
        }
        if report.outcome == Outcome::Complete
            && let Err(e) = write_coco(args, &item.outputs, &labels)
        {
            let msg = format!("{}: {}", item.source.display(), pipeline::one_line(&format!("{e:#}")));
            item.report = Some(RunReport { outcome: Outcome::Failed(msg.clone()), ..report });
            if !batch {
                bail!("{msg}");
            }
            continue;
        }
        if let Outcome::Failed(e) = &report.outcome {
            let kept: Vec<String> = report.written.iter().map(|p| p.display().to_string()).collect();
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!("; kept what was processed in {}", kept.join(", "))
            };
            eprintln!(
                "segstream: error: {}: {}{}",
                item.source.display(),
                pipeline::one_line(e),
                if report.frames > 0 && !e.contains("frames") {
                    format!(" (after {} frames){kept}", report.frames)
                } else {
                    kept
                }
            );
        }
        // Drop / reconnection lines were printed as they happened.
        for w in report.warnings.iter().filter(|w| !w.contains("source dropped") && !w.contains("source reconnected")) {
            eprintln!(
                "segstream: warning: {}: {}",
                item.source.display(),
                pipeline::one_line(w)
            );
        }
        if !batch {
            print_report(&item.source, &report);
        }
        item.report = Some(report);
    }
    if batch {
        print_summary(items);
    }

    let failed = items.iter().filter(|i| i.error().is_some()).count();
    let interrupted_file = items.iter().any(|i| {
        matches!(
            i.report,
            Some(RunReport {
                outcome: Outcome::Interrupted,
                ..
            })
        ) && !i.source.is_live()
    });
    Ok(if failed > 0 {
        if batch {
            eprintln!("segstream: error: {failed} of {n} inputs failed");
        }
        ExitCode::from(1)
    } else if interrupted_file {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Why an input was not run.
const NOT_STARTED: &str = "not started";

/// `--summary`, or with `--shard` the default `shard-I-of-N.json` in the output folder.
fn summary_path(args: &RunArgs, shard: Option<Shard>) -> Option<PathBuf> {
    args.summary.clone().or_else(|| {
        let shard = shard?;
        let dir = match (&args.output, &args.json) {
            (Some(o), _) if !args.no_overlay => o.clone(),
            (_, Some(j)) => j.clone(),
            _ => PathBuf::from("out"),
        };
        // A single-input run may name a file with -o / --json: then its folder.
        let dir = if media_ext(&dir) { dir.parent().map(Path::to_path_buf).unwrap_or_default() } else { dir };
        Some(dir.join(shard.file_name()))
    })
}

/// The per-shard summary (`segstream.shard/1`, see segstream::app::shard::Summary).
fn write_summary(path: &Path, shard: Option<Shard>, inputs_total: usize, items: &[Item], error: Option<String>) -> Result<()> {
    let inputs = items
        .iter()
        .map(|i| {
            let not_started = i.report.is_none() && matches!(&i.probe, Err(e) if e.starts_with(NOT_STARTED));
            let (status, error) = match (i.error(), &i.report) {
                _ if not_started => (NOT_STARTED, None),
                (Some(e), _) => ("failed", Some(pipeline::one_line(&e))),
                (None, Some(RunReport { outcome: Outcome::Interrupted, .. })) => ("interrupted", None),
                (None, Some(_)) => ("ok", None),
                (None, None) => (NOT_STARTED, None),
            };
            InputSummary {
                input: i.source.display(),
                status: status.into(),
                error,
                frames: i.report.as_ref().map_or(0, |r| r.frames),
                seconds: i.report.as_ref().map_or(0.0, |r| (r.wall.as_secs_f64() * 1000.0).round() / 1000.0),
                outputs: i.report.as_ref().map(|r| r.written.clone()).unwrap_or_default(),
                publish: i.report.as_ref().map(|r| r.publish.clone()).unwrap_or_default(),
                unavailable: i.report.as_ref().map_or(0, |r| r.unavailable),
            }
        })
        .collect();
    Summary::new(shard, inputs_total, inputs, error)
        .write(path)
        .map_err(|e| anyhow!("cannot write the summary {}: {e}", path.display()))
}

/// `--coco-panoptic` / `--coco-instances`: converted from the JSON Lines just written.
fn write_coco(args: &RunArgs, outputs: &Outputs, labels: &[segstream::model::Label]) -> Result<()> {
    if args.coco_panoptic.is_none() && args.coco_instances.is_none() {
        return Ok(());
    }
    let json = outputs.json.as_ref().ok_or_else(|| anyhow!("COCO outputs need the JSON Lines output"))?;
    let records = coco::read_records(json)?;
    if let Some(dir) = &args.coco_panoptic {
        coco::write_panoptic(&records, labels, dir)?;
    }
    if let Some(p) = &args.coco_instances {
        let v = coco::instance_results(&records);
        std::fs::write(p, serde_json::to_vec(&v)?).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    match total {
        Some(t) => {
            let b = ProgressBar::new(t);
            if let Ok(style) =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        }
        None => {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} {pos} frames  {per_sec}") {
                b.set_style(style);
            }
            b.enable_steady_tick(Duration::from_millis(200));
            b
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// `--async`: how many frames were inferred, dropped, stale, skipped (the element's
/// `stats`, as in its end-of-stream `segstream-summary` message).
fn print_overload_stats(m: &segstream::elements::Mask2Former) {
    use gstreamer::prelude::ObjectExt;
    let s = m.property::<gstreamer::Structure>("stats");
    let get = |f: &str| s.get::<u64>(f).unwrap_or(0);
    eprintln!(
        "segstream: async: {} frames, {} inferred, {} dropped ({} passed on stale, {} without a result)",
        get("frames"),
        get("inferred"),
        get("dropped"),
        get("stale"),
        get("skipped")
    );
}

fn print_report(source: &Source, r: &RunReport) {
    let outputs: Vec<String> = r.written.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}: {} frames in {:.1} s, average {:.1} fps{}",
        source.display(),
        r.frames,
        r.wall.as_secs_f64(),
        r.fps(),
        if outputs.is_empty() {
            String::new()
        } else {
            format!(" -> {}", outputs.join(", "))
        }
    );
    if r.drops > 0 {
        println!(
            "source dropped {} time(s), reconnected {} time(s)",
            r.drops, r.reconnects
        );
    }
    if r.unavailable > 0 {
        println!(
            "inference server unavailable for {} frames ({} got the last result, stale; {} none)",
            r.unavailable, r.stale, r.skipped
        );
    }
    for p in &r.publish {
        println!(
            "published to {}: {} of {} records confirmed, {} dropped, {} sent again, {} reconnections, {} unsent",
            p.url, p.stats.published, p.stats.queued, p.stats.dropped, p.stats.resent, p.stats.reconnects, p.stats.unsent
        );
    }
    if r.timings.is_empty() {
        return;
    }
    println!("latency per frame (ms)     p50       p95");
    type Stage = fn(&segstream::segmenter::Timings) -> f64;
    let stages: [(&str, Stage); 3] = [
        ("preprocess", |t| t.preprocess_ms),
        ("inference", |t| t.inference_ms),
        ("postprocess", |t| t.postprocess_ms),
    ];
    for (name, f) in stages {
        let v: Vec<f64> = r.timings.iter().map(f).collect();
        println!(
            "  {name:<20} {:>9} {:>9}",
            ms(percentile(&v, 0.5)),
            ms(percentile(&v, 0.95))
        );
    }
}

fn print_summary(items: &[Item]) {
    let width = items
        .iter()
        .map(|i| i.source.display().len())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    println!(
        "{:<width$}  {:>7}  {:>7}  {:>9}  status",
        "input", "frames", "fps", "infer p50"
    );
    for i in items {
        let (frames, fps, p50) = match &i.report {
            Some(r) => {
                let inf: Vec<f64> = r.timings.iter().map(|t| t.inference_ms).collect();
                (
                    r.frames.to_string(),
                    format!("{:.1}", r.fps()),
                    ms(percentile(&inf, 0.5)),
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        let status = match (i.error(), &i.report) {
            (Some(e), _) => format!("error: {}", pipeline::one_line(&e)),
            (None, Some(r)) => {
                let outs: Vec<String> = r.written.iter().map(|p| p.display().to_string()).collect();
                format!("ok -> {}", outs.join(", "))
            }
            (None, None) => "skipped".into(),
        };
        let name: String = i.source.display().chars().take(width).collect();
        println!("{name:<width$}  {frames:>7}  {fps:>7}  {p50:>9}  {status}");
    }
    let total: u64 = items.iter().filter_map(|i| i.report.as_ref()).map(|r| r.frames).sum();
    let secs: f64 = items
        .iter()
        .filter_map(|i| i.report.as_ref())
        .map(|r| r.wall.as_secs_f64())
        .sum();
    println!(
        "total: {total} frames in {secs:.1} s ({:.1} fps)",
        if secs > 0.0 { total as f64 / secs } else { 0.0 }
    );
}
