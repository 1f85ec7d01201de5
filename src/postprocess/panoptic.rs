//! Panoptic inference.
//!
//! Both references, step by step (`k` runs over the kept queries in query order):
//!
//! 1. class probabilities `softmax(class_logits)` over all K+1 classes; each query's
//!    score and label are the maximum and its (first) index; a query is kept when its
//!    label is not no-object and `score > score_threshold` (strict);
//! 2. frame-size mask probabilities of the kept queries:
//!    * [`Semantics::Detectron2`]: logits bilinear to the network input, crop to the
//!      valid region, bilinear to the frame, sigmoid (`prob_k`);
//!    * [`Semantics::Transformers`]: logits bilinear to 384×384, sigmoid, bilinear to
//!      the frame, and then multiplied by the score *in place* (`prob_k` below is that
//!      product, which is also what the mask threshold tests);
//! 3. `ids = argmax_k(score_k · prob_k)` (ties: the first query); every pixel has a
//!    winner;
//! 4. for each kept query in order: `won = #(ids == k)`, `passed = #(prob_k ≥ mask_threshold)`:
//!    * transformers (`check_segment_validity`): kept iff `won > 0`, `passed > 0` and
//!      `won / passed > overlap_threshold` (f32 ratio, strict); its pixels are all of
//!      `ids == k`;
//!    * detectron2: its pixels are `(ids == k) & (prob_k ≥ mask_threshold)`; kept iff
//!      `won > 0`, `passed > 0`, at least one pixel, and not `won / passed <
//!      overlap_threshold` (f64 ratio);
//! 5. ids from 1 in that order; with `merge_stuff`, every query of a stuff class
//!    (`isthing == false`) after the first kept one of that class joins its segment.
//!
//! Differences from transformers, on purpose: transformers' `compute_segments` reuses the
//! merged segment's id as its running counter, so a new segment after a merge can get the
//! id of an earlier one (two segments sharing an id); here ids are always fresh
//! (detectron2's numbering). A merged stuff segment's score is the score of its first
//! query (transformers lists one entry per merged query, detectron2 none).
//! Pixels of no segment are 0 (transformers: 0, or −1 when no query is kept).
//!
//! Only the kept queries are resized, and the argmax / threshold counts come from the
//! tile engine of [`super::tiles`], which decides whole tiles from bounds and evaluates
//! pixel by pixel only where queries compete or a threshold is crossed.

use std::collections::HashMap;

use rayon::prelude::*;

use super::common::{as_py, check_masks_finite, class_probs, segments_from_stats, sigmoid, validate, SegmentMeta};
use super::tiles::{finish, Counts, Engine, Mode, PASS};
use super::upsample::{resize_plane, Taps};
use crate::backend::ImageLogits;
use crate::model::Label;
use crate::postprocess::{Geometry, Params, Semantics};
use crate::segmentation::{Segmentation, Task};
use crate::Result;

/// transformers resizes mask logits to this fixed size first ("preprocessed image size").
pub const TRANSFORMERS_SIZE: usize = 384;

/// A kept query: index, label, score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    pub q: usize,
    pub label: usize,
    pub score: f32,
}

/// Step 1: the kept queries, in query order, from the class probabilities `[Q, K+1]`.
/// Shared with the CUDA path (`crate::cuda`), which runs it on the host.
pub(crate) fn kept_queries(probs: &[f32], num_queries: usize, k1: usize, score_threshold: f32) -> Vec<Kept> {
    let no_object = k1 - 1;
    (0..num_queries)
        .filter_map(|q| {
            let row = &probs[q * k1..(q + 1) * k1];
            let (mut label, mut score) = (0, row[0]);
            for (c, &p) in row.iter().enumerate().skip(1) {
                if p > score {
                    score = p;
                    label = c;
                }
            }
            (label != no_object && score > score_threshold).then_some(Kept { q, label, score })
        })
        .collect()
}

/// Steps 4–5: which kept queries become segments, from their pixel counts. Returns the
/// id of each kept query (`0` = dropped) and the segments' metadata in id order. Shared
/// with the CUDA path, whose kernels produce the same counts.
pub(crate) fn decide_segments(kept: &[Kept], counts: &Counts, labels: &[Label], semantics: Semantics, params: &Params) -> (Vec<u32>, Vec<SegmentMeta>) {
    // Decide the segments in query order.
    let overlap = as_py(params.overlap_threshold);
    let mut lut = vec![0u32; kept.len()];
    let mut metas: Vec<SegmentMeta> = Vec::new();
    let mut stuff: HashMap<usize, usize> = HashMap::new(); // label → index in metas
    let mut next_id = 0u32;
    for (i, k) in kept.iter().enumerate() {
        let (won, passed, won_passed) = (counts.won[i], counts.passed[i], counts.won_passed[i]);
        let ok = match semantics {
            Semantics::Transformers => won > 0 && passed > 0 && (won as f32 / passed as f32) as f64 > overlap,
            Semantics::Detectron2 => won > 0 && passed > 0 && won_passed > 0 && (won as f64 / passed as f64) >= overlap,
        };
        if !ok {
            continue;
        }
        let merge = params.merge_stuff && !labels[k.label].isthing;
        if merge && let Some(&m) = stuff.get(&k.label) {
            lut[i] = metas[m].id;
            continue;
        }
        next_id += 1;
        lut[i] = next_id;
        if merge {
            stuff.insert(k.label, metas.len());
        }
        metas.push(SegmentMeta { id: next_id, label_id: k.label as u32, score: k.score });
    }
    (lut, metas)
}

pub fn panoptic(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry, params: &Params) -> Result<Segmentation> {
    validate(logits, labels, geom)?;
    let k1 = logits.num_classes_plus_one;
    let probs = class_probs(logits);
    let kept = kept_queries(&probs, logits.num_queries, k1, params.score_threshold);
    check_masks_finite(logits, kept.iter().map(|k| k.q))?;

    let (fh, fw) = (geom.frame_height, geom.frame_width);
    let mut seg = Segmentation { width: fw as u32, height: fh as u32, task: Task::Panoptic, ids: Vec::new(), segments: Vec::new() };
    if kept.is_empty() {
        seg.ids = vec![0u32; fh * fw];
        return Ok(seg);
    }
    let (mh, mw) = (logits.mask_height, logits.mask_width);
    let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();

    let (mut ids, found) = match geom.semantics {
        Semantics::Transformers => {
            let s = TRANSFORMERS_SIZE;
            let (r1, c1) = (Taps::bilinear(mh, s), Taps::bilinear(mw, s));
            let grids: Vec<Vec<f32>> = kept
                .par_iter()
                .map(|k| {
                    let mut g = vec![0.0f32; s * s];
                    resize_plane(logits.mask(k.q), mh, mw, &r1, &c1, &mut Vec::new(), &mut g);
                    g.iter_mut().for_each(|v| *v = sigmoid(*v));
                    g
                })
                .collect();
            let (rows, cols) = (Taps::bilinear(s, fh), Taps::bilinear(s, fw));
            let e = Engine {
                grids: grids.iter().map(|g| g.as_slice()).collect(),
                scores,
                rows: &rows,
                cols: &cols,
                mode: Mode::Linear,
                thr: params.mask_threshold,
            };
            e.run_alloc()
        }
        Semantics::Detectron2 => {
            let rows = Taps::bilinear_cropped(mh, geom.input_height, geom.valid_height, fh);
            let cols = Taps::bilinear_cropped(mw, geom.input_width, geom.valid_width, fw);
            let e = Engine {
                grids: kept.iter().map(|k| logits.mask(k.q)).collect(),
                scores,
                rows: &rows,
                cols: &cols,
                mode: Mode::Sigmoid,
                thr: params.mask_threshold,
            };
            e.run_alloc()
        }
    };

    let (lut, metas) = decide_segments(&kept, &found.counts, labels, geom.semantics, params);
    let whole_winner = geom.semantics == Semantics::Transformers;
    let max_id = metas.iter().map(|m| m.id).max().unwrap_or(0);
    let stats = finish(&found, &mut ids, fw, max_id, |v| {
        let i = (v & !PASS) as usize;
        if whole_winner || v & PASS != 0 { lut[i] } else { 0 }
    });
    seg.segments = segments_from_stats(&stats, &metas, labels);
    seg.ids = ids;
    Ok(seg)
}
