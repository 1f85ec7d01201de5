//! `segstream eval`: a thin shell over `segstream::app::eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use segstream::app::eval::{Coverage, GroundTruth, Prediction, evaluate};

use super::fail;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Ground truth in COCO panoptic format: a folder holding panoptic.json and
    /// panoptic/ (as samples/gt), or the JSON file (PNGs in the folder of the same name
    /// without .json, or --gt-dir).
    #[arg(long, value_name = "GT_DIR_OR_JSON")]
    pub gt: PathBuf,
    /// Folder of the ground-truth PNGs (overrides the default beside the JSON).
    #[arg(long, value_name = "DIR")]
    pub gt_dir: Option<PathBuf>,
    /// Predictions: a COCO panoptic folder or JSON (`segstream run --coco-panoptic`), COCO
    /// instance results (`--coco-instances`, a JSON array), or segstream JSON Lines
    /// (`--json`, scored both ways).
    #[arg(long, value_name = "PRED")]
    pub pred: PathBuf,
    /// Folder of the predicted PNGs (overrides the default beside the JSON).
    #[arg(long, value_name = "DIR")]
    pub pred_dir: Option<PathBuf>,
    /// Score only the ground-truth images the prediction covers (for partial runs such
    /// as `segstream run --max-frames N`). Default: every ground-truth image must have
    /// a prediction.
    #[arg(long)]
    pub only_predicted: bool,
    /// Also write the figures as JSON to this file (`-` = print JSON instead of the table).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

pub fn eval(args: EvalArgs) -> ExitCode {
    match eval_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn eval_inner(args: &EvalArgs) -> Result<()> {
    let gt = GroundTruth::load(&args.gt, args.gt_dir.as_deref()).context("ground truth")?;
    let pred = Prediction::load(&args.pred, args.pred_dir.as_deref()).context("prediction")?;
    let coverage = if args.only_predicted { Coverage::Predicted } else { Coverage::Strict };
    let report = evaluate(&gt, &pred, coverage)?;
    let text = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(p) if p.as_os_str() == "-" => println!("{text}"),
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
            print!("{}", report.table());
        }
        None => print!("{}", report.table()),
    }
    Ok(())
}
