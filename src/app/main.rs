//! The `segstream` command: a thin shell over the library (`segstream::app::pipeline`,
//! `segstream::elements`).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "segstream", version, about = "Real-time Mask2Former segmentation for video")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Segment videos, images, streams or a camera; write an overlay video and JSON Lines.
    ///
    /// With no INPUT, segments the shipped sample (samples/shapes.mp4 with
    /// samples/models/shapes-m2f.onnx) into out/shapes.mp4 and out/shapes.jsonl.
    Run(cli::run::RunArgs),
    /// Score predictions against COCO ground truth: PQ / SQ / RQ (all, things, stuff, per
    /// class), mIoU, mask AP.
    Eval(cli::eval::EvalArgs),
    /// Time every stage (decode, preprocess, inference, postprocess, overlay, encode,
    /// JSON) on some frames of a video, and the end-to-end pipeline.
    Bench(cli::bench::BenchArgs),
    /// Build a TensorRT engine from an exported ONNX model (needs the `tensorrt` feature).
    ///
    /// The engine file records the TensorRT version, the GPU and the model card's hash;
    /// segstream refuses it when one of them differs.
    BuildEngine(cli::build_engine::BuildEngineArgs),
    /// Print a model's card and the network's inputs and outputs.
    Inspect {
        /// The model file (.onnx; its card .json beside it).
        model: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = gstreamer::init() {
        return cli::fail(format!("cannot initialize GStreamer: {e}"));
    }
    if let Err(e) = segstream::elements::register_static() {
        return cli::fail(format!("cannot register the segstream elements: {e}"));
    }
    match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Eval(args) => cli::eval::eval(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Inspect { model } => cli::inspect::inspect(&model),
        Command::BuildEngine(args) => cli::build_engine::build_engine(args),
    }
}
