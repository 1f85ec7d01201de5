//! GPU panoptic post-process: the mask logits stay on the device.
//!
//! Host: class softmax and kept queries ([`crate::postprocess::panoptic::kept_queries`]),
//! the composed bilinear taps ([`crate::postprocess::upsample::Taps::bilinear_cropped`]),
//! and the segment decision from the per-query pixel counts
//! ([`crate::postprocess::panoptic::decide_segments`]) — the CPU's own functions.
//! Device (`kernels/panoptic.cu`): per-pixel upsample + sigmoid + argmax + threshold
//! counts, then the id map with area and bbox of every segment. Only the counts
//! (3 × kept queries) and the statistics (5 × segments) cross to the host; the frame-size
//! id map stays on the device for the overlay ([`GpuPostprocessor::ids`]) unless
//! [`GpuPostprocessor::download`] asks for it.
//!
//! Semantics: [`Semantics::Detectron2`] (the pipeline's default). Differences from the
//! CPU function: mask logits are not checked for NaN/∞ (that would read the whole tensor).

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

use super::context::{driver_err, CudaContext, PANOPTIC};
use super::taps::MaskTaps;
use crate::model::Label;
use crate::postprocess::common::{segments_from_stats, softmax};
use crate::postprocess::panoptic::{decide_segments, kept_queries};
use crate::postprocess::tiles::Counts;
use crate::postprocess::upsample::Taps;
use crate::postprocess::{Geometry, Params, Semantics};
use crate::segmentation::{Segment, Segmentation, Task};
use crate::{Error, Result};

/// Mask logits `[Q, h, w]` (f32) in device memory, borrowed for `'a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMasks<'a> {
    ptr: u64,
    num_queries: usize,
    height: usize,
    width: usize,
    _memory: PhantomData<&'a ()>,
}

impl<'a> DeviceMasks<'a> {
    /// # Safety
    /// `ptr` must be device memory of the kernels' context holding
    /// `num_queries · height · width` f32 values, valid and unchanged for `'a`.
    pub unsafe fn new(ptr: u64, num_queries: usize, height: usize, width: usize) -> DeviceMasks<'a> {
        DeviceMasks { ptr, num_queries, height, width, _memory: PhantomData }
    }

    /// Masks in a buffer of ours; checks the length.
    pub fn from_slice(ctx: &CudaContext, buf: &'a CudaSlice<f32>, num_queries: usize, height: usize, width: usize) -> Result<DeviceMasks<'a>> {
        if buf.len() != num_queries * height * width {
            return Err(Error::InvalidArgument(format!("mask buffer holds {} values, expected {num_queries}x{height}x{width}", buf.len())));
        }
        Ok(DeviceMasks { ptr: ctx.ptr(buf), num_queries, height, width, _memory: PhantomData })
    }
}

/// A segmentation whose id map is still on the device ([`GpuPostprocessor::ids`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSegmentation {
    pub width: u32,
    pub height: u32,
    pub task: Task,
    pub segments: Vec<Segment>,
}

struct TapBufs {
    key: [usize; 8],
    r: (CudaSlice<i32>, CudaSlice<i32>, CudaSlice<f32>),
    c: (CudaSlice<i32>, CudaSlice<i32>, CudaSlice<f32>),
}

/// Reusable GPU post-process state (taps per geometry, code and id maps).
pub struct GpuPostprocessor {
    ctx: Arc<CudaContext>,
    taps: Option<TapBufs>,
    codes: CudaSlice<u32>,
    ids: CudaSlice<u32>,
    f_pixels: CudaFunction,
    f_finish: CudaFunction,
}

/// Threads per block of `panoptic_pixels` and `panoptic_finish`.
const BLOCK: u32 = 256;
/// Pixels per thread of `panoptic_finish`.
const SPAN: i32 = 64;

impl GpuPostprocessor {
    pub fn new(ctx: Arc<CudaContext>) -> Result<GpuPostprocessor> {
        let f_pixels = ctx.function(&PANOPTIC, "panoptic_pixels")?;
        let f_finish = ctx.function(&PANOPTIC, "panoptic_finish")?;
        let codes = ctx.zeros::<u32>(1)?;
        let ids = ctx.zeros::<u32>(1)?;
        Ok(GpuPostprocessor { ctx, taps: None, codes, ids, f_pixels, f_finish })
    }

    /// The id map of the last result (`height × width`, row-major) on the device.
    pub fn ids(&self) -> &CudaSlice<u32> {
        &self.ids
    }

    /// Bring the last result's id map to the host: the full [`Segmentation`].
    pub fn download(&self, g: GpuSegmentation) -> Result<Segmentation> {
        let n = g.width as usize * g.height as usize;
        let mut ids = self.ctx.download(&self.ids)?;
        ids.truncate(n);
        if ids.len() != n {
            return Err(Error::Cuda(format!("id map holds {} values, {n} expected", ids.len())));
        }
        Ok(Segmentation { width: g.width, height: g.height, task: g.task, ids, segments: g.segments })
    }

    fn ensure_maps(&mut self, n: usize) -> Result<()> {
        if self.codes.len() < n {
            self.codes = self.ctx.zeros::<u32>(n)?;
            self.ids = self.ctx.zeros::<u32>(n)?;
        }
        Ok(())
    }

    fn ensure_taps(&mut self, mh: usize, mw: usize, g: &Geometry) -> Result<()> {
        let key = [mh, mw, g.input_height, g.input_width, g.valid_height, g.valid_width, g.frame_height, g.frame_width];
        if self.taps.as_ref().is_some_and(|t| t.key == key) {
            return Ok(());
        }
        let rows = MaskTaps::from_taps(&Taps::bilinear_cropped(mh, g.input_height, g.valid_height, g.frame_height));
        let cols = MaskTaps::from_taps(&Taps::bilinear_cropped(mw, g.input_width, g.valid_width, g.frame_width));
        let c = &self.ctx;
        self.taps = Some(TapBufs {
            key,
            r: (c.upload(&rows.len)?, c.upload(&rows.idx)?, c.upload(&rows.w)?),
            c: (c.upload(&cols.len)?, c.upload(&cols.idx)?, c.upload(&cols.w)?),
        });
        Ok(())
    }

    /// Panoptic inference of one image: `class_logits` `[Q, K+1]` on the host, `masks`
    /// `[Q, h, w]` on the device. Same segments as [`crate::postprocess::panoptic::panoptic`].
    pub fn panoptic(&mut self, class_logits: &[f32], masks: &DeviceMasks<'_>, labels: &[Label], geom: &Geometry, params: &Params) -> Result<GpuSegmentation> {
        let (q, mh, mw) = (masks.num_queries, masks.height, masks.width);
        let k1 = labels.len() + 1;
        check(class_logits, masks, labels, geom)?;
        if geom.semantics != Semantics::Detectron2 {
            return Err(Error::InvalidArgument("the GPU panoptic post-process follows detectron2 semantics only".into()));
        }
        let mut probs = vec![0.0f32; q * k1];
        for i in 0..q {
            softmax(&class_logits[i * k1..(i + 1) * k1], &mut probs[i * k1..(i + 1) * k1]);
        }
        let kept = kept_queries(&probs, q, k1, params.score_threshold);
        let (fh, fw) = (geom.frame_height, geom.frame_width);
        let npix = fh * fw;
        self.ensure_maps(npix)?;
        let mut out = GpuSegmentation { width: fw as u32, height: fh as u32, task: Task::Panoptic, segments: Vec::new() };
        let stream = self.ctx.stream().clone();
        if kept.is_empty() {
            stream.memset_zeros(&mut self.ids).map_err(driver_err("cuMemsetD8"))?;
            return Ok(out);
        }
        let nk = kept.len();
        // 3 counters per kept query in shared memory.
        if 3 * nk * 4 > 48 * 1024 {
            return Err(Error::InvalidArgument(format!("{nk} kept queries is more than the GPU post-process supports (4096)")));
        }
        self.ensure_taps(mh, mw, geom)?;
        let ctx = self.ctx.clone();
        let kept_q: Vec<i32> = kept.iter().map(|k| k.q as i32).collect();
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        let kept_d = ctx.upload(&kept_q)?;
        let scores_d = ctx.upload(&scores)?;
        let mut counts_d = ctx.zeros::<u32>(3 * nk)?;
        let Some(t) = self.taps.as_ref() else { return Err(Error::Cuda("post-process taps missing".into())) };
        let (rl, ri, rw) = (ctx.ptr(&t.r.0), ctx.ptr(&t.r.1), ctx.ptr(&t.r.2));
        let (cl, ci, cw) = (ctx.ptr(&t.c.0), ctx.ptr(&t.c.1), ctx.ptr(&t.c.2));
        let (kp, sp, cp) = (ctx.ptr(&kept_d), ctx.ptr(&scores_d), ctx.ptr_mut(&mut counts_d));
        let codes = ctx.ptr_mut(&mut self.codes);
        let (mh_i, mw_i, nk_i, fh_i, fw_i) = (mh as i32, mw as i32, nk as i32, fh as i32, fw as i32);
        let thr = params.mask_threshold;
        let grid = (npix as u32).div_ceil(BLOCK);
        // SAFETY: argument list matches `panoptic_pixels`; masks are valid per
        // DeviceMasks' contract (q·h·w values, and every kept index < q); the taps index
        // inside the mask grid (Taps::bilinear_cropped over mh × mw); codes holds ≥ npix
        // values; counts 3·nk; shared memory is 3·nk u32 as the kernel expects.
        unsafe {
            stream
                .launch_builder(&self.f_pixels)
                .arg(&masks.ptr)
                .arg(&mh_i)
                .arg(&mw_i)
                .arg(&kp)
                .arg(&sp)
                .arg(&nk_i)
                .arg(&rl)
                .arg(&ri)
                .arg(&rw)
                .arg(&cl)
                .arg(&ci)
                .arg(&cw)
                .arg(&fh_i)
                .arg(&fw_i)
                .arg(&thr)
                .arg(&codes)
                .arg(&cp)
                .launch(LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: (3 * nk * 4) as u32 })
                .map_err(driver_err("panoptic_pixels"))?;
        }
        let c = ctx.download(&counts_d)?;
        let widen = |s: &[u32]| s.iter().map(|&v| v as u64).collect::<Vec<u64>>();
        let counts = Counts { won: widen(&c[..nk]), passed: widen(&c[nk..2 * nk]), won_passed: widen(&c[2 * nk..]) };
        let (lut, metas) = decide_segments(&kept, &counts, labels, geom.semantics, params);
        let max_id = metas.iter().map(|m| m.id).max().unwrap_or(0);
        let n_ids = max_id as usize + 1;
        let mut init = vec![0u32; 5 * n_ids];
        init[n_ids..3 * n_ids].fill(u32::MAX);
        let mut stats_d = ctx.upload(&init)?;
        let lut_d = ctx.upload(&lut)?;
        let (lp, stp) = (ctx.ptr(&lut_d), ctx.ptr_mut(&mut stats_d));
        let ids = ctx.ptr_mut(&mut self.ids);
        let whole: i32 = 0;
        let n_ids_i = n_ids as i32;
        let threads = (fw as u32).div_ceil(SPAN as u32) * fh as u32;
        // SAFETY: argument list matches `panoptic_finish`; codes were written for all
        // npix pixels above; lut has nk entries and every code's index is < nk; ids holds
        // ≥ npix values; stats 5·n_ids.
        unsafe {
            stream
                .launch_builder(&self.f_finish)
                .arg(&codes)
                .arg(&fh_i)
                .arg(&fw_i)
                .arg(&SPAN)
                .arg(&lp)
                .arg(&whole)
                .arg(&n_ids_i)
                .arg(&ids)
                .arg(&stp)
                .launch(LaunchConfig { grid_dim: (threads.div_ceil(BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
                .map_err(driver_err("panoptic_finish"))?;
        }
        let s = ctx.download(&stats_d)?;
        let stats: Vec<(u64, [u32; 4])> = (0..n_ids)
            .map(|i| {
                let area = s[i] as u64;
                if area == 0 {
                    (0, [0; 4])
                } else {
                    let (x0, y0, x1, y1) = (s[n_ids + i], s[2 * n_ids + i], s[3 * n_ids + i], s[4 * n_ids + i]);
                    (area, [x0, y0, x1 - x0 + 1, y1 - y0 + 1])
                }
            })
            .collect();
        out.segments = segments_from_stats(&stats, &metas, labels);
        // Keep the kept/score/count buffers alive until the kernels that read them ran.
        ctx.synchronize()?;
        drop((kept_d, scores_d, counts_d, stats_d, lut_d));
        Ok(out)
    }
}

/// The checks of `postprocess::common::validate` that apply without host masks.
fn check(class_logits: &[f32], m: &DeviceMasks<'_>, labels: &[Label], g: &Geometry) -> Result<()> {
    let bad = |s: String| Err(Error::InvalidArgument(s));
    if labels.is_empty() {
        return bad("no labels: the label set is empty".into());
    }
    let k1 = labels.len() + 1;
    if m.num_queries == 0 || m.height == 0 || m.width == 0 {
        return bad(format!("empty logits: {} queries, masks {}x{}", m.num_queries, m.height, m.width));
    }
    if m.num_queries > u16::MAX as usize {
        return bad(format!("{} queries is more than supported ({})", m.num_queries, u16::MAX));
    }
    if class_logits.len() != m.num_queries * k1 {
        return Err(Error::CardMismatch(format!(
            "class logits hold {} values, expected {} queries x ({} labels + no-object)",
            class_logits.len(),
            m.num_queries,
            labels.len()
        )));
    }
    if let Some(i) = class_logits.iter().position(|v| !v.is_finite()) {
        return bad(format!("class logit {} of query {} is not finite", class_logits[i], i / k1));
    }
    if g.frame_height == 0 || g.frame_width == 0 || g.frame_height > 1 << 15 || g.frame_width > 1 << 15 {
        return bad(format!("frame {}x{} must be 1..=32768 pixels on a side", g.frame_width, g.frame_height));
    }
    if g.input_height == 0 || g.input_width == 0 || g.valid_height == 0 || g.valid_width == 0 {
        return bad(format!("zero-sized network input {}x{} or valid region {}x{}", g.input_width, g.input_height, g.valid_width, g.valid_height));
    }
    if g.valid_height > g.input_height || g.valid_width > g.input_width {
        return bad(format!("valid region {}x{} is larger than the network input {}x{}", g.valid_width, g.valid_height, g.input_width, g.input_height));
    }
    Ok(())
}
