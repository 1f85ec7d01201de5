//! `segstream build-engine`: build a TensorRT engine from an exported ONNX model.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use segstream::backend::tensorrt::{
    self, BatchProfile, BuildEvent, BuildOptions, Precision, contract::card_path_for, options,
};
use segstream::model::ModelCard;

use super::fail;

#[derive(Debug, Args)]
pub struct BuildEngineArgs {
    /// The ONNX model (its card .json beside it). When the `--deform-attn trt-plugin`
    /// export MODEL-trt.onnx sits beside it and TensorRT's plugin library loads, the engine
    /// is built from that one.
    pub model: PathBuf,
    /// Engine file to write. Default: MODEL.<precision>.engine beside the model, where
    /// `mask2former backend=tensorrt model=MODEL.onnx` looks for it.
    #[arg(short = 'o', long = "output", value_name = "ENGINE")]
    pub output: Option<PathBuf>,
    /// fp32 or fp16. With TensorRT 11, fp16 needs an FP16 ONNX (11 removed the FP16
    /// builder flag; the precision comes from the graph).
    #[arg(long, default_value = "fp16", value_parser = parse_precision)]
    pub precision: Precision,
    /// Builder workspace limit (e.g. 512M, 2G; a bare number is MiB). Default: TensorRT's.
    #[arg(long, value_name = "SIZE", value_parser = parse_workspace)]
    pub workspace: Option<u64>,
    /// Batch optimization profile for a model with a dynamic batch: N (1..N, optimized
    /// for N) or MIN:OPT:MAX.
    #[arg(long, default_value = "1", value_parser = parse_batch)]
    pub batch: BatchProfile,
    /// Timing cache file, reused across builds. Default: tensorrt.timing-cache beside the engine.
    #[arg(long, value_name = "FILE")]
    pub timing_cache: Option<PathBuf>,
    /// Plugin library to load instead of TensorRT's libnvinfer_plugin (also SEGSTREAM_TRT_PLUGIN_LIB).
    #[arg(long, value_name = "LIB")]
    pub plugin_lib: Option<PathBuf>,
    /// Build from MODEL itself even when MODEL-trt.onnx sits beside it.
    #[arg(long)]
    pub no_plugin_model: bool,
    /// CUDA device index.
    #[arg(long, default_value_t = 0)]
    pub device: u32,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse().map_err(|e: segstream::Error| e.to_string())
}
fn parse_batch(s: &str) -> Result<BatchProfile, String> {
    s.parse().map_err(|e: segstream::Error| e.to_string())
}
fn parse_workspace(s: &str) -> Result<u64, String> {
    options::parse_workspace(s).map_err(|e| e.to_string())
}

impl BuildEngineArgs {
    /// The build options these arguments ask for.
    pub fn options(&self) -> BuildOptions {
        let mut o = BuildOptions {
            precision: self.precision,
            workspace_bytes: self.workspace.unwrap_or(0),
            batch: self.batch,
            timing_cache: self.timing_cache.clone(),
            prefer_plugin_model: !self.no_plugin_model,
            device: self.device,
            ..BuildOptions::default()
        };
        if self.plugin_lib.is_some() {
            o.plugin_library = self.plugin_lib.clone();
        }
        o
    }

    pub fn output(&self) -> PathBuf {
        self.output.clone().unwrap_or_else(|| options::cached_engine_path(&self.model, self.precision))
    }
}

pub fn build_engine(args: BuildEngineArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

fn run(args: &BuildEngineArgs) -> Result<()> {
    if !tensorrt::AVAILABLE {
        return Err(anyhow!(
            "{}",
            segstream::Error::FeatureDisabled {
                feature: "tensorrt",
                what: "`segstream build-engine` needs the native TensorRT backend".into()
            }
        ));
    }
    if !args.model.is_file() {
        return Err(anyhow!("model not found: {}", args.model.display()));
    }
    let card_path = ModelCard::path_for_model(&args.model);
    let card = ModelCard::load(&card_path).map_err(|e| anyhow!("{e}"))?;
    let out = args.output();
    let opts = args.options();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg} {wide_bar} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar.set_message(format!("building {} ({})", out.display(), opts.precision));
    let mut current = String::new();
    let mut progress = |ev: &BuildEvent<'_>| {
        match *ev {
            BuildEvent::PhaseStart { phase, parent, steps } => {
                current = if parent.is_empty() { phase.to_string() } else { format!("{parent} › {phase}") };
                bar.set_message(current.clone());
                bar.set_length(steps as u64);
                bar.set_position(0);
            }
            BuildEvent::Step { step, .. } => bar.set_position(step as u64 + 1),
            BuildEvent::PhaseFinish { .. } => {}
        }
        !segstream::app::pipeline::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
    };
    segstream::app::pipeline::install_signal_handlers();
    let t0 = Instant::now();
    let header = tensorrt::build_engine(&args.model, &card, &out, &opts, &mut progress);
    bar.finish_and_clear();
    let header = header.map_err(|e| anyhow!("{e}"))?;
    // Keep the card findable beside a custom output name.
    let card_beside = card_path_for(&out);
    if !card_beside.is_file() {
        std::fs::copy(&card_path, &card_beside)
            .map_err(|e| anyhow!("engine written, but cannot copy the card to {}: {e}", card_beside.display()))?;
    }
    println!(
        "wrote {} in {:.1} s: TensorRT {}, {}, {}, batch {}, from {}{}, {:.1} MiB",
        out.display(),
        t0.elapsed().as_secs_f64(),
        header.tensorrt,
        header.gpu,
        header.precision,
        header.batch,
        header.source,
        if header.plugin { " (deformable-attention plugin)" } else { "" },
        header.plan_len as f64 / (1 << 20) as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: BuildEngineArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let t = T::try_parse_from(["x", "m.onnx"]).unwrap();
        assert_eq!(t.a.precision, Precision::Fp16);
        assert_eq!(t.a.output(), PathBuf::from("m.fp16.engine"));
        assert_eq!(t.a.options().batch, BatchProfile { min: 1, opt: 1, max: 1 });
        assert!(t.a.options().prefer_plugin_model);

        let t = T::try_parse_from([
            "x", "m.onnx", "--precision", "fp32", "-o", "out/e.engine", "--workspace", "2G", "--batch", "1:2:4",
            "--no-plugin-model",
        ])
        .unwrap();
        let o = t.a.options();
        assert_eq!((o.precision, o.workspace_bytes, o.batch), (Precision::Fp32, 2 << 30, BatchProfile { min: 1, opt: 2, max: 4 }));
        assert!(!o.prefer_plugin_model);
        assert_eq!(t.a.output(), PathBuf::from("out/e.engine"));

        assert!(T::try_parse_from(["x", "m.onnx", "--precision", "int8"]).is_err());
        assert!(T::try_parse_from(["x", "m.onnx", "--batch", "4:2:1"]).is_err());
    }
}
