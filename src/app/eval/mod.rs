//! Accuracy of predictions against COCO ground truth: PQ / SQ / RQ (all, things, stuff,
//! per class), mIoU of the same label maps read as semantic segmentation, and mask AP.
//!
//! The metrics are [`hotcoco`]'s: `PanopticEval` is a port of COCO panopticapi's
//! `pq_compute` (IoU > 0.5 matches within a category, predicted pixels on ground-truth
//! VOID left out of the union, crowd regions neither matched nor missed, averages over
//! the categories that occur), `COCOeval` with `IouType::Segm` is pycocotools' mask AP.
//! This module only turns files into their inputs and their results into a report;
//! `tests/python/test_eval.py` cross-checks the figures against `engines/pq.py` and
//! pycocotools on the same files.
//!
//! Predictions come in three shapes, told apart by content:
//! - COCO panoptic: a JSON object with `annotations[].segments_info` (PNGs beside it);
//! - COCO instance results: a JSON array of `{image_id, category_id, segmentation, score}`;
//! - `segstream.frame/1` JSON Lines (`segstream run --json`): scored as panoptic (the
//!   segments' RLE masks paint the label map) and, for thing segments, as instances.

pub mod coco;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hotcoco::panoptic::{PanopticDataset, PanopticEval};

/// PQ, SQ, RQ over a group of categories, `n` of them counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PqFigures {
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub n: usize,
}

/// One category's figures. `pq`/`sq`/`rq` are `null` when the category has no segment on
/// either side; `iou` is its semantic IoU (`null` when absent on both sides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassFigures {
    pub id: u64,
    pub name: String,
    pub isthing: bool,
    pub pq: Option<f64>,
    pub sq: Option<f64>,
    pub rq: Option<f64>,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub iou: Option<f64>,
}

/// Panoptic quality of a prediction set, and mIoU of the same label maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanopticReport {
    pub images: usize,
    pub all: PqFigures,
    pub things: PqFigures,
    pub stuff: PqFigures,
    /// Mean IoU over the categories present in ground truth or prediction (the panoptic
    /// prediction read as semantic segmentation, as Mask2Former's paper reports it).
    pub miou: Option<f64>,
    pub per_class: Vec<ClassFigures>,
}

/// Mask AP (pycocotools' `COCOeval`, `iouType="segm"`) of thing segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskApReport {
    pub images: usize,
    /// `AP`, `AP50`, `AP75`, `APs`, `APm`, `APl`, `AR1`, `AR10`, `AR100`, `ARs`, `ARm`,
    /// `ARl` (−1 where pycocotools prints −1: nothing to average).
    pub metrics: BTreeMap<String, f64>,
    /// AP per category name.
    pub per_class: BTreeMap<String, f64>,
    /// pycocotools' summary lines.
    pub summary: Vec<String>,
}

/// Everything `segstream eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panoptic: Option<PanopticReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<MaskApReport>,
}

/// Ground truth in COCO panoptic format: the loaded JSON and its PNG folder.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    pub json_path: PathBuf,
    pub json: Value,
    pub png_dir: PathBuf,
}

/// Where a COCO panoptic set lives: a folder holding `panoptic.json` and `panoptic/`
/// (segstream's and `samples/gt`'s layout), or a JSON file whose PNG folder is its path
/// without `.json` (panopticapi's convention) unless `png_dir` says otherwise.
pub fn locate_panoptic(path: &Path, png_dir: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    if path.is_dir() {
        let json = path.join("panoptic.json");
        if !json.is_file() {
            bail!("{} is a folder without panoptic.json", path.display());
        }
        let dir = png_dir.map(Path::to_path_buf).unwrap_or_else(|| path.join("panoptic"));
        return Ok((json, dir));
    }
    if !path.exists() {
        bail!("not found: {}", path.display());
    }
    Ok((path.to_path_buf(), png_dir.map(Path::to_path_buf).unwrap_or_else(|| path.with_extension(""))))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not valid JSON", path.display()))
}

impl GroundTruth {
    pub fn load(path: &Path, png_dir: Option<&Path>) -> Result<GroundTruth> {
        let (json_path, png_dir) = locate_panoptic(path, png_dir)?;
        let json = read_json(&json_path)?;
        if json.get("annotations").and_then(Value::as_array).is_none()
            || json.get("categories").and_then(Value::as_array).is_none_or(Vec::is_empty)
        {
            bail!("{}: not COCO panoptic ground truth (needs annotations and categories)", json_path.display());
        }
        if !png_dir.is_dir() {
            bail!("ground-truth PNG folder {} does not exist", png_dir.display());
        }
        Ok(GroundTruth { json_path, json, png_dir })
    }

    /// Image ids that have a ground-truth annotation.
    pub fn image_ids(&self) -> BTreeSet<u64> {
        ids_of(&self.json)
    }

    /// The same ground truth restricted to some image ids.
    fn restricted(&self, keep: &BTreeSet<u64>) -> Value {
        let mut v = self.json.clone();
        for key in ["images", "annotations"] {
            let id_key = if key == "images" { "id" } else { "image_id" };
            if let Some(arr) = v.get_mut(key).and_then(Value::as_array_mut) {
                arr.retain(|a| a.get(id_key).and_then(Value::as_u64).is_some_and(|i| keep.contains(&i)));
            }
        }
        v
    }
}

fn ids_of(panoptic: &Value) -> BTreeSet<u64> {
    panoptic
        .get("annotations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("image_id").and_then(Value::as_u64))
        .collect()
}

/// A prediction set, in one of the shapes the module takes.
#[derive(Debug, Clone)]
pub enum Prediction {
    /// COCO panoptic JSON (+ PNG folder), or an in-memory panoptic set whose segments
    /// carry RLE masks (`png_dir` = `None`).
    Panoptic { json: Value, png_dir: Option<PathBuf> },
    /// COCO instance results.
    Instances(Value),
    /// Both, from segstream frame records.
    Records { panoptic: Value, instances: Value },
}

impl Prediction {
    /// Load predictions from a path (see the module docs for the shapes).
    pub fn load(path: &Path, png_dir: Option<&Path>) -> Result<Prediction> {
        if path.is_dir() {
            let (json, dir) = locate_panoptic(path, png_dir)?;
            return Ok(Prediction::Panoptic { json: read_json(&json)?, png_dir: Some(dir) });
        }
        if !path.is_file() {
            bail!("prediction not found: {}", path.display());
        }
        if path.extension().is_some_and(|e| e == "jsonl") {
            let records = coco::read_records(path)?;
            return Ok(Prediction::Records {
                panoptic: records_panoptic(&records),
                instances: coco::instance_results(&records),
            });
        }
        let v = read_json(path)?;
        match &v {
            Value::Array(_) => Ok(Prediction::Instances(v)),
            Value::Object(o) if o.contains_key("annotations") => {
                let (_, dir) = locate_panoptic(path, png_dir)?;
                Ok(Prediction::Panoptic { json: v, png_dir: Some(dir) })
            }
            _ => bail!(
                "{}: neither COCO panoptic (an object with annotations) nor COCO instance results (an array)",
                path.display()
            ),
        }
    }

    /// Image ids the prediction covers.
    pub fn image_ids(&self) -> BTreeSet<u64> {
        match self {
            Prediction::Panoptic { json, .. } | Prediction::Records { panoptic: json, .. } => ids_of(json),
            Prediction::Instances(v) => v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("image_id").and_then(Value::as_u64))
                .collect(),
        }
    }
}

/// Frame records as an in-memory COCO panoptic set whose segments carry their masks.
fn records_panoptic(records: &[crate::schema::FrameRecord]) -> Value {
    let images: Vec<Value> =
        records.iter().map(|r| json!({"id": r.frame, "file_name": coco::png_name(r.frame), "width": r.width, "height": r.height})).collect();
    let anns: Vec<Value> = records
        .iter()
        .map(|r| {
            let segs: Vec<Value> = r
                .segments
                .iter()
                .map(|s| json!({"id": s.id, "category_id": s.label_id, "iscrowd": 0,
                                "segmentation": {"size": s.mask.size, "counts": s.mask.counts}}))
                .collect();
            json!({"image_id": r.frame, "segments_info": segs})
        })
        .collect();
    json!({"images": images, "annotations": anns, "categories": []})
}

/// Which images to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coverage {
    /// Every ground-truth image must have a prediction, and every prediction a
    /// ground-truth image (the COCO tools' rule).
    #[default]
    Strict,
    /// Score only the ground-truth images the prediction covers (a partial run, e.g.
    /// `segstream run --max-frames N`); predictions for unknown images are still an error.
    Predicted,
}

/// The image ids to score, checking that the two sets agree as `coverage` requires.
pub fn images_to_score(gt: &GroundTruth, pred: &Prediction, coverage: Coverage) -> Result<BTreeSet<u64>> {
    let g = gt.image_ids();
    let p = pred.image_ids();
    if let Some(extra) = p.difference(&g).next() {
        bail!(
            "the prediction has image id {extra}, which the ground truth {} does not have (mismatched image ids)",
            gt.json_path.display()
        );
    }
    let keep: BTreeSet<u64> = match coverage {
        Coverage::Strict => {
            if !matches!(pred, Prediction::Instances(_))
                && let Some(missing) = g.difference(&p).next()
            {
                bail!(
                    "no prediction for image id {missing} ({} of {} ground-truth images predicted; \
                     --only-predicted scores just those)",
                    p.len(),
                    g.len()
                );
            }
            g
        }
        Coverage::Predicted => p,
    };
    if keep.is_empty() {
        bail!("no image to score");
    }
    Ok(keep)
}

fn figures(split: &hotcoco::panoptic::PqSplit) -> PqFigures {
    PqFigures { pq: split.scores.pq, sq: split.scores.sq, rq: split.scores.rq, n: split.n }
}

fn category_names(gt: &Value) -> BTreeMap<u64, (String, bool)> {
    gt.get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c.get("id")?.as_u64()?;
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let thing = c.get("isthing").is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true));
            Some((id, (name, thing)))
        })
        .collect()
}

/// PQ / SQ / RQ and mIoU of a panoptic prediction (`pred_json` as in
/// [`Prediction::Panoptic`]) on the ground-truth images in `keep`.
pub fn panoptic(gt: &GroundTruth, pred_json: &Value, pred_png_dir: Option<&Path>, keep: &BTreeSet<u64>) -> Result<PanopticReport> {
    let gt_value = gt.restricted(keep);
    let mut gt_set: PanopticDataset =
        serde_json::from_value(gt_value.clone()).map_err(|e| anyhow!("{}: {e}", gt.json_path.display()))?;
    gt_set.folder = Some(gt.png_dir.clone());
    let mut pred_set: PanopticDataset = serde_json::from_value(pred_json.clone()).map_err(|e| anyhow!("prediction: {e}"))?;
    if let Some(d) = pred_png_dir {
        if !d.is_dir() {
            bail!("prediction PNG folder {} does not exist", d.display());
        }
        pred_set.folder = Some(d.to_path_buf());
    }
    let mut ev = PanopticEval::new(gt_set, pred_set);
    ev.run().map_err(|e| anyhow!("{e}"))?;
    let res = ev.result().ok_or_else(|| anyhow!("panoptic evaluation produced no result"))?;
    let names = category_names(&gt_value);
    let sem = res.semantic();
    let mut per_class = Vec::new();
    for (i, (cat, counts)) in res.per_category.iter().enumerate() {
        let scores = counts.scores();
        let (name, isthing) = names.get(cat).cloned().unwrap_or_default();
        let iou = sem.per_class.get(i).map(|c| c.iou).filter(|v| *v >= 0.0);
        per_class.push(ClassFigures {
            id: *cat,
            name,
            isthing,
            pq: scores.map(|s| s.pq),
            sq: scores.map(|s| s.sq),
            rq: scores.map(|s| s.rq),
            tp: counts.tp,
            fp: counts.fp,
            fn_: counts.fn_,
            iou,
        });
    }
    Ok(PanopticReport {
        images: res.n_images,
        all: figures(&res.all),
        things: figures(&res.things),
        stuff: figures(&res.stuff),
        miou: (sem.miou >= 0.0).then_some(sem.miou),
        per_class,
    })
}

/// Mask AP of instance results against the thing segments of the panoptic ground truth,
/// on the images in `keep`.
pub fn mask_ap(gt: &GroundTruth, results: &Value, keep: &BTreeSet<u64>) -> Result<MaskApReport> {
    let ids: Vec<u64> = keep.iter().copied().collect();
    let inst = coco::panoptic_gt_to_instances(&gt.json, &gt.png_dir, Some(&ids))?;
    let gt_ds: hotcoco::types::Dataset = serde_json::from_value(inst).map_err(|e| anyhow!("ground truth as instances: {e}"))?;
    let names: BTreeMap<u64, String> = gt_ds.categories.iter().map(|c| (c.id, c.name.clone())).collect();
    let coco_gt = hotcoco::COCO::from_dataset(gt_ds);
    let anns: Vec<hotcoco::types::Annotation> = results
        .as_array()
        .ok_or_else(|| anyhow!("instance results are not a JSON array"))?
        .iter()
        .enumerate()
        .map(|(i, a)| serde_json::from_value(a.clone()).map_err(|e| anyhow!("instance result {i}: {e}")))
        .collect::<Result<_>>()?;
    for a in &anns {
        if !names.contains_key(&a.category_id) {
            bail!("instance result for category {} which is not a thing category of the ground truth", a.category_id);
        }
    }
    let coco_dt = coco_gt.load_res_anns(anns).map_err(|e| anyhow!("instance results: {e}"))?;
    let mut ev = hotcoco::COCOeval::new(coco_gt, coco_dt, hotcoco::params::IouType::Segm);
    ev.evaluate().map_err(|e| anyhow!("{e}"))?;
    ev.accumulate();
    let summary = ev.summarize_lines();
    let all = ev.get_results(None, true);
    let mut metrics = BTreeMap::new();
    let mut per_class = BTreeMap::new();
    for (k, v) in all {
        match k.strip_prefix("AP/") {
            Some(name) => {
                per_class.insert(name.to_string(), v);
            }
            None => {
                metrics.insert(k, v);
            }
        }
    }
    Ok(MaskApReport { images: keep.len(), metrics, per_class, summary })
}

/// Score `pred` against `gt`: PQ + mIoU for panoptic predictions, mask AP for instance
/// results, both for frame records.
pub fn evaluate(gt: &GroundTruth, pred: &Prediction, coverage: Coverage) -> Result<EvalReport> {
    let keep = images_to_score(gt, pred, coverage)?;
    Ok(match pred {
        Prediction::Panoptic { json, png_dir } => EvalReport {
            panoptic: Some(panoptic(gt, json, png_dir.as_deref(), &keep)?),
            instances: None,
        },
        Prediction::Instances(v) => EvalReport { panoptic: None, instances: Some(mask_ap(gt, v, &keep)?) },
        Prediction::Records { panoptic: p, instances } => EvalReport {
            panoptic: Some(panoptic(gt, p, None, &keep)?),
            instances: Some(mask_ap(gt, instances, &keep)?),
        },
    })
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 0.0 => format!("{:6.2}", 100.0 * v),
        _ => format!("{:>6}", "-"),
    }
}

impl EvalReport {
    /// The human-readable tables (panopticapi's layout, percentages).
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.panoptic {
            s += &format!("{:10}| {:>6} {:>6} {:>6} {:>4}\n{}\n", "", "PQ", "SQ", "RQ", "N", "-".repeat(38));
            for (name, f) in [("All", &p.all), ("Things", &p.things), ("Stuff", &p.stuff)] {
                s += &format!("{name:10}| {} {} {} {:4}\n", pct(Some(f.pq)), pct(Some(f.sq)), pct(Some(f.rq)), f.n);
            }
            s += &format!("\n{:10} {:5}| {:>6} {:>6} {:>6} {:>5} {:>5} {:>5} {:>6}\n{}\n", "class", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU", "-".repeat(62));
            for c in &p.per_class {
                let name: String = c.name.chars().take(10).collect();
                s += &format!(
                    "{name:10} {:5}| {} {} {} {:5} {:5} {:5} {}\n",
                    if c.isthing { "thing" } else { "stuff" },
                    pct(c.pq),
                    pct(c.sq),
                    pct(c.rq),
                    c.tp,
                    c.fp,
                    c.fn_,
                    pct(c.iou)
                );
            }
            s += &format!("\nmIoU {} ({} images)\n", pct(p.miou).trim(), p.images);
        }
        if let Some(i) = &self.instances {
            if !s.is_empty() {
                s += "\n";
            }
            s += &format!("mask AP ({} images)\n", i.images);
            for l in &i.summary {
                s += l;
                s += "\n";
            }
            if !i.per_class.is_empty() {
                let per: Vec<String> = i.per_class.iter().map(|(k, v)| format!("{k} {}", pct(Some(*v)).trim())).collect();
                s += &format!("AP per class: {}\n", per.join(", "));
            }
        }
        s
    }
}
