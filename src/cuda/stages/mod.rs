//! The stages that run on a frame in device memory, behind one trait so the elements do
//! not care what implements them:
//!
//! * [`DeviceStages`]: preprocess → backend → postprocess for a mapped CUDA frame; returns
//!   the host result and a handle to the id map on the device ([`DeviceIds`]);
//! * [`DeviceIds`]: that handle, carried by the `SegmentationMeta` to `segoverlay`, which
//!   composites on the device with it.
//!
//! Implementations: `gpu::CudaStages` (feature `cuda`: the kernels of [`super::preprocess`],
//! [`super::postprocess`], [`super::overlay`]), and [`HostStages`], the CPU stages over
//! device addresses that are host addresses. The latter exists for one purpose: the CUDA
//! driver double of the test suite, whose "device memory" is host memory, so that the
//! GStreamer plumbing (caps, contexts, pools, mapping) is tested on machines without a GPU.

#[cfg(feature = "cuda")]
pub mod gpu;
mod labels;

use std::sync::Arc;

use super::frame::DeviceFrame;
use crate::frame::{Frame, FrameMut};
use crate::model::Label;
use crate::render::{self, OverlayOptions};
use crate::segmentation::Segmentation;
use crate::segmenter::{Segmenter, Timings};
use crate::settings::PostSettings;
use crate::Result;

/// What [`DeviceStages::segment`] returns.
#[derive(Debug)]
pub struct DeviceResult {
    pub segmentation: Segmentation,
    pub timings: Timings,
    /// The frame-size id map on the device, for a device overlay (`None`: none kept).
    pub ids: Option<Arc<dyn DeviceIds>>,
}

/// Segment a frame in device memory.
pub trait DeviceStages: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    /// The `CUcontext` the stages work in: frames of another context are not handed to
    /// them (the element reads those through system memory). `None`: any context.
    fn cu_context(&self) -> Option<usize>;
    /// Preprocess on the device, run `segmenter`'s backend, post-process with `post`.
    fn segment(&self, segmenter: &mut Segmenter, frame: &DeviceFrame<'_>, post: &PostSettings) -> Result<DeviceResult>;
}

/// A segmentation's id map kept on the device, able to composite itself onto a frame.
pub trait DeviceIds: Send + Sync + std::fmt::Debug {
    /// The `CUcontext` the map lives in (`None`: any).
    fn cu_context(&self) -> Option<usize>;
    /// Width and height of the map.
    fn size(&self) -> (u32, u32);
    /// Composite `seg` (whose id map this is) onto `frame` in place: masks and contours,
    /// and with `opts.labels` the class-name labels (drawn on small host tiles of the label
    /// boxes, the frame staying on the device).
    fn overlay(&self, frame: &DeviceFrame<'_>, seg: &Segmentation, labels: &[Label], opts: &OverlayOptions) -> Result<()>;
}

/// The CPU stages over "device" addresses that are host addresses (the test suite's CUDA
/// driver double). Same results as the system-memory path by construction.
#[derive(Debug, Clone)]
pub struct HostStages {
    ctx: Option<usize>,
}

impl HostStages {
    /// # Safety
    /// Every device address this is given (the frames the elements map with
    /// `GST_MAP_CUDA`) must be readable and writable host memory, as with a host double of
    /// the CUDA driver; on a real GPU this would read device addresses on the CPU.
    /// `ctx`: the `CUcontext` the stages accept frames of (`None`: any).
    pub unsafe fn new(ctx: Option<usize>) -> HostStages {
        HostStages { ctx }
    }
}

/// Address and length in bytes of each plane of a device frame.
fn plane_spans(frame: &DeviceFrame<'_>) -> [(u64, usize); 3] {
    let f = frame.format();
    let mut out = [(0u64, 0usize); 3];
    for p in 0..f.num_planes() {
        let len = frame.strides()[p] * (f.plane_rows(p, frame.height()) - 1) + f.min_stride(p, frame.width());
        out[p] = (frame.planes()[p], len);
    }
    out
}

impl DeviceStages for HostStages {
    fn name(&self) -> &str {
        "host"
    }

    fn cu_context(&self) -> Option<usize> {
        self.ctx
    }

    fn segment(&self, segmenter: &mut Segmenter, frame: &DeviceFrame<'_>, post: &PostSettings) -> Result<DeviceResult> {
        // SAFETY: `HostStages::new`'s contract: the addresses are host memory, mapped for
        // reading while this runs; `DeviceFrame::new` checked each plane's extent and that
        // the addresses are non-null (unused planes are empty slices).
        let planes = plane_spans(frame).map(|(p, n)| if n == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(p as *const u8, n) } });
        let host = Frame::new(frame.format(), frame.width(), frame.height(), planes, frame.strides())?;
        let (segmentation, timings) = segmenter.segment(&host, post)?;
        let ids = Arc::new(HostIds { ctx: self.ctx, size: (segmentation.width, segmentation.height) });
        Ok(DeviceResult { segmentation, timings, ids: Some(ids) })
    }
}

/// [`HostStages`]' id map "on the device": the host map of the segmentation itself.
#[derive(Debug)]
struct HostIds {
    ctx: Option<usize>,
    size: (u32, u32),
}

impl DeviceIds for HostIds {
    fn cu_context(&self) -> Option<usize> {
        self.ctx
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn overlay(&self, frame: &DeviceFrame<'_>, seg: &Segmentation, labels: &[Label], opts: &OverlayOptions) -> Result<()> {
        let planes = plane_spans(frame).map(|(p, n)| {
            if n == 0 {
                &mut [][..]
            } else {
                // SAFETY: made by `HostStages`, whose contract covers the frames it is
                // given: host memory, mapped for writing, touched by nothing else meanwhile;
                // the planes of one mapped video frame are disjoint regions (its layout).
                unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) }
            }
        });
        let mut host = FrameMut::new(frame.format(), frame.width(), frame.height(), planes, frame.strides())?;
        // Masks and contours here, labels through tiles as the GPU overlay does, so that the
        // double's tests cover the tile path.
        render::overlay(&mut host, seg, labels, &OverlayOptions { labels: false, ..*opts })?;
        drop(host);
        if opts.labels {
            labels::draw_labels(frame, seg, &labels::HostCopy)?;
        }
        Ok(())
    }
}
