//! Instance inference.
//!
//! Both references:
//!
//! 1. class probabilities `softmax(class_logits)[:, :K]` (no-object dropped after the
//!    softmax), flattened over (query, class); the top-k pairs are taken — k = Q for
//!    [`Semantics::Transformers`] (transformers' `num_queries`), `params.top_k` for
//!    [`Semantics::Detectron2`] (`test_topk_per_image`), at most Q·K. The pairs are
//!    visited in decreasing class score (ties: lower flattened index first). torch's
//!    `topk(sorted=False)` returns this order when `64·k ≤ Q·K` (COCO: 100 of 13 300) and
//!    an implementation-defined order otherwise; only the painting order of overlapping
//!    instances depends on it;
//! 2. detectron2 only: pairs whose class is not a thing class are dropped (its
//!    `instance_inference` does so whenever panoptic inference is on, as in every
//!    panoptic Mask2Former config; for instance-only models every class is a thing);
//! 3. each pair's binary mask is `logit > 0` (strict; `mask_threshold` is not used):
//!    * transformers: on the logits resized to 384×384, then resized to the frame with
//!      nearest-neighbour (torch's legacy `nearest`);
//!    * detectron2: on the logits resized to the input, cropped, resized to the frame;
//! 4. mask score = `Σ σ(logit)·mask / (Σ mask + 1e-6)` on the grid of step 3 (384×384 for
//!    transformers, the frame for detectron2); score = class score × mask score;
//! 5. an instance is kept when its frame-size mask has a pixel and `score ≥
//!    score_threshold` (inclusive, as transformers; detectron2 itself returns all k and
//!    leaves thresholding to the caller).
//!
//! Kept instances get ids 1, 2, … in visiting order and are painted into the id map in
//! that order, a later instance overwriting an earlier one where masks overlap (as
//! transformers paints its map). A segment's `area` and `bbox` are those of its own
//! binary mask, occluded pixels included, so they can exceed what the id map shows;
//! [`instance_with_masks`] also returns each instance's full mask.
//!
//! A pair whose class score is below the threshold cannot reach it (the mask score is
//! below 1), so masks are only computed for the others, once per query.

use rayon::prelude::*;

use super::common::{as_py, check_masks_finite, class_probs, make_segment, sigmoid, validate, SegmentMeta};
use super::panoptic::TRANSFORMERS_SIZE;
use super::upsample::{eval_block, nearest_indices, resize_plane, Taps};
use crate::backend::ImageLogits;
use crate::model::Label;
use crate::postprocess::{Geometry, Params, Semantics};
use crate::segmentation::{Rle, Segmentation, Task};
use crate::Result;

/// Pixels `x0..x1` of row `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRun {
    pub y: u32,
    pub x0: u32,
    pub x1: u32,
}

/// One kept instance's own binary mask at frame size (occluded pixels included).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceMask {
    /// Segment id in the result.
    pub id: u32,
    /// The query and class of the (query, class) pair.
    pub query: usize,
    pub label_id: u32,
    pub width: u32,
    pub height: u32,
    /// Row runs in row-major order, non-overlapping.
    pub runs: Vec<RowRun>,
}

impl InstanceMask {
    pub fn area(&self) -> u64 {
        self.runs.iter().map(|r| (r.x1 - r.x0) as u64).sum()
    }
    /// Tight `[x, y, w, h]` box (zeros for an empty mask).
    pub fn bbox(&self) -> [u32; 4] {
        if self.runs.is_empty() {
            return [0; 4];
        }
        let x0 = self.runs.iter().map(|r| r.x0).min().unwrap_or(0);
        let x1 = self.runs.iter().map(|r| r.x1).max().unwrap_or(0);
        let y0 = self.runs[0].y;
        let y1 = self.runs[self.runs.len() - 1].y;
        [x0, y0, x1 - x0, y1 - y0 + 1]
    }
    /// Row-major 0/1 bitmap.
    pub fn to_bitmap(&self) -> Vec<u8> {
        let w = self.width as usize;
        let mut m = vec![0u8; w * self.height as usize];
        for r in &self.runs {
            m[r.y as usize * w + r.x0 as usize..r.y as usize * w + r.x1 as usize].fill(1);
        }
        m
    }
    /// COCO RLE of the full mask.
    pub fn to_rle(&self) -> Rle {
        Rle::from_mask(&self.to_bitmap(), self.height as usize, self.width as usize)
    }
}

/// Instance result with every kept instance's full mask (same order as the segments).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceResult {
    pub segmentation: Segmentation,
    pub masks: Vec<InstanceMask>,
}

pub fn instance(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry, params: &Params) -> Result<Segmentation> {
    Ok(instance_with_masks(logits, labels, geom, params)?.segmentation)
}

/// A query's frame-size mask and its mask score.
struct QueryMask {
    runs: Vec<RowRun>,
    score: f32,
}

/// `Σ σ·mask / (Σ mask + 1e-6)` in f32, from an f64 sum (torch sums in f32 with its own
/// reduction order; f64 keeps ours within an ulp of the exact value).
fn mask_score(sum_sig: f64, count: u64) -> f32 {
    (sum_sig as f32) / (count as f32 + 1e-6f32)
}

fn transformers_mask(mask: &[f32], mh: usize, mw: usize, fh: usize, fw: usize, ny: &[usize], nx: &[usize]) -> QueryMask {
    let s = TRANSFORMERS_SIZE;
    let mut g = vec![0.0f32; s * s];
    resize_plane(mask, mh, mw, &Taps::bilinear(mh, s), &Taps::bilinear(mw, s), &mut Vec::new(), &mut g);
    let mut sum = 0.0f64;
    let mut count = 0u64;
    for &v in &g {
        if v > 0.0 {
            sum += sigmoid(v) as f64;
            count += 1;
        }
    }
    // Runs of each source row along the frame's columns, reused by every frame row
    // that maps to it.
    let mut row_runs: Vec<Option<Vec<(u32, u32)>>> = vec![None; s];
    let mut runs = Vec::new();
    for (y, &r) in ny.iter().enumerate().take(fh) {
        let rr = row_runs[r].get_or_insert_with(|| {
            let src = &g[r * s..(r + 1) * s];
            let mut out = Vec::new();
            let mut x = 0;
            while x < fw {
                if src[nx[x]] > 0.0 {
                    let x0 = x;
                    while x < fw && src[nx[x]] > 0.0 {
                        x += 1;
                    }
                    out.push((x0 as u32, x as u32));
                } else {
                    x += 1;
                }
            }
            out
        });
        runs.extend(rr.iter().map(|&(x0, x1)| RowRun { y: y as u32, x0, x1 }));
    }
    QueryMask { runs, score: mask_score(sum, count) }
}

fn detectron2_mask(mask: &[f32], mw: usize, rows: &Taps, cols: &Taps) -> QueryMask {
    const T: usize = 16;
    let (fh, fw) = (rows.n_out, cols.n_out);
    let mut sum = 0.0f64;
    let mut count = 0u64;
    let mut runs = Vec::new();
    let mut band: Vec<Vec<(u32, u32)>> = vec![Vec::new(); T];
    let mut vals = vec![0.0f32; T * T];
    let mut tmp = Vec::new();
    let mut y0 = 0;
    while y0 < fh {
        let y1 = (y0 + T).min(fh);
        band.iter_mut().for_each(|b| b.clear());
        let (r0, r1) = rows.footprint(y0, y1);
        let mut x0 = 0;
        while x0 < fw {
            let x1 = (x0 + T).min(fw);
            let (c0, c1) = cols.footprint(x0, x1);
            let mut hi = f32::NEG_INFINITY;
            for r in r0..=r1 {
                for &v in &mask[r * mw + c0..=r * mw + c1] {
                    hi = hi.max(v);
                }
            }
            // Every sample is a convex combination: ≤ hi up to rounding.
            if hi + 8e-6 * hi.abs() + f32::MIN_POSITIVE > 0.0 {
                let (bh, bw) = (y1 - y0, x1 - x0);
                let blk = &mut vals[..bh * bw];
                eval_block(mask, mw, &rows.taps[y0..y1], &cols.taps[x0..x1], &mut tmp, blk);
                for yy in 0..bh {
                    let row = &blk[yy * bw..(yy + 1) * bw];
                    let mut x = 0;
                    while x < bw {
                        if row[x] > 0.0 {
                            let xs = x;
                            while x < bw && row[x] > 0.0 {
                                sum += sigmoid(row[x]) as f64;
                                x += 1;
                            }
                            count += (x - xs) as u64;
                            let (a, b) = ((x0 + xs) as u32, (x0 + x) as u32);
                            match band[yy].last_mut() {
                                Some(last) if last.1 == a => last.1 = b,
                                _ => band[yy].push((a, b)),
                            }
                        } else {
                            x += 1;
                        }
                    }
                }
            }
            x0 = x1;
        }
        for (yy, b) in band.iter().enumerate().take(y1 - y0) {
            runs.extend(b.iter().map(|&(a, e)| RowRun { y: (y0 + yy) as u32, x0: a, x1: e }));
        }
        y0 = y1;
    }
    QueryMask { runs, score: mask_score(sum, count) }
}

/// Instance inference returning every kept instance's full mask too.
pub fn instance_with_masks(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry, params: &Params) -> Result<InstanceResult> {
    validate(logits, labels, geom)?;
    let (nq, k1) = (logits.num_queries, logits.num_classes_plus_one);
    let kk = k1 - 1;
    let (fh, fw) = (geom.frame_height, geom.frame_width);
    let probs = class_probs(logits);
    let score_of = |i: usize| probs[(i / kk) * k1 + i % kk];
    let n_top = match geom.semantics {
        Semantics::Transformers => nq,
        Semantics::Detectron2 => params.top_k,
    }
    .min(nq * kk);
    let cmp = |a: &usize, b: &usize| score_of(*b).total_cmp(&score_of(*a)).then(a.cmp(b));
    let mut order: Vec<usize> = (0..nq * kk).collect();
    if n_top > 0 && n_top < order.len() {
        order.select_nth_unstable_by(n_top - 1, cmp);
    }
    order.truncate(n_top);
    order.sort_by(cmp);
    if geom.semantics == Semantics::Detectron2 {
        order.retain(|&i| labels[i % kk].isthing);
    }

    let thr = as_py(params.score_threshold);
    let mut needed: Vec<usize> = order.iter().filter(|&&i| score_of(i) as f64 >= thr).map(|&i| i / kk).collect();
    needed.sort_unstable();
    needed.dedup();
    check_masks_finite(logits, needed.iter().copied())?;

    let (mh, mw) = (logits.mask_height, logits.mask_width);
    let computed: Vec<QueryMask> = match geom.semantics {
        Semantics::Transformers => {
            let ny = nearest_indices(TRANSFORMERS_SIZE, fh);
            let nx = nearest_indices(TRANSFORMERS_SIZE, fw);
            needed.par_iter().map(|&q| transformers_mask(logits.mask(q), mh, mw, fh, fw, &ny, &nx)).collect()
        }
        Semantics::Detectron2 => {
            let rows = Taps::bilinear_cropped(mh, geom.input_height, geom.valid_height, fh);
            let cols = Taps::bilinear_cropped(mw, geom.input_width, geom.valid_width, fw);
            needed.par_iter().map(|&q| detectron2_mask(logits.mask(q), mw, &rows, &cols)).collect()
        }
    };
    let mask_of = |q: usize| &computed[needed.binary_search(&q).expect("mask computed for every needed query")];

    let mut ids = vec![0u32; fh * fw];
    let mut masks = Vec::new();
    let mut segments = Vec::new();
    for &i in &order {
        let cs = score_of(i);
        if (cs as f64) < thr {
            continue;
        }
        let (q, c) = (i / kk, i % kk);
        let qm = mask_of(q);
        let score = cs * qm.score;
        if qm.runs.is_empty() || (score as f64) < thr {
            continue;
        }
        let id = masks.len() as u32 + 1;
        for r in &qm.runs {
            let o = r.y as usize * fw;
            ids[o + r.x0 as usize..o + r.x1 as usize].fill(id);
        }
        let m = InstanceMask { id, query: q, label_id: c as u32, width: fw as u32, height: fh as u32, runs: qm.runs.clone() };
        let meta = SegmentMeta { id, label_id: c as u32, score };
        segments.push(make_segment(&meta, m.area(), m.bbox(), labels));
        masks.push(m);
    }
    let segmentation = Segmentation { width: fw as u32, height: fh as u32, task: Task::Instance, ids, segments };
    Ok(InstanceResult { segmentation, masks })
}
