//! GPU overlay: composite a segmentation onto a device frame in place, with the integer
//! arithmetic of [`crate::render::overlay`] (so the result equals the CPU's), from the
//! id map that [`super::postprocess::GpuPostprocessor`] left on the device.
//!
//! Masks and contours only: `labels` (text) is drawn by the CPU overlay. Formats: NV12,
//! RGBA, BGRx, RGB.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

use super::context::{driver_err, CudaContext, OVERLAY};
use super::preprocess::DeviceFrame;
use crate::frame::PixelFormat;
use crate::model::Label;
use crate::render::{palette, OverlayOptions};
use crate::segmentation::Segment;
use crate::{Error, Result};

pub struct GpuOverlay {
    ctx: Arc<CudaContext>,
    f_packed: CudaFunction,
    f_nv12: CudaFunction,
}

/// Per-id table: colour bytes and a "drawn" flag in bit 24, as overlay.cu reads it.
fn lut(segments: &[Segment], labels: &[Label], opts: &OverlayOptions, yuv: bool) -> Vec<u32> {
    let max = segments.iter().map(|s| s.id as usize).max().unwrap_or(0);
    let mut t = vec![0u32; max + 1];
    for s in segments {
        let c = palette::segment_color(s, labels, opts.color_by);
        let c = if yuv { palette::rgb_to_yuv(c) } else { c };
        t[s.id as usize] = c[0] as u32 | (c[1] as u32) << 8 | (c[2] as u32) << 16 | 1 << 24;
    }
    t
}

impl GpuOverlay {
    pub fn new(ctx: Arc<CudaContext>) -> Result<GpuOverlay> {
        let f_packed = ctx.function(&OVERLAY, "overlay_packed")?;
        let f_nv12 = ctx.function(&OVERLAY, "overlay_nv12")?;
        Ok(GpuOverlay { ctx, f_packed, f_nv12 })
    }

    /// Blend `segments` (ids in `ids`, `frame.height × frame.width` row-major on the
    /// device) onto `frame`. Asynchronous on the context's stream.
    pub fn overlay(&self, frame: &DeviceFrame<'_>, ids: &CudaSlice<u32>, segments: &[Segment], labels: &[Label], opts: &OverlayOptions) -> Result<()> {
        let (w, h) = (frame.width(), frame.height());
        if ids.len() < w * h {
            return Err(Error::InvalidArgument(format!("id map holds {} values, the frame is {w}x{h}", ids.len())));
        }
        if !(0.0..=1.0).contains(&opts.alpha) {
            return Err(Error::InvalidArgument(format!("alpha {} is outside 0..1", opts.alpha)));
        }
        if opts.labels {
            return Err(Error::InvalidArgument("the GPU overlay draws masks and contours; class-name labels need the CPU overlay".into()));
        }
        let is_yuv = match frame.format() {
            PixelFormat::Nv12 => true,
            PixelFormat::Rgb | PixelFormat::Rgba | PixelFormat::Bgrx => false,
            PixelFormat::I420 => return Err(Error::UnsupportedFormat("I420 on the GPU overlay (NV12, RGBA, BGRx, RGB)".into())),
        };
        let ctx = &self.ctx;
        let table = ctx.upload(&lut(segments, labels, opts, is_yuv))?;
        let (tp, ip) = (ctx.ptr(&table), ctx.ptr(ids));
        let n_lut = table.len() as i32;
        let alpha = (opts.alpha * 256.0).round() as u32;
        let contours = opts.contours as i32;
        let (w_i, h_i) = (w as i32, h as i32);
        let cfg = LaunchConfig { grid_dim: ((w as u32).div_ceil(32), (h as u32).div_ceil(8), 1), block_dim: (32, 8, 1), shared_mem_bytes: 0 };
        let stream = ctx.stream();
        let [p0, p1, _] = frame.planes();
        let [s0, s1, _] = frame.strides().map(|s| s as i32);
        // SAFETY: argument lists match overlay.cu; the planes are writable device memory
        // per DeviceFrame's contract; ids hold ≥ w·h values (checked); the table has
        // n_lut entries; every thread checks its bounds.
        unsafe {
            if is_yuv {
                stream
                    .launch_builder(&self.f_nv12)
                    .arg(&p0)
                    .arg(&s0)
                    .arg(&p1)
                    .arg(&s1)
                    .arg(&w_i)
                    .arg(&h_i)
                    .arg(&ip)
                    .arg(&tp)
                    .arg(&n_lut)
                    .arg(&alpha)
                    .arg(&contours)
                    .launch(cfg)
                    .map_err(driver_err("overlay_nv12"))?;
            } else {
                let fmt: i32 = match frame.format() {
                    PixelFormat::Rgb => 0,
                    PixelFormat::Rgba => 1,
                    _ => 2,
                };
                stream
                    .launch_builder(&self.f_packed)
                    .arg(&p0)
                    .arg(&s0)
                    .arg(&fmt)
                    .arg(&w_i)
                    .arg(&h_i)
                    .arg(&ip)
                    .arg(&tp)
                    .arg(&n_lut)
                    .arg(&alpha)
                    .arg(&contours)
                    .launch(cfg)
                    .map_err(driver_err("overlay_packed"))?;
            }
        }
        // Dropping the table is safe while the kernel runs: cudarc frees it stream-ordered
        // (cuMemFreeAsync on this stream) or after synchronizing the stream.
        drop(table);
        Ok(())
    }
}
