//! The CPU overlay on a known frame: a flat frame with two rectangles (a thing and a stuff
//! region) and nothing else. Where contours, label boxes and text must be, and must not be,
//! in RGB and in 4:2:0 YUV, and how the text scales with the frame height.
//!
//! The glyphs are checked against `font8x8` itself, not against the renderer's own
//! geometry: each label box is found as the pixels that are neither the frame, the tint nor
//! the contour colour.

use font8x8::UnicodeFonts;
use segstream::frame::{FrameMut, PixelFormat};
use segstream::model::Label;
use segstream::render::palette::rgb_to_yuv;
use segstream::render::{overlay, ColorBy, OverlayOptions};
use segstream::segmentation::{Segment, Segmentation, Task};

const GREY: u8 = 100;
const RED: [u8; 3] = [220, 40, 40];
const BLUE: [u8; 3] = [40, 60, 220];

fn labels() -> Vec<Label> {
    vec![
        Label { id: 0, name: "square".into(), isthing: true, color: RED },
        Label { id: 1, name: "sky".into(), isthing: false, color: BLUE },
    ]
}

/// Rectangles `[x0, y0, x1, y1)`: A (id 1, "square", a thing) on the left, B (id 2,
/// "sky", stuff) on the right, the rest id 0 (no segment).
fn rects(w: usize, h: usize) -> [[usize; 4]; 2] {
    [[w / 32, h / 6, w * 15 / 32, h * 5 / 6], [w * 17 / 32, h / 6, w * 31 / 32, h * 5 / 6]]
}

const TEXTS: [&str; 2] = ["square 0.90", "sky 0.80"];

fn scene(w: usize, h: usize) -> Segmentation {
    let rs = rects(w, h);
    let mut ids = vec![0u32; w * h];
    let mut segments = Vec::new();
    for (k, r) in rs.iter().enumerate() {
        for y in r[1]..r[3] {
            for x in r[0]..r[2] {
                ids[y * w + x] = k as u32 + 1;
            }
        }
        segments.push(Segment {
            id: k as u32 + 1,
            label_id: k as u32,
            label: ["square", "sky"][k].into(),
            score: [0.9, 0.8][k],
            is_thing: k == 0,
            area: ((r[2] - r[0]) * (r[3] - r[1])) as u64,
            bbox: [r[0] as u32, r[1] as u32, (r[2] - r[0]) as u32, (r[3] - r[1]) as u32],
            track_id: None,
        });
    }
    Segmentation { width: w as u32, height: h as u32, task: Task::Panoptic, ids, segments }
}

fn opts(labels: bool) -> OverlayOptions {
    OverlayOptions { alpha: 0.5, contours: true, labels, color_by: ColorBy::Class }
}

fn blend(dst: u8, src: u8) -> u8 {
    // alpha 0.5 = 128/256, as the overlay rounds it.
    ((dst as u32 * 128 + src as u32 * 128 + 128) >> 8) as u8
}

/// An overlaid packed RGB frame, read back as `[r, g, b]` per pixel.
struct Rgb {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

impl Rgb {
    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.px[y * self.w + x]
    }
}

fn render_rgb(format: PixelFormat, w: usize, h: usize, labels_on: bool) -> Rgb {
    let bpp = if format == PixelFormat::Rgb { 3 } else { 4 };
    let stride = w * bpp + 8; // padded rows: the overlay must use the stride
    let mut buf = vec![GREY; stride * h];
    let seg = scene(w, h);
    {
        let mut f = FrameMut::new(format, w, h, [&mut buf, &mut [], &mut []], [stride, 0, 0]).unwrap();
        overlay(&mut f, &seg, &labels(), &opts(labels_on)).unwrap();
    }
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let p = &buf[y * stride + x * bpp..][..3];
            px.push(if format == PixelFormat::Bgrx { [p[2], p[1], p[0]] } else { [p[0], p[1], p[2]] });
        }
        // The padding is never written.
        assert!(buf[y * stride + w * bpp..(y + 1) * stride].iter().all(|&b| b == GREY), "row {y}: padding written");
    }
    Rgb { w, h, px }
}

/// The box of pixels inside rectangle `r` (contour excluded) that are neither `tint` nor
/// `colour`: `[x0, y0, x1, y1)`, or `None`.
fn changed_box(f: &Rgb, r: [usize; 4], tint: [u8; 3], colour: [u8; 3]) -> Option<[usize; 4]> {
    let mut b: Option<[usize; 4]> = None;
    for y in r[1] + 1..r[3] - 1 {
        for x in r[0] + 1..r[2] - 1 {
            let p = f.at(x, y);
            if p != tint && p != colour {
                let b = b.get_or_insert([x, y, x + 1, y + 1]);
                *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
            }
        }
    }
    b
}

/// Check the label box `b` of `text` at `scale`: every font pixel of every glyph is a
/// `scale`×`scale` block, `lit(x, y)` where the font has a bit and not elsewhere (the
/// one-font-pixel margin included). Returns the number of lit frame pixels.
fn check_glyphs(b: [usize; 4], text: &str, scale: usize, lit: impl Fn(usize, usize) -> bool) -> usize {
    let n = text.chars().count();
    assert_eq!(b[2] - b[0], (n * 8 + 2) * scale, "{text}: box width {b:?} at scale {scale}");
    assert_eq!(b[3] - b[1], 10 * scale, "{text}: box height {b:?} at scale {scale}");
    let mut count = 0;
    for fy in 0..10 {
        for fx in 0..n * 8 + 2 {
            let on = (1..=8).contains(&fy) && (1..=n * 8).contains(&fx) && {
                let g = font8x8::BASIC_FONTS.get(text.chars().nth((fx - 1) / 8).unwrap()).unwrap();
                g[fy - 1] & (1 << ((fx - 1) % 8)) != 0
            };
            for dy in 0..scale {
                for dx in 0..scale {
                    let (x, y) = (b[0] + fx * scale + dx, b[1] + fy * scale + dy);
                    assert_eq!(lit(x, y), on, "{text} at scale {scale}: font pixel ({fx},{fy}), frame ({x},{y})");
                    count += on as usize;
                }
            }
        }
    }
    count
}

const WHITE: [u8; 3] = [255, 255, 255];

/// The full check of one RGB-family frame with labels on. Returns each label's box.
fn check_rgb_frame(f: &Rgb, scale: usize) -> Vec<[usize; 4]> {
    let rs = rects(f.w, f.h);
    let grey = [GREY; 3];
    let mut boxes = Vec::new();
    for (k, (r, colour)) in rs.iter().zip([RED, BLUE]).enumerate() {
        let tint = colour.map(|c| blend(GREY, c));
        // Contours: every border pixel of the rectangle in the full colour; just inside, the tint.
        for x in r[0]..r[2] {
            assert_eq!(f.at(x, r[1]), colour, "rect {k}: top contour at x {x}");
            assert_eq!(f.at(x, r[3] - 1), colour, "rect {k}: bottom contour at x {x}");
        }
        for y in r[1]..r[3] {
            assert_eq!(f.at(r[0], y), colour, "rect {k}: left contour at y {y}");
            assert_eq!(f.at(r[2] - 1, y), colour, "rect {k}: right contour at y {y}");
        }
        assert_ne!(tint, colour);
        for (x, y) in [(r[0] + 1, r[1] + 1), (r[2] - 2, r[3] - 2), (r[0] + 1, (r[1] + r[3]) / 2)] {
            assert_eq!(f.at(x, y), tint, "rect {k}: interior at ({x},{y})");
        }
        // One label, at the rectangle's centre, inside the rectangle.
        let b = changed_box(f, *r, tint, colour).unwrap_or_else(|| panic!("rect {k}: no label drawn"));
        let (cx, cy) = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2);
        let (bx, by) = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        assert!(bx.abs_diff(cx) <= scale + 2 && by.abs_diff(cy) <= scale + 2, "rect {k}: label box {b:?} not centred on ({cx},{cy})");
        let lit = check_glyphs(b, TEXTS[k], scale, |x, y| f.at(x, y) == WHITE);
        assert!(lit > 20 * scale * scale, "rect {k}: only {lit} text pixels");
        // Behind the text: a dark box.
        for y in b[1]..b[3] {
            for x in b[0]..b[2] {
                let p = f.at(x, y);
                assert!(p == WHITE || p.iter().all(|&c| c < 60), "rect {k}: ({x},{y}) = {p:?} is neither text nor dark box");
            }
        }
        boxes.push(b);
    }
    // Outside the rectangles: untouched.
    for y in 0..f.h {
        for x in 0..f.w {
            if !rs.iter().any(|r| (r[0]..r[2]).contains(&x) && (r[1]..r[3]).contains(&y)) {
                assert_eq!(f.at(x, y), grey, "({x},{y}) outside the segments was drawn on");
            }
        }
    }
    boxes
}

#[test]
fn labels_and_contours_on_a_known_rgb_frame() {
    for format in [PixelFormat::Rgb, PixelFormat::Rgba, PixelFormat::Bgrx] {
        let f = render_rgb(format, 640, 360, true);
        let boxes = check_rgb_frame(&f, 1);
        // "square 0.90": 11 glyphs → (88 + 2) × 10 pixels at 360 rows.
        assert_eq!(boxes[0][2] - boxes[0][0], 90, "{format:?}");
    }
}

#[test]
fn labels_false_draws_masks_and_contours_only() {
    let f = render_rgb(PixelFormat::Rgb, 640, 360, false);
    for (k, (r, colour)) in rects(640, 360).iter().zip([RED, BLUE]).enumerate() {
        let tint = colour.map(|c| blend(GREY, c));
        assert_eq!(changed_box(&f, *r, tint, colour), None, "rect {k}: something besides mask and contour");
        assert_eq!(f.at(r[0], r[1]), colour);
    }
    assert!(!f.px.contains(&WHITE), "text drawn with labels=false");
}

#[test]
fn glyphs_scale_with_the_frame_height() {
    // 360 rows → 1 frame pixel per font pixel; 2160 rows (4K) → 6; 1080 → 3.
    let text_height = |f: &Rgb, b: [usize; 4]| {
        let rows: Vec<usize> = (b[1]..b[3]).filter(|&y| (b[0]..b[2]).any(|x| f.at(x, y) == WHITE)).collect();
        rows.last().unwrap() - rows[0] + 1
    };
    let small = render_rgb(PixelFormat::Rgb, 640, 360, true);
    let b_small = check_rgb_frame(&small, 1);
    let big = render_rgb(PixelFormat::Rgb, 1280, 2160, true);
    let b_big = check_rgb_frame(&big, 6);
    for k in 0..2 {
        let (hs, hb) = (text_height(&small, b_small[k]), text_height(&big, b_big[k]));
        assert!(hs >= 5, "label {k}: text {hs} rows high at 360 rows");
        assert!(hb >= 6 * hs, "label {k}: text {hb} rows high at 2160 rows, {hs} at 360");
        assert!(b_big[k][2] - b_big[k][0] >= 6 * (b_small[k][2] - b_small[k][0]));
    }
    let mid = render_rgb(PixelFormat::Rgb, 960, 1080, true);
    check_rgb_frame(&mid, 3);
}

/// YUV 4:2:0: luma of the text is white's (235), of the contour the colour's; chroma is
/// neutral (128) wherever a text pixel is in the 2×2 block; the rest of the frame is
/// untouched.
#[test]
fn labels_and_contours_in_nv12_and_i420() {
    let (w, h) = (640usize, 360usize);
    let (y0, u0, v0) = (120u8, 100u8, 150u8);
    for format in [PixelFormat::Nv12, PixelFormat::I420] {
        let sy = w + 4;
        let mut yp = vec![y0; sy * h];
        let (mut p1, mut p2, s1, s2);
        if format == PixelFormat::Nv12 {
            s1 = w + 2;
            s2 = 0;
            p1 = vec![0u8; s1 * h / 2];
            for row in p1.chunks_mut(s1) {
                for c in 0..w / 2 {
                    row[2 * c] = u0;
                    row[2 * c + 1] = v0;
                }
            }
            p2 = Vec::new();
        } else {
            s1 = w / 2 + 2;
            s2 = w / 2 + 6;
            p1 = vec![u0; s1 * h / 2];
            p2 = vec![v0; s2 * h / 2];
        }
        let seg = scene(w, h);
        {
            let mut f = FrameMut::new(format, w, h, [&mut yp, &mut p1, &mut p2], [sy, s1, s2]).unwrap();
            overlay(&mut f, &seg, &labels(), &opts(true)).unwrap();
        }
        let luma = |x: usize, y: usize| yp[y * sy + x];
        let chroma = |cx: usize, cy: usize| -> (u8, u8) {
            if format == PixelFormat::Nv12 {
                (p1[cy * s1 + 2 * cx], p1[cy * s1 + 2 * cx + 1])
            } else {
                (p1[cy * s1 + cx], p2[cy * s2 + cx])
            }
        };
        let rs = rects(w, h);
        for (k, (r, colour)) in rs.iter().zip([RED, BLUE]).enumerate() {
            let [cy_, cu, cv] = rgb_to_yuv(colour);
            let tint_y = blend(y0, cy_);
            assert_eq!(luma(r[0], (r[1] + r[3]) / 2), cy_, "{format:?} rect {k}: left contour");
            assert_eq!(luma(r[2] - 1, r[1]), cy_, "{format:?} rect {k}: top-right contour");
            assert_eq!(luma(r[0] + 2, r[1] + 2), tint_y, "{format:?} rect {k}: interior");
            assert_eq!(chroma((r[0] + 4) / 2, (r[1] + 4) / 2), (blend(u0, cu), blend(v0, cv)), "{format:?} rect {k}: interior chroma");
            // The label box: luma neither the tint nor the contour.
            let mut b: Option<[usize; 4]> = None;
            for y in r[1] + 1..r[3] - 1 {
                for x in r[0] + 1..r[2] - 1 {
                    if luma(x, y) != tint_y && luma(x, y) != cy_ {
                        let b = b.get_or_insert([x, y, x + 1, y + 1]);
                        *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
                    }
                }
            }
            let b = b.unwrap_or_else(|| panic!("{format:?} rect {k}: no label"));
            check_glyphs(b, TEXTS[k], 1, |x, y| luma(x, y) == 235);
            for y in b[1]..b[3] {
                for x in b[0]..b[2] {
                    assert!(luma(x, y) == 235 || luma(x, y) < 50, "{format:?} ({x},{y}): luma {} in the box", luma(x, y));
                }
            }
            // Chroma: neutral where a text pixel is; at least near neutral in the box.
            assert!(b[0].is_multiple_of(2) && b[1].is_multiple_of(2), "{format:?}: box {b:?} not on the chroma grid");
            for cy in b[1] / 2..b[3] / 2 {
                for cx in b[0] / 2..b[2] / 2 {
                    let (u, v) = chroma(cx, cy);
                    let lit = (0..4).any(|i| luma(2 * cx + i % 2, 2 * cy + i / 2) == 235);
                    if lit {
                        assert_eq!((u, v), (128, 128), "{format:?} chroma ({cx},{cy}) under text");
                    } else {
                        assert!(u.abs_diff(128) <= 30 && v.abs_diff(128) <= 30, "{format:?} chroma ({cx},{cy}) = {u},{v} in the box");
                    }
                }
            }
        }
        // Outside the rectangles: untouched luma and chroma.
        for y in 0..h {
            for x in 0..w {
                let inside = rs.iter().any(|r| (r[0]..r[2]).contains(&x) && (r[1]..r[3]).contains(&y));
                if !inside {
                    assert_eq!(luma(x, y), y0, "{format:?} ({x},{y})");
                    if x % 2 == 0 && y % 2 == 0 {
                        assert_eq!(chroma(x / 2, y / 2), (u0, v0), "{format:?} chroma at ({x},{y})");
                    }
                }
            }
        }
    }
}

/// A label in a segment smaller than its box, at the frame's corner: moved into the frame,
/// never written past it (the test would panic on an out-of-bounds write otherwise).
#[test]
fn a_label_at_the_frame_corner_stays_in_the_frame() {
    let (w, h) = (64usize, 36usize);
    let mut ids = vec![0u32; w * h];
    ids[(h - 1) * w + w - 1] = 1;
    let seg = Segmentation {
        width: w as u32,
        height: h as u32,
        task: Task::Panoptic,
        ids,
        segments: vec![Segment {
            id: 1,
            label_id: 0,
            label: "square".into(),
            score: 0.5,
            is_thing: true,
            area: 1,
            bbox: [w as u32 - 1, h as u32 - 1, 1, 1],
            track_id: None,
        }],
    };
    let mut buf = vec![GREY; w * h * 3];
    let mut f = FrameMut::new(PixelFormat::Rgb, w, h, [&mut buf, &mut [], &mut []], [w * 3, 0, 0]).unwrap();
    overlay(&mut f, &seg, &labels(), &opts(true)).unwrap();
    // "square 0.50" is 90 pixels wide: cut to the frame's 64, bottom 10 rows, from x 0.
    let white = |x: usize, y: usize| buf[(y * w + x) * 3..][..3] == WHITE;
    assert!((0..w).any(|x| (h - 9..h - 1).any(|y| white(x, y))), "no text in the bottom rows");
    assert!((0..w).all(|x| (0..h - 10).all(|y| !white(x, y))), "text above the box");
}
