//! A frame in device memory, as the GPU stages read and write it: plane addresses and
//! strides, checked once. Built from a mapped GStreamer CUDA buffer
//! ([`super::memory`]) or an uploaded host frame (tests, benchmarks).

use std::marker::PhantomData;

use crate::frame::PixelFormat;
use crate::{Error, Result};

/// A frame in device memory: the device address and stride (bytes) of each plane,
/// borrowed for `'a` (the mapping or buffer that owns the memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFrame<'a> {
    pub(crate) format: PixelFormat,
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) planes: [u64; 3],
    pub(crate) strides: [usize; 3],
    _memory: PhantomData<&'a ()>,
}

impl<'a> DeviceFrame<'a> {
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn planes(&self) -> [u64; 3] {
        self.planes
    }
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// Describe a frame in device memory (for instance a mapped GStreamer CUDA buffer).
    ///
    /// # Safety
    /// Every plane `p < format.num_planes()` must be device memory of the context the
    /// kernels run in, at least `strides[p] * (rows - 1) + format.min_stride(p, width)`
    /// bytes (`rows = format.plane_rows(p, height)`), valid (and, for the overlay,
    /// writable) for `'a` and until the stream has finished the work using it.
    pub unsafe fn new(format: PixelFormat, width: usize, height: usize, planes: [u64; 3], strides: [usize; 3]) -> Result<DeviceFrame<'a>> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidFrame(format!("zero-sized frame {width}x{height}")));
        }
        if matches!(format, PixelFormat::Nv12 | PixelFormat::I420) && (width % 2 != 0 || height % 2 != 0) {
            return Err(Error::InvalidFrame(format!("{format:?} frame {width}x{height} must have even width and height")));
        }
        for p in 0..format.num_planes() {
            if planes[p] == 0 {
                return Err(Error::InvalidFrame(format!("plane {p} has a null device address")));
            }
            let min = format.min_stride(p, width);
            if strides[p] < min {
                return Err(Error::InvalidFrame(format!("plane {p} stride {} is less than {min} bytes", strides[p])));
            }
            if strides[p] > i32::MAX as usize {
                return Err(Error::InvalidFrame(format!("plane {p} stride {} is too large", strides[p])));
            }
        }
        Ok(DeviceFrame { format, width, height, planes, strides, _memory: PhantomData })
    }
}
