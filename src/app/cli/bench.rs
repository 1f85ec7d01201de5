//! `segstream bench`: a thin shell over `segstream::app::bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

use segstream::app::bench::{self, BenchConfig};
use segstream::backend::select::{BackendKind, Device};
use segstream::postprocess::Semantics;
use segstream::segmenter::{Segmenter, SegmenterConfig};
use segstream::settings::{PostSettings, Settings};

use super::run::{OpenVinoArgs, parse_name, print_backend_details};
use super::{SAMPLE_MODEL, SAMPLE_VIDEO, fail, find_shipped};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Video file (default: the shipped sample).
    pub input: Option<PathBuf>,
    /// Model file (.onnx with its .json card). Default: the shipped sample model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Frames to measure (the first N of the input; decoded frames are held in memory).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub frames: u64,
    /// Frames segmented before timing starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Inference threads: ONNX Runtime's intra-op threads, OpenVINO's inference threads
    /// (0 = the runtime's default: one per core).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Inference backend (see `segstream run --backend`): onnxruntime or openvino on the CPU.
    #[arg(long, default_value = "onnxruntime", value_parser = parse_name::<BackendKind>)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub openvino: OpenVinoArgs,
    /// Post-processing semantics (see `segstream run --semantics`).
    #[arg(long, value_parser = ["detectron2", "transformers"], default_value = "detectron2")]
    pub semantics: String,
    /// Execution device (cpu: no fallback to another backend).
    #[arg(long, value_parser = ["auto", "cpu"], default_value = "cpu")]
    pub device: String,
    /// Skip the end-to-end pipeline run (stages only).
    #[arg(long)]
    pub no_end_to_end: bool,
    /// Print the report as JSON (segstream.bench/1) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "OUT.json")]
    pub out: Option<PathBuf>,
    /// Write a PNG chart of the stage breakdown.
    #[arg(long, value_name = "OUT.png")]
    pub chart: Option<PathBuf>,
    /// A reference pipeline's report (engines/peer_bench.py --json) measured on the same
    /// frames: printed beside ours, with the frames/s ratio, and drawn in the chart.
    #[arg(long, value_name = "PEER.json")]
    pub peer: Option<PathBuf>,
    /// Folder for the encoded outputs (default: a temporary folder, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Live figures instead of the stage breakdown: per-frame latency of `mask2former`
    /// in sync and async mode (input under and over what inference sustains; `--frames`
    /// frames a run), and throughput of several streams (`--streams`).
    #[arg(long)]
    pub live: bool,
    /// `--live`: stream counts of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4", value_parser = clap::value_parser!(u64).range(1..=16))]
    pub streams: Vec<u64>,
    /// `--live`: frames each stream pushes in a throughput run.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub stream_frames: u64,
}

pub fn bench(args: BenchArgs) -> ExitCode {
    match bench_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn bench_inner(args: &BenchArgs) -> Result<()> {
    let input = match &args.input {
        Some(i) => i.clone(),
        None => find_shipped(SAMPLE_VIDEO).ok_or_else(|| anyhow!("no INPUT given and the sample {SAMPLE_VIDEO} was not found"))?,
    };
    if !input.is_file() {
        bail!("input not found: {}", input.display());
    }
    let model = match &args.model {
        Some(m) => m.clone(),
        None => find_shipped(SAMPLE_MODEL).ok_or_else(|| anyhow!("model not found: {SAMPLE_MODEL}; pass --model MODEL.onnx"))?,
    };
    if !model.is_file() {
        bail!("model not found: {}", model.display());
    }
    let peer = match &args.peer {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            Some(serde_json::from_str::<serde_json::Value>(&text).with_context(|| format!("{}: not JSON", p.display()))?)
        }
        None => None,
    };
    if args.live {
        if args.backend != BackendKind::OnnxRuntime {
            bail!("--live measures the onnxruntime backend only");
        }
        return live(args, &input, &model);
    }
    let device = if args.device == "auto" { Device::Auto } else { Device::Cpu };
    let mut settings = Settings { device, backend: args.backend, threads: args.threads, ..Settings::default() };
    args.openvino.apply(&mut settings);
    let segmenter = Segmenter::open_auto(&SegmenterConfig::from_settings(&model, &settings))
        .map_err(|e| anyhow!("cannot open model {}: {e}", model.display()))?;
    for note in segmenter.fallbacks() {
        eprintln!("segstream: warning: using {}: {note}", segmenter.backend_name());
    }
    print_backend_details(&segmenter);
    let post = PostSettings { semantics: args.semantics.parse::<Semantics>()?, ..PostSettings::default() };

    let tmp = std::env::temp_dir().join(format!("segstream-bench-{}", std::process::id()));
    let scratch = args.scratch.clone().unwrap_or_else(|| tmp.clone());
    let bcfg = BenchConfig {
        input,
        frames: args.frames as usize,
        warmup: args.warmup,
        threads: args.threads,
        end_to_end: !args.no_end_to_end,
        post,
        scratch,
    };
    let result = bench::run(&bcfg, segmenter);
    if args.scratch.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let mut report = result?;
    if let Some(p) = peer {
        report.attach_peer(p)?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &json).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if let Some(chart) = &args.chart {
        let title = format!("ms per frame by stage, {}x{}, {} threads", report.width, report.height, report.threads);
        bench::chart::write_chart(chart, &title, &report.chart_bars())?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn live(args: &BenchArgs, input: &std::path::Path, model: &std::path::Path) -> Result<()> {
    if args.peer.is_some() || args.chart.is_some() {
        bail!("--peer and --chart belong to the stage breakdown, not to --live");
    }
    let source = segstream::app::pipeline::Source::File(input.to_path_buf());
    let cfg = bench::live::LiveConfig {
        input_uri: source.uri()?,
        input_name: input.display().to_string(),
        model: model.to_path_buf(),
        frames: args.frames as usize,
        stream_frames: args.stream_frames as usize,
        threads: args.threads,
        streams: args.streams.iter().map(|&n| n as usize).collect(),
    };
    let report = bench::live::run(&cfg, |line| eprintln!("segstream bench: {line}"))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &json).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
