//! Bilinear resizing of mask logits (align_corners=False, as torch).
//!
//! Resizing is separable: every output row (column) is a convex combination of at most
//! [`MAX_TAPS`] source rows (columns). [`Taps`] holds those precomputed indices and weights
//! for one axis; a 2-D resize is a horizontal pass (columns) on the source rows it needs
//! followed by a vertical pass (rows), which is the order and rounding of torch's CPU
//! kernel (`out = (x00*wx0 + x01*wx1)*wy0 + (x10*wx0 + x11*wx1)*wy1`, minus any fused
//! multiply-adds the compiler of torch may have made).
//!
//! Two-stage resizes (detectron2: logits → network input size, crop to the valid region,
//! → frame size) compose into one set of taps per axis ([`Taps::bilinear_cropped`]), so a
//! frame pixel is computed straight from the logits without the input-size intermediate.
//!
//! All weights are non-negative and sum to 1 (up to rounding), so an output value always
//! lies between the minimum and maximum of the source values its taps touch: the tile
//! engines of the post-processing rely on that to decide whole tiles without per-pixel
//! work.

/// Most source samples one output sample depends on (two bilinear stages: 2 × 2).
pub const MAX_TAPS: usize = 4;

/// Source samples and weights of one output sample along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    /// Number of used entries in `idx` / `w`.
    pub len: u8,
    pub idx: [u32; MAX_TAPS],
    pub w: [f32; MAX_TAPS],
    /// Smallest and largest source index with a non-zero weight.
    pub lo: u32,
    pub hi: u32,
}

impl Tap {
    fn from_pairs(pairs: &[(usize, f32)]) -> Tap {
        let mut t = Tap { len: 0, idx: [0; MAX_TAPS], w: [0.0; MAX_TAPS], lo: u32::MAX, hi: 0 };
        for &(i, w) in pairs {
            // A zero weight adds exactly 0 for finite inputs: dropping the tap changes
            // nothing, and keeps the footprint of the sample tight.
            if w == 0.0 {
                continue;
            }
            let n = t.len as usize;
            t.idx[n] = i as u32;
            t.w[n] = w;
            t.len += 1;
            t.lo = t.lo.min(i as u32);
            t.hi = t.hi.max(i as u32);
        }
        if t.len == 0 {
            // Cannot happen for convex weights; keep a valid (identity-like) tap anyway.
            let i = pairs.first().map(|p| p.0).unwrap_or(0) as u32;
            t = Tap { len: 1, idx: [i, 0, 0, 0], w: [1.0, 0.0, 0.0, 0.0], lo: i, hi: i };
        }
        t
    }

    /// Used taps as `(index, weight)`.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        (0..self.len as usize).map(|j| (self.idx[j] as usize, self.w[j]))
    }

    /// `Σ w_j · f(idx_j)` in tap order (first product, then `+=`), as torch accumulates.
    #[inline(always)]
    pub fn apply(&self, f: impl Fn(usize) -> f32) -> f32 {
        let mut acc = f(self.idx[0] as usize) * self.w[0];
        for j in 1..self.len as usize {
            acc += f(self.idx[j] as usize) * self.w[j];
        }
        acc
    }
}

/// Precomputed taps for resizing one axis from `n_in` to `n_out` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub n_in: usize,
    pub n_out: usize,
    pub taps: Vec<Tap>,
    /// `lo_from[o]` = min of `taps[o..].lo`; `hi_upto[o]` = max of `taps[..=o].hi`: an
    /// O(1) footprint for any output range (exact, as both are monotone for bilinear).
    lo_from: Vec<u32>,
    hi_upto: Vec<u32>,
}

/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` source index
/// and weight of output sample `o`, in f32 like torch's CPU kernel for float tensors.
fn torch_linear(n_in: usize, n_out: usize, o: usize) -> [(usize, f32); 2] {
    if n_in == n_out {
        return [(o, 1.0), (o, 0.0)];
    }
    let scale = n_in as f32 / n_out as f32;
    let mut real = scale * (o as f32 + 0.5) - 0.5;
    if real < 0.0 {
        real = 0.0;
    }
    let i0 = (real.floor() as usize).min(n_in - 1);
    let lambda = (real - i0 as f32).clamp(0.0, 1.0);
    let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
    [(i0, 1.0 - lambda), (i1, lambda)]
}

impl Taps {
    /// One bilinear stage, `n_in → n_out` (both > 0).
    pub fn bilinear(n_in: usize, n_out: usize) -> Taps {
        assert!(n_in > 0 && n_out > 0, "bilinear taps need non-empty axes");
        let taps = (0..n_out).map(|o| Tap::from_pairs(&torch_linear(n_in, n_out, o))).collect();
        Self::with_taps(n_in, n_out, taps)
    }

    fn with_taps(n_in: usize, n_out: usize, taps: Vec<Tap>) -> Taps {
        let mut lo_from: Vec<u32> = taps.iter().map(|t| t.lo).collect();
        for o in (0..n_out.saturating_sub(1)).rev() {
            lo_from[o] = lo_from[o].min(lo_from[o + 1]);
        }
        let mut hi_upto: Vec<u32> = taps.iter().map(|t| t.hi).collect();
        for o in 1..n_out {
            hi_upto[o] = hi_upto[o].max(hi_upto[o - 1]);
        }
        Taps { n_in, n_out, taps, lo_from, hi_upto }
    }

    /// Two bilinear stages composed: `n_in → n_mid`, keep the first `n_valid` samples
    /// (crop of the padding), `n_valid → n_out`. Weights are products of the two stages'
    /// weights (computed in f64, rounded once), merged per source index.
    pub fn bilinear_cropped(n_in: usize, n_mid: usize, n_valid: usize, n_out: usize) -> Taps {
        assert!(n_in > 0 && n_mid > 0 && n_out > 0 && n_valid > 0 && n_valid <= n_mid, "invalid two-stage resize");
        let taps = (0..n_out)
            .map(|o| {
                let mut acc: [(usize, f64); MAX_TAPS] = [(0, 0.0); MAX_TAPS];
                let mut n = 0usize;
                for (m, a) in torch_linear(n_valid, n_out, o) {
                    for (s, b) in torch_linear(n_in, n_mid, m) {
                        let wgt = a as f64 * b as f64;
                        if let Some(e) = acc[..n].iter_mut().find(|e| e.0 == s) {
                            e.1 += wgt;
                        } else {
                            acc[n] = (s, wgt);
                            n += 1;
                        }
                    }
                }
                acc[..n].sort_by_key(|e| e.0);
                let pairs: Vec<(usize, f32)> = acc[..n].iter().map(|&(s, w)| (s, w as f32)).collect();
                Tap::from_pairs(&pairs)
            })
            .collect();
        Self::with_taps(n_in, n_out, taps)
    }

    /// Footprint (smallest, largest source index) of output samples `a..b` (`a < b`):
    /// every source sample they use lies in it.
    #[inline]
    pub fn footprint(&self, a: usize, b: usize) -> (usize, usize) {
        (self.lo_from[a] as usize, self.hi_upto[b - 1] as usize)
    }
}

/// `interpolate(mode="nearest")` source indices (torch's legacy `nearest`, which OpenCV's
/// INTER_NEAREST also uses): `min(floor(o * (n_in / n_out)), n_in - 1)` in f32.
pub fn nearest_indices(n_in: usize, n_out: usize) -> Vec<usize> {
    (0..n_out)
        .map(|o| {
            if n_out == n_in {
                o
            } else if n_out == 2 * n_in {
                o >> 1
            } else {
                let scale = n_in as f32 / n_out as f32;
                ((o as f32 * scale).floor() as usize).min(n_in - 1)
            }
        })
        .collect()
}

/// Resize a row-major `sh × sw` plane with the given taps (rows: `sh → dh`, cols:
/// `sw → dw`) into `out` (`dh × dw`). `tmp` is scratch space.
pub fn resize_plane(src: &[f32], sh: usize, sw: usize, rows: &Taps, cols: &Taps, tmp: &mut Vec<f32>, out: &mut [f32]) {
    debug_assert_eq!(rows.n_in, sh);
    debug_assert_eq!(cols.n_in, sw);
    let (dh, dw) = (rows.n_out, cols.n_out);
    assert_eq!(src.len(), sh * sw);
    assert_eq!(out.len(), dh * dw);
    tmp.clear();
    tmp.resize(sh * dw, 0.0);
    // Horizontal pass on every source row that some output row uses.
    let (r0, r1) = rows.footprint(0, dh);
    for r in r0..=r1 {
        let srow = &src[r * sw..(r + 1) * sw];
        let trow = &mut tmp[r * dw..(r + 1) * dw];
        for (x, t) in cols.taps.iter().enumerate() {
            trow[x] = t.apply(|i| srow[i]);
        }
    }
    for (y, t) in rows.taps.iter().enumerate() {
        let orow = &mut out[y * dw..(y + 1) * dw];
        vertical(t, tmp, dw, 0, orow);
    }
}

/// Vertical pass of one output row: `out[x] = Σ_j w_j · tmp[(idx_j - base) * stride + x]`.
#[inline(always)]
pub fn vertical(t: &Tap, tmp: &[f32], stride: usize, base: usize, out: &mut [f32]) {
    let n = out.len();
    let row = |j: usize| {
        let r = t.idx[j] as usize - base;
        &tmp[r * stride..r * stride + n]
    };
    let (w0, r0) = (t.w[0], row(0));
    match t.len {
        1 => {
            for x in 0..n {
                out[x] = r0[x] * w0;
            }
        }
        2 => {
            let (w1, r1) = (t.w[1], row(1));
            for x in 0..n {
                out[x] = r0[x] * w0 + r1[x] * w1;
            }
        }
        _ => {
            for x in 0..n {
                out[x] = r0[x] * w0;
            }
            for j in 1..t.len as usize {
                let (wj, rj) = (t.w[j], row(j));
                for x in 0..n {
                    out[x] += rj[x] * wj;
                }
            }
        }
    }
}

/// Evaluate the resize of `src` (row-major, `sw` columns) on the output block whose rows
/// use `rows` taps and columns `cols` taps; writes `rows.len() × cols.len()` values into
/// `out`. Same arithmetic as [`resize_plane`], value for value.
pub fn eval_block(src: &[f32], sw: usize, rows: &[Tap], cols: &[Tap], tmp: &mut Vec<f32>, out: &mut [f32]) {
    eval_block_at(src, sw, 0, 0, rows, cols, tmp, out)
}

/// [`eval_block`] on a window of the source grid: `src` holds source rows from `r_off`
/// and columns from `c_off` on (row stride `sw`), and must cover the block's footprint.
#[allow(clippy::too_many_arguments)]
pub fn eval_block_at(src: &[f32], sw: usize, r_off: usize, c_off: usize, rows: &[Tap], cols: &[Tap], tmp: &mut Vec<f32>, out: &mut [f32]) {
    let bw = cols.len();
    let r0 = rows.iter().map(|t| t.lo).min().unwrap_or(0) as usize;
    let r1 = rows.iter().map(|t| t.hi).max().unwrap_or(0) as usize;
    // Every element read below is written first: grow only, no zero-fill.
    if tmp.len() < (r1 - r0 + 1) * bw {
        tmp.resize((r1 - r0 + 1) * bw, 0.0);
    }
    for r in r0..=r1 {
        let srow = &src[(r - r_off) * sw..(r - r_off + 1) * sw];
        let trow = &mut tmp[(r - r0) * bw..(r - r0 + 1) * bw];
        for (x, t) in cols.iter().enumerate() {
            trow[x] = t.apply(|i| srow[i - c_off]);
        }
    }
    for (y, t) in rows.iter().enumerate() {
        vertical(t, tmp, bw, r0, &mut out[y * bw..(y + 1) * bw]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_match() {
        let t = Taps::bilinear(5, 5);
        for (o, tap) in t.taps.iter().enumerate() {
            assert_eq!(tap.len, 1);
            assert_eq!(tap.idx[0] as usize, o);
            assert_eq!(tap.w[0], 1.0);
        }
    }

    #[test]
    fn upsample_by_two_matches_torch_formula() {
        // torch: interpolate([0, 1], size=4, bilinear, align_corners=False) = [0, .25, .75, 1]
        let rows = Taps::bilinear(1, 1);
        let cols = Taps::bilinear(2, 4);
        let mut out = vec![0.0; 4];
        resize_plane(&[0.0, 1.0], 1, 2, &rows, &cols, &mut Vec::new(), &mut out);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn weights_are_convex() {
        for (a, b) in [(7, 384), (96, 1080), (384, 1920), (100, 37), (3, 3)] {
            let t = Taps::bilinear(a, b);
            for tap in &t.taps {
                let s: f32 = tap.iter().map(|(_, w)| w).sum();
                assert!((s - 1.0).abs() < 1e-6);
                assert!(tap.iter().all(|(i, w)| w > 0.0 && i < a));
            }
        }
        let t = Taps::bilinear_cropped(24, 96, 54, 1080);
        for tap in &t.taps {
            let s: f32 = tap.iter().map(|(_, w)| w).sum();
            assert!((s - 1.0).abs() < 1e-6);
            assert!(tap.iter().all(|(i, _)| i < 24));
        }
    }

    #[test]
    fn composed_equals_two_stages() {
        // 1-D signal through stage 1, crop, stage 2, versus the composed taps.
        let src: Vec<f32> = (0..13).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let s1 = Taps::bilinear(13, 52);
        let mid: Vec<f32> = s1.taps.iter().map(|t| t.apply(|i| src[i])).collect();
        let s2 = Taps::bilinear(40, 300);
        let two: Vec<f32> = s2.taps.iter().map(|t| t.apply(|i| mid[i])).collect();
        let c = Taps::bilinear_cropped(13, 52, 40, 300);
        let one: Vec<f32> = c.taps.iter().map(|t| t.apply(|i| src[i])).collect();
        for (a, b) in two.iter().zip(&one) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn block_equals_plane() {
        let (sh, sw, dh, dw) = (9, 13, 40, 57);
        let src: Vec<f32> = (0..sh * sw).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        let rows = Taps::bilinear(sh, dh);
        let cols = Taps::bilinear_cropped(sw, 2 * sw, 20, dw);
        let mut full = vec![0.0; dh * dw];
        resize_plane(&src, sh, sw, &rows, &cols, &mut Vec::new(), &mut full);
        let (y0, y1, x0, x1) = (5, 17, 30, 44);
        let mut blk = vec![0.0; (y1 - y0) * (x1 - x0)];
        eval_block(&src, sw, &rows.taps[y0..y1], &cols.taps[x0..x1], &mut Vec::new(), &mut blk);
        for y in y0..y1 {
            for x in x0..x1 {
                assert_eq!(full[y * dw + x].to_bits(), blk[(y - y0) * (x1 - x0) + x - x0].to_bits());
            }
        }
    }

    #[test]
    fn footprints_are_tight() {
        for t in [Taps::bilinear(96, 1080), Taps::bilinear(384, 200), Taps::bilinear_cropped(96, 384, 360, 1080), Taps::bilinear_cropped(7, 28, 9, 5)] {
            for (a, b) in [(0, 1), (0, t.n_out), (3, 4), (t.n_out / 2, t.n_out), (1, t.n_out - 1)] {
                let lo = t.taps[a..b].iter().map(|x| x.lo).min().unwrap() as usize;
                let hi = t.taps[a..b].iter().map(|x| x.hi).max().unwrap() as usize;
                assert_eq!(t.footprint(a, b), (lo, hi));
            }
        }
    }

    #[test]
    fn nearest_matches_torch() {
        // torch.nn.functional.interpolate(arange(5), size=3, mode="nearest") → [0, 1, 3]
        assert_eq!(nearest_indices(5, 3), vec![0, 1, 3]);
        assert_eq!(nearest_indices(3, 6), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(nearest_indices(384, 7), vec![0, 54, 109, 164, 219, 274, 329]);
    }
}
