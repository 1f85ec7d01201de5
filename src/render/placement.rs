//! Where a segment's label goes: a point inside the segment, far from its border.
//!
//! One chamfer distance transform (3-4 weights, two passes) over the id map sampled every
//! `step` pixels gives each sample its distance to the nearest sample of another id (the
//! frame's edge counts as another id). A segment's anchor is its sample farthest from the
//! border (ties: the one nearest the centre of the segment's box), i.e. roughly the centre
//! of the largest disc inside the segment, which stays inside the segment for rings, L
//! shapes and the stuff around things, where the box centre does not. With `step` = the
//! text scale the grid stays about 640×360 at every frame size (≈ 1 ms).
//! A segment too thin to hold a sample gets the pixel of its box nearest to the box
//! centre; a segment with no pixel in the id map gets no anchor.

use crate::segmentation::Segmentation;

const INF: u32 = u32::MAX / 2;

/// Anchor `(x, y)` in frame pixels for each of `seg.segments` (same order); `None` for a
/// segment with no pixel in the id map. `seg.ids` must hold `width * height` ids.
pub fn label_anchors(seg: &Segmentation, step: usize) -> Vec<Option<(usize, usize)>> {
    let (w, h) = (seg.width as usize, seg.height as usize);
    let step = step.max(1);
    if w == 0 || h == 0 || seg.ids.len() < w * h || seg.segments.is_empty() {
        return vec![None; seg.segments.len()];
    }
    let (gw, gh) = (w.div_ceil(step), h.div_ceil(step));
    // The frame position of grid cell (gx, gy): the centre of its step×step block.
    let px = |g: usize, n: usize| (g * step + step / 2).min(n - 1);
    let mut gid = vec![0u32; gw * gh];
    for gy in 0..gh {
        let row = &seg.ids[px(gy, h) * w..][..w];
        for gx in 0..gw {
            gid[gy * gw + gx] = row[px(gx, w)];
        }
    }
    let mut dist = vec![INF; gw * gh];
    for gy in 0..gh {
        for gx in 0..gw {
            let i = gy * gw + gx;
            let id = gid[i];
            let border = gx == 0
                || gy == 0
                || gx + 1 == gw
                || gy + 1 == gh
                || gid[i - 1] != id
                || gid[i + 1] != id
                || gid[i - gw] != id
                || gid[i + gw] != id;
            if border {
                dist[i] = 0;
            }
        }
    }
    // Forward pass (up-left neighbours), then backward (down-right).
    for gy in 0..gh {
        for gx in 0..gw {
            let i = gy * gw + gx;
            let mut d = dist[i];
            if gx > 0 {
                d = d.min(dist[i - 1] + 3);
            }
            if gy > 0 {
                d = d.min(dist[i - gw] + 3);
                if gx > 0 {
                    d = d.min(dist[i - gw - 1] + 4);
                }
                if gx + 1 < gw {
                    d = d.min(dist[i - gw + 1] + 4);
                }
            }
            dist[i] = d;
        }
    }
    for gy in (0..gh).rev() {
        for gx in (0..gw).rev() {
            let i = gy * gw + gx;
            let mut d = dist[i];
            if gx + 1 < gw {
                d = d.min(dist[i + 1] + 3);
            }
            if gy + 1 < gh {
                d = d.min(dist[i + gw] + 3);
                if gx + 1 < gw {
                    d = d.min(dist[i + gw + 1] + 4);
                }
                if gx > 0 {
                    d = d.min(dist[i + gw - 1] + 4);
                }
            }
            dist[i] = d;
        }
    }

    // id → index into seg.segments.
    let max = seg.segments.iter().map(|s| s.id as usize).max().unwrap_or(0);
    let mut index = vec![usize::MAX; max + 1];
    for (k, s) in seg.segments.iter().enumerate() {
        index[s.id as usize] = k;
    }
    // Twice the box centre, so that the squared distances stay integral.
    let centre2: Vec<(i64, i64)> = seg
        .segments
        .iter()
        .map(|s| (2 * s.bbox[0] as i64 + s.bbox[2] as i64, 2 * s.bbox[1] as i64 + s.bbox[3] as i64))
        .collect();
    // (distance, −squared distance to the box centre, x, y) of the best sample so far.
    let mut best: Vec<Option<(u32, i64, usize, usize)>> = vec![None; seg.segments.len()];
    for gy in 0..gh {
        let y = px(gy, h);
        for gx in 0..gw {
            let i = gy * gw + gx;
            let Some(&k) = index.get(gid[i] as usize) else { continue };
            if k == usize::MAX {
                continue;
            }
            let x = px(gx, w);
            let (cx, cy) = centre2[k];
            let (dx, dy) = (2 * x as i64 + 1 - cx, 2 * y as i64 + 1 - cy);
            let cand = (dist[i], -(dx * dx + dy * dy), x, y);
            if best[k].is_none_or(|b| (cand.0, cand.1) > (b.0, b.1)) {
                best[k] = Some(cand);
            }
        }
    }
    best.iter()
        .zip(&seg.segments)
        .map(|(b, s)| match b {
            Some((_, _, x, y)) => Some((*x, *y)),
            None => nearest_in_box(seg, s.id, s.bbox),
        })
        .collect()
}

/// The pixel of segment `id` inside `bbox` nearest to the box centre (thin segments that
/// the sampling grid missed).
fn nearest_in_box(seg: &Segmentation, id: u32, bbox: [u32; 4]) -> Option<(usize, usize)> {
    let (w, h) = (seg.width as usize, seg.height as usize);
    let (x0, y0) = ((bbox[0] as usize).min(w), (bbox[1] as usize).min(h));
    let (x1, y1) = ((x0 + bbox[2] as usize).min(w), (y0 + bbox[3] as usize).min(h));
    let (cx, cy) = ((x0 + x1) as i64, (y0 + y1) as i64);
    let mut best: Option<(i64, usize, usize)> = None;
    for y in y0..y1 {
        for x in x0..x1 {
            if seg.ids[y * w + x] != id {
                continue;
            }
            let (dx, dy) = (2 * x as i64 + 1 - cx, 2 * y as i64 + 1 - cy);
            let d = dx * dx + dy * dy;
            if best.is_none_or(|b| d < b.0) {
                best = Some((d, x, y));
            }
        }
    }
    best.map(|(_, x, y)| (x, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::{Segment, Task};

    fn segment(id: u32, bbox: [u32; 4], is_thing: bool) -> Segment {
        Segment { id, label_id: 0, label: "x".into(), score: 1.0, is_thing, area: 1, bbox, track_id: None }
    }

    /// A thing (id 1, a 60×40 block at (70, 40)) in a stuff region (id 2, the rest) of a
    /// 200×120 frame.
    fn ring() -> Segmentation {
        let (w, h) = (200usize, 120usize);
        let mut ids = vec![2u32; w * h];
        for y in 40..80 {
            for x in 70..130 {
                ids[y * w + x] = 1;
            }
        }
        Segmentation {
            width: w as u32,
            height: h as u32,
            task: Task::Panoptic,
            ids,
            segments: vec![segment(1, [70, 40, 60, 40], true), segment(2, [0, 0, 200, 120], false)],
        }
    }

    #[test]
    fn the_thing_is_labelled_at_its_centre_and_the_stuff_around_it_outside_it() {
        let seg = ring();
        for step in [1, 2, 3] {
            let a = label_anchors(&seg, step);
            let (x, y) = a[0].unwrap();
            assert!((x as i64 - 100).abs() <= step as i64 && (y as i64 - 60).abs() <= step as i64, "step {step}: thing at {x},{y}");
            let (x, y) = a[1].unwrap();
            assert_eq!(seg.ids[y * 200 + x], 2, "step {step}: the stuff's anchor {x},{y} is not in the stuff");
            // The box centre (100, 60) is in the thing: the anchor must be well away from it.
            assert!(!(60..140).contains(&x) || !(30..90).contains(&y), "step {step}: stuff anchor {x},{y} next to the thing");
        }
    }

    #[test]
    fn thin_and_missing_segments() {
        let mut seg = ring();
        // A 1-pixel diagonal thread (id 3) the step-4 grid cannot see, and id 4 nowhere.
        for i in 0..20 {
            seg.ids[(i + 1) * 200 + 150 + i] = 3;
        }
        seg.segments.push(segment(3, [150, 1, 20, 20], true));
        seg.segments.push(segment(4, [0, 0, 10, 10], true));
        let a = label_anchors(&seg, 4);
        let (x, y) = a[2].unwrap();
        assert_eq!(seg.ids[y * 200 + x], 3);
        assert!((159..=161).contains(&x), "{x},{y}");
        assert_eq!(a[3], None);
    }
}
