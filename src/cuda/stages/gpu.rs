//! The GPU stages: the kernels of `super::super::{preprocess, postprocess, overlay}` on a
//! mapped CUDA frame, in the device's primary context (the one segstream offers to
//! nvcodec, so decoder frames arrive in it).
//!
//! The backend is the segmenter's: the input tensor is copied to the host for it (a few
//! MB), and its logits are uploaded for the GPU panoptic post-process. This is the hybrid
//! mode of every backend today; binding the device tensor directly (TensorRT's
//! `enqueueV3`) is the next step. Instance and semantic results are post-processed on the
//! CPU and their id map uploaded, so the overlay stays on the device for every task.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::CudaSlice;

use super::{DeviceIds, DeviceResult, DeviceStages};
use crate::backend::InputTensor;
use crate::cuda::frame::DeviceFrame;
use crate::cuda::overlay::GpuOverlay;
use crate::cuda::postprocess::{DeviceMasks, GpuPostprocessor};
use crate::cuda::preprocess::{GpuPreprocessor, TensorType};
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
        Ok(CudaStages { ctx, pre: Mutex::new(None), post: Mutex::new(post), overlay })
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
        let (input, valid) = {
            let mut pre = lock(&self.pre);
            let card_input = &segmenter.card().input;
            let want = (card_input.height as usize, card_input.width as usize);
            if pre.as_ref().is_none_or(|p| p.input_size() != want) {
                *pre = Some(GpuPreprocessor::new(self.ctx.clone(), card_input, TensorType::F32)?);
            }
            let Some(pre) = pre.as_mut() else { unreachable!("set above") };
            let valid = pre.run(frame)?;
            let data = pre.download_f32()?;
            (InputTensor { shape: [1, 3, want.0, want.1], data }, valid)
        };
        let t1 = Instant::now();
        let logits = segmenter.infer(&input)?;
        let t2 = Instant::now();
        let size = (frame.width(), frame.height());
        let params = post.resolve(&segmenter.card().defaults);
        let segmentation = if params.task == Task::Panoptic {
            let img = logits.image(0)?;
            let masks_buf: CudaSlice<f32> = self.ctx.upload(img.mask_logits)?;
            let masks = DeviceMasks::from_slice(&self.ctx, &masks_buf, img.num_queries, img.mask_height, img.mask_width)?;
            let geom = segmenter.geometry(valid, size, post);
            let mut gp = lock(&self.post);
            let g = gp.panoptic(img.class_logits, &masks, &segmenter.card().labels, &geom, &params)?;
            gp.download(g)?
        } else {
            segmenter.postprocess(&logits, valid, size, post)?
        };
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

    fn draws(&self, opts: &OverlayOptions) -> bool {
        !opts.labels
    }

    fn overlay(&self, frame: &DeviceFrame<'_>, seg: &Segmentation, labels: &[Label], opts: &OverlayOptions) -> Result<()> {
        self.overlay.overlay(frame, &self.ids, &seg.segments, labels, opts)?;
        self.ctx.synchronize()
    }
}
