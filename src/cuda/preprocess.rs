//! GPU preprocess: a device frame → the network's NCHW input tensor on the device.
//!
//! Same result as [`crate::preprocess::Preprocessor`] (BT.601 limited-range colour
//! conversion, Pillow-style antialiased bilinear resize keeping the aspect ratio,
//! normalization, zero padding bottom/right), from the host-side taps of
//! [`super::taps`]; the CPU-only test `taps::tests::emulated_kernels_match_cpu_preprocess`
//! checks that arithmetic, `tests/cuda.rs` checks the kernels on a device.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

pub use super::frame::DeviceFrame;
use super::context::{args, driver_err, CudaContext, PREPROCESS};
use super::taps::{normalization, ResizeAxis, YUV_BT601_LIMITED};
use crate::frame::{Frame, FrameMut, PixelFormat};
use crate::model::CardInput;
use crate::preprocess::fit_size;
use crate::{Error, Result};

/// A host frame copied to the device (tests, benchmarks, system-memory input).
pub struct UploadedFrame {
    bufs: Vec<CudaSlice<u8>>,
    frame: DeviceFrame<'static>,
}

impl UploadedFrame {
    pub fn upload(ctx: &CudaContext, f: &Frame<'_>) -> Result<UploadedFrame> {
        let mut bufs = Vec::new();
        let mut planes = [0u64; 3];
        for p in 0..f.format.num_planes() {
            let n = f.strides[p] * (f.format.plane_rows(p, f.height) - 1) + f.format.min_stride(p, f.width);
            let b = ctx.upload(&f.planes[p][..n])?;
            planes[p] = ctx.ptr(&b);
            bufs.push(b);
        }
        // SAFETY: each plane is a buffer of the contract's size owned by `bufs`; the
        // 'static frame is only handed out re-borrowed for the life of `self` (frame()).
        let frame = unsafe { DeviceFrame::new(f.format, f.width, f.height, planes, f.strides)? };
        Ok(UploadedFrame { bufs, frame })
    }

    pub fn frame(&self) -> DeviceFrame<'_> {
        self.frame
    }

    /// Copy the device planes back into a host frame of the same layout.
    pub fn download_into(&self, ctx: &CudaContext, out: &mut FrameMut<'_>) -> Result<()> {
        if (out.format, out.width, out.height, out.strides) != (self.frame.format, self.frame.width, self.frame.height, self.frame.strides) {
            return Err(Error::InvalidArgument("download_into: the host frame's layout differs".into()));
        }
        for (p, b) in self.bufs.iter().enumerate() {
            let v = ctx.download(b)?;
            out.planes[p][..v.len()].copy_from_slice(&v);
        }
        Ok(())
    }
}

/// Element type of the tensor written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    /// IEEE half, round to nearest even (for FP16 engines' input bindings).
    F16,
}

impl TensorType {
    pub fn size(self) -> usize {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
        }
    }
}

struct Axes {
    frame: (usize, usize),
    valid: (usize, usize),
    y: [CudaSlice<i32>; 2],
    y_coef: CudaSlice<i16>,
    y_meta: (i32, i32),
    x: [CudaSlice<i32>; 2],
    x_coef: CudaSlice<i16>,
    x_meta: (i32, i32),
    tmp: CudaSlice<u8>,
}

/// Reusable GPU preprocess state: taps per frame size, the 8-bit temporary and the
/// output tensor live across frames.
pub struct GpuPreprocessor {
    ctx: Arc<CudaContext>,
    input_h: usize,
    input_w: usize,
    norm: args::Norm,
    dtype: TensorType,
    axes: Option<Axes>,
    out: CudaSlice<u8>,
    f_vert: CudaFunction,
    f_horiz: CudaFunction,
}

impl GpuPreprocessor {
    pub fn new(ctx: Arc<CudaContext>, input: &CardInput, dtype: TensorType) -> Result<GpuPreprocessor> {
        let (h, w) = (input.height as usize, input.width as usize);
        if h == 0 || w == 0 {
            return Err(Error::InvalidArgument(format!("input {h}x{w} is not a valid network input")));
        }
        let (scale, bias, order) = normalization(input)?;
        let norm = args::Norm { scale, bias, order: order.map(|o| o as i32) };
        let out = ctx.zeros::<u8>(3 * h * w * dtype.size())?;
        let f_vert = ctx.function(&PREPROCESS, "pre_vertical")?;
        let f_horiz = ctx.function(&PREPROCESS, "pre_horizontal")?;
        Ok(GpuPreprocessor { ctx, input_h: h, input_w: w, norm, dtype, axes: None, out, f_vert, f_horiz })
    }

    pub fn input_size(&self) -> (usize, usize) {
        (self.input_h, self.input_w)
    }

    pub fn tensor_type(&self) -> TensorType {
        self.dtype
    }

    /// The output tensor `[1, 3, H, W]` (bytes; f32 or f16 per [`Self::tensor_type`]).
    pub fn output(&self) -> &CudaSlice<u8> {
        &self.out
    }

    fn axes_for(&mut self, fh: usize, fw: usize) -> Result<()> {
        if self.axes.as_ref().is_some_and(|a| a.frame == (fh, fw)) {
            return Ok(());
        }
        let (vh, vw) = fit_size(fh, fw, self.input_h, self.input_w);
        let ya = ResizeAxis::bilinear(fh, vh)?;
        let xa = ResizeAxis::bilinear(fw, vw)?;
        let c = &self.ctx;
        self.axes = Some(Axes {
            frame: (fh, fw),
            valid: (vh, vw),
            y: [c.upload(&ya.start)?, c.upload(&ya.count)?],
            y_coef: c.upload(&ya.coef)?,
            y_meta: (ya.window as i32, ya.precision as i32),
            x: [c.upload(&xa.start)?, c.upload(&xa.count)?],
            x_coef: c.upload(&xa.coef)?,
            x_meta: (xa.window as i32, xa.precision as i32),
            tmp: c.zeros::<u8>(vh * fw * 3)?,
        });
        Ok(())
    }

    /// Preprocess `frame` into the own output tensor. Returns the valid (unpadded) size.
    /// Asynchronous: the work is enqueued on the context's stream.
    pub fn run(&mut self, frame: &DeviceFrame<'_>) -> Result<(usize, usize)> {
        let out = self.ctx.ptr_mut(&mut self.out);
        // SAFETY: `out` is this preprocessor's own buffer of 3·H·W elements of `dtype`.
        unsafe { self.run_into(frame, out) }
    }

    /// Preprocess `frame` into the device buffer at `out` (for instance a TensorRT input
    /// binding). Returns the valid (unpadded) size.
    ///
    /// # Safety
    /// `out` must be device memory of this context holding `3 · H · W` elements of the
    /// tensor type, not used by anything else until the stream has finished.
    pub unsafe fn run_into(&mut self, frame: &DeviceFrame<'_>, out: u64) -> Result<(usize, usize)> {
        let (fh, fw) = (frame.height, frame.width);
        if fh > 1 << 15 || fw > 1 << 15 {
            return Err(Error::InvalidFrame(format!("frame {fw}x{fh} is larger than 32768 pixels on a side")));
        }
        self.axes_for(fh, fw)?;
        let Some(a) = self.axes.as_mut() else { return Err(Error::Cuda("preprocess taps missing".into())) };
        let ctx = &self.ctx;
        let (vh, vw) = a.valid;
        let fmt: i32 = match frame.format {
            PixelFormat::Rgb => 0,
            PixelFormat::Rgba => 1,
            PixelFormat::Bgrx => 2,
            PixelFormat::Nv12 => 3,
            PixelFormat::I420 => 4,
        };
        let [yc, crc, cbc, g1, g2] = YUV_BT601_LIMITED;
        let yuv = args::Yuv { y: yc, cr: crc, cb: cbc, g1, g2 };
        let [p0, p1, p2] = frame.planes;
        let [s0, s1, s2] = frame.strides.map(|s| s as i32);
        let (fw_i, vh_i, vw_i) = (fw as i32, vh as i32, vw as i32);
        let (ys, yn, ycf) = (ctx.ptr(&a.y[0]), ctx.ptr(&a.y[1]), ctx.ptr(&a.y_coef));
        let (xs, xn, xcf) = (ctx.ptr(&a.x[0]), ctx.ptr(&a.x[1]), ctx.ptr(&a.x_coef));
        let tmp = ctx.ptr_mut(&mut a.tmp);
        let (ih, iw) = (self.input_h as i32, self.input_w as i32);
        let half: i32 = (self.dtype == TensorType::F16) as i32;
        let block = (32u32, 8u32, 1u32);
        let grid = |w: usize, h: usize| ((w as u32).div_ceil(32), (h as u32).div_ceil(8), 1u32);
        let stream = ctx.stream();
        // SAFETY: argument list matches `pre_vertical` in preprocess.cu; the frame planes
        // are valid per DeviceFrame's contract; the taps and tmp buffers are ours and
        // sized for this frame (axes_for); every thread checks its bounds.
        unsafe {
            stream
                .launch_builder(&self.f_vert)
                .arg(&p0)
                .arg(&p1)
                .arg(&p2)
                .arg(&s0)
                .arg(&s1)
                .arg(&s2)
                .arg(&fmt)
                .arg(&fw_i)
                .arg(&yuv)
                .arg(&ys)
                .arg(&yn)
                .arg(&ycf)
                .arg(&a.y_meta.0)
                .arg(&a.y_meta.1)
                .arg(&vh_i)
                .arg(&tmp)
                .launch(LaunchConfig { grid_dim: grid(fw, vh), block_dim: block, shared_mem_bytes: 0 })
                .map_err(driver_err("pre_vertical"))?;
        }
        // SAFETY: argument list matches `pre_horizontal`; `out` holds 3·H·W elements per
        // this function's contract.
        unsafe {
            stream
                .launch_builder(&self.f_horiz)
                .arg(&tmp)
                .arg(&fw_i)
                .arg(&vh_i)
                .arg(&vw_i)
                .arg(&xs)
                .arg(&xn)
                .arg(&xcf)
                .arg(&a.x_meta.0)
                .arg(&a.x_meta.1)
                .arg(&self.norm)
                .arg(&ih)
                .arg(&iw)
                .arg(&half)
                .arg(&out)
                .launch(LaunchConfig { grid_dim: grid(self.input_w, self.input_h), block_dim: block, shared_mem_bytes: 0 })
                .map_err(driver_err("pre_horizontal"))?;
        }
        Ok((vh, vw))
    }

    /// The output tensor as f32 on the host (f16 widened), for tests.
    pub fn download_f32(&self) -> Result<Vec<f32>> {
        let bytes = self.ctx.download(&self.out)?;
        Ok(match self.dtype {
            TensorType::F32 => bytes.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect(),
            TensorType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_bits(u16::from_ne_bytes([b[0], b[1]])).to_f32()).collect(),
        })
    }
}
