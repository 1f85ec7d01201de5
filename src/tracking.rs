//! Frame-to-frame identities for segments: [`Tracker`] gives every segment of a
//! [`Segmentation`] a `track_id` that stays the same while the object stays in view.
//!
//! - **Things** are matched to the tracks of earlier frames by mask overlap, on the id
//!   map (visible pixels). Each track keeps two guesses of where its object is now: its
//!   last visible mask where it was, and a *reference* mask (the last one seen whole, i.e.
//!   not much smaller than the track's recent peak area) moved by a constant-velocity
//!   estimate of its centroid (updated only while the visible area is stable, since a
//!   centroid also moves when an object is covered or leaves the frame). A segment of the
//!   same class is a candidate when its IoU with either guess reaches
//!   [`TrackerConfig::iou_threshold`], or when at least half of it lies inside a guess (a
//!   partly hidden object); candidates by IoU rank first. Matching is greedy over the
//!   candidates in decreasing score (with few objects per class, greedy and Hungarian
//!   agree on nearly every frame; greedy is O(pairs log pairs)). Unmatched segments open
//!   new tracks; a track unmatched for more than [`TrackerConfig::max_age`] frames, or
//!   whose predicted mask has left the frame, is forgotten.
//! - **Stuff** (and every segment of a semantic result) gets one id per class, kept for
//!   the tracker's lifetime.
//!
//! Thing and stuff ids come from one counter, so an id is never reused for another object
//! or class. The tracker is pure (no GStreamer) and is driven by `mask2former track=true`.

use std::collections::HashMap;

use crate::segmentation::{Segmentation, Task};

/// A segment at least this fraction of which lies inside a track's predicted mask may
/// continue the track even when their IoU is low (the object is partly hidden).
const MIN_INSIDE: f32 = 0.5;
/// A matched mask smaller than this fraction of the track's peak area does not replace the
/// reference mask (the object is taken as partly hidden: its shape and motion are kept).
const MIN_AREA_RATIO: f32 = 0.92;
/// Relative change of visible area under which a centroid shift counts as motion.
const STABLE_AREA: f32 = 0.08;
/// Per-frame decay of a track's peak area, so that an object that really shrinks (moves
/// away) gets its reference mask renewed.
const PEAK_DECAY: f32 = 0.99;
/// An unmatched track whose predicted mask has less than this fraction inside the frame
/// has left the picture and is forgotten (so a newcomer at the same edge is not taken
/// for it).
const MIN_IN_FRAME: f32 = 0.1;

/// Box matches (a lost track's predicted box holding a new segment): the fraction of the
/// segment that must lie in the box, the box's margin in pixels, the largest segment
/// (relative to the track's peak area) taken for the object, and the score factor (below
/// the lowest overlap score, `MIN_INSIDE` × a threshold of 0.3 or more).
const MIN_IN_BOX: f32 = 0.9;
const BOX_MARGIN: i64 = 2;
const MAX_REAPPEAR_RATIO: f32 = 1.2;
const BOX_SCORE: f32 = 0.1;

/// Matching parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Minimum mask IoU for a segment to continue a track.
    pub iou_threshold: f32,
    /// Frames a track survives without a match before it is forgotten.
    pub max_age: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { iou_threshold: 0.3, max_age: 30 }
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    label_id: u32,
    /// Row-major pixel indices of the reference mask: the last matched mask that was not
    /// much smaller than the one before it (a mostly hidden object keeps its full shape).
    pixels: Vec<u32>,
    /// Row-major pixel indices of the last matched mask.
    last: Vec<u32>,
    /// Centroid of the reference mask (x, y).
    centroid: (f32, f32),
    /// Estimated centroid motion per frame (x, y).
    velocity: (f32, f32),
    /// Frames since the reference mask was taken.
    ref_age: u32,
    /// Frames since the last match (0: matched in the last frame).
    unseen: u32,
    /// Reference masks taken (1 when the track opened).
    hits: u32,
    /// Largest recent visible area (decays by [`PEAK_DECAY`] per matched frame).
    peak: f32,
    /// The predicted mask has left the frame: forget the track.
    gone: bool,
}

/// Assigns persistent `track_id`s; see the module documentation.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    stuff: HashMap<u32, u64>,
    next_id: u64,
    size: Option<(u32, u32)>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker { cfg, tracks: Vec::new(), stuff: HashMap::new(), next_id: 1, size: None }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Number of thing tracks currently remembered (matched or waiting for `max_age`).
    pub fn live_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Forget every track (stuff ids included), e.g. after a flush. Ids keep increasing.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.stuff.clear();
        self.size = None;
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Set `track_id` on every segment of `seg` (the next frame of the sequence).
    /// A change of frame size forgets the thing tracks (their masks no longer apply).
    pub fn update(&mut self, seg: &mut Segmentation) {
        let (w, h) = (seg.width, seg.height);
        if self.size != Some((w, h)) {
            self.tracks.clear();
            self.size = Some((w, h));
        }
        let n_px = (w as usize) * (h as usize);
        if seg.ids.len() != n_px {
            // Malformed result: leave it untracked rather than index out of bounds.
            return;
        }

        // Stuff (and semantic classes): one id per class.
        for i in 0..seg.segments.len() {
            let s = &seg.segments[i];
            if !s.is_thing || seg.task == Task::Semantic {
                let label = s.label_id;
                let id = match self.stuff.get(&label) {
                    Some(&id) => id,
                    None => {
                        let id = self.fresh_id();
                        self.stuff.insert(label, id);
                        id
                    }
                };
                seg.segments[i].track_id = Some(id);
            }
        }

        // Things: gather the visible pixels of each thing segment.
        let thing_idx: Vec<usize> = (0..seg.segments.len())
            .filter(|&i| seg.segments[i].is_thing && seg.task != Task::Semantic)
            .collect();
        let mut slot_of_id: HashMap<u32, usize> = HashMap::with_capacity(thing_idx.len());
        for (slot, &i) in thing_idx.iter().enumerate() {
            slot_of_id.insert(seg.segments[i].id, slot);
        }
        let mut pixels: Vec<Vec<u32>> = vec![Vec::new(); thing_idx.len()];
        for (p, &id) in seg.ids.iter().enumerate() {
            if id != 0
                && let Some(&slot) = slot_of_id.get(&id)
            {
                pixels[slot].push(p as u32);
            }
        }

        for track in &mut self.tracks {
            track.unseen += 1;
            track.ref_age += 1;
        }
        // Candidate pairs (score, track, slot) of the same class. The score is the IoU of
        // the segment with the track's predicted mask; a segment mostly inside that mask
        // (a partly hidden object) is a candidate too, ranked below the IoU matches.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for (t, track) in self.tracks.iter_mut().enumerate() {
            // Two guesses of where the object is now: its last visible mask where it was,
            // and its reference mask moved by the estimated velocity. The better one counts.
            let k = track.ref_age as f32;
            let predicted = ((track.velocity.0 * k).round() as i64, (track.velocity.1 * k).round() as i64);
            let mut best: HashMap<usize, f32> = HashMap::new();
            for (mask, (dx, dy)) in [(&track.pixels, predicted), (&track.last, (0, 0))] {
                let moved_area = overlaps(mask, dx, dy, w, h, &seg.ids, &mut counts);
                if (dx, dy) == predicted
                    && track.unseen > 1
                    && (moved_area as f32) < MIN_IN_FRAME * track.pixels.len() as f32
                {
                    track.gone = true;
                    break;
                }
                for (&id, &inter) in &counts {
                    let Some(&slot) = slot_of_id.get(&id) else { continue };
                    if seg.segments[thing_idx[slot]].label_id != track.label_id {
                        continue;
                    }
                    let (a, b, i) = (moved_area as f32, pixels[slot].len() as f32, inter as f32);
                    let union = a + b - i;
                    let iou = if union > 0.0 { i / union } else { 0.0 };
                    // Fraction of the segment inside the guess (a partly hidden object shows
                    // a part of its predicted mask; the reverse, a guess inside a larger
                    // segment, is a newcomer that covers a stale guess).
                    let inside = if b > 0.0 { i / b } else { 0.0 };
                    let score = if iou >= self.cfg.iou_threshold {
                        1.0 + iou
                    } else if inside >= MIN_INSIDE {
                        inside * self.cfg.iou_threshold
                    } else {
                        continue;
                    };
                    let e = best.entry(slot).or_insert(0.0);
                    *e = e.max(score);
                }
            }
            if track.unseen > 1 && !track.gone {
                // Lost since the last frame: a segment of the class lying (almost) all
                // inside the box the whole reference shape is predicted to cover may be
                // the object coming back as a small piece (out from behind an occluder
                // where that part of the shape was never seen). Ranked below every
                // overlap match.
                let (bx0, bx1, by0, by1) = bbox(&track.pixels, w);
                let (x0, x1) = (bx0 + predicted.0 - BOX_MARGIN, bx1 + predicted.0 + BOX_MARGIN);
                let (y0, y1) = (by0 + predicted.1 - BOX_MARGIN, by1 + predicted.1 + BOX_MARGIN);
                for (slot, px) in pixels.iter().enumerate() {
                    if px.is_empty()
                        || seg.segments[thing_idx[slot]].label_id != track.label_id
                        || px.len() as f32 > MAX_REAPPEAR_RATIO * track.peak
                    {
                        continue;
                    }
                    let inside = px
                        .iter()
                        .filter(|&&p| {
                            let (x, y) = ((p % w) as i64, (p / w) as i64);
                            (x0..=x1).contains(&x) && (y0..=y1).contains(&y)
                        })
                        .count() as f32
                        / px.len() as f32;
                    if inside >= MIN_IN_BOX {
                        let e = best.entry(slot).or_insert(0.0);
                        *e = e.max(BOX_SCORE * inside);
                    }
                }
            }
            pairs.extend(best.into_iter().map(|(slot, score)| (score, t, slot)));
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

        let mut track_taken = vec![false; self.tracks.len()];
        let mut slot_track: Vec<Option<usize>> = vec![None; thing_idx.len()];
        for (_, t, slot) in pairs {
            if !track_taken[t] && slot_track[slot].is_none() {
                track_taken[t] = true;
                slot_track[slot] = Some(t);
            }
        }

        let mut new_tracks = Vec::new();
        for (slot, px) in pixels.into_iter().enumerate() {
            let i = thing_idx[slot];
            let centroid = centroid(&px, w);
            match slot_track[slot] {
                Some(t) => {
                    let track = &mut self.tracks[t];
                    track.unseen = 0;
                    track.last = px.clone();
                    seg.segments[i].track_id = Some(track.id);
                    // A much smaller mask is an occluded (or leaving) object: keep the
                    // reference shape and motion, predicted forward from where they were.
                    let area = px.len() as f32;
                    track.peak = (track.peak * PEAK_DECAY).max(area);
                    if area >= MIN_AREA_RATIO * track.peak {
                        // The centroid moves with the object only while its visible area
                        // stays the same; a mask that grows or shrinks (being covered,
                        // entering, leaving) leaves the velocity as it was.
                        let ref_area = track.pixels.len() as f32;
                        if (area - ref_area).abs() <= STABLE_AREA * ref_area {
                            let k = track.ref_age.max(1) as f32;
                            let v = ((centroid.0 - track.centroid.0) / k, (centroid.1 - track.centroid.1) / k);
                            track.velocity = if track.hits == 1 {
                                v
                            } else {
                                (0.5 * track.velocity.0 + 0.5 * v.0, 0.5 * track.velocity.1 + 0.5 * v.1)
                            };
                        }
                        track.centroid = centroid;
                        track.pixels = px;
                        track.ref_age = 0;
                        track.hits += 1;
                    }
                }
                None => {
                    let px_len = px.len() as f32;
                    let id = self.fresh_id();
                    seg.segments[i].track_id = Some(id);
                    new_tracks.push(Track {
                        id,
                        label_id: seg.segments[i].label_id,
                        last: px.clone(),
                        pixels: px,
                        centroid,
                        velocity: (0.0, 0.0),
                        ref_age: 0,
                        unseen: 0,
                        hits: 1,
                        peak: px_len,
                        gone: false,
                    });
                }
            }
        }
        let max_age = self.cfg.max_age;
        self.tracks.retain(|t| t.unseen <= max_age && !t.gone);
        self.tracks.extend(new_tracks);
    }
}

/// Bounding box `(x0, x1, y0, y1)` (inclusive) of row-major pixel indices (`w` wide).
fn bbox(px: &[u32], w: u32) -> (i64, i64, i64, i64) {
    let mut b = (i64::MAX, i64::MIN, i64::MAX, i64::MIN);
    for &p in px {
        let (x, y) = ((p % w) as i64, (p / w) as i64);
        b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
    }
    b
}

/// Count, for every id of `ids`, the pixels of `mask` moved by (`dx`, `dy`) that land on
/// it (into `counts`); returns how many moved pixels stay inside the frame.
fn overlaps(mask: &[u32], dx: i64, dy: i64, w: u32, h: u32, ids: &[u32], counts: &mut HashMap<u32, u32>) -> u32 {
    counts.clear();
    let mut inside = 0u32;
    for &p in mask {
        let (x, y) = ((p % w) as i64 + dx, (p / w) as i64 + dy);
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            continue;
        }
        inside += 1;
        let id = ids[(y as usize) * (w as usize) + x as usize];
        if id != 0 {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    inside
}

fn centroid(px: &[u32], w: u32) -> (f32, f32) {
    if px.is_empty() {
        return (0.0, 0.0);
    }
    let (mut sx, mut sy) = (0f64, 0f64);
    for &p in px {
        sx += (p % w) as f64;
        sy += (p / w) as f64;
    }
    let n = px.len() as f64;
    ((sx / n) as f32, (sy / n) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::Segment;

    const W: u32 = 40;
    const H: u32 = 30;

    fn segment(id: u32, label_id: u32, is_thing: bool) -> Segment {
        Segment {
            id,
            label_id,
            label: format!("l{label_id}"),
            score: 1.0,
            is_thing,
            area: 0,
            bbox: [0, 0, 0, 0],
            track_id: None,
        }
    }

    /// A frame with stuff class 9 everywhere and the given things as (id, label, x, y, size) squares.
    fn frame(things: &[(u32, u32, u32, u32, u32)]) -> Segmentation {
        let mut ids = vec![1u32; (W * H) as usize];
        let mut segments = vec![segment(1, 9, false)];
        for &(id, label, x0, y0, s) in things {
            for y in y0..(y0 + s).min(H) {
                for x in x0..(x0 + s).min(W) {
                    ids[(y * W + x) as usize] = id;
                }
            }
            segments.push(segment(id, label, true));
        }
        Segmentation { width: W, height: H, task: Task::Panoptic, ids, segments }
    }

    fn track_of(seg: &Segmentation, id: u32) -> u64 {
        seg.segments.iter().find(|s| s.id == id).and_then(|s| s.track_id).expect("tracked")
    }

    #[test]
    fn moving_things_keep_their_ids_even_when_segment_ids_swap() {
        let mut t = Tracker::default();
        let mut first = frame(&[(2, 0, 2, 2, 8), (3, 0, 25, 15, 8)]);
        t.update(&mut first);
        let (a, b) = (track_of(&first, 2), track_of(&first, 3));
        assert_ne!(a, b);
        for f in 1..10u32 {
            // The segment ids swap every frame; the objects move 1 px per frame.
            let (ida, idb) = if f % 2 == 0 { (2, 3) } else { (3, 2) };
            let mut s = frame(&[(ida, 0, 2 + f, 2, 8), (idb, 0, 25 - f, 15, 8)]);
            t.update(&mut s);
            assert_eq!(track_of(&s, ida), a, "frame {f}");
            assert_eq!(track_of(&s, idb), b, "frame {f}");
        }
    }

    #[test]
    fn stuff_gets_one_id_per_class_distinct_from_things() {
        let mut t = Tracker::default();
        let mut s1 = frame(&[(2, 0, 2, 2, 8)]);
        t.update(&mut s1);
        let mut s2 = frame(&[]);
        s2.segments[0].id = 7; // another segment id, same class
        s2.ids.iter_mut().for_each(|v| *v = 7);
        t.update(&mut s2);
        assert_eq!(s1.segments[0].track_id, s2.segments[0].track_id);
        assert_ne!(s1.segments[0].track_id, s1.segments[1].track_id);
    }

    #[test]
    fn different_classes_do_not_match() {
        let mut t = Tracker::default();
        let mut s1 = frame(&[(2, 0, 2, 2, 8)]);
        t.update(&mut s1);
        let mut s2 = frame(&[(2, 1, 2, 2, 8)]);
        t.update(&mut s2);
        assert_ne!(track_of(&s1, 2), track_of(&s2, 2));
    }

    #[test]
    fn occlusion_within_max_age_keeps_the_id_and_velocity_bridges_the_gap() {
        let mut t = Tracker::new(TrackerConfig { iou_threshold: 0.3, max_age: 5 });
        let mut id0 = None;
        for f in 0..6u32 {
            let mut s = frame(&[(2, 0, 2 + 2 * f, 10, 6)]);
            t.update(&mut s);
            let id = track_of(&s, 2);
            assert_eq!(*id0.get_or_insert(id), id);
        }
        // Hidden for 4 frames while it keeps moving 2 px a frame (8 px > its 6 px size,
        // so without the motion estimate the IoU would be 0).
        for _ in 6..10 {
            let mut s = frame(&[]);
            t.update(&mut s);
        }
        let mut s = frame(&[(2, 0, 2 + 2 * 10, 10, 6)]);
        t.update(&mut s);
        assert_eq!(Some(track_of(&s, 2)), id0);
    }

    #[test]
    fn tracks_older_than_max_age_are_forgotten() {
        let mut t = Tracker::new(TrackerConfig { iou_threshold: 0.3, max_age: 2 });
        let mut s = frame(&[(2, 0, 5, 5, 6)]);
        t.update(&mut s);
        let first = track_of(&s, 2);
        for _ in 0..3 {
            t.update(&mut frame(&[]));
        }
        assert_eq!(t.live_tracks(), 0);
        let mut s = frame(&[(2, 0, 5, 5, 6)]);
        t.update(&mut s);
        assert_ne!(track_of(&s, 2), first, "a forgotten track's id is not reused");
    }

    #[test]
    fn greedy_prefers_the_best_overlap() {
        let mut t = Tracker::default();
        let mut s1 = frame(&[(2, 0, 10, 10, 10)]);
        t.update(&mut s1);
        // Two candidates: one overlaps almost entirely, one partly.
        let mut s2 = frame(&[(3, 0, 11, 10, 10), (4, 0, 18, 10, 10)]);
        t.update(&mut s2);
        assert_eq!(track_of(&s2, 3), track_of(&s1, 2));
        assert_ne!(track_of(&s2, 4), track_of(&s1, 2));
    }

    #[test]
    fn size_change_and_malformed_input_are_handled() {
        let mut t = Tracker::default();
        let mut s = frame(&[(2, 0, 5, 5, 6)]);
        t.update(&mut s);
        let mut bad = s.clone();
        bad.ids.truncate(3);
        bad.segments.iter_mut().for_each(|s| s.track_id = None);
        t.update(&mut bad);
        assert!(bad.segments.iter().all(|s| s.track_id.is_none()));
        let mut small = Segmentation { width: 4, height: 4, task: Task::Panoptic, ids: vec![2; 16], segments: vec![segment(2, 0, true)] };
        t.update(&mut small);
        assert_ne!(track_of(&small, 2), track_of(&s, 2));
    }
}
