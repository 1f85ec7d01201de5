//! Shared pieces of the three tasks: input validation, softmax, the float conventions of
//! the references, and segment statistics from an id map.

use rayon::prelude::*;

use crate::backend::ImageLogits;
use crate::model::Label;
use crate::postprocess::Geometry;
use crate::segmentation::Segment;
use crate::{Error, Result};

/// Check that logits, labels and geometry agree, before any indexing.
pub(crate) fn validate(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if labels.is_empty() {
        return bad("no labels: the label set is empty".into());
    }
    if logits.num_classes_plus_one != labels.len() + 1 {
        return Err(Error::CardMismatch(format!(
            "logits have {} classes + no-object, the label set has {} labels",
            logits.num_classes_plus_one.saturating_sub(1),
            labels.len()
        )));
    }
    let (q, k1, h, w) = (logits.num_queries, logits.num_classes_plus_one, logits.mask_height, logits.mask_width);
    if q == 0 || h == 0 || w == 0 {
        return bad(format!("empty logits: {q} queries, masks {h}x{w}"));
    }
    if logits.class_logits.len() != q * k1 {
        return bad(format!("class logits hold {} values, expected {q}x{k1}", logits.class_logits.len()));
    }
    if logits.mask_logits.len() != q * h * w {
        return bad(format!("mask logits hold {} values, expected {q}x{h}x{w}", logits.mask_logits.len()));
    }
    if q > u16::MAX as usize {
        return bad(format!("{q} queries is more than supported ({})", u16::MAX));
    }
    let g = geom;
    if g.frame_height == 0 || g.frame_width == 0 {
        return bad(format!("zero-sized frame {}x{}", g.frame_width, g.frame_height));
    }
    if g.frame_height > 1 << 15 || g.frame_width > 1 << 15 {
        return bad(format!("frame {}x{} is larger than 32768 pixels on a side", g.frame_width, g.frame_height));
    }
    if g.input_height == 0 || g.input_width == 0 {
        return bad(format!("zero-sized network input {}x{}", g.input_width, g.input_height));
    }
    if g.valid_height == 0 || g.valid_width == 0 {
        return bad(format!("zero-sized valid region {}x{}", g.valid_width, g.valid_height));
    }
    if g.valid_height > g.input_height || g.valid_width > g.input_width {
        return bad(format!(
            "valid region {}x{} is larger than the network input {}x{}",
            g.valid_width, g.valid_height, g.input_width, g.input_height
        ));
    }
    if let Some(i) = logits.class_logits.iter().position(|v| !v.is_finite()) {
        return bad(format!("class logit {} of query {} is not finite", logits.class_logits[i], i / k1));
    }
    Ok(())
}

/// Check that the mask logits of the queries the task reads are finite (the tile
/// bounds of the post-processing assume finite values).
pub(crate) fn check_masks_finite(logits: &ImageLogits<'_>, queries: impl IntoIterator<Item = usize>) -> Result<()> {
    for q in queries {
        if let Some(v) = logits.mask(q).iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("mask logit {v} of query {q} is not finite")));
        }
    }
    Ok(())
}

/// `softmax` over one row (f32, max-subtracted, divided by the sum as torch does).
pub(crate) fn softmax(row: &[f32], out: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x - m).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Softmax of every query's class logits: `[Q, K+1]`.
pub(crate) fn class_probs(logits: &ImageLogits<'_>) -> Vec<f32> {
    let k1 = logits.num_classes_plus_one;
    let mut p = vec![0.0f32; logits.num_queries * k1];
    for q in 0..logits.num_queries {
        softmax(logits.class_row(q), &mut p[q * k1..(q + 1) * k1]);
    }
    p
}

/// `e^x` without a libm call, so that loops over it vectorize: Cephes' `expf` (range
/// reduction `x = n·ln2 + r`, degree-6 polynomial, ≤ 2 ulp), the power of two built from
/// the rounding constant's bits. Inputs are clamped to [-87, 88] (no overflow, no
/// subnormals).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // t's low bits hold n (two's complement, offset by MAGIC's mantissa 0x40_0000).
    let pow2 = f32::from_bits((t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23);
    e * pow2
}

/// `1 / (1 + e^-v)`, as every task computes it (and the tile bounds assume).
#[inline(always)]
pub(crate) fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

/// The f64 a Python float literal for this threshold holds: thresholds arrive as f32
/// from decimal text, and the references compare some quantities as Python floats
/// (`x.item() > 0.8`), so `0.8f32` must mean the double `0.8`, not `0.800000011920929`.
pub(crate) fn as_py(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

/// What a task decided for one segment id, before its pixels are counted.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub id: u32,
    pub label_id: u32,
    pub score: f32,
}

/// Area and bounds (inclusive) of one id's pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub area: u64,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

pub(crate) const EMPTY: Stats = Stats { area: 0, x0: u32::MAX, y0: u32::MAX, x1: 0, y1: 0 };

impl Stats {
    /// Add the rectangle `[x0, x1) × [y0, y1)`.
    #[inline]
    pub fn add_rect(&mut self, x0: u32, x1: u32, y0: u32, y1: u32) {
        self.area += (x1 - x0) as u64 * (y1 - y0) as u64;
        self.x0 = self.x0.min(x0);
        self.x1 = self.x1.max(x1 - 1);
        self.y0 = self.y0.min(y0);
        self.y1 = self.y1.max(y1 - 1);
    }
}

/// `(area, [x, y, w, h])` per id.
pub(crate) fn finalize(total: &[Stats]) -> Vec<(u64, [u32; 4])> {
    total
        .iter()
        .map(|s| if s.area == 0 { (0, [0; 4]) } else { (s.area, [s.x0, s.y0, s.x1 - s.x0 + 1, s.y1 - s.y0 + 1]) })
        .collect()
}

pub(crate) fn merge(a: &mut [Stats], b: &[Stats]) {
    for (s, t) in a.iter_mut().zip(b) {
        s.area += t.area;
        s.x0 = s.x0.min(t.x0);
        s.y0 = s.y0.min(t.y0);
        s.x1 = s.x1.max(t.x1);
        s.y1 = s.y1.max(t.y1);
    }
}

/// Area and tight bbox of every id `1..=max_id` of a row-major id map (parallel over
/// row bands).
#[cfg(test)]
pub(crate) fn id_stats(ids: &[u32], width: usize, max_id: u32) -> Vec<(u64, [u32; 4])> {
    let mut tmp = ids.to_vec();
    relabel_stats(&mut tmp, width, max_id, |v| v)
}

/// Replace every value `v` of a row-major map by `f(v)` and return the area and tight
/// bbox of every resulting id `1..=max_id`, in one parallel pass over row bands.
pub(crate) fn relabel_stats(ids: &mut [u32], width: usize, max_id: u32, f: impl Fn(u32) -> u32 + Sync) -> Vec<(u64, [u32; 4])> {
    let n = max_id as usize + 1;
    let rows_per = 64usize;
    let parts: Vec<Vec<Stats>> = ids
        .par_chunks_mut(width * rows_per)
        .enumerate()
        .map(|(bi, chunk)| {
            let mut st = vec![EMPTY; n];
            for (r, row) in chunk.chunks_mut(width).enumerate() {
                let y = (bi * rows_per + r) as u32;
                let mut x = 0usize;
                while x < row.len() {
                    let raw = row[x];
                    let id = f(raw);
                    let start = x;
                    while x < row.len() && row[x] == raw {
                        row[x] = id;
                        x += 1;
                    }
                    if id != 0 && (id as usize) < n {
                        let s = &mut st[id as usize];
                        s.area += (x - start) as u64;
                        s.x0 = s.x0.min(start as u32);
                        s.x1 = s.x1.max(x as u32 - 1);
                        s.y0 = s.y0.min(y);
                        s.y1 = s.y1.max(y);
                    }
                }
            }
            st
        })
        .collect();
    let mut total = vec![EMPTY; n];
    for p in &parts {
        merge(&mut total, p);
    }
    finalize(&total)
}

/// Relabel the map with `f` and build the segment list from it.
pub(crate) fn relabel_segments(ids: &mut [u32], width: usize, metas: &[SegmentMeta], labels: &[Label], f: impl Fn(u32) -> u32 + Sync) -> Vec<Segment> {
    let max_id = metas.iter().map(|m| m.id).max().unwrap_or(0);
    let stats = relabel_stats(ids, width, max_id, f);
    segments_from_stats(&stats, metas, labels)
}

pub(crate) fn segments_from_stats(stats: &[(u64, [u32; 4])], metas: &[SegmentMeta], labels: &[Label]) -> Vec<Segment> {
    metas
        .iter()
        .filter(|m| stats[m.id as usize].0 > 0)
        .map(|m| {
            let (area, bbox) = stats[m.id as usize];
            make_segment(m, area, bbox, labels)
        })
        .collect()
}

pub(crate) fn make_segment(m: &SegmentMeta, area: u64, bbox: [u32; 4], labels: &[Label]) -> Segment {
    let l = &labels[m.label_id as usize];
    Segment {
        id: m.id,
        label_id: m.label_id,
        label: l.name.clone(),
        score: m.score,
        is_thing: l.isthing,
        area,
        bbox,
        track_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_monotone() {
        let mut prev = 0.0f32;
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = exp(x);
            let want = (x as f64).exp();
            worst = worst.max(((e as f64 - want) / want).abs());
            assert!(e >= prev, "exp not monotone at {x}");
            prev = e;
            x += 0.000_37;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        // Around the reduction boundaries, ulp by ulp.
        for k in -60..60 {
            let b = (k as f32 + 0.5) * std::f32::consts::LN_2;
            let mut x = b - 64.0 * f32::EPSILON * b.abs().max(1.0);
            let mut prev = exp(x);
            for _ in 0..256 {
                x = f32::from_bits(if x >= 0.0 { x.to_bits() + 1 } else { x.to_bits() - 1 });
                let e = exp(x);
                assert!(e >= prev * (1.0 - 4.0 * f32::EPSILON), "exp drops by more than 4 ulp at {x}");
                prev = e;
            }
        }
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(100.0) == 1.0 && sigmoid(-100.0) < 1e-37);
    }

    #[test]
    fn py_floats() {
        assert_eq!(as_py(0.8), 0.8f64);
        assert_eq!(as_py(0.5), 0.5f64);
        assert_eq!(as_py(0.35), 0.35f64);
    }

    #[test]
    fn stats_of_map() {
        #[rustfmt::skip]
        let ids = vec![
            0, 1, 1, 0,
            2, 1, 0, 0,
            2, 2, 0, 3,
        ];
        let s = id_stats(&ids, 4, 3);
        assert_eq!(s[1], (3, [1, 0, 2, 2]));
        assert_eq!(s[2], (3, [0, 1, 2, 2]));
        assert_eq!(s[3], (1, [3, 2, 1, 1]));
    }
}
