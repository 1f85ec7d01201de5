//! Borrowed video frames in system memory: the pixel formats the pipeline accepts.

use crate::{Error, Result};

/// Pixel formats accepted in system memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 8-bit R, G, B.
    Rgb,
    /// Packed 8-bit R, G, B, A.
    Rgba,
    /// Packed 8-bit B, G, R, x (x ignored).
    Bgrx,
    /// Y plane + interleaved UV plane at half resolution (BT.601 limited range).
    Nv12,
    /// Y, U, V planes, U and V at half resolution (BT.601 limited range).
    I420,
}

impl PixelFormat {
    pub fn num_planes(self) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Rgba | PixelFormat::Bgrx => 1,
            PixelFormat::Nv12 => 2,
            PixelFormat::I420 => 3,
        }
    }

    /// Parse a GStreamer-style format name (`RGB`, `RGBA`, `BGRx`, `NV12`, `I420`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "RGB" => PixelFormat::Rgb,
            "RGBA" => PixelFormat::Rgba,
            "BGRx" => PixelFormat::Bgrx,
            "NV12" => PixelFormat::Nv12,
            "I420" => PixelFormat::I420,
            other => return Err(Error::UnsupportedFormat(format!("{other} (supported: RGB, RGBA, BGRx, NV12, I420)"))),
        })
    }

    /// Minimum bytes per row of plane `p` for a frame `width` pixels wide.
    pub fn min_stride(self, plane: usize, width: usize) -> usize {
        let half = width.div_ceil(2);
        match (self, plane) {
            (PixelFormat::Rgb, 0) => width * 3,
            (PixelFormat::Rgba | PixelFormat::Bgrx, 0) => width * 4,
            (PixelFormat::Nv12, 0) | (PixelFormat::I420, 0) => width,
            (PixelFormat::Nv12, 1) => half * 2,
            (PixelFormat::I420, 1 | 2) => half,
            _ => 0,
        }
    }

    /// Rows of plane `p` for a frame `height` rows high.
    pub fn plane_rows(self, plane: usize, height: usize) -> usize {
        match (self, plane) {
            (_, 0) => height,
            (PixelFormat::Nv12 | PixelFormat::I420, _) => height.div_ceil(2),
            _ => 0,
        }
    }
}

/// A read-only frame: up to three planes, each with its stride in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// A writable frame, same layout as [`Frame`].
#[derive(Debug)]
pub struct FrameMut<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub planes: [&'a mut [u8]; 3],
    pub strides: [usize; 3],
}

fn check_layout(format: PixelFormat, width: usize, height: usize, lens: [usize; 3], strides: [usize; 3]) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidFrame(format!("zero-sized frame {width}x{height}")));
    }
    if matches!(format, PixelFormat::Nv12 | PixelFormat::I420) && (width % 2 != 0 || height % 2 != 0) {
        return Err(Error::InvalidFrame(format!("{format:?} frame {width}x{height} must have even width and height")));
    }
    for p in 0..format.num_planes() {
        let min = format.min_stride(p, width);
        if strides[p] < min {
            return Err(Error::InvalidFrame(format!("plane {p} stride {} is less than {min} bytes", strides[p])));
        }
        let rows = format.plane_rows(p, height);
        let need = strides[p] * (rows - 1) + min;
        if lens[p] < need {
            return Err(Error::InvalidFrame(format!("plane {p} holds {} bytes, {need} needed for {width}x{height} {format:?}", lens[p])));
        }
    }
    Ok(())
}

impl<'a> Frame<'a> {
    /// Build a frame and check that the planes are large enough.
    pub fn new(format: PixelFormat, width: usize, height: usize, planes: [&'a [u8]; 3], strides: [usize; 3]) -> Result<Self> {
        check_layout(format, width, height, [planes[0].len(), planes[1].len(), planes[2].len()], strides)?;
        Ok(Frame { format, width, height, planes, strides })
    }

    /// A tightly packed single-plane frame (RGB, RGBA, BGRx).
    pub fn packed(format: PixelFormat, width: usize, height: usize, data: &'a [u8]) -> Result<Self> {
        if format.num_planes() != 1 {
            return Err(Error::InvalidFrame(format!("{format:?} is planar; use Frame::new")));
        }
        Self::new(format, width, height, [data, &[], &[]], [format.min_stride(0, width), 0, 0])
    }
}

impl<'a> FrameMut<'a> {
    pub fn new(format: PixelFormat, width: usize, height: usize, planes: [&'a mut [u8]; 3], strides: [usize; 3]) -> Result<Self> {
        check_layout(format, width, height, [planes[0].len(), planes[1].len(), planes[2].len()], strides)?;
        Ok(FrameMut { format, width, height, planes, strides })
    }

    pub fn as_frame(&self) -> Frame<'_> {
        Frame { format: self.format, width: self.width, height: self.height, planes: [&*self.planes[0], &*self.planes[1], &*self.planes[2]], strides: self.strides }
    }
}
