//! Labels: ASCII text in the 8×8 `font8x8` font, white on a dark box, scaled with the
//! frame so that it reads the same at 360p and at 4K.

use super::palette;
use crate::frame::{FrameMut, PixelFormat};

/// Font pixels per glyph side.
pub const GLYPH: usize = 8;
/// Opacity of the dark box behind the text, out of 256 (the frame shows through a little).
pub const BOX_ALPHA: u32 = 200;
/// Colour of the text.
pub const TEXT_RGB: [u8; 3] = [255, 255, 255];

/// Frame pixels per font pixel for a frame `height` rows high: `max(1, round(height / 360))`
/// (1 at 360p, 2 at 720p, 3 at 1080p, 6 at 2160p).
pub fn text_scale(height: usize) -> usize {
    ((height + 180) / 360).max(1)
}

/// Where a label is drawn, in frame pixels: the box (text plus a margin of one font pixel
/// on each side), clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextBox {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    /// Frame pixels per font pixel.
    pub scale: usize,
}

impl TextBox {
    /// The box of `text` at `scale`, centred on `(cx, cy)` and moved (not cut) to lie
    /// inside a `frame_w`×`frame_h` frame; cut only where it is larger than the frame.
    /// Its corner is on even coordinates, so that a 4:2:0 chroma sample is either wholly
    /// inside or wholly outside it.
    pub fn centred(text: &str, scale: usize, (cx, cy): (usize, usize), frame_w: usize, frame_h: usize) -> TextBox {
        let scale = scale.max(1);
        let n = text.chars().count();
        let (bw, bh) = ((n * GLYPH + 2) * scale, (GLYPH + 2) * scale);
        let place = |c: usize, len: usize, frame: usize| c.saturating_sub(len / 2).min(frame.saturating_sub(len)) & !1;
        let (x, y) = (place(cx, bw, frame_w), place(cy, bh, frame_h));
        TextBox { x, y, width: bw.min(frame_w - x), height: bh.min(frame_h - y), scale }
    }

    /// Whether frame pixel `(x, y)` of the box is a lit pixel of `glyphs`' text.
    #[inline]
    fn lit(&self, glyphs: &[[u8; 8]], x: usize, y: usize) -> bool {
        let (fx, fy) = ((x - self.x) / self.scale, (y - self.y) / self.scale);
        if fx == 0 || fy == 0 || fy > GLYPH {
            return false;
        }
        let (n, gx, gy) = ((fx - 1) / GLYPH, (fx - 1) % GLYPH, fy - 1);
        glyphs.get(n).is_some_and(|g| g[gy] & (1 << gx) != 0)
    }
}

/// The glyphs of `text` (`?` for characters the font lacks).
pub fn glyphs(text: &str) -> Vec<[u8; 8]> {
    use font8x8::UnicodeFonts;
    text.chars()
        .map(|ch| font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]))
        .collect()
}

#[inline]
fn blend(dst: u8, src: u8, a: u32) -> u8 {
    super::blend(dst, src, a)
}

/// Draw `text` in `b`: lit font pixels in [`TEXT_RGB`], the rest of the box darkened
/// ([`BOX_ALPHA`] of black). YUV frames: luma per pixel; each chroma sample of the box is
/// made neutral (a lit pixel among its four) or blended towards neutral like the box.
pub fn draw_text_box(frame: &mut FrameMut<'_>, b: &TextBox, text: &str) {
    let (w, h) = (frame.width, frame.height);
    let (x1, y1) = ((b.x + b.width).min(w), (b.y + b.height).min(h));
    if b.x >= x1 || b.y >= y1 {
        return;
    }
    let g = glyphs(text);
    let s = frame.strides;
    match frame.format {
        PixelFormat::Rgb | PixelFormat::Rgba | PixelFormat::Bgrx => {
            let bpp = if frame.format == PixelFormat::Rgb { 3 } else { 4 };
            let text_px = if frame.format == PixelFormat::Bgrx { [TEXT_RGB[2], TEXT_RGB[1], TEXT_RGB[0]] } else { TEXT_RGB };
            for y in b.y..y1 {
                let row = &mut frame.planes[0][y * s[0]..];
                for x in b.x..x1 {
                    let px = &mut row[x * bpp..x * bpp + 3];
                    if b.lit(&g, x, y) {
                        px.copy_from_slice(&text_px);
                    } else {
                        for c in px.iter_mut() {
                            *c = blend(*c, 0, BOX_ALPHA);
                        }
                    }
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let [text_y, ..] = palette::rgb_to_yuv(TEXT_RGB);
            let [black_y, nu, nv] = palette::rgb_to_yuv([0, 0, 0]);
            for y in b.y..y1 {
                let row = &mut frame.planes[0][y * s[0]..];
                for (x, v) in row.iter_mut().enumerate().take(x1).skip(b.x) {
                    *v = if b.lit(&g, x, y) { text_y } else { blend(*v, black_y, BOX_ALPHA) };
                }
            }
            for cy in b.y / 2..y1.div_ceil(2).min(h / 2) {
                for cx in b.x / 2..x1.div_ceil(2).min(w / 2) {
                    let any_lit = (0..4).any(|k| {
                        let (x, y) = (2 * cx + k % 2, 2 * cy + k / 2);
                        x >= b.x && x < x1 && y >= b.y && y < y1 && b.lit(&g, x, y)
                    });
                    let put = |c: &mut u8, n: u8| *c = if any_lit { n } else { blend(*c, n, BOX_ALPHA) };
                    if frame.format == PixelFormat::Nv12 {
                        let i = cy * s[1] + 2 * cx;
                        put(&mut frame.planes[1][i], nu);
                        put(&mut frame.planes[1][i + 1], nv);
                    } else {
                        put(&mut frame.planes[1][cy * s[1] + cx], nu);
                        put(&mut frame.planes[2][cy * s[2] + cx], nv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_follows_the_frame_height() {
        assert_eq!([240, 360, 480, 540, 720, 1080, 2160].map(text_scale), [1, 1, 1, 2, 2, 3, 6]);
    }

    #[test]
    fn box_is_centred_then_moved_into_the_frame() {
        // "ab" at scale 2: (2·8 + 2)·2 = 36 wide, (8 + 2)·2 = 20 high.
        let b = TextBox::centred("ab", 2, (100, 50), 640, 360);
        assert_eq!(b, TextBox { x: 82, y: 40, width: 36, height: 20, scale: 2 });
        let b = TextBox::centred("ab", 2, (3, 355), 640, 360);
        assert_eq!((b.x, b.y, b.width, b.height), (0, 340, 36, 20));
        let b = TextBox::centred("abcdef", 1, (5, 5), 20, 6);
        assert_eq!((b.x, b.y, b.width, b.height), (0, 0, 20, 6));
    }

    #[test]
    fn lit_pixels_follow_the_font_at_scale() {
        let g = glyphs("A");
        let b = TextBox::centred("A", 3, (50, 50), 200, 200);
        for fy in 0..10 {
            for fx in 0..10 {
                let want = (1..=8).contains(&fx) && (1..=8).contains(&fy) && g[0][fy - 1] & (1 << (fx - 1)) != 0;
                for (dx, dy) in [(0, 0), (2, 2), (0, 2)] {
                    assert_eq!(b.lit(&g, b.x + fx * 3 + dx, b.y + fy * 3 + dy), want, "{fx},{fy}");
                }
            }
        }
    }
}
