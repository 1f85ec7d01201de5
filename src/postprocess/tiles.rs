//! The panoptic argmax engine: which kept query wins each frame pixel, and how many
//! pixels pass each query's mask threshold — without evaluating every query at every
//! pixel.
//!
//! Every query's frame-size map is a bilinear resize of a small source grid (the mask
//! logits, or transformers' 384×384 probabilities). Bilinear weights are convex, so on a
//! tile of output pixels a query's value lies between the minimum and the maximum of the
//! source samples the tile's taps touch (widened by a bound on the rounding error). With
//! those bounds per tile:
//!
//! * a query whose upper bound is below another query's lower bound never wins there;
//!   when one candidate is left, the whole tile is its;
//! * a query whose lower bound passes the threshold passes at every pixel, one whose
//!   upper bound fails fails at every pixel.
//!
//! Undecided tiles are split (128 → 32 → 8 pixels), and at the last level evaluated pixel by
//! pixel, for the undecided queries only, with the same arithmetic as a full resize
//! ([`super::upsample::eval_block`]). The result is identical to evaluating every query
//! at every pixel (a test checks it bit for bit).

use rayon::prelude::*;

use super::common::{finalize, merge, sigmoid, Stats, EMPTY};
use super::upsample::{eval_block, Tap, Taps};

/// How a query's interpolated sample `v` becomes the value the argmax compares and the
/// quantity the mask threshold tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// transformers: `v` is a probability; value `v·score`, passes if `v·score ≥ thr`.
    Linear,
    /// detectron2: `v` is a logit; value `score·σ(v)`, passes if `σ(v) ≥ thr`.
    Sigmoid,
}

/// Bit set in a label when the winning query passes its threshold at that pixel.
pub(crate) const PASS: u32 = 1 << 31;

pub(crate) struct Engine<'a> {
    /// Source grid of each kept query (row-major, `rows.n_in × cols.n_in`).
    pub grids: Vec<&'a [f32]>,
    pub scores: Vec<f32>,
    pub rows: &'a Taps,
    pub cols: &'a Taps,
    pub mode: Mode,
    pub thr: f32,
}

/// A rectangle of the frame decided by the engine: every pixel holds `code` (a kept
/// query's index, `| PASS` where it passes), or, for [`Patch::PER_PIXEL`], the codes were
/// written pixel by pixel into the label map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Patch {
    pub y0: u32,
    pub y1: u32,
    pub x0: u32,
    pub x1: u32,
    pub code: u32,
}

impl Patch {
    pub const PER_PIXEL: u32 = u32::MAX;
}

/// What [`Engine::run_alloc`] found: counts, and per band of [`BAND`] rows the patches that
/// cover it.
pub(crate) struct Found {
    pub counts: Counts,
    pub patches: Vec<Vec<Patch>>,
}

/// Rows per band of the label map (the top tile size).
pub(crate) const BAND: usize = LEVELS[0];

/// Per-query pixel counts of the frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    /// Pixels where the query wins the argmax.
    pub won: Vec<u64>,
    /// Pixels where the query passes the threshold.
    pub passed: Vec<u64>,
    /// Pixels where the query wins and passes.
    pub won_passed: Vec<u64>,
}

impl Counts {
    pub(crate) fn new(n: usize) -> Self {
        Counts { won: vec![0; n], passed: vec![0; n], won_passed: vec![0; n] }
    }
    fn add(&mut self, o: &Counts) {
        for (a, b) in [(&mut self.won, &o.won), (&mut self.passed, &o.passed), (&mut self.won_passed, &o.won_passed)] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// Tile edge per level; the last level is evaluated per pixel.
const LEVELS: [usize; 3] = [128, 32, 8];
/// Edge of the per-pixel tiles.
const LEAF: usize = LEVELS[LEVELS.len() - 1];

const ALL: u8 = 0;
const NONE: u8 = 1;
const MIXED: u8 = 2;

struct Scratch {
    cand: Vec<Vec<u16>>,
    mixed: Vec<Vec<u16>>,
    status: Vec<Vec<u8>>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    stamp: Vec<u32>,
    tick: u32,
    vals: Vec<f32>,
    tmp: Vec<f32>,
    active: Vec<u16>,
    counts: Counts,
    patches: Vec<Patch>,
}

/// The `step`-sized sub-tiles `(y0, y1, x0, x1)` of a tile, row by row (edge tiles clipped).
pub(crate) fn subtiles(y0: usize, y1: usize, x0: usize, x1: usize, step: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (y0..y1).step_by(step).flat_map(move |yy| (x0..x1).step_by(step).map(move |xx| (yy, (yy + step).min(y1), xx, (xx + step).min(x1))))
}

/// Widen `[lo, hi]` by more than the rounding error a resize can add (a few ulps of the
/// largest magnitude involved), so that every computed sample lies inside.
#[inline]
fn widen(lo: f32, hi: f32) -> (f32, f32) {
    let m = 8e-6 * lo.abs().max(hi.abs()) + f32::MIN_POSITIVE;
    (lo - m, hi + m)
}

impl<'a> Engine<'a> {
    #[inline(always)]
    fn prob(&self, v: f32) -> f32 {
        match self.mode {
            Mode::Linear => v,
            Mode::Sigmoid => sigmoid(v),
        }
    }
    #[inline(always)]
    fn passes(&self, k: usize, p: f32) -> bool {
        match self.mode {
            Mode::Linear => p * self.scores[k] >= self.thr,
            Mode::Sigmoid => p >= self.thr,
        }
    }

    /// Run over the whole frame. Tiles decided whole are returned as patches (their
    /// pixels in `labels` are left untouched); the pixels of the others are written into
    /// `labels` (`frame_h × frame_w`): the winning kept query's index, `| PASS` where it
    /// passes.
    #[cfg(test)]
    pub fn run(&self, labels: &mut [u32]) -> Found {
        let (h, w) = (self.rows.n_out, self.cols.n_out);
        assert_eq!(labels.len(), h * w);
        let parts: Vec<(Counts, Vec<Patch>)> =
            labels.par_chunks_mut(BAND * w).enumerate().map(|(bi, chunk)| self.band(bi, chunk)).collect();
        self.gather(parts)
    }

    /// [`Engine::run`] on a label map of its own, returned with the result: each band is
    /// zeroed by the thread that then works on it (in parallel, and in its cache) instead
    /// of the whole map up front.
    pub fn run_alloc(&self) -> (Vec<u32>, Found) {
        let (h, w) = (self.rows.n_out, self.cols.n_out);
        let n = h * w;
        let mut labels: Vec<u32> = Vec::with_capacity(n);
        let parts: Vec<(Counts, Vec<Patch>)> = labels.spare_capacity_mut()[..n]
            .par_chunks_mut(BAND * w)
            .enumerate()
            .map(|(bi, chunk)| {
                chunk.fill(std::mem::MaybeUninit::new(0));
                // SAFETY: every element of `chunk` was initialized on the line above, and
                // `MaybeUninit<u32>` has the layout of `u32`.
                let chunk = unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<u32>(), chunk.len()) };
                self.band(bi, chunk)
            })
            .collect();
        // SAFETY: the chunks above cover exactly the first `n` elements of the spare
        // capacity, and each chunk was fully initialized before any other use.
        unsafe { labels.set_len(n) };
        (labels, self.gather(parts))
    }

    /// One band of [`BAND`] rows (`chunk`, band `bi`): its counts and patches.
    fn band(&self, bi: usize, chunk: &mut [u32]) -> (Counts, Vec<Patch>) {
        let n = self.grids.len();
        assert!(n > 0);
        let (h, w) = (self.rows.n_out, self.cols.n_out);
        let band = BAND;
        let mut s = Scratch {
            cand: vec![Vec::new(); LEVELS.len() + 1],
            mixed: vec![Vec::new(); LEVELS.len() + 1],
            status: vec![vec![MIXED; n]; LEVELS.len() + 1],
            lo: vec![0.0; n],
            hi: vec![0.0; n],
            stamp: vec![u32::MAX; n],
            tick: 0,
            vals: Vec::new(),
            tmp: Vec::new(),
            active: Vec::new(),
            counts: Counts::new(n),
            patches: Vec::new(),
        };
        let y0 = bi * band;
        let y1 = (y0 + band).min(h);
        let mut x0 = 0;
        while x0 < w {
            let x1 = (x0 + band).min(w);
            s.cand[0].clear();
            s.cand[0].extend(0..n as u16);
            s.mixed[0].clear();
            s.mixed[0].extend(0..n as u16);
            s.status[0].iter_mut().for_each(|v| *v = MIXED);
            self.region(&mut s, 0, y0, y1, x0, x1, chunk, y0);
            x0 = x1;
        }
        (s.counts, s.patches)
    }

    fn gather(&self, parts: Vec<(Counts, Vec<Patch>)>) -> Found {
        let mut counts = Counts::new(self.grids.len());
        let mut patches = Vec::with_capacity(parts.len());
        for (c, p) in parts {
            counts.add(&c);
            patches.push(p);
        }
        Found { counts, patches }
    }

    /// Write the patches' codes into the label map (tests, debugging).
    #[cfg(test)]
    pub fn paint(&self, found: &Found, labels: &mut [u32]) {
        let w = self.cols.n_out;
        for p in found.patches.iter().flatten() {
            if p.code != Patch::PER_PIXEL {
                for y in p.y0 as usize..p.y1 as usize {
                    labels[y * w + p.x0 as usize..y * w + p.x1 as usize].fill(p.code);
                }
            }
        }
    }

    /// Bounds (v-space, widened) of query `k` over the source footprint `[r0, r1] × [c0, c1]`.
    #[inline]
    fn bounds(&self, k: usize, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) -> (f32, f32) {
        let sw = self.cols.n_in;
        let g = self.grids[k];
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for r in r0..=r1 {
            for &v in &g[r * sw + c0..=r * sw + c1] {
                if v < lo {
                    lo = v;
                }
                if v > hi {
                    hi = v;
                }
            }
        }
        widen(lo, hi)
    }

    #[allow(clippy::too_many_arguments)]
    fn region(&self, s: &mut Scratch, lvl: usize, y0: usize, y1: usize, x0: usize, x1: usize, out: &mut [u32], band_y0: usize) {
        let w = self.cols.n_out;
        let npix = ((y1 - y0) * (x1 - x0)) as u64;
        let cand = std::mem::take(&mut s.cand[lvl]);
        let mixed = std::mem::take(&mut s.mixed[lvl]);
        let mut status = std::mem::take(&mut s.status[lvl + 1]);
        status.copy_from_slice(&s.status[lvl]);
        s.tick = s.tick.wrapping_add(1);
        let tick = s.tick;

        // Bounds of every query still in play, loosened by a few ulps in the value
        // space too (the sigmoid is monotone only up to its rounding).
        let fr = self.rows.footprint(y0, y1);
        let fc = self.cols.footprint(x0, x1);
        for &k in cand.iter().chain(mixed.iter()) {
            let k = k as usize;
            if s.stamp[k] != tick {
                let (lo, hi) = self.bounds(k, fr, fc);
                let (plo, phi) = (self.prob(lo), self.prob(hi));
                s.lo[k] = plo - plo.abs() * 1e-6;
                s.hi[k] = phi + phi.abs() * 1e-6;
                s.stamp[k] = tick;
            }
        }
        // Threshold decided for the whole tile?
        let mut mixed_next = std::mem::take(&mut s.mixed[lvl + 1]);
        mixed_next.clear();
        for &k in &mixed {
            let ku = k as usize;
            if self.passes(ku, s.lo[ku]) {
                status[ku] = ALL;
                s.counts.passed[ku] += npix;
            } else if !self.passes(ku, s.hi[ku]) {
                status[ku] = NONE;
            } else {
                mixed_next.push(k);
            }
        }
        // Candidates for the argmax.
        let mut cand_next = std::mem::take(&mut s.cand[lvl + 1]);
        cand_next.clear();
        if cand.len() == 1 {
            cand_next.push(cand[0]);
        } else {
            let l = cand.iter().map(|&k| s.lo[k as usize] * self.scores[k as usize]).fold(f32::NEG_INFINITY, f32::max);
            cand_next.extend(cand.iter().copied().filter(|&k| s.hi[k as usize] * self.scores[k as usize] >= l));
        }

        if cand_next.len() == 1 && mixed_next.is_empty() {
            // Decided tile: one possible winner, every threshold known.
            let k = cand_next[0] as usize;
            self.fill(s, k, status[k], y0, y1, x0, x1, npix);
            s.cand[lvl] = cand;
            s.mixed[lvl] = mixed;
            s.status[lvl + 1] = status;
            s.cand[lvl + 1] = cand_next;
            s.mixed[lvl + 1] = mixed_next;
            return;
        }

        if lvl + 1 < LEVELS.len() {
            // Split.
            s.status[lvl + 1] = status;
            s.cand[lvl + 1] = cand_next;
            s.mixed[lvl + 1] = mixed_next;
            let step = LEVELS[lvl + 1];
            for (yy, ye, xx, xe) in subtiles(y0, y1, x0, x1, step) {
                self.region(s, lvl + 1, yy, ye, xx, xe, out, band_y0);
            }
        } else {
            self.leaf(s, &cand_next, &mixed_next, &status, y0, y1, x0, x1, out, band_y0, w);
            s.status[lvl + 1] = status;
            s.cand[lvl + 1] = cand_next;
            s.mixed[lvl + 1] = mixed_next;
        }
        s.cand[lvl] = cand;
        s.mixed[lvl] = mixed;
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(&self, s: &mut Scratch, k: usize, st: u8, y0: usize, y1: usize, x0: usize, x1: usize, npix: u64) {
        let code = k as u32 | if st == ALL { PASS } else { 0 };
        s.patches.push(Patch { y0: y0 as u32, y1: y1 as u32, x0: x0 as u32, x1: x1 as u32, code });
        s.counts.won[k] += npix;
        if st == ALL {
            s.counts.won_passed[k] += npix;
        }
    }

    /// Per-pixel evaluation of the undecided queries of one tile.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    fn leaf(&self, s: &mut Scratch, cand: &[u16], mixed: &[u16], status: &[u8], y0: usize, y1: usize, x0: usize, x1: usize, out: &mut [u32], band_y0: usize, w: usize) {
        let (bh, bw) = (y1 - y0, x1 - x0);
        let np = bh * bw;
        // Queries to evaluate: the candidates (argmax) and the undecided thresholds,
        // plus the winner when only its threshold is undecided.
        let mut active = std::mem::take(&mut s.active);
        active.clear();
        active.extend_from_slice(cand);
        active.extend_from_slice(mixed);
        active.sort_unstable();
        active.dedup();
        if s.vals.len() < active.len() * np {
            s.vals.resize(active.len() * np, 0.0);
        }
        let rows: &[Tap] = &self.rows.taps[y0..y1];
        let cols: &[Tap] = &self.cols.taps[x0..x1];
        for (i, &k) in active.iter().enumerate() {
            let blk = &mut s.vals[i * np..(i + 1) * np];
            eval_block(self.grids[k as usize], self.cols.n_in, rows, cols, &mut s.tmp, blk);
            if self.mode == Mode::Sigmoid {
                for v in blk.iter_mut() {
                    *v = sigmoid(*v);
                }
            }
        }
        let slot = |k: u16| active.binary_search(&k).unwrap_or(usize::MAX);
        // Threshold counts of the undecided queries.
        for &k in mixed {
            let (k, sl) = (k as usize, slot(k));
            let v = &s.vals[sl * np..(sl + 1) * np];
            s.counts.passed[k] += v.iter().filter(|&&p| self.passes(k, p)).count() as u64;
        }
        // Argmax over the candidates, candidate by candidate (ties: the first).
        let mut win = [0u16; LEAF * LEAF];
        let mut best = [0.0f32; LEAF * LEAF];
        let (win, best) = (&mut win[..np], &mut best[..np]);
        let (k0, sl0) = (cand[0] as usize, slot(cand[0]));
        let sc0 = self.scores[k0];
        for (b, &v) in best.iter_mut().zip(&s.vals[sl0 * np..(sl0 + 1) * np]) {
            *b = v * sc0;
        }
        for (ci, &k) in cand.iter().enumerate().skip(1) {
            let (sc, sl) = (self.scores[k as usize], slot(k));
            let v = &s.vals[sl * np..(sl + 1) * np];
            for p in 0..np {
                let x = v[p] * sc;
                let gt = x > best[p];
                best[p] = if gt { x } else { best[p] };
                win[p] = if gt { ci as u16 } else { win[p] };
            }
        }
        // Codes and counts per candidate.
        let mut codes = [0u32; LEAF * LEAF];
        for (ci, &k) in cand.iter().enumerate() {
            let (ku, sl) = (k as usize, slot(k));
            let v = &s.vals[sl * np..(sl + 1) * np];
            let st = status[ku];
            let (mut won, mut won_passed) = (0u64, 0u64);
            for p in 0..np {
                if win[p] == ci as u16 {
                    let pass = match st {
                        ALL => true,
                        NONE => false,
                        _ => self.passes(ku, v[p]),
                    };
                    codes[p] = ku as u32 | if pass { PASS } else { 0 };
                    won += 1;
                    won_passed += pass as u64;
                }
            }
            s.counts.won[ku] += won;
            s.counts.won_passed[ku] += won_passed;
        }
        for yy in 0..bh {
            let o = (y0 + yy - band_y0) * w + x0;
            out[o..o + bw].copy_from_slice(&codes[yy * bw..(yy + 1) * bw]);
        }
        s.patches.push(Patch { y0: y0 as u32, y1: y1 as u32, x0: x0 as u32, x1: x1 as u32, code: Patch::PER_PIXEL });
        s.active = active;
    }
}

/// Final ids from the engine's result: every patch filled with `f(code)`, every pixel of
/// the per-pixel tiles mapped through `f`; returns area and bbox of each id `1..=max_id`
/// (one parallel pass over the bands, rectangles counted without touching pixels twice).
pub(crate) fn finish(found: &Found, labels: &mut [u32], width: usize, max_id: u32, f: impl Fn(u32) -> u32 + Sync) -> Vec<(u64, [u32; 4])> {
    let n = max_id as usize + 1;
    let parts: Vec<Vec<Stats>> = labels
        .par_chunks_mut(BAND * width)
        .zip(found.patches.par_iter())
        .enumerate()
        .map(|(bi, (chunk, patches))| {
            let by0 = (bi * BAND) as u32;
            let mut st = vec![EMPTY; n];
            for p in patches {
                let (xa, xb) = (p.x0 as usize, p.x1 as usize);
                if p.code != Patch::PER_PIXEL {
                    let id = f(p.code);
                    for y in p.y0..p.y1 {
                        let o = (y - by0) as usize * width;
                        chunk[o + xa..o + xb].fill(id);
                    }
                    if id != 0 && (id as usize) < n {
                        st[id as usize].add_rect(p.x0, p.x1, p.y0, p.y1);
                    }
                } else {
                    for y in p.y0..p.y1 {
                        let o = (y - by0) as usize * width;
                        let row = &mut chunk[o + xa..o + xb];
                        let mut x = 0;
                        while x < row.len() {
                            let code = row[x];
                            let id = f(code);
                            let start = x;
                            while x < row.len() && row[x] == code {
                                row[x] = id;
                                x += 1;
                            }
                            if id != 0 && (id as usize) < n {
                                st[id as usize].add_rect((xa + start) as u32, (xa + x) as u32, y, y + 1);
                            }
                        }
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

/// Reference: every query at every pixel (tests and debugging).
#[cfg(test)]
#[allow(clippy::needless_range_loop)]
pub(crate) fn brute_force(e: &Engine<'_>, labels: &mut [u32]) -> Counts {
    use super::upsample::resize_plane;
    let n = e.grids.len();
    let (h, w) = (e.rows.n_out, e.cols.n_out);
    let planes: Vec<Vec<f32>> = e
        .grids
        .iter()
        .map(|g| {
            let mut o = vec![0.0; h * w];
            resize_plane(g, e.rows.n_in, e.cols.n_in, e.rows, e.cols, &mut Vec::new(), &mut o);
            o.iter_mut().for_each(|v| *v = e.prob(*v));
            o
        })
        .collect();
    let mut c = Counts::new(n);
    for p in 0..h * w {
        let mut wk = 0;
        let mut best = planes[0][p] * e.scores[0];
        for k in 1..n {
            let v = planes[k][p] * e.scores[k];
            if v > best {
                best = v;
                wk = k;
            }
        }
        for k in 0..n {
            if e.passes(k, planes[k][p]) {
                c.passed[k] += 1;
            }
        }
        let pass = e.passes(wk, planes[wk][p]);
        c.won[wk] += 1;
        if pass {
            c.won_passed[wk] += 1;
        }
        labels[p] = wk as u32 | if pass { PASS } else { 0 };
    }
    c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Smooth random-ish blobs: a few Gaussian bumps per query, logit-like range.
    pub(crate) fn blobs(q: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut st = seed;
        let mut rnd = || {
            st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((st >> 33) as f64) / (1u64 << 31) as f64
        };
        let mut out = vec![0.0f32; q * h * w];
        for k in 0..q {
            let (cy, cx) = (rnd() * h as f64, rnd() * w as f64);
            let (ry, rx) = (1.0 + rnd() * h as f64 / 3.0, 1.0 + rnd() * w as f64 / 3.0);
            let amp = 4.0 + rnd() * 8.0;
            for y in 0..h {
                for x in 0..w {
                    let d = ((y as f64 - cy) / ry).powi(2) + ((x as f64 - cx) / rx).powi(2);
                    out[k * h * w + y * w + x] = (amp * (-d).exp() - 3.0 + 0.3 * rnd()) as f32;
                }
            }
        }
        out
    }

    fn check(mode: Mode, sh: usize, sw: usize, rows: &Taps, cols: &Taps, n: usize, seed: u64) {
        let mut g = blobs(n, sh, sw, seed);
        if mode == Mode::Linear {
            g.iter_mut().for_each(|v| *v = sigmoid(*v));
        }
        // Two queries with identical grids and scores: ties must go to the first.
        let plane = sh * sw;
        let copy: Vec<f32> = g[0..plane].to_vec();
        g[plane..2 * plane].copy_from_slice(&copy);
        let grids: Vec<&[f32]> = g.chunks(plane).collect();
        let mut scores: Vec<f32> = (0..n).map(|k| 0.81 + 0.017 * ((k * 7) % 11) as f32).collect();
        scores[1] = scores[0];
        let e = Engine { grids, scores, rows, cols, mode, thr: 0.5 };
        let (h, w) = (rows.n_out, cols.n_out);
        let mut a = vec![u32::MAX - 1; h * w];
        let mut b = vec![0u32; h * w];
        let found = e.run(&mut a);
        e.paint(&found, &mut a);
        // The allocating form gives the same map and counts.
        let (mut c, found_c) = e.run_alloc();
        e.paint(&found_c, &mut c);
        assert!(a == c && found_c.counts == found.counts && found_c.patches == found.patches);
        let ca = found.counts;
        // Patches tile the frame: every pixel written exactly once.
        let covered: usize = found.patches.iter().flatten().map(|p| ((p.y1 - p.y0) * (p.x1 - p.x0)) as usize).sum();
        assert_eq!(covered, h * w);
        let cb = brute_force(&e, &mut b);
        let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(diff, 0, "{diff} labels differ");
        assert_eq!(ca, cb);
        assert_eq!(ca.won[1], 0, "a tied duplicate query must never win");
    }

    #[test]
    fn tiles_equal_brute_force_sigmoid() {
        let rows = Taps::bilinear_cropped(24, 96, 80, 203);
        let cols = Taps::bilinear_cropped(32, 128, 128, 310);
        check(Mode::Sigmoid, 24, 32, &rows, &cols, 12, 7);
    }

    #[test]
    fn tiles_equal_brute_force_linear() {
        let rows = Taps::bilinear(40, 150);
        let cols = Taps::bilinear(40, 267);
        check(Mode::Linear, 40, 40, &rows, &cols, 9, 11);
    }

    #[test]
    fn tiles_equal_brute_force_downsampling() {
        let rows = Taps::bilinear(60, 37);
        let cols = Taps::bilinear(60, 71);
        check(Mode::Sigmoid, 60, 60, &rows, &cols, 6, 3);
    }
}
