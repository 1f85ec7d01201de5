//! Mapping a GStreamer CUDA buffer to a [`DeviceFrame`] with `GST_MAP_CUDA`: the device
//! address of the (single) memory, planes and strides from the buffer's `GstVideoMeta`
//! (a pitched allocation: the stride is not the caps' stride), else from the memory's own
//! video info.

use std::mem::MaybeUninit;

use gst::glib;
use gstreamer as gst;
use gstreamer_video as gst_video;

use super::ffi::GstCuda;
use crate::cuda::frame::DeviceFrame;
use crate::frame::PixelFormat;
use crate::{Error, Result};

/// `GST_MAP_CUDA`: map to a CUDA device pointer instead of system memory.
pub const MAP_CUDA: u32 = gst::ffi::GST_MAP_FLAG_LAST << 1;

/// The public head of `GstCudaMemory` (1.22 to 1.26): the memory, its context, and the
/// video info of its allocation.
#[repr(C)]
struct GstCudaMemoryHead {
    mem: gst::ffi::GstMemory,
    context: *mut gst::ffi::GstObject,
    info: gst_video::ffi::GstVideoInfo,
}

/// Why a buffer is not mapped on the device (the caller then maps it to system memory,
/// which libgstcuda serves with a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMapped {
    /// The buffer's memory is not CUDA memory.
    NotCudaMemory,
    /// More than one memory block (CUDA pools allocate one per frame).
    SeveralMemories(u32),
    /// The memory belongs to another CUDA context than the stages run in.
    OtherContext { memory: usize, stages: usize },
    /// libgstcuda refused the mapping (for writing: the memory is shared).
    MapFailed,
}

impl std::fmt::Display for NotMapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotMapped::NotCudaMemory => write!(f, "the buffer is not CUDA memory"),
            NotMapped::SeveralMemories(n) => write!(f, "the buffer has {n} memory blocks (one expected)"),
            NotMapped::OtherContext { memory, stages } => write!(
                f,
                "the buffer belongs to CUDA context {memory:#x}, the GPU stages run in {stages:#x}: read through system memory (a copy)"
            ),
            NotMapped::MapFailed => write!(f, "libgstcuda could not map the memory for CUDA access"),
        }
    }
}

/// A buffer mapped for CUDA access; unmapped on drop.
pub struct DeviceMapping<'a> {
    mem: *mut gst::ffi::GstMemory,
    info: gst::ffi::GstMapInfo,
    frame: DeviceFrame<'a>,
    _buf: std::marker::PhantomData<&'a gst::BufferRef>,
}

impl<'a> DeviceMapping<'a> {
    pub fn frame(&self) -> &DeviceFrame<'a> {
        &self.frame
    }
}

impl Drop for DeviceMapping<'_> {
    fn drop(&mut self) {
        // SAFETY: `info` came from a successful gst_memory_map of `mem`, which the buffer
        // (borrowed for 'a) keeps alive.
        unsafe { gst::ffi::gst_memory_unmap(self.mem, &mut self.info) };
    }
}

/// The `CUcontext` a CUDA memory belongs to, or `None` when it is not CUDA memory.
pub fn memory_context(mem: &gst::MemoryRef) -> Option<usize> {
    let lib = GstCuda::get().ok()?;
    let raw = mem.as_ptr() as *mut gst::ffi::GstMemory;
    // SAFETY: a valid memory; the call only checks its allocator type.
    if unsafe { (lib.is_cuda_memory)(raw) } == glib::ffi::GFALSE {
        return None;
    }
    // SAFETY: it is a GstCudaMemory, whose public head is `GstCudaMemoryHead`; `context`
    // is a live GstCudaContext the memory holds a reference to.
    let ctx = unsafe { (*(raw as *const GstCudaMemoryHead)).context };
    // SAFETY: as above.
    Some(unsafe { (lib.context_get_handle)(ctx) } as usize)
}

/// Map `buf` (caps `info`, pixel `format`) on the device for reading (or reading and
/// writing). `stages_ctx`: the `CUcontext` the caller's kernels run in (`None`: any,
/// for a host double). `Ok(Err(why))` when the buffer is not mapped on the device.
pub fn map_device<'a>(
    buf: &'a gst::BufferRef,
    info: &gst_video::VideoInfo,
    format: PixelFormat,
    write: bool,
    stages_ctx: Option<usize>,
) -> Result<std::result::Result<DeviceMapping<'a>, NotMapped>> {
    let lib = GstCuda::get()?;
    if buf.n_memory() != 1 {
        return Ok(Err(NotMapped::SeveralMemories(buf.n_memory() as u32)));
    }
    let mem = buf.peek_memory(0);
    let Some(mem_ctx) = memory_context(mem) else { return Ok(Err(NotMapped::NotCudaMemory)) };
    if let Some(stages) = stages_ctx
        && stages != mem_ctx
    {
        return Ok(Err(NotMapped::OtherContext { memory: mem_ctx, stages }));
    }
    let raw = mem.as_ptr() as *mut gst::ffi::GstMemory;
    // Layout: the video meta's offsets and strides, else the allocation's own.
    let (offsets, strides) = match buf.meta::<gst_video::VideoMeta>() {
        Some(m) => (m.offset().to_vec(), m.stride().iter().map(|s| *s as isize).collect::<Vec<_>>()),
        None => {
            // SAFETY: a GstCudaMemory (checked above); `info` is its public video info.
            let vi = unsafe { &(*(raw as *const GstCudaMemoryHead)).info };
            (vi.offset.to_vec(), vi.stride.iter().map(|s| *s as isize).collect())
        }
    };
    if let Some(sync) = lib.memory_sync {
        // SAFETY: a valid CUDA memory; waits for work pending on its stream (1.24+).
        unsafe { sync(raw) };
    }
    let flags = gst::ffi::GST_MAP_READ | MAP_CUDA | if write { gst::ffi::GST_MAP_WRITE } else { 0 };
    let mut map = MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
    // SAFETY: a valid memory and an out struct; on success it must be unmapped (Drop).
    if unsafe { gst::ffi::gst_memory_map(raw, map.as_mut_ptr(), flags) } == glib::ffi::GFALSE {
        return Ok(Err(NotMapped::MapFailed));
    }
    // SAFETY: gst_memory_map succeeded and filled the struct.
    let mut map = unsafe { map.assume_init() };
    let (base, size) = (map.data as u64, map.size);
    let frame = (|| {
        let mut planes = [0u64; 3];
        let mut st = [0usize; 3];
        for p in 0..format.num_planes() {
            let s = strides.get(p).copied().unwrap_or(0);
            let off = offsets.get(p).copied().unwrap_or(0);
            if s <= 0 {
                return Err(Error::InvalidFrame(format!("CUDA buffer plane {p} has stride {s}")));
            }
            let rows = format.plane_rows(p, info.height() as usize);
            let end = off + s as usize * rows.saturating_sub(1) + format.min_stride(p, info.width() as usize);
            if end > size {
                return Err(Error::InvalidFrame(format!(
                    "CUDA buffer plane {p} (offset {off}, stride {s}, {rows} rows) ends past its {size} bytes"
                )));
            }
            planes[p] = base + off as u64;
            st[p] = s as usize;
        }
        // SAFETY: every plane lies inside the mapped memory (checked above), which stays
        // mapped (and the buffer alive) for 'a; the stages synchronise their stream before
        // returning, so no work outlives the mapping.
        unsafe { DeviceFrame::new(format, info.width() as usize, info.height() as usize, planes, st) }
    })();
    match frame {
        Ok(frame) => Ok(Ok(DeviceMapping { mem: raw, info: map, frame, _buf: std::marker::PhantomData })),
        Err(e) => {
            // SAFETY: the successful mapping above, not yet owned by a DeviceMapping.
            unsafe { gst::ffi::gst_memory_unmap(raw, &mut map) };
            Err(e)
        }
    }
}
