//! Semantic inference.
//!
//! Per frame pixel p and class c, the references compute
//! `S_c(p) = Σ_q softmax(class_logits_q)[c] · σ(mask_q)(p)` (no-object dropped after the
//! softmax) and label p with `argmax_c S_c(p)` (ties: the lower class):
//!
//! * [`Semantics::Detectron2`]: `σ(mask_q)` is the sigmoid of the logits resized to the
//!   input, cropped to the valid region and resized to the frame
//!   (`sem_seg_postprocess` before `semantic_inference`);
//! * [`Semantics::Transformers`]: the sum is taken on the 384×384 grid
//!   (`σ(bilinear(logits → 384×384))`) and the K class maps are then resized to the frame.
//!
//! Every pixel gets a class: the segments are the classes present, `id = class + 1`.
//! A segment's `score` is the **maximum** of `S_c` over the segment's pixels (found by
//! branch and bound, exact to 1e-4), clamped to 1 (`S_c` is a sum over queries and can
//! exceed 1 where several queries predict the class).
//!
//! The sums are never formed for every class at every pixel: on a tile, each query's
//! `σ(mask_q)` lies between the values at the extremes of the source samples the tile
//! touches (bilinear weights are convex, the sigmoid is monotone), which bounds every
//! `S_c`; a class whose upper bound is below another's lower bound cannot win there.
//! Tiles (64 → 16 → 4 pixels) with one possible winner are filled; pixels are evaluated
//! only in the 4×4 tiles where classes compete, for the competing classes. The result is
//! identical to the full computation (a test checks it label for label).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::common::{check_masks_finite, class_probs, relabel_segments, sigmoid, validate, SegmentMeta};
use super::panoptic::TRANSFORMERS_SIZE;
use super::upsample::{eval_block, eval_block_at, resize_plane, Taps};
use crate::backend::ImageLogits;
use crate::model::Label;
use crate::postprocess::{Geometry, Params, Semantics};
use crate::segmentation::{Segmentation, Task};
use crate::Result;

const LEVELS: [usize; 3] = [64, 16, 4];
/// Edge of the per-pixel tiles.
const LEAF: usize = LEVELS[LEVELS.len() - 1];
/// Classes whose `Σ_q p(c|q)` is below this get no tile bounds (efficiency only).
const WEAK: f32 = 0.05;
/// Accuracy of the reported maximum score.
const SCORE_EPS: f32 = 1e-4;

pub(crate) struct Ctx<'a> {
    mode: Semantics,
    nq: usize,
    nk: usize,
    /// Class probabilities, class-major: `at[c * nq + q]`.
    at: Vec<f32>,
    /// The same, query-major: `aq[q * nk + c]`.
    aq: Vec<f32>,
    /// Per class, an upper bound of `S_c` anywhere (`Σ_q p(c|q)`, widened).
    cap: Vec<f32>,
    /// Classes by decreasing `cap` (ties: lower class first).
    order: Vec<u16>,
    /// Per query: the logits (detectron2) or the 384×384 probabilities (transformers).
    grids: Vec<&'a [f32]>,
    sw: usize,
    /// Per query and source sample, bounds of the probability any output sample built
    /// from it can take: detectron2 `σ(x ∓ m_q)` with `m_q` above the rounding error of a
    /// resize of the query's grid; transformers the probability itself.
    lo_grid: Vec<f32>,
    hi_grid: Vec<f32>,
    rows: Taps,
    cols: Taps,
    /// Relative widening of class bounds (rounding of a Q-term sum and a resize).
    delta: f32,
}

#[derive(Default)]
struct Scratch {
    plo: Vec<f32>,
    phi: Vec<f32>,
    cand: Vec<Vec<u16>>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    vals: Vec<f32>,
    s: Vec<f32>,
    g: Vec<f32>,
    tmp: Vec<f32>,
}

/// A filled tile, kept for the score search.
#[derive(Debug, Clone, Copy)]
struct Filled {
    c: u16,
    y0: u32,
    y1: u32,
    x0: u32,
    x1: u32,
    upper: f32,
}

struct BandOut {
    filled: Vec<Filled>,
    best: Vec<f32>,
}

impl<'a> Ctx<'a> {
    /// Bounds of every query's probability over an output rectangle: the extremes of
    /// the precomputed per-sample bounds over the rectangle's source footprint.
    fn query_bounds(&self, y0: usize, y1: usize, x0: usize, x1: usize, plo: &mut Vec<f32>, phi: &mut Vec<f32>) {
        let (r0, r1) = self.rows.footprint(y0, y1);
        let (c0, c1) = self.cols.footprint(x0, x1);
        let n = self.sw * self.rows.n_in;
        plo.resize(self.nq, 0.0);
        phi.resize(self.nq, 0.0);
        for q in 0..self.nq {
            let (gl, gh) = (&self.lo_grid[q * n..(q + 1) * n], &self.hi_grid[q * n..(q + 1) * n]);
            let mut lo = f32::INFINITY;
            let mut hi = f32::NEG_INFINITY;
            for r in r0..=r1 {
                let o = r * self.sw;
                for &v in &gl[o + c0..=o + c1] {
                    if v < lo {
                        lo = v;
                    }
                }
                for &v in &gh[o + c0..=o + c1] {
                    if v > hi {
                        hi = v;
                    }
                }
            }
            plo[q] = lo;
            phi[q] = hi;
        }
    }

    /// Bounds of up to 8 classes at once (independent sums, any order: the widening
    /// covers the rounding of every order).
    fn class_bounds_many(&self, cs: &[u16], plo: &[f32], phi: &[f32], lo: &mut Vec<f32>, hi: &mut Vec<f32>) {
        let m = cs.len();
        debug_assert!(m <= 8);
        let (mut l, mut h) = ([0.0f32; 8], [0.0f32; 8]);
        for q in 0..self.nq {
            let row = &self.aq[q * self.nk..(q + 1) * self.nk];
            let (pl, ph) = (plo[q], phi[q]);
            for j in 0..m {
                let a = row[cs[j] as usize];
                l[j] += a * pl;
                h[j] += a * ph;
            }
        }
        for j in 0..m {
            lo.push(l[j] * (1.0 - self.delta) - f32::MIN_POSITIVE);
            hi.push(h[j] * (1.0 + self.delta) + f32::MIN_POSITIVE);
        }
    }

    #[inline]
    fn class_bounds(&self, c: usize, plo: &[f32], phi: &[f32]) -> (f32, f32) {
        let a = &self.at[c * self.nq..(c + 1) * self.nq];
        let (mut lo, mut hi) = (0.0f32, 0.0f32);
        for q in 0..self.nq {
            lo += a[q] * plo[q];
            hi += a[q] * phi[q];
        }
        (lo * (1.0 - self.delta) - f32::MIN_POSITIVE, hi * (1.0 + self.delta) + f32::MIN_POSITIVE)
    }

    /// Exact `S_c` of `classes` on the rectangle: `out[i * npix + p]`.
    #[allow(clippy::too_many_arguments)]
    fn exact(&self, classes: &[u16], y0: usize, y1: usize, x0: usize, x1: usize, sc: &mut Scratch, out: &mut Vec<f32>) {
        let np = (y1 - y0) * (x1 - x0);
        out.clear();
        out.resize(classes.len() * np, 0.0);
        self.prepare(y0, y1, x0, x1, sc);
        for (i, &c) in classes.iter().enumerate() {
            self.class_values(c, y0, y1, x0, x1, sc, &mut out[i * np..(i + 1) * np]);
        }
    }

    /// What every class value on the rectangle needs: detectron2 `σ(mask_q)` at each
    /// pixel; transformers the window of the 384×384 probabilities the block touches.
    fn prepare(&self, y0: usize, y1: usize, x0: usize, x1: usize, sc: &mut Scratch) {
        let np = (y1 - y0) * (x1 - x0);
        let rows = &self.rows.taps[y0..y1];
        let cols = &self.cols.taps[x0..x1];
        match self.mode {
            Semantics::Detectron2 => {
                sc.s.resize(self.nq * np, 0.0);
                for q in 0..self.nq {
                    let blk = &mut sc.s[q * np..(q + 1) * np];
                    eval_block(self.grids[q], self.sw, rows, cols, &mut sc.tmp, blk);
                    blk.iter_mut().for_each(|v| *v = sigmoid(*v));
                }
            }
            Semantics::Transformers => {
                let (r0, r1) = self.rows.footprint(y0, y1);
                let (c0, c1) = self.cols.footprint(x0, x1);
                let (gh, gw) = (r1 - r0 + 1, c1 - c0 + 1);
                sc.s.resize(self.nq * gh * gw, 0.0);
                for q in 0..self.nq {
                    for r in 0..gh {
                        let src = &self.grids[q][(r0 + r) * self.sw + c0..(r0 + r) * self.sw + c1 + 1];
                        sc.s[q * gh * gw + r * gw..q * gh * gw + (r + 1) * gw].copy_from_slice(src);
                    }
                }
            }
        }
    }

    /// Exact `S_c` on the rectangle after [`Ctx::prepare`].
    #[allow(clippy::too_many_arguments)]
    fn class_values(&self, c: u16, y0: usize, y1: usize, x0: usize, x1: usize, sc: &mut Scratch, out: &mut [f32]) {
        let np = (y1 - y0) * (x1 - x0);
        let a = &self.at[c as usize * self.nq..(c as usize + 1) * self.nq];
        match self.mode {
            Semantics::Detectron2 => weighted_sum(a, &sc.s, np, out),
            Semantics::Transformers => {
                let (r0, r1) = self.rows.footprint(y0, y1);
                let (c0, c1) = self.cols.footprint(x0, x1);
                let (gh, gw) = (r1 - r0 + 1, c1 - c0 + 1);
                sc.g.resize(gh * gw, 0.0);
                weighted_sum(a, &sc.s, gh * gw, &mut sc.g);
                eval_block_at(&sc.g, gw, r0, c0, &self.rows.taps[y0..y1], &self.cols.taps[x0..x1], &mut sc.tmp, out);
            }
        }
    }

    fn run(&self, labels: &mut [u32]) -> (Vec<Filled>, Vec<f32>) {
        let (h, w) = (self.rows.n_out, self.cols.n_out);
        let band = LEVELS[0];
        let outs: Vec<BandOut> = labels
            .par_chunks_mut(band * w)
            .enumerate()
            .map(|(bi, chunk)| {
                let mut sc = Scratch { cand: vec![Vec::new(); LEVELS.len() + 1], ..Default::default() };
                let mut bo = BandOut { filled: Vec::new(), best: vec![f32::NEG_INFINITY; self.nk] };
                let y0 = bi * band;
                let y1 = (y0 + band).min(h);
                let mut x0 = 0;
                while x0 < w {
                    let x1 = (x0 + band).min(w);
                    sc.cand[0].clear();
                    sc.cand[0].extend_from_slice(&self.order);
                    self.region(&mut sc, &mut bo, 0, y0, y1, x0, x1, chunk, y0);
                    x0 = x1;
                }
                bo
            })
            .collect();
        let mut filled = Vec::new();
        let mut best = vec![f32::NEG_INFINITY; self.nk];
        for o in outs {
            filled.extend(o.filled);
            for (b, v) in best.iter_mut().zip(o.best) {
                *b = b.max(v);
            }
        }
        (filled, best)
    }

    #[allow(clippy::too_many_arguments)]
    fn region(&self, sc: &mut Scratch, bo: &mut BandOut, lvl: usize, y0: usize, y1: usize, x0: usize, x1: usize, out: &mut [u32], band_y0: usize) {
        let w = self.cols.n_out;
        let cand = std::mem::take(&mut sc.cand[lvl]);
        let mut next = std::mem::take(&mut sc.cand[lvl + 1]);
        next.clear();
        let mut upper = f32::INFINITY;
        if cand.len() == 1 {
            next.push(cand[0]);
        } else {
            let (mut plo, mut phi) = (std::mem::take(&mut sc.plo), std::mem::take(&mut sc.phi));
            self.query_bounds(y0, y1, x0, x1, &mut plo, &mut phi);
            sc.lo.clear();
            sc.hi.clear();
            // Candidates come by decreasing cap: once a cap is below the best lower
            // bound, that class and all after it cannot win.
            // Bounds only for classes whose cap reaches `WEAK`: the weak ones stay
            // candidates with their cap as upper bound where the best lower bound is
            // below it (near boundaries), for the per-pixel step to prune.
            let mut l = f32::NEG_INFINITY;
            let mut i = 0;
            while i < cand.len() && self.cap[cand[i] as usize] >= l.max(WEAK) {
                let e = (i + 8).min(cand.len());
                self.class_bounds_many(&cand[i..e], &plo, &phi, &mut sc.lo, &mut sc.hi);
                l = sc.lo[i..e].iter().copied().fold(l, f32::max);
                i = e;
            }
            for (i, &c) in cand.iter().enumerate() {
                let hi = if i < sc.hi.len() { sc.hi[i] } else { self.cap[c as usize] };
                if hi >= l {
                    next.push(c);
                }
            }
            if next.len() == 1 {
                upper = cand.iter().position(|&c| c == next[0]).and_then(|i| sc.hi.get(i).copied()).unwrap_or(f32::INFINITY);
            }
            sc.plo = plo;
            sc.phi = phi;
        }

        if next.len() == 1 {
            let c = next[0];
            for y in y0..y1 {
                let r = (y - band_y0) * w;
                out[r + x0..r + x1].fill(c as u32);
            }
            if upper == f32::INFINITY {
                // Decided at a parent level: take this tile's own bound.
                let (mut plo, mut phi) = (std::mem::take(&mut sc.plo), std::mem::take(&mut sc.phi));
                self.query_bounds(y0, y1, x0, x1, &mut plo, &mut phi);
                upper = self.class_bounds(c as usize, &plo, &phi).1;
                sc.plo = plo;
                sc.phi = phi;
            }
            bo.filled.push(Filled { c, y0: y0 as u32, y1: y1 as u32, x0: x0 as u32, x1: x1 as u32, upper });
        } else if lvl + 1 < LEVELS.len() {
            sc.cand[lvl + 1] = next;
            let step = LEVELS[lvl + 1];
            for (yy, ye, xx, xe) in super::tiles::subtiles(y0, y1, x0, x1, step) {
                self.region(sc, bo, lvl + 1, yy, ye, xx, xe, out, band_y0);
            }
            next = std::mem::take(&mut sc.cand[lvl + 1]);
        } else {
            // Per pixel, classes by decreasing cap; stop once the next cap is below
            // every pixel's best value so far (no later class can reach it).
            let mut vals = std::mem::take(&mut sc.vals);
            let (bh, bw) = (y1 - y0, x1 - x0);
            let np = bh * bw;
            self.prepare(y0, y1, x0, x1, sc);
            vals.resize(np, 0.0);
            let mut best = [f32::NEG_INFINITY; LEAF * LEAF];
            let mut win = [u16::MAX; LEAF * LEAF];
            for &c in &next {
                let floor = best[..np].iter().copied().fold(f32::INFINITY, f32::min);
                if self.cap[c as usize] < floor {
                    break;
                }
                self.class_values(c, y0, y1, x0, x1, sc, &mut vals[..np]);
                for p in 0..np {
                    let v = vals[p];
                    // Ties go to the lower class (candidates are not in class order).
                    if v > best[p] || (v == best[p] && c < win[p]) {
                        best[p] = v;
                        win[p] = c;
                    }
                }
            }
            for p in 0..np {
                let c = win[p];
                bo.best[c as usize] = bo.best[c as usize].max(best[p]);
                out[(y0 + p / bw - band_y0) * w + x0 + p % bw] = c as u32;
            }
            sc.vals = vals;
        }
        sc.cand[lvl] = cand;
        sc.cand[lvl + 1] = next;
    }

    /// Maximum of `S_c` over the filled tiles of class `c`, starting from `best` (the
    /// maximum over its per-pixel evaluated pixels): branch and bound on tile bounds.
    fn max_score(&self, c: u16, tiles: &[Filled], mut best: f32) -> f32 {
        #[derive(PartialEq)]
        struct Item(f32, [u32; 4]);
        impl Eq for Item {}
        impl PartialOrd for Item {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Item {
            fn cmp(&self, o: &Self) -> Ordering {
                self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
            }
        }
        let mut heap: BinaryHeap<Item> = tiles.iter().map(|t| Item(t.upper, [t.y0, t.y1, t.x0, t.x1])).collect();
        let mut sc = Scratch::default();
        let mut vals = Vec::new();
        let (mut plo, mut phi) = (Vec::new(), Vec::new());
        while let Some(Item(u, [y0, y1, x0, x1])) = heap.pop() {
            if u <= best + SCORE_EPS {
                break;
            }
            let (y0, y1, x0, x1) = (y0 as usize, y1 as usize, x0 as usize, x1 as usize);
            if (y1 - y0) * (x1 - x0) <= 16 {
                self.exact(&[c], y0, y1, x0, x1, &mut sc, &mut vals);
                best = vals.iter().copied().fold(best, f32::max);
                continue;
            }
            let (ym, xm) = ((y0 + y1).div_ceil(2), (x0 + x1).div_ceil(2));
            for (a, b) in [(y0, ym), (ym, y1)] {
                for (d, e) in [(x0, xm), (xm, x1)] {
                    if a < b && d < e {
                        self.query_bounds(a, b, d, e, &mut plo, &mut phi);
                        let up = self.class_bounds(c as usize, &plo, &phi).1;
                        heap.push(Item(up, [a as u32, b as u32, d as u32, e as u32]));
                    }
                }
            }
        }
        best
    }
}

/// `out[p] = Σ_q a[q] · s[q * n + p]`, q in order (first product, then `+=`).
#[inline]
fn weighted_sum(a: &[f32], s: &[f32], n: usize, out: &mut [f32]) {
    let out = &mut out[..n];
    let s0 = &s[..n];
    for p in 0..n {
        out[p] = a[0] * s0[p];
    }
    for (q, &aq) in a.iter().enumerate().skip(1) {
        let sq = &s[q * n..(q + 1) * n];
        for p in 0..n {
            out[p] += aq * sq[p];
        }
    }
}

pub fn semantic(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry, _params: &Params) -> Result<Segmentation> {
    validate(logits, labels, geom)?;
    check_masks_finite(logits, 0..logits.num_queries)?;
    let (nq, k1) = (logits.num_queries, logits.num_classes_plus_one);
    let nk = k1 - 1;
    let probs = class_probs(logits);
    let mut at = vec![0.0f32; nk * nq];
    for q in 0..nq {
        for c in 0..nk {
            at[c * nq + q] = probs[q * k1 + c];
        }
    }
    let (fh, fw) = (geom.frame_height, geom.frame_width);
    let (mh, mw) = (logits.mask_height, logits.mask_width);
    let s = TRANSFORMERS_SIZE;
    let owned: Vec<Vec<f32>> = match geom.semantics {
        Semantics::Detectron2 => Vec::new(),
        Semantics::Transformers => {
            let (r1, c1) = (Taps::bilinear(mh, s), Taps::bilinear(mw, s));
            (0..nq)
                .into_par_iter()
                .map(|q| {
                    let mut g = vec![0.0f32; s * s];
                    resize_plane(logits.mask(q), mh, mw, &r1, &c1, &mut Vec::new(), &mut g);
                    g.iter_mut().for_each(|v| *v = sigmoid(*v));
                    g
                })
                .collect()
        }
    };
    let delta = 2.0 * nq as f32 * f32::EPSILON + 2e-5;
    let aq: Vec<f32> = (0..nq).flat_map(|q| (0..nk).map(move |c| (q, c))).map(|(q, c)| probs[q * k1 + c]).collect();
    let cap: Vec<f32> = (0..nk).map(|c| at[c * nq..(c + 1) * nq].iter().sum::<f32>() * (1.0 + 2.0 * delta) + f32::MIN_POSITIVE).collect();
    let mut order: Vec<u16> = (0..nk as u16).collect();
    order.sort_by(|&a, &b| cap[b as usize].total_cmp(&cap[a as usize]).then(a.cmp(&b)));
    let (lo_grid, hi_grid) = match geom.semantics {
        Semantics::Detectron2 => {
            let per: Vec<(Vec<f32>, Vec<f32>)> = (0..nq)
                .into_par_iter()
                .map(|q| {
                    let g = logits.mask(q);
                    let m = 8e-6 * g.iter().fold(0.0f32, |a, v| a.max(v.abs())) + f32::MIN_POSITIVE;
                    (g.iter().map(|&v| sigmoid(v - m)).collect(), g.iter().map(|&v| sigmoid(v + m)).collect())
                })
                .collect();
            (per.iter().flat_map(|p| p.0.iter().copied()).collect(), per.iter().flat_map(|p| p.1.iter().copied()).collect())
        }
        Semantics::Transformers => {
            let all: Vec<f32> = owned.iter().flat_map(|g| g.iter().copied()).collect();
            (all.clone(), all)
        }
    };
    let ctx = match geom.semantics {
        Semantics::Detectron2 => Ctx {
            mode: geom.semantics,
            nq,
            nk,
            at,
            aq,
            cap,
            order,
            grids: (0..nq).map(|q| logits.mask(q)).collect(),
            sw: mw,
            lo_grid,
            hi_grid,
            rows: Taps::bilinear_cropped(mh, geom.input_height, geom.valid_height, fh),
            cols: Taps::bilinear_cropped(mw, geom.input_width, geom.valid_width, fw),
            delta,
        },
        Semantics::Transformers => Ctx {
            mode: geom.semantics,
            nq,
            nk,
            at,
            aq,
            cap,
            order,
            grids: owned.iter().map(|g| g.as_slice()).collect(),
            sw: s,
            lo_grid,
            hi_grid,
            rows: Taps::bilinear(s, fh),
            cols: Taps::bilinear(s, fw),
            delta,
        },
    };
    let mut ids = vec![0u32; fh * fw];
    let (filled, best) = ctx.run(&mut ids);

    let mut present = vec![false; nk];
    for t in &filled {
        present[t.c as usize] = true;
    }
    for (c, b) in best.iter().enumerate() {
        if *b > f32::NEG_INFINITY {
            present[c] = true;
        }
    }
    let classes: Vec<usize> = (0..nk).filter(|&c| present[c]).collect();
    let metas: Vec<SegmentMeta> = classes
        .par_iter()
        .map(|&c| {
            let tiles: Vec<Filled> = filled.iter().filter(|t| t.c as usize == c).copied().collect();
            let score = ctx.max_score(c as u16, &tiles, best[c]);
            SegmentMeta { id: c as u32 + 1, label_id: c as u32, score: score.clamp(0.0, 1.0) }
        })
        .collect();
    let segments = relabel_segments(&mut ids, fw, &metas, labels, |v| v + 1);
    Ok(Segmentation { width: fw as u32, height: fh as u32, task: Task::Semantic, ids, segments })
}

/// Reference: every class at every pixel, same arithmetic (tests). Returns the id map
/// and each class's maximum over its pixels.
#[cfg(test)]
pub(crate) fn brute_force(logits: &ImageLogits<'_>, geom: &Geometry) -> (Vec<u32>, Vec<f32>) {
    let (nq, k1) = (logits.num_queries, logits.num_classes_plus_one);
    let nk = k1 - 1;
    let probs = class_probs(logits);
    let (fh, fw) = (geom.frame_height, geom.frame_width);
    let (mh, mw) = (logits.mask_height, logits.mask_width);
    let np = fh * fw;
    let mut classes = vec![0.0f32; nk * np];
    match geom.semantics {
        Semantics::Detectron2 => {
            let rows = Taps::bilinear_cropped(mh, geom.input_height, geom.valid_height, fh);
            let cols = Taps::bilinear_cropped(mw, geom.input_width, geom.valid_width, fw);
            let mut s = vec![0.0f32; nq * np];
            for q in 0..nq {
                resize_plane(logits.mask(q), mh, mw, &rows, &cols, &mut Vec::new(), &mut s[q * np..(q + 1) * np]);
            }
            s.iter_mut().for_each(|v| *v = sigmoid(*v));
            for c in 0..nk {
                let a: Vec<f32> = (0..nq).map(|q| probs[q * k1 + c]).collect();
                weighted_sum(&a, &s, np, &mut classes[c * np..(c + 1) * np]);
            }
        }
        Semantics::Transformers => {
            let g = TRANSFORMERS_SIZE;
            let (r1, c1) = (Taps::bilinear(mh, g), Taps::bilinear(mw, g));
            let mut p = vec![0.0f32; nq * g * g];
            for q in 0..nq {
                resize_plane(logits.mask(q), mh, mw, &r1, &c1, &mut Vec::new(), &mut p[q * g * g..(q + 1) * g * g]);
            }
            p.iter_mut().for_each(|v| *v = sigmoid(*v));
            let (rows, cols) = (Taps::bilinear(g, fh), Taps::bilinear(g, fw));
            let mut sg = vec![0.0f32; g * g];
            for c in 0..nk {
                let a: Vec<f32> = (0..nq).map(|q| probs[q * k1 + c]).collect();
                weighted_sum(&a, &p, g * g, &mut sg);
                resize_plane(&sg, g, g, &rows, &cols, &mut Vec::new(), &mut classes[c * np..(c + 1) * np]);
            }
        }
    }
    let mut maxes = vec![f32::NEG_INFINITY; nk];
    let ids = (0..np)
        .map(|p| {
            let (mut wc, mut best) = (0, classes[p]);
            for c in 1..nk {
                if classes[c * np + p] > best {
                    best = classes[c * np + p];
                    wc = c;
                }
            }
            maxes[wc] = maxes[wc].max(best);
            wc as u32 + 1
        })
        .collect();
    (ids, maxes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::tiles::tests::blobs;

    pub(crate) fn labels(k: usize) -> Vec<Label> {
        (0..k).map(|i| Label { id: i as u32, name: format!("c{i}"), isthing: i % 2 == 0, color: [0, 0, 0] }).collect()
    }

    fn class_logits(q: usize, k1: usize, seed: u64) -> Vec<f32> {
        let mut st = seed;
        (0..q * k1)
            .map(|_| {
                st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((st >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
            })
            .collect()
    }

    fn check(semantics: Semantics, geom: Geometry, q: usize, k: usize, mh: usize, mw: usize, seed: u64) {
        let masks = blobs(q, mh, mw, seed);
        let cls = class_logits(q, k + 1, seed + 1);
        let l = Logits { batch: 1, num_queries: q, num_classes_plus_one: k + 1, mask_height: mh, mask_width: mw, class_logits: cls, mask_logits: masks };
        let geom = Geometry { semantics, ..geom };
        let seg = semantic(&l.image(0).unwrap(), &labels(k), &geom, &Params::default()).unwrap();
        let (ids, maxes) = brute_force(&l.image(0).unwrap(), &geom);
        let diff = seg.ids.iter().zip(&ids).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{diff} pixels differ from the full computation");
        assert!(seg.segments.len() >= 2, "test data should give several classes");
        for s in &seg.segments {
            let want = maxes[s.label_id as usize].clamp(0.0, 1.0);
            assert!((s.score - want).abs() <= 1.01e-4, "class {}: score {} vs max {}", s.label_id, s.score, want);
            assert_eq!(s.id, s.label_id + 1);
        }
        let total: u64 = seg.segments.iter().map(|s| s.area).sum();
        assert_eq!(total as usize, ids.len());
    }

    use crate::backend::Logits;

    #[test]
    fn detectron2_equals_full_computation() {
        let geom = Geometry { input_height: 96, input_width: 128, valid_height: 80, valid_width: 128, frame_height: 170, frame_width: 263, semantics: Semantics::Detectron2 };
        check(Semantics::Detectron2, geom, 10, 6, 24, 32, 5);
    }

    #[test]
    fn mostly_no_object_queries_equal_full_computation() {
        // Most queries predict no-object: most classes are "weak" (tiny Σ_q p(c|q)) and
        // only the per-pixel step can rule them out near boundaries.
        let (q, k, mh, mw) = (14, 9, 20, 24);
        let masks = blobs(q, mh, mw, 21);
        let mut cls = class_logits(q, k + 1, 22);
        for i in 0..q {
            if i % 3 != 0 {
                cls[i * (k + 1) + k] = 9.0;
            } else {
                cls[i * (k + 1) + (i * 5) % k] = 8.0;
            }
        }
        let l = Logits { batch: 1, num_queries: q, num_classes_plus_one: k + 1, mask_height: mh, mask_width: mw, class_logits: cls, mask_logits: masks };
        for semantics in [Semantics::Detectron2, Semantics::Transformers] {
            let geom = Geometry { input_height: 80, input_width: 96, valid_height: 72, valid_width: 96, frame_height: 133, frame_width: 197, semantics };
            let seg = semantic(&l.image(0).unwrap(), &labels(k), &geom, &Params::default()).unwrap();
            let (ids, _) = brute_force(&l.image(0).unwrap(), &geom);
            let diff = seg.ids.iter().zip(&ids).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "{semantics:?}: {diff} pixels differ from the full computation");
        }
    }

    #[test]
    fn transformers_equals_full_computation() {
        let geom = Geometry { input_height: 64, input_width: 64, valid_height: 64, valid_width: 64, frame_height: 150, frame_width: 211, semantics: Semantics::Transformers };
        check(Semantics::Transformers, geom, 7, 4, 16, 16, 9);
    }
}
