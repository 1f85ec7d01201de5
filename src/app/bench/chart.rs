//! The stage-breakdown chart of `segstream bench --chart`: one horizontal bar per
//! pipeline, split into its stages (mean ms per frame), with a legend; an 8-bit RGB PNG.
//! Drawn with the overlay's 8×8 bitmap font and the `png` crate, so it needs no font
//! files and no plotting library.

use std::path::Path;

use anyhow::{Context, Result};

/// One bar: a name and `(stage, ms)` pieces in order.
#[derive(Debug, Clone)]
pub struct Bar {
    pub name: String,
    pub pieces: Vec<(String, f64)>,
}

const COLORS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]) {
        for y in y0.min(self.h)..y1.min(self.h) {
            for x in x0.min(self.w)..x1.min(self.w) {
                self.px[(y * self.w + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    }

    /// Text at scale `k` (8k px high), dark grey.
    fn text(&mut self, x: usize, y: usize, s: &str, k: usize) {
        use font8x8::UnicodeFonts;
        for (n, ch) in s.chars().enumerate() {
            let g = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
            for (gy, bits) in g.iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) != 0 {
                        let (px, py) = (x + (n * 8 + gx) * k, y + gy * k);
                        self.rect(px, py, px + k, py + k, [40, 40, 40]);
                    }
                }
            }
        }
    }
}

/// Draw the bars (same ms scale for all) with a title, and write the PNG.
pub fn write_chart(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    let (w, left, right) = (960usize, 200usize, 40usize);
    let bar_h = 44usize;
    let mut stages: Vec<String> = Vec::new();
    for b in bars {
        for (s, _) in &b.pieces {
            if !stages.contains(s) {
                stages.push(s.clone());
            }
        }
    }
    let legend_rows = stages.len().div_ceil(4);
    let h = 60 + bars.len() * (bar_h + 20) + 40 + legend_rows * 24 + 20;
    let mut c = Canvas { w, h, px: vec![255; w * h * 3] };
    c.text(16, 16, title, 2);
    let max_ms = bars.iter().map(|b| b.pieces.iter().map(|p| p.1.max(0.0)).sum::<f64>()).fold(0.0, f64::max).max(1e-9);
    let scale = (w - left - right) as f64 / max_ms;
    let mut y = 60;
    for b in bars {
        let name: String = b.name.chars().take(22).collect();
        c.text(12, y + bar_h / 2 - 8, &name, 1);
        let mut x = left as f64;
        for (s, ms) in &b.pieces {
            let i = stages.iter().position(|t| t == s).unwrap_or(0);
            let x1 = x + ms.max(0.0) * scale;
            c.rect(x.round() as usize, y, x1.round() as usize, y + bar_h, COLORS[i % COLORS.len()]);
            x = x1;
        }
        let total: f64 = b.pieces.iter().map(|p| p.1).sum();
        let label = format!("{total:.0} ms/frame");
        let lx = ((x as usize) + 6).min(w.saturating_sub(label.len() * 8 + 4));
        c.text(lx, y + bar_h + 4, &label, 1);
        y += bar_h + 20;
    }
    // Axis line and scale mark.
    c.rect(left, y, w - right, y + 1, [0, 0, 0]);
    c.text(left, y + 6, "0", 1);
    let max_label = format!("{max_ms:.0} ms");
    c.text(w - right - max_label.len() * 8, y + 6, &max_label, 1);
    y += 36;
    for (i, s) in stages.iter().enumerate() {
        let (col, row) = (i % 4, i / 4);
        let (x, yy) = (left + col * 180, y + row * 24);
        c.rect(x, yy, x + 16, yy + 16, COLORS[i % COLORS.len()]);
        c.text(x + 22, yy + 4, s, 1);
    }

    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    wr.write_image_data(&c.px).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
