//! The GPU stages: the kernels of `super::super::{preprocess, postprocess, overlay}` on a
//! mapped CUDA frame, in the device's primary context (the one segstream offers to
//! nvcodec, so decoder frames arrive in it).
//!
//! The backend is the segmenter's. A backend with a device path (native TensorRT:
//! [`Backend::infer_device`](crate::backend::Backend::infer_device)) reads the GPU
//! preprocess' tensor where it is and writes its logits into device buffers of ours, on
//! our stream: only the class logits (Q·(K+1) floats) come to the host, and the GPU
//! panoptic reads the mask logits on the device. Every other backend runs in hybrid mode:
//! the input tensor is copied to the host for it (a few MB), and its logits are uploaded
//! for the GPU panoptic. Instance and semantic results are post-processed on the CPU (the
//! mask logits downloaded on the device path) and their id map uploaded, so the overlay
//! stays on the device for every task.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::CudaSlice;

use super::{DeviceIds, DeviceResult, DeviceStages};
use crate::backend::{DeviceIo, InputTensor, Logits};
use crate::cuda::frame::DeviceFrame;
use crate::cuda::overlay::GpuOverlay;
use crate::cuda::postprocess::{DeviceMasks, GpuPostprocessor};
use crate::cuda::preprocess::{GpuPreprocessor, TensorType};
use crate::cuda::context::driver_err;
use crate::cuda::CudaContext;
use crate::model::Label;
use crate::render::OverlayOptions;
use crate::segmentation::{Segmentation, Task};
use crate::segmenter::{Segmenter, Timings};
use crate::settings::PostSettings;
use crate::util::lock;
use crate::Result;

/// The kernels of one stream (one element instance).
pub struct CudaStages {
    ctx: Arc<CudaContext>,
    pre: Mutex<Option<GpuPreprocessor>>,
    post: Mutex<GpuPostprocessor>,
    overlay: Arc<GpuOverlay>,
    /// The backend's outputs on the device path, allocated on its first use and again
    /// when the model's dimensions change.
    logits: Mutex<Option<DeviceLogits>>,
}

/// Q, K+1, mask height and width.
type LogitDims = (usize, usize, usize, usize);

/// Output buffers of one image for [`Backend::infer_device`](crate::backend::Backend::infer_device).
struct DeviceLogits {
    dims: LogitDims,
    /// `[Q, K+1]`
    class: CudaSlice<f32>,
    /// `[Q, h, w]`
    masks: CudaSlice<f32>,
}

impl DeviceLogits {
    /// Both buffers to the host, as a batch of one.
    fn download(&self, ctx: &CudaContext) -> Result<Logits> {
        let (q, k1, mh, mw) = self.dims;
        Ok(Logits {
            batch: 1,
            num_queries: q,
            num_classes_plus_one: k1,
            mask_height: mh,
            mask_width: mw,
            class_logits: ctx.download(&self.class)?,
            mask_logits: ctx.download(&self.masks)?,
        })
    }
}

/// Where the logits of a frame are.
enum Inferred<'a> {
    /// On the host (hybrid mode).
    Host(Logits),
    /// In the device buffers of [`CudaStages::logits`] (the backend's device path).
    Device(&'a DeviceLogits),
}

impl std::fmt::Debug for CudaStages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaStages").field("device", self.ctx.info()).finish()
    }
}

impl CudaStages {
    /// Compile (or reuse) the kernels on `ctx`'s device.
    pub fn new(ctx: Arc<CudaContext>) -> Result<CudaStages> {
        let post = GpuPostprocessor::new(ctx.clone())?;
        let overlay = Arc::new(GpuOverlay::new(ctx.clone())?);
        Ok(CudaStages { ctx, pre: Mutex::new(None), post: Mutex::new(post), overlay, logits: Mutex::new(None) })
    }

    /// The backend's device path on the preprocessed tensor of `pre` (f32 only), into
    /// `slot`'s buffers (allocated or resized here), which it returns filled. `None`: the
    /// backend has none.
    fn infer_on_device<'s>(
        &self,
        segmenter: &mut Segmenter,
        pre: &GpuPreprocessor,
        slot: &'s mut Option<DeviceLogits>,
    ) -> Option<Result<&'s DeviceLogits>> {
        let ((h, w), (q, k1)) = segmenter.backend_dims();
        if pre.tensor_type() != TensorType::F32 || pre.input_size() != (h, w) {
            return None;
        }
        let dims = (q, k1, h / 4, w / 4);
        if slot.as_ref().is_none_or(|l| l.dims != dims) {
            // The old buffers go before the new ones are allocated.
            *slot = None;
            let alloc = || -> Result<DeviceLogits> {
                Ok(DeviceLogits {
                    dims,
                    class: self.ctx.zeros::<f32>(q * k1)?,
                    masks: self.ctx.zeros::<f32>(q * dims.2 * dims.3)?,
                })
            };
            match alloc() {
                Ok(l) => *slot = Some(l),
                Err(e) => return Some(Err(e)),
            }
        }
        let l = slot.as_mut()?;
        if let Err(e) = self.ctx.cudarc().bind_to_thread() {
            return Some(Err(driver_err("cuCtxSetCurrent")(e)));
        }
        let io = DeviceIo {
            device: self.ctx.info().ordinal,
            input: self.ctx.ptr(pre.output()),
            class_logits: self.ctx.ptr_mut(&mut l.class),
            mask_logits: self.ctx.ptr_mut(&mut l.masks),
            stream: self.ctx.raw_stream() as *mut std::ffi::c_void,
        };
        // SAFETY: the three addresses are whole buffers of ours in the device's primary
        // context (made current just above), of exactly one f32 image at the backend's
        // dimensions: the preprocessor's output is 3·H·W f32 (its size and type checked
        // above), the logits buffers Q·(K+1) and Q·(H/4)·(W/4) f32. cudarc allocates them
        // with cuMemAlloc / cuMemAllocAsync, whose base addresses are 256-byte aligned (a
        // misaligned one would be refused by the backend's binding check, not used). They
        // stay alive and untouched by other work during the call (`pre` and `slot` are
        // borrowed from our locks); the preprocess was enqueued on the same stream, ours,
        // which lives as long as `self.ctx`.
        let done = unsafe { segmenter.infer_device(&io) }?;
        Some(done.map(|()| &*l))
    }
}

impl DeviceStages for CudaStages {
    fn name(&self) -> &str {
        "cuda"
    }

    fn cu_context(&self) -> Option<usize> {
        Some(self.ctx.cu_context_handle())
    }

    fn segment(&self, segmenter: &mut Segmenter, frame: &DeviceFrame<'_>, post: &PostSettings) -> Result<DeviceResult> {
        let t0 = Instant::now();
        let mut pre_slot = lock(&self.pre);
        let card_input = &segmenter.card().input;
        let want = (card_input.height as usize, card_input.width as usize);
        if pre_slot.as_ref().is_none_or(|p| p.input_size() != want) {
            *pre_slot = Some(GpuPreprocessor::new(self.ctx.clone(), card_input, TensorType::F32)?);
        }
        let Some(pre) = pre_slot.as_mut() else { unreachable!("set above") };
        let valid = pre.run(frame)?;
        // The preprocess' own time (on the hybrid path the download below waits for it).
        self.ctx.synchronize()?;
        let t_pre = Instant::now();
        let mut logits_slot = lock(&self.logits);
        let (t1, inferred) = match self.infer_on_device(segmenter, pre, &mut logits_slot) {
            Some(r) => (t_pre, Inferred::Device(r?)),
            None => {
                let data = pre.download_f32()?;
                let t1 = Instant::now();
                (t1, Inferred::Host(segmenter.infer(&InputTensor { shape: [1, 3, want.0, want.1], data })?))
            }
        };
        drop(pre_slot);
        let t2 = Instant::now();
        let size = (frame.width(), frame.height());
        let params = post.resolve(&segmenter.card().defaults);
        let segmentation = match &inferred {
            Inferred::Device(dev) if params.task == Task::Panoptic => {
                // Only the class logits come to the host; the masks stay where the backend
                // wrote them.
                let (q, _, mh, mw) = dev.dims;
                let class = self.ctx.download(&dev.class)?;
                let masks = DeviceMasks::from_slice(&self.ctx, &dev.masks, q, mh, mw)?;
                let geom = segmenter.geometry(valid, size, post);
                let mut gp = lock(&self.post);
                let g = gp.panoptic(&class, &masks, &segmenter.card().labels, &geom, &params)?;
                gp.download(g)?
            }
            Inferred::Device(dev) => segmenter.postprocess(&dev.download(&self.ctx)?, valid, size, post)?,
            Inferred::Host(logits) if params.task == Task::Panoptic => {
                let img = logits.image(0)?;
                let masks_buf: CudaSlice<f32> = self.ctx.upload(img.mask_logits)?;
                let masks = DeviceMasks::from_slice(&self.ctx, &masks_buf, img.num_queries, img.mask_height, img.mask_width)?;
                let geom = segmenter.geometry(valid, size, post);
                let mut gp = lock(&self.post);
                let g = gp.panoptic(img.class_logits, &masks, &segmenter.card().labels, &geom, &params)?;
                gp.download(g)?
            }
            Inferred::Host(logits) => segmenter.postprocess(logits, valid, size, post)?,
        };
        drop(inferred);
        drop(logits_slot);
        let ids = self.ctx.upload(&segmentation.ids)?;
        self.ctx.synchronize()?;
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        let timings = Timings { preprocess_ms: ms(t0, t1), inference_ms: ms(t1, t2), postprocess_ms: ms(t2, t3) };
        let ids: Arc<dyn DeviceIds> = Arc::new(CudaIds {
            ctx: self.ctx.clone(),
            overlay: self.overlay.clone(),
            ids,
            size: (segmentation.width, segmentation.height),
        });
        Ok(DeviceResult { segmentation, timings, ids: Some(ids) })
    }
}

/// A frame-size id map on the device.
struct CudaIds {
    ctx: Arc<CudaContext>,
    overlay: Arc<GpuOverlay>,
    ids: CudaSlice<u32>,
    size: (u32, u32),
}

impl std::fmt::Debug for CudaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaIds").field("size", &self.size).finish()
    }
}

impl DeviceIds for CudaIds {
    fn cu_context(&self) -> Option<usize> {
        Some(self.ctx.cu_context_handle())
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn overlay(&self, frame: &DeviceFrame<'_>, seg: &Segmentation, labels: &[Label], opts: &OverlayOptions) -> Result<()> {
        self.overlay.overlay(frame, &self.ids, &seg.segments, labels, &OverlayOptions { labels: false, ..*opts })?;
        self.ctx.synchronize()?;
        if opts.labels {
            super::labels::draw_labels(frame, seg, &CudaCopy { ctx: &self.ctx })?;
        }
        Ok(())
    }
}

/// [`PlaneCopy`](super::labels::PlaneCopy) with the driver's synchronous 2D copies, in the
/// stages' context.
struct CudaCopy<'a> {
    ctx: &'a CudaContext,
}

impl CudaCopy<'_> {
    /// A synchronous copy of `rows` rows of `width` bytes between a packed host buffer and
    /// a pitched device region.
    fn copy(&self, host: *mut std::ffi::c_void, device: u64, pitch: usize, width: usize, rows: usize, to_device: bool) -> Result<()> {
        use cudarc::driver::sys::{CUDA_MEMCPY2D, CUmemorytype};
        self.ctx.cudarc().bind_to_thread().map_err(crate::cuda::context::driver_err("cuCtxSetCurrent"))?;
        let (host_t, dev_t) = (CUmemorytype::CU_MEMORYTYPE_HOST, CUmemorytype::CU_MEMORYTYPE_DEVICE);
        let c = CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: if to_device { host_t } else { dev_t },
            srcHost: if to_device { host } else { std::ptr::null_mut() },
            srcDevice: if to_device { 0 } else { device },
            srcArray: std::ptr::null_mut(),
            srcPitch: if to_device { width } else { pitch },
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: if to_device { dev_t } else { host_t },
            dstHost: if to_device { std::ptr::null_mut() } else { host },
            dstDevice: if to_device { device } else { 0 },
            dstArray: std::ptr::null_mut(),
            dstPitch: if to_device { pitch } else { width },
            WidthInBytes: width,
            Height: rows,
        };
        // SAFETY: `host` is a buffer of `width × rows` packed bytes and `device` a region of
        // a mapped device plane of the stages' context (made current above), inside the
        // plane (label boxes are clipped to the frame); both outlive this synchronous copy.
        let rc = unsafe { cudarc::driver::sys::cuMemcpy2D_v2(&c) };
        rc.result().map_err(crate::cuda::context::driver_err("cuMemcpy2D"))
    }
}

impl super::labels::PlaneCopy for CudaCopy<'_> {
    fn download(&self, src: u64, pitch: usize, dst: &mut [u8], width: usize, rows: usize) -> Result<()> {
        self.copy(dst.as_mut_ptr().cast(), src, pitch, width, rows, false)
    }

    fn upload(&self, src: &[u8], width: usize, rows: usize, dst: u64, pitch: usize) -> Result<()> {
        // Read only: the host side is the copy's source.
        self.copy(src.as_ptr() as *mut std::ffi::c_void, dst, pitch, width, rows, true)
    }
}
