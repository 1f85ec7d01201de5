//! Class-name labels on a frame in device memory. The boxes are those of
//! [`render::label_boxes`]; each one is copied to the host as a small tile (a label at 1080p
//! is about 30×200 pixels), drawn there by the CPU text renderer and copied back. The frame
//! itself never crosses to the host; only the label boxes do.

use crate::cuda::frame::DeviceFrame;
use crate::frame::FrameMut;
use crate::render::{self, text};
use crate::segmentation::Segmentation;
use crate::Result;

/// Copies between a frame's device planes and host tiles.
pub(crate) trait PlaneCopy {
    /// `rows` rows of `width` bytes from device address `src` (row pitch `pitch`) into
    /// `dst` (rows packed).
    fn download(&self, src: u64, pitch: usize, dst: &mut [u8], width: usize, rows: usize) -> Result<()>;
    /// The reverse: packed rows of `src` to device address `dst` (row pitch `pitch`).
    fn upload(&self, src: &[u8], width: usize, rows: usize, dst: u64, pitch: usize) -> Result<()>;
}

/// One plane's part of a box at `(x, y)` (even), `w`×`h` pixels: byte offset in a row,
/// first row, bytes per row, rows.
fn plane_region(frame: &DeviceFrame<'_>, p: usize, (x, y, w, h): (usize, usize, usize, usize)) -> (usize, usize, usize, usize) {
    let f = frame.format();
    let x0 = f.min_stride(p, x);
    (x0, f.plane_rows(p, y), f.min_stride(p, x + w) - x0, f.plane_rows(p, y + h) - f.plane_rows(p, y))
}

/// Draw `seg`'s labels onto `frame` through host tiles (masks and contours are the
/// kernels' part).
pub(crate) fn draw_labels(frame: &DeviceFrame<'_>, seg: &Segmentation, copy: &dyn PlaneCopy) -> Result<()> {
    let f = frame.format();
    for (b, label) in render::label_boxes(seg, frame.width(), frame.height()) {
        if b.width == 0 || b.height == 0 {
            continue;
        }
        let mut tiles: [Vec<u8>; 3] = Default::default();
        let mut regions = [(0, 0, 0, 0); 3];
        for p in 0..f.num_planes() {
            let (x0, y0, bytes, rows) = plane_region(frame, p, (b.x, b.y, b.width, b.height));
            let src = frame.planes()[p] + (y0 * frame.strides()[p] + x0) as u64;
            tiles[p] = vec![0; bytes * rows];
            copy.download(src, frame.strides()[p], &mut tiles[p], bytes, rows)?;
            regions[p] = (src, bytes, rows, frame.strides()[p]);
        }
        {
            let strides = [regions[0].1, regions[1].1, regions[2].1];
            let [t0, t1, t2] = &mut tiles;
            let mut tile = FrameMut::new(f, b.width, b.height, [t0, t1, t2], strides)?;
            text::draw_text_box(&mut tile, &text::TextBox { x: 0, y: 0, ..b }, &label);
        }
        for p in 0..f.num_planes() {
            let (dst, bytes, rows, pitch) = regions[p];
            copy.upload(&tiles[p], bytes, rows, dst, pitch)?;
        }
    }
    Ok(())
}

/// [`PlaneCopy`] where device addresses are host addresses (the driver double).
pub(crate) struct HostCopy;

impl PlaneCopy for HostCopy {
    fn download(&self, src: u64, pitch: usize, dst: &mut [u8], width: usize, rows: usize) -> Result<()> {
        for r in 0..rows {
            // SAFETY: `HostStages::new`'s contract: the frame's addresses are host memory;
            // the region lies inside the mapped plane (a label box is clipped to the frame).
            let row = unsafe { std::slice::from_raw_parts((src as usize + r * pitch) as *const u8, width) };
            dst[r * width..][..width].copy_from_slice(row);
        }
        Ok(())
    }

    fn upload(&self, src: &[u8], width: usize, rows: usize, dst: u64, pitch: usize) -> Result<()> {
        for r in 0..rows {
            // SAFETY: as in `download`; the frame is mapped for writing and nothing else
            // touches it meanwhile.
            let row = unsafe { std::slice::from_raw_parts_mut((dst as usize + r * pitch) as *mut u8, width) };
            row.copy_from_slice(&src[r * width..][..width]);
        }
        Ok(())
    }
}
