//! GPU stage timings for `segstream bench --device cuda`: each stage timed with CUDA
//! events on the context's stream, median of `runs` runs after `warmup` runs, on a
//! synthetic frame and synthetic logits of the given sizes (default: 1920×1080 NV12,
//! Q = 100, K = 133). The CPU reference of the same stages is timed too (wall clock,
//! fewer runs) so that one table shows both.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUevent_flags;

use super::context::{driver_err, CudaContext};
use super::overlay::GpuOverlay;
use super::postprocess::{DeviceMasks, GpuPostprocessor};
use super::preprocess::{GpuPreprocessor, TensorType, UploadedFrame};
use crate::backend::ImageLogits;
use crate::frame::{Frame, FrameMut, PixelFormat};
use crate::model::{CardInput, Label};
use crate::postprocess::{Geometry, Params, Semantics};
use crate::preprocess::{fit_size, Preprocessor};
use crate::render::OverlayOptions;
use crate::{Error, Result};

/// What to time.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub ordinal: usize,
    pub frame_width: usize,
    pub frame_height: usize,
    /// Network input (H, W); masks are a quarter of it on each side.
    pub input_height: usize,
    pub input_width: usize,
    pub queries: usize,
    pub classes: usize,
    /// Queries given a confident class (the others are no-object).
    pub kept: usize,
    pub warmup: usize,
    pub runs: usize,
    /// Runs of each CPU reference stage (0: skip the CPU).
    pub cpu_runs: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            ordinal: 0,
            frame_width: 1920,
            frame_height: 1080,
            input_height: 384,
            input_width: 384,
            queries: 100,
            classes: 133,
            kept: 30,
            warmup: 20,
            runs: 200,
            cpu_runs: 10,
        }
    }
}

/// One stage's timing.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTiming {
    pub stage: String,
    /// `cuda` (CUDA events) or `cpu` (wall clock).
    pub device: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
    /// Target from the issue, where there is one.
    pub target_ms: Option<f64>,
}

impl StageTiming {
    fn from_samples(stage: &str, device: &'static str, mut v: Vec<f64>, target_ms: Option<f64>) -> StageTiming {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n == 0 { f64::NAN } else if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        StageTiming {
            stage: stage.into(),
            device,
            median_ms: median,
            min_ms: v.first().copied().unwrap_or(f64::NAN),
            max_ms: v.last().copied().unwrap_or(f64::NAN),
            runs: n,
            target_ms,
        }
    }
}

/// Deterministic synthetic inputs (shared by the bench and tests/cuda.rs).
pub mod synthetic {
    use crate::model::Label;

    pub fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / (1u64 << 53) as f64
        }
    }

    /// NV12 `w × h` (tight strides): smooth gradients plus noise.
    pub fn nv12(w: usize, h: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut r = rng(seed);
        let y = (0..w * h).map(|i| (((i % w) * 200 / w + (i / w) * 50 / h) as f64 + 20.0 * r()).min(255.0) as u8).collect();
        let uv = (0..w * h / 2).map(|i| (128.0 + 60.0 * ((i as f64) * 0.001).sin() + 10.0 * r()).clamp(0.0, 255.0) as u8).collect();
        (y, uv)
    }

    /// Labels 0..k, every third a stuff class.
    pub fn labels(k: usize) -> Vec<Label> {
        (0..k).map(|i| Label { id: i as u32, name: format!("class{i}"), isthing: i % 3 != 0, color: [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (i * 53 % 256) as u8] }).collect()
    }

    /// Class logits `[q, k+1]`: the first `kept` queries confident in some class, the
    /// rest no-object; mask logits `[q, mh, mw]`: a few Gaussian bumps per query.
    pub fn logits(q: usize, k: usize, kept: usize, mh: usize, mw: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut r = rng(seed);
        let k1 = k + 1;
        let mut cls = vec![0.0f32; q * k1];
        for i in 0..q {
            for c in 0..k1 {
                cls[i * k1 + c] = (r() * 2.0 - 1.0) as f32;
            }
            let c = if i < kept { (r() * k as f64) as usize % k } else { k };
            cls[i * k1 + c] = 9.0 + r() as f32;
        }
        let mut masks = vec![0.0f32; q * mh * mw];
        for i in 0..q {
            let bumps: Vec<(f64, f64, f64, f64)> = (0..3).map(|_| (r() * mh as f64, r() * mw as f64, 2.0 + r() * mh as f64 / 4.0, 4.0 + 8.0 * r())).collect();
            for y in 0..mh {
                for x in 0..mw {
                    let mut v = -6.0f64;
                    for &(cy, cx, rad, a) in &bumps {
                        let d2 = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)) / (rad * rad);
                        v += a * (-d2).exp();
                    }
                    masks[(i * mh + y) * mw + x] = v as f32;
                }
            }
        }
        (cls, masks)
    }
}

fn card(opts: &BenchOptions) -> CardInput {
    CardInput {
        height: opts.input_height as u32,
        width: opts.input_width as u32,
        mean: vec![123.675, 116.28, 103.53],
        std: vec![58.395, 57.12, 57.375],
        channel_order: "RGB".into(),
    }
}

/// Time `f` with CUDA events around it, `warmup` + `runs` times.
fn time_gpu(ctx: &CudaContext, warmup: usize, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let c = ctx.cudarc();
    let start = c.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver_err("cuEventCreate"))?;
    let end = c.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver_err("cuEventCreate"))?;
    for _ in 0..warmup {
        f()?;
    }
    ctx.synchronize()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        start.record(ctx.stream()).map_err(driver_err("cuEventRecord"))?;
        f()?;
        end.record(ctx.stream()).map_err(driver_err("cuEventRecord"))?;
        v.push(start.elapsed_ms(&end).map_err(driver_err("cuEventElapsedTime"))? as f64);
    }
    Ok(v)
}

fn time_cpu(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(v)
}

/// Run the GPU stage benchmark. Errors (no driver, no device) are typed, never panics.
pub fn run(opts: &BenchOptions) -> Result<(crate::cuda::DeviceInfo, Vec<StageTiming>)> {
    if opts.runs < 1 || opts.frame_width % 2 != 0 || opts.frame_height % 2 != 0 || opts.input_height % 4 != 0 || opts.input_width % 4 != 0 {
        return Err(Error::InvalidArgument("bench: runs ≥ 1, even frame size, input size a multiple of 4".into()));
    }
    let ctx: Arc<CudaContext> = CudaContext::new(opts.ordinal)?;
    let (fw, fh) = (opts.frame_width, opts.frame_height);
    let (ih, iw) = (opts.input_height, opts.input_width);
    let (mh, mw) = (ih / 4, iw / 4);
    let input = card(opts);
    let (yp, uvp) = synthetic::nv12(fw, fh, 1);
    let host = Frame::new(PixelFormat::Nv12, fw, fh, [&yp, &uvp, &[]], [fw, fw, 0])?;
    let dev = UploadedFrame::upload(&ctx, &host)?;
    let labels: Vec<Label> = synthetic::labels(opts.classes);
    let (cls, masks) = synthetic::logits(opts.queries, opts.classes, opts.kept, mh, mw, 2);
    let masks_d = ctx.upload(&masks)?;
    let dm = DeviceMasks::from_slice(&ctx, &masks_d, opts.queries, mh, mw)?;
    let (vh, vw) = fit_size(fh, fw, ih, iw);
    let geom = Geometry { input_height: ih, input_width: iw, valid_height: vh, valid_width: vw, frame_height: fh, frame_width: fw, semantics: Semantics::Detectron2 };
    let params = Params::default();
    let mut out = Vec::new();

    let mut pre32 = GpuPreprocessor::new(ctx.clone(), &input, TensorType::F32)?;
    let v = time_gpu(&ctx, opts.warmup, opts.runs, || pre32.run(&dev.frame()).map(|_| ()))?;
    out.push(StageTiming::from_samples("preprocess NV12→f32", "cuda", v, Some(0.1)));
    let mut pre16 = GpuPreprocessor::new(ctx.clone(), &input, TensorType::F16)?;
    let v = time_gpu(&ctx, opts.warmup, opts.runs, || pre16.run(&dev.frame()).map(|_| ()))?;
    out.push(StageTiming::from_samples("preprocess NV12→f16", "cuda", v, Some(0.1)));

    let mut post = GpuPostprocessor::new(ctx.clone())?;
    let mut last = None;
    let v = time_gpu(&ctx, opts.warmup, opts.runs, || {
        last = Some(post.panoptic(&cls, &dm, &labels, &geom, &params)?);
        Ok(())
    })?;
    let segs = last.map(|s| s.segments).unwrap_or_default();
    out.push(StageTiming::from_samples(&format!("panoptic ({} segments)", segs.len()), "cuda", v, Some(0.3)));

    let ov = GpuOverlay::new(ctx.clone())?;
    let oo = OverlayOptions::default();
    let v = time_gpu(&ctx, opts.warmup, opts.runs, || ov.overlay(&dev.frame(), post.ids(), &segs, &labels, &oo))?;
    out.push(StageTiming::from_samples("overlay NV12", "cuda", v, Some(0.1)));

    if opts.cpu_runs > 0 {
        let mut cpu = Preprocessor::new(&input)?;
        let v = time_cpu(opts.cpu_runs, || cpu.run(&host).map(|_| ()))?;
        out.push(StageTiming::from_samples("preprocess NV12→f32", "cpu", v, None));
        let logits = ImageLogits { num_queries: opts.queries, num_classes_plus_one: opts.classes + 1, mask_height: mh, mask_width: mw, class_logits: &cls, mask_logits: &masks };
        let mut seg = None;
        let v = time_cpu(opts.cpu_runs, || {
            seg = Some(crate::postprocess::panoptic::panoptic(&logits, &labels, &geom, &params)?);
            Ok(())
        })?;
        out.push(StageTiming::from_samples("panoptic", "cpu", v, None));
        if let Some(seg) = seg {
            let (mut y2, mut uv2) = (yp.clone(), uvp.clone());
            let v = time_cpu(opts.cpu_runs, || {
                let mut f = FrameMut::new(PixelFormat::Nv12, fw, fh, [&mut y2, &mut uv2, &mut []], [fw, fw, 0])?;
                crate::render::overlay(&mut f, &seg, &labels, &oo)
            })?;
            out.push(StageTiming::from_samples("overlay NV12", "cpu", v, None));
        }
    }
    Ok((ctx.info().clone(), out))
}

/// The timings as a fixed-width table.
pub fn table(info: &crate::cuda::DeviceInfo, opts: &BenchOptions, t: &[StageTiming]) -> String {
    let mut s = format!(
        "device {} ({}; sm_{}{}), frame {}x{} NV12, input {}x{}, Q={}, K={}, {} runs after {} warm-up\n",
        info.ordinal, info.name, info.compute_capability.0, info.compute_capability.1, opts.frame_width, opts.frame_height, opts.input_width, opts.input_height, opts.queries, opts.classes, opts.runs, opts.warmup
    );
    s += &format!("{:<28} {:<5} {:>10} {:>10} {:>10} {:>8}  {}\n", "stage", "on", "median ms", "min ms", "max ms", "target", "verdict");
    for x in t {
        let (target, verdict) = match x.target_ms {
            Some(tg) => (format!("{tg:.2}"), if x.median_ms <= tg { "ok" } else { "MISSED" }),
            None => ("-".into(), ""),
        };
        s += &format!("{:<28} {:<5} {:>10.4} {:>10.4} {:>10.4} {:>8}  {}\n", x.stage, x.device, x.median_ms, x.min_ms, x.max_ms, target, verdict);
    }
    s
}
