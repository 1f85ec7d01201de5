//! CPU overlay: composite a [`Segmentation`] onto a frame in place: masks, contours and
//! labels (class name and score inside each segment, see [`placement`] and [`text`]).

pub mod palette;
pub mod placement;
pub mod text;

use crate::frame::FrameMut;
use crate::model::Label;
use crate::segmentation::Segmentation;
use crate::Result;

/// Colour segments by their class colour or by instance (segment / track id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorBy {
    #[default]
    Class,
    Instance,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayOptions {
    /// Opacity of the mask colour, 0..1.
    pub alpha: f32,
    /// Draw segment outlines.
    pub contours: bool,
    /// Draw a label with the class name and score (`circle 0.87`) inside each segment,
    /// white on a dark box, the 8×8 font scaled by [`text::text_scale`] of the frame height.
    pub labels: bool,
    pub color_by: ColorBy,
}

/// Masks and contours, no labels: what the CUDA overlay draws too (it leaves labels to
/// this one). The `segoverlay` element turns labels on by default.
impl Default for OverlayOptions {
    fn default() -> Self {
        OverlayOptions { alpha: 0.5, contours: true, labels: false, color_by: ColorBy::Class }
    }
}

use rayon::prelude::*;

use crate::frame::PixelFormat;
use crate::Error;

/// Per-id colours and flags, built once per frame from the segment list.
struct Lut {
    /// Indexed by segment id; `None` = not drawn.
    color: Vec<Option<[u8; 3]>>,
    yuv: Vec<[u8; 3]>,
}

impl Lut {
    fn new(seg: &Segmentation, labels: &[Label], by: ColorBy) -> Self {
        let max = seg.segments.iter().map(|s| s.id as usize).max().unwrap_or(0);
        let mut color = vec![None; max + 1];
        let mut yuv = vec![[16, 128, 128]; max + 1];
        for s in &seg.segments {
            let c = palette::segment_color(s, labels, by);
            color[s.id as usize] = Some(c);
            yuv[s.id as usize] = palette::rgb_to_yuv(c);
        }
        Lut { color, yuv }
    }
    #[inline]
    fn get(&self, id: u32) -> Option<usize> {
        let i = id as usize;
        (i < self.color.len() && self.color[i].is_some()).then_some(i)
    }
}

#[inline]
pub(crate) fn blend(dst: u8, src: u8, a: u32) -> u8 {
    ((dst as u32 * (256 - a) + src as u32 * a + 128) >> 8) as u8
}

/// Is pixel `(x, y)` on the border of its segment (4-neighbourhood)?
#[inline]
fn is_edge(ids: &[u32], w: usize, h: usize, x: usize, y: usize) -> bool {
    let id = ids[y * w + x];
    (x > 0 && ids[y * w + x - 1] != id)
        || (x + 1 < w && ids[y * w + x + 1] != id)
        || (y > 0 && ids[(y - 1) * w + x] != id)
        || (y + 1 < h && ids[(y + 1) * w + x] != id)
}

/// Composite `seg` onto `frame` in place: each segment's colour alpha-blended over its
/// pixels; optional contours: every segment's own border pixels (4-neighbourhood, things
/// and stuff alike) in its colour at full opacity, the same as the CUDA overlay draws;
/// optional labels (class name and score, see [`OverlayOptions::labels`]).
pub fn overlay(frame: &mut FrameMut<'_>, seg: &Segmentation, labels: &[Label], opts: &OverlayOptions) -> Result<()> {
    let (w, h) = (frame.width, frame.height);
    if seg.width as usize != w || seg.height as usize != h || seg.ids.len() != w * h {
        return Err(Error::InvalidArgument(format!(
            "segmentation is {}x{} ({} ids), frame is {w}x{h}",
            seg.width,
            seg.height,
            seg.ids.len()
        )));
    }
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::InvalidArgument(format!("alpha {} is outside 0..1", opts.alpha)));
    }
    let lut = Lut::new(seg, labels, opts.color_by);
    let a = (opts.alpha * 256.0).round() as u32;
    let ids = &seg.ids;
    let contours = opts.contours;
    match frame.format {
        PixelFormat::Rgb | PixelFormat::Rgba | PixelFormat::Bgrx => {
            let (bpp, ch) = match frame.format {
                PixelFormat::Rgb => (3, [0, 1, 2]),
                PixelFormat::Rgba => (4, [0, 1, 2]),
                _ => (4, [2, 1, 0]),
            };
            let stride = frame.strides[0];
            frame.planes[0].par_chunks_mut(stride).take(h).enumerate().for_each(|(y, row)| {
                for x in 0..w {
                    let Some(i) = lut.get(ids[y * w + x]) else { continue };
                    let c = lut.color[i].unwrap_or_default();
                    let aa = if contours && is_edge(ids, w, h, x, y) { 256 } else { a };
                    let px = &mut row[x * bpp..x * bpp + 3];
                    for k in 0..3 {
                        px[ch[k]] = blend(px[ch[k]], c[k], aa);
                    }
                }
            });
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let [yp, p1, p2] = &mut frame.planes;
            let s0 = frame.strides[0];
            yp.par_chunks_mut(s0).take(h).enumerate().for_each(|(y, row)| {
                for x in 0..w {
                    let Some(i) = lut.get(ids[y * w + x]) else { continue };
                    let aa = if contours && is_edge(ids, w, h, x, y) { 256 } else { a };
                    row[x] = blend(row[x], lut.yuv[i][0], aa);
                }
            });
            let (cw, chh) = (w / 2, h / 2);
            let chroma_at = |cx: usize, cy: usize| -> Option<(usize, u32)> {
                let (x, y) = (cx * 2, cy * 2);
                let i = lut.get(ids[y * w + x])?;
                let aa = if contours && is_edge(ids, w, h, x, y) { 256 } else { a };
                Some((i, aa))
            };
            if frame.format == PixelFormat::Nv12 {
                let s1 = frame.strides[1];
                p1.par_chunks_mut(s1).take(chh).enumerate().for_each(|(cy, row)| {
                    for cx in 0..cw {
                        if let Some((i, aa)) = chroma_at(cx, cy) {
                            row[2 * cx] = blend(row[2 * cx], lut.yuv[i][1], aa);
                            row[2 * cx + 1] = blend(row[2 * cx + 1], lut.yuv[i][2], aa);
                        }
                    }
                });
            } else {
                for (plane, stride, k) in [(&mut **p1, frame.strides[1], 1usize), (&mut **p2, frame.strides[2], 2usize)] {
                    plane.par_chunks_mut(stride).take(chh).enumerate().for_each(|(cy, row)| {
                        for (cx, c) in row.iter_mut().enumerate().take(cw) {
                            if let Some((i, aa)) = chroma_at(cx, cy) {
                                *c = blend(*c, lut.yuv[i][k], aa);
                            }
                        }
                    });
                }
            }
        }
    }
    if opts.labels {
        draw_labels(frame, seg);
    }
    Ok(())
}

/// The text of a segment's label: class name and score with two decimals.
pub fn label_text(s: &crate::segmentation::Segment) -> String {
    format!("{} {:.2}", s.label, s.score)
}

/// The label boxes [`overlay`] draws for `seg` on a `width`×`height` frame, in drawing
/// order, with their texts: each segment's [`label_text`] centred on its
/// [`placement::label_anchors`] point, moved into the frame; stuff first, then things from
/// the largest to the smallest, so that where boxes overlap the smaller object's label
/// stays readable. The GPU overlay draws the same boxes on small tiles of the frame.
pub fn label_boxes(seg: &Segmentation, width: usize, height: usize) -> Vec<(text::TextBox, String)> {
    let scale = text::text_scale(height);
    let anchors = placement::label_anchors(seg, scale);
    let mut order: Vec<usize> = (0..seg.segments.len()).collect();
    order.sort_by_key(|&k| (seg.segments[k].is_thing, std::cmp::Reverse(seg.segments[k].area)));
    order
        .into_iter()
        .filter_map(|k| {
            let anchor = anchors[k]?;
            let t = label_text(&seg.segments[k]);
            Some((text::TextBox::centred(&t, scale, anchor, width, height), t))
        })
        .collect()
}

fn draw_labels(frame: &mut FrameMut<'_>, seg: &Segmentation) {
    for (b, t) in label_boxes(seg, frame.width, frame.height) {
        text::draw_text_box(frame, &b, &t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::{Segment, Task};

    fn seg_2x2() -> (Segmentation, Vec<Label>) {
        let labels = vec![Label { id: 0, name: "sky".into(), isthing: false, color: [0, 0, 255] }];
        let seg = Segmentation {
            width: 4,
            height: 2,
            task: Task::Panoptic,
            ids: vec![1, 1, 0, 0, 1, 1, 0, 0],
            segments: vec![Segment {
                id: 1,
                label_id: 0,
                label: "sky".into(),
                score: 0.9,
                is_thing: false,
                area: 4,
                bbox: [0, 0, 2, 2],
                track_id: None,
            }],
        };
        (seg, labels)
    }

    #[test]
    fn blends_rgba_and_bgrx_only_inside_segments() {
        let (seg, labels) = seg_2x2();
        let opts = OverlayOptions { alpha: 1.0, contours: false, labels: false, color_by: ColorBy::Class };
        let mut buf = vec![100u8; 4 * 2 * 4];
        let mut f = FrameMut::new(PixelFormat::Rgba, 4, 2, [&mut buf, &mut [], &mut []], [16, 0, 0]).unwrap();
        overlay(&mut f, &seg, &labels, &opts).unwrap();
        assert_eq!(&buf[0..4], &[0, 0, 255, 100]);
        assert_eq!(&buf[8..12], &[100, 100, 100, 100]);
        let mut buf = vec![100u8; 4 * 2 * 4];
        let mut f = FrameMut::new(PixelFormat::Bgrx, 4, 2, [&mut buf, &mut [], &mut []], [16, 0, 0]).unwrap();
        overlay(&mut f, &seg, &labels, &opts).unwrap();
        assert_eq!(&buf[0..3], &[255, 0, 0]);
    }

    #[test]
    fn half_alpha_and_nv12() {
        let (seg, labels) = seg_2x2();
        let opts = OverlayOptions { alpha: 0.5, contours: false, labels: false, color_by: ColorBy::Class };
        let mut y = vec![200u8; 8];
        let mut uv = vec![128u8; 4];
        let mut f = FrameMut::new(PixelFormat::Nv12, 4, 2, [&mut y, &mut uv, &mut []], [4, 4, 0]).unwrap();
        overlay(&mut f, &seg, &labels, &opts).unwrap();
        let blue = palette::rgb_to_yuv([0, 0, 255]);
        assert_eq!(y[0], blend(200, blue[0], 128));
        assert_eq!(y[2], 200);
        assert_eq!(uv[0], blend(128, blue[1], 128));
        assert_eq!(uv[2], 128);
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let (seg, labels) = seg_2x2();
        let mut buf = vec![0u8; 3 * 3 * 3];
        let mut f = FrameMut::new(PixelFormat::Rgb, 3, 3, [&mut buf, &mut [], &mut []], [9, 0, 0]).unwrap();
        assert!(matches!(overlay(&mut f, &seg, &labels, &OverlayOptions::default()), Err(Error::InvalidArgument(_))));
    }
}
