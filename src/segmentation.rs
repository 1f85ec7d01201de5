//! The result of one frame: an id map plus the list of segments, and COCO compressed RLE
//! for masks (the encoding the JSON frame record uses, decodable by pycocotools).

use gstreamer::glib;
use serde::{Deserialize, Serialize};

/// Which inference to run, and which one a result came from. Also the `mask2former`
/// element's `task` property (its nicks are the names [`Task::as_str`] gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, glib::Enum)]
#[serde(rename_all = "lowercase")]
#[repr(u32)]
#[enum_type(name = "GstSegstreamTask")]
pub enum Task {
    #[default]
    #[enum_value(name = "Panoptic: things and stuff, one segment per instance", nick = "panoptic")]
    Panoptic = 0,
    #[enum_value(name = "Instance: things only, segments may overlap in score order", nick = "instance")]
    Instance = 1,
    #[enum_value(name = "Semantic: one segment per class", nick = "semantic")]
    Semantic = 2,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Panoptic => "panoptic",
            Task::Instance => "instance",
            Task::Semantic => "semantic",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "panoptic" => Ok(Task::Panoptic),
            "instance" => Ok(Task::Instance),
            "semantic" => Ok(Task::Semantic),
            other => Err(crate::Error::InvalidArgument(format!(
                "unknown task {other:?} (expected panoptic, instance or semantic)"
            ))),
        }
    }
}

/// One segment of a [`Segmentation`]. `id` is the value its pixels hold in the id map
/// (ids start at 1; 0 means "no segment").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: u32,
    pub label_id: u32,
    pub label: String,
    pub score: f32,
    pub is_thing: bool,
    /// Number of pixels of the id map that hold `id` (panoptic, semantic). For instance
    /// results, the area of the instance's own mask, pixels painted over by a later
    /// overlapping instance included.
    pub area: u64,
    /// Tight box around the segment's pixels: `[x, y, width, height]` (instance results:
    /// around the instance's own mask, as `area`).
    pub bbox: [u32; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// Frame-size id map (row-major, `width * height`, 0 = no segment) plus its segments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segmentation {
    pub width: u32,
    pub height: u32,
    pub task: Task,
    pub ids: Vec<u32>,
    pub segments: Vec<Segment>,
}

/// COCO run-length encoding of a binary mask, as pycocotools makes it: `size` is
/// `[height, width]`; `counts` are run lengths over the pixels in **column-major** order
/// (down the first column, then the next), alternating 0-runs and 1-runs and starting
/// with a 0-run (which is 0 when the first pixel is set). The runs always add up to
/// `height * width`; the last run is kept even when it is a 0-run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rle {
    pub size: [u32; 2],
    pub counts: Vec<u32>,
}

impl Rle {
    pub fn height(&self) -> usize {
        self.size[0] as usize
    }
    pub fn width(&self) -> usize {
        self.size[1] as usize
    }

    /// Encode a row-major mask (`height * width` bytes, non-zero = set).
    pub fn from_mask(mask: &[u8], height: usize, width: usize) -> Rle {
        assert_eq!(mask.len(), height * width, "mask size does not match {height}x{width}");
        Self::from_fn(height, width, |i| mask[i] != 0)
    }

    /// Encode the pixels of a row-major id map that hold `id`.
    pub fn from_ids(ids: &[u32], height: usize, width: usize, id: u32) -> Rle {
        assert_eq!(ids.len(), height * width, "id map size does not match {height}x{width}");
        Self::from_fn(height, width, |i| ids[i] == id)
    }

    fn from_fn(height: usize, width: usize, set: impl Fn(usize) -> bool) -> Rle {
        let mut counts = Vec::new();
        let mut cur = false;
        let mut run = 0u32;
        for x in 0..width {
            for y in 0..height {
                let v = set(y * width + x);
                if v != cur {
                    counts.push(run);
                    run = 0;
                    cur = v;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle { size: [height as u32, width as u32], counts }
    }

    /// Check that the runs cover exactly `height * width` pixels.
    pub fn validate(&self) -> crate::Result<()> {
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        let n = self.size[0] as u64 * self.size[1] as u64;
        if total != n {
            return Err(crate::Error::InvalidRle(format!(
                "runs add up to {total} pixels, size {}x{} has {n}",
                self.size[0], self.size[1]
            )));
        }
        Ok(())
    }

    /// Decode to a row-major 0/1 mask.
    pub fn to_mask(&self) -> crate::Result<Vec<u8>> {
        self.validate()?;
        let (h, w) = (self.height(), self.width());
        let mut m = vec![0u8; h * w];
        let mut i = 0usize;
        for (k, &c) in self.counts.iter().enumerate() {
            if k % 2 == 1 {
                for j in i..i + c as usize {
                    m[(j % h) * w + j / h] = 1;
                }
            }
            i += c as usize;
        }
        Ok(m)
    }

    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).map(|&c| c as u64).sum()
    }

    /// Tight `[x, y, width, height]` box of the set pixels (zeros when empty).
    pub fn bbox(&self) -> [u32; 4] {
        let h = self.height() as u64;
        if h == 0 {
            return [0; 4];
        }
        let (mut x0, mut y0, mut x1, mut y1) = (u64::MAX, u64::MAX, 0u64, 0u64);
        let mut i = 0u64;
        for (k, &c) in self.counts.iter().enumerate() {
            let c = c as u64;
            if k % 2 == 1 && c > 0 {
                let (s, e) = (i, i + c - 1);
                let (xs, xe) = (s / h, e / h);
                x0 = x0.min(xs);
                x1 = x1.max(xe);
                if xs == xe {
                    y0 = y0.min(s % h);
                    y1 = y1.max(e % h);
                } else {
                    // The run wraps into the next column: it holds a column's last row
                    // and the next column's first.
                    y0 = 0;
                    y1 = h - 1;
                }
            }
            i += c;
        }
        if x0 == u64::MAX {
            return [0; 4];
        }
        [x0 as u32, y0 as u32, (x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32]
    }

    /// pycocotools' compressed string (`rleToString`): each count, minus the count two
    /// places before it from the fourth count on, as a signed LEB128-like sequence of
    /// 5-bit groups, 6 bits a character (`0x20` = more follows), offset by 48 (`'0'`).
    pub fn to_compressed(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for i in 0..self.counts.len() {
            let mut x = self.counts[i] as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parse pycocotools' compressed string (`rleFrString`) for a `height × width` mask.
    pub fn from_compressed(s: &str, height: usize, width: usize) -> crate::Result<Rle> {
        let bad = |m: String| crate::Error::InvalidRle(m);
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0usize;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0u32;
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err(bad(format!("string ends inside a count at character {p}")));
                };
                if !(48..48 + 64).contains(&b) {
                    return Err(bad(format!("character {:?} at {p} is outside '0'..'o'", b as char)));
                }
                if k >= 12 {
                    return Err(bad(format!("count at character {p} is too long")));
                }
                let c = (b - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            if !(0..=u32::MAX as i64).contains(&x) {
                return Err(bad(format!("count #{m} decodes to {x}")));
            }
            counts.push(x as u32);
        }
        let rle = Rle { size: [height as u32, width as u32], counts };
        rle.validate()?;
        Ok(rle)
    }
}

impl Segmentation {
    /// The segment with this id.
    pub fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Row-major 0/1 mask of the pixels that hold `id`.
    pub fn mask(&self, id: u32) -> Vec<u8> {
        self.ids.iter().map(|&v| (v == id) as u8).collect()
    }

    /// RLE of the pixels that hold `id`.
    pub fn rle(&self, id: u32) -> Rle {
        Rle::from_ids(&self.ids, self.height as usize, self.width as usize, id)
    }

    /// RLE of every segment, in `segments` order, from one pass over the id map.
    ///
    /// A segment's runs change where the column-major walk meets a pixel whose id differs
    /// from the one before it: `(y, x)` vs `(y-1, x)`, or the bottom of the previous
    /// column at `y = 0`. Rows are compared with the row above (contiguous, in parallel
    /// bands); the few changes are then put in column-major order with a stable counting
    /// sort on the column, and each segment's counts are the gaps between its changes.
    pub fn rles(&self) -> Vec<Rle> {
        use rayon::prelude::*;
        let (h, w) = (self.height as usize, self.width as usize);
        let size = [self.height, self.width];
        let n = self.segments.len();
        if n == 0 {
            return Vec::new();
        }
        if h == 0 || w == 0 || self.ids.len() != h * w {
            return self.segments.iter().map(|_| Rle { size, counts: vec![(h * w) as u32] }).collect();
        }
        let ids = &self.ids;
        // Changes (x, y, previous id, id), row-major within each band.
        let band = 32usize;
        let parts: Vec<Vec<[u32; 4]>> = (0..h.div_ceil(band))
            .into_par_iter()
            .map(|bi| {
                let mut out = Vec::new();
                for y in bi * band..((bi + 1) * band).min(h) {
                    let row = &ids[y * w..(y + 1) * w];
                    if y == 0 {
                        let mut prev = u32::MAX; // before the first pixel: nothing
                        for (x, &v) in row.iter().enumerate() {
                            if v != prev {
                                out.push([x as u32, 0, prev, v]);
                            }
                            prev = ids[(h - 1) * w + x];
                        }
                        continue;
                    }
                    let up = &ids[(y - 1) * w..y * w];
                    let mut x = 0;
                    while x < w {
                        let e = (x + 16).min(w);
                        if row[x..e] != up[x..e] {
                            for xx in x..e {
                                if row[xx] != up[xx] {
                                    out.push([xx as u32, y as u32, up[xx], row[xx]]);
                                }
                            }
                        }
                        x = e;
                    }
                }
                out
            })
            .collect();
        // Stable counting sort by column → column-major order.
        let mut start = vec![0usize; w + 1];
        for p in &parts {
            for c in p {
                start[c[0] as usize + 1] += 1;
            }
        }
        for x in 0..w {
            start[x + 1] += start[x];
        }
        let total_changes = start[w];
        let mut sorted = vec![[0u32; 3]; total_changes];
        for p in &parts {
            for c in p {
                let slot = &mut start[c[0] as usize];
                sorted[*slot] = [c[0] * h as u32 + c[1], c[2], c[3]];
                *slot += 1;
            }
        }
        let max_id = self.segments.iter().map(|s| s.id).max().unwrap_or(0) as usize;
        let mut slot = vec![u32::MAX; max_id + 1];
        for (i, s) in self.segments.iter().enumerate() {
            slot[s.id as usize] = i as u32;
        }
        let slot_of = |id: u32| slot.get(id as usize).copied().unwrap_or(u32::MAX);
        let mut last = vec![0u32; n];
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &[pos, from, to] in &sorted {
            for id in [from, to] {
                let s = slot_of(id);
                if s != u32::MAX {
                    let s = s as usize;
                    counts[s].push(pos - last[s]);
                    last[s] = pos;
                }
            }
        }
        let total = (h * w) as u32;
        counts
            .into_iter()
            .zip(last)
            .map(|(mut c, l)| {
                c.push(total - l);
                Rle { size, counts: c }
            })
            .collect()
    }
}
