//! Frame-to-frame identities for segments: [`Tracker`] gives every segment of a
//! [`Segmentation`] a `track_id` that stays the same while the object stays in view.
//!
//! - **Things** are matched to the tracks of earlier frames by mask overlap, on the id
//!   map (visible pixels). Each track keeps two guesses of where its object is now: its
//!   last visible mask where it was, and a *reference* mask (the last one seen whole, i.e.
//!   not much smaller than the track's recent peak area) moved by a constant-velocity
//!   estimate of its centroid (updated only while the visible area is stable, since a
//!   centroid also moves when an object is covered or leaves the frame). A segment with
//!   a *familiar* label (see below) is a candidate when its IoU with either guess reaches
//!   [`TrackerConfig::iou_threshold`], or when at least half of it lies inside a guess (a
//!   partly hidden object); a segment of any other thing class only when its IoU reaches
//!   0.5 (or the threshold, if higher: a class change needs a strong overlap). Candidates
//!   by IoU rank first, those whose class is not the track's stable label a little lower
//!   (see below). Matching is greedy over the
//!   candidates in decreasing score (with few objects per class, greedy and Hungarian
//!   agree on nearly every frame; greedy is O(pairs log pairs)). Unmatched segments open
//!   new tracks; a track unmatched for more than [`TrackerConfig::max_age`] frames, or
//!   whose predicted mask has left the frame, is forgotten.
//! - **Labels of things**: a weak model's class for one object may flicker from frame to
//!   frame (circle, square, circle…). Each thing track keeps the raw labels of its last 15
//!   matched segments; the labels among them are the track's *familiar* ones, and its
//!   *stable label* is their majority (a tie keeps the label it had). The tracker
//!   **rewrites** a matched thing segment's `label_id` and `label` to its track's stable
//!   label, so one `track_id` carries one class in the output (overlay colours and JSON
//!   records included); `score` stays the model's score for its own class, and
//!   [`Tracker::relabelled`] lists the segments rewritten by the last update with the
//!   model's own label id. A segment that opens a track keeps its label.
//! - **Stuff** (and every segment of a semantic result) gets one id per class, kept for
//!   the tracker's lifetime (and is never relabelled).
//!
//! - **Weak models** (issue 21) miss objects for many frames, cover one object with two
//!   segments, or two objects with one. So: an overlap score drops a little for every
//!   frame its track went unseen (a track matched in the last frame wins over an old one
//!   left where the object was); an unmatched segment of a familiar label lying at least
//!   [`PART_INSIDE`] inside a guess of a track matched in the same frame is another *part*
//!   of that object and gets its id; an unmatched segment of a lost track's stable label
//!   within [`REID_RADIUS`] × the track's size of where it was (or of where its motion
//!   puts it) continues the nearest such track.
//! - **Appearance** ([`Tracker::update_with_frame`], which `mask2former track=true` uses):
//!   each thing segment's [`colour_histogram`] is compared with its tracks' (a running mean
//!   over their matches) by [`resemblance`]. A segment that *looks the same* (≥ 0.5) counts
//!   as familiar whatever its label, so it may continue the track or be a part of it; an
//!   unmatched one that looks the same as a track matched in this frame, within
//!   [`REID_RADIUS`] × the track's size of that match, is a part of it; and one that looks
//!   the same as a lost track re-identifies it whatever its label, within 3 × the track's
//!   size, even after the track's prediction left the picture (such a track is kept, for
//!   its appearance alone, up to `max_age`). A segment that *looks different* (< 0.2) never
//!   takes a lost track's id by re-identification or by its box; a strong mask overlap is
//!   never overruled by colours. Without a frame ([`Tracker::update`]) none of this applies.
//! - **Split masks**: before matching, a thing segment whose mask falls into pieces far
//!   apart (more than [`SPLIT_GAP`] of the frame's diagonal; a weak model's query sometimes
//!   covers two objects of one class) is split into one segment per group of pieces, with
//!   new segment ids after the largest one in use (panoptic results only);
//!   [`Tracker::split`] lists them. The largest group keeps the segment's id.
//!
//! Thing and stuff ids come from one counter, so an id is never reused for another object
//! or class. The tracker is pure (no GStreamer) and is driven by `mask2former track=true`.

use std::collections::{HashMap, VecDeque};

use crate::frame::Frame;
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

/// Pieces of one thing segment (connected regions of its mask) lying farther apart than
/// this fraction of the frame's diagonal are taken for separate objects and split into
/// segments of their own before matching (panoptic results). A weak model's query
/// sometimes covers two objects of one class at once, far apart; as one of them leaves or
/// fades, the track would slide from one object to the other. Pieces of one object cut by
/// an occluder lie closer (on the sample's ground truth: at most 40 px apart at 640×360,
/// 5.4 % of the diagonal; the model's merged masks: 78 px and more).
const SPLIT_GAP: f32 = 0.08;
/// A piece smaller than this fraction of its segment, or than `MIN_PIECE_PX`, is never a
/// segment of its own: it stays with the nearest larger piece.
const MIN_PIECE: f32 = 0.05;
const MIN_PIECE_PX: u64 = 64;

/// Labels (issue 21): a thing's class may flicker from frame to frame on a weak model. A
/// track keeps the raw labels of its last `VOTE_WINDOW` matched segments; its *stable*
/// label is their majority (a tie keeps the current one). A segment whose label is among
/// those votes (a *familiar* label) may continue the track by the usual rules, ranked
/// `OTHER_LABEL_PENALTY` below the stable label; any other label only with a mask IoU of
/// at least `CLASS_CHANGE_IOU` (or the configured threshold, if higher), ranked
/// `CLASS_CHANGE_PENALTY` below.
const VOTE_WINDOW: usize = 15;
/// A track's guesses grow stale while it goes unmatched: an overlap score drops by
/// `STALE_PENALTY` for every frame unseen after the first (at most `MAX_STALE_PENALTY`), so
/// that a track matched in the last frame wins over an old one that happens to overlap as
/// much (on a weak model, an old duplicate track left where the object was).
const STALE_PENALTY: f32 = 0.03;
const MAX_STALE_PENALTY: f32 = 0.3;
/// Parts: an unmatched segment of a familiar label at least this fraction of which lies
/// inside a guess of a track matched in the same frame is another part of that object (a
/// weak model sometimes covers one object with two segments): it gets the track's id.
const PART_INSIDE: f32 = 0.8;
/// Re-identification: an unmatched segment of a lost track's stable label whose centroid
/// lies within `REID_RADIUS` × the track's size (square root of its peak area) of where the
/// track was, or of where its motion puts it now, continues the nearest such track (an
/// object missed for a while that comes back some way off, e.g. after an occlusion).
const REID_RADIUS: f32 = 1.5;
const OTHER_LABEL_PENALTY: f32 = 0.05;
/// Appearance (when the tracker sees the frame, [`Tracker::update_with_frame`]): a
/// segment's colour histogram, `LOOK_LEVELS` levels per channel (so `LOOK_LEVELS`³ bins),
/// from at most `LOOK_SAMPLES` of its pixels; a track's is the running mean of its matched
/// segments' (weight `LOOK_RATE` for the newest). Two histograms *look the same* when their
/// intersection reaches `LOOK_SAME` and *look different* below `LOOK_OTHER`. On the sample
/// clip, the model's masks of one object resemble each other far more than masks of two
/// objects do (docs/BENCHMARKS.md, "Tracking on the model's output", for the percentiles).
const LOOK_LEVELS: usize = 8;
const LOOK_SAMPLES: usize = 4096;
const LOOK_RATE: f32 = 0.2;
const LOOK_SAME: f32 = 0.5;
const LOOK_OTHER: f32 = 0.2;
/// Re-identification radius (× the track's size) for a segment that looks the same as the
/// lost track: appearance vouches for it, so it may have moved further while unseen.
const LOOK_REID_RADIUS: f32 = 3.0;
const CLASS_CHANGE_IOU: f32 = 0.5;
const CLASS_CHANGE_PENALTY: f32 = 0.25;

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
    /// The stable label: the majority of `votes` (ties keep the current label).
    label_id: u32,
    /// Raw labels of the last [`VOTE_WINDOW`] matched segments, oldest first.
    votes: VecDeque<u32>,
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
    /// Colour histogram (running mean over matched segments), when frames were seen.
    look: Option<Vec<f32>>,
}

/// Assigns persistent `track_id`s; see the module documentation.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    stuff: HashMap<u32, u64>,
    next_id: u64,
    size: Option<(u32, u32)>,
    /// Label id → label name, as the segments spelled it (to rename a relabelled segment).
    names: HashMap<u32, String>,
    /// (segment id, raw label id) of the segments the last update relabelled.
    relabelled: Vec<(u32, u32)>,
    /// (new segment id, the segment it was split from) of the last update.
    split: Vec<(u32, u32)>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            tracks: Vec::new(),
            stuff: HashMap::new(),
            next_id: 1,
            size: None,
            names: HashMap::new(),
            relabelled: Vec::new(),
            split: Vec::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Number of thing tracks currently remembered (matched or waiting for `max_age`).
    pub fn live_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// The segments whose `label_id` / `label` the last [`Tracker::update`] rewrote to
    /// their track's stable label, as (segment id, the model's own label id).
    pub fn relabelled(&self) -> &[(u32, u32)] {
        &self.relabelled
    }

    /// The segments the last [`Tracker::update`] split off (their pieces lay far apart), as
    /// (new segment id, the id of the segment they were part of). The id map changed where
    /// this is not empty.
    pub fn split(&self) -> &[(u32, u32)] {
        &self.split
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

    /// Set `track_id` on every segment of `seg` (the next frame of the sequence), from
    /// masks, motion and labels alone. A change of frame size forgets the thing tracks
    /// (their masks no longer apply).
    pub fn update(&mut self, seg: &mut Segmentation) {
        self.observe(seg, None);
    }

    /// As [`Tracker::update`], with the frame `seg` was computed from: the colours of each
    /// thing segment also count (its appearance; see the module documentation). A frame
    /// of another size than `seg` is not used.
    pub fn update_with_frame(&mut self, seg: &mut Segmentation, frame: &Frame<'_>) {
        let fits = (frame.width, frame.height) == (seg.width as usize, seg.height as usize);
        self.observe(seg, fits.then_some(frame));
    }

    fn observe(&mut self, seg: &mut Segmentation, frame: Option<&Frame<'_>>) {
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

        self.relabelled.clear();
        self.split = if seg.task == Task::Panoptic { split_far_pieces(seg) } else { Vec::new() };
        for s in &seg.segments {
            if s.is_thing && !self.names.contains_key(&s.label_id) {
                self.names.insert(s.label_id, s.label.clone());
            }
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
        // Segment id → slot, by table (per pixel; segment ids are small).
        let id_bound = seg.segments.iter().map(|s| s.id as usize + 1).max().unwrap_or(0);
        let mut slot_table = vec![u32::MAX; id_bound];
        for (slot, &i) in thing_idx.iter().enumerate() {
            slot_table[seg.segments[i].id as usize] = slot as u32;
        }
        let slot_of_id = |id: u32| slot_table.get(id as usize).copied().filter(|&s| s != u32::MAX).map(|s| s as usize);
        let mut pixels: Vec<Vec<u32>> = vec![Vec::new(); thing_idx.len()];
        for (p, &id) in seg.ids.iter().enumerate() {
            if id != 0
                && let Some(slot) = slot_of_id(id)
            {
                pixels[slot].push(p as u32);
            }
        }

        let centroids: Vec<(f32, f32)> = pixels.iter().map(|px| centroid(px, w)).collect();
        let looks: Vec<Option<Vec<f32>>> = pixels.iter().map(|px| frame.and_then(|f| colour_histogram(f, px))).collect();
        // How much segment `slot` looks like `track`: None when either has no appearance.
        let looks_like = |track: &Track, slot: usize| -> Option<f32> {
            match (&track.look, &looks[slot]) {
                (Some(a), Some(b)) => Some(resemblance(a, b)),
                _ => None,
            }
        };

        for track in &mut self.tracks {
            track.unseen += 1;
            track.ref_age += 1;
        }
        // Candidate pairs (score, track, slot). The score is the IoU of the segment with the
        // track's predicted mask (less a penalty for a label other than the track's stable
        // one); a segment of a familiar label mostly inside that mask (a partly hidden
        // object) is a candidate too, ranked below the IoU matches.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        let class_change_iou = CLASS_CHANGE_IOU.max(self.cfg.iou_threshold);
        let mut counts = Tally { counts: vec![0; id_bound], touched: Vec::new() };
        // (track, slot) → the largest fraction of the segment inside one of the track's
        // guesses, for segments of a familiar label (parts, below).
        let mut inside_of: HashMap<(usize, usize), f32> = HashMap::new();
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if track.gone {
                // Out of the picture (kept for its appearance): re-identification only.
                continue;
            }
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
                for (id, inter) in counts.iter() {
                    let Some(slot) = slot_of_id(id) else { continue };
                    // The class of a thing may flicker: a label the track has shown in its
                    // recent frames continues it as its stable label does (ranked just
                    // below); any other label only with a strong overlap.
                    let label = seg.segments[thing_idx[slot]].label_id;
                    let familiar = track.is_familiar(label) || looks_like(track, slot).is_some_and(|r| r >= LOOK_SAME);
                    let penalty = if label == track.label_id {
                        0.0
                    } else if familiar {
                        OTHER_LABEL_PENALTY
                    } else {
                        CLASS_CHANGE_PENALTY
                    };
                    let (a, b, i) = (moved_area as f32, pixels[slot].len() as f32, inter as f32);
                    let union = a + b - i;
                    let iou = if union > 0.0 { i / union } else { 0.0 };
                    // Fraction of the segment inside the guess (a partly hidden object shows
                    // a part of its predicted mask; the reverse, a guess inside a larger
                    // segment, is a newcomer that covers a stale guess).
                    let inside = if b > 0.0 { i / b } else { 0.0 };
                    if familiar {
                        let e = inside_of.entry((t, slot)).or_insert(0.0);
                        *e = e.max(inside);
                    }
                    let min_iou = if familiar { self.cfg.iou_threshold } else { class_change_iou };
                    let stale = (STALE_PENALTY * (track.unseen - 1) as f32).min(MAX_STALE_PENALTY);
                    let score = if iou >= min_iou {
                        1.0 + iou - penalty - stale
                    } else if familiar && inside >= MIN_INSIDE {
                        (inside - penalty) * self.cfg.iou_threshold
                    } else {
                        continue;
                    };
                    let e = best.entry(slot).or_insert(0.0);
                    *e = e.max(score);
                }
            }
            if track.unseen > 1 && !track.gone {
                // Lost since the last frame: a segment of a familiar label lying (almost) all
                // inside the box the whole reference shape is predicted to cover may be
                // the object coming back as a small piece (out from behind an occluder
                // where that part of the shape was never seen). Ranked below every
                // overlap match.
                let (bx0, bx1, by0, by1) = bbox(&track.pixels, w);
                let (x0, x1) = (bx0 + predicted.0 - BOX_MARGIN, bx1 + predicted.0 + BOX_MARGIN);
                let (y0, y1) = (by0 + predicted.1 - BOX_MARGIN, by1 + predicted.1 + BOX_MARGIN);
                for (slot, px) in pixels.iter().enumerate() {
                    let look = looks_like(track, slot);
                    if px.is_empty()
                        || !(track.is_familiar(seg.segments[thing_idx[slot]].label_id) || look.is_some_and(|r| r >= LOOK_SAME))
                        || look.is_some_and(|r| r < LOOK_OTHER)
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

        // Parts of objects matched in this frame.
        let mut part_of: Vec<Option<usize>> = vec![None; thing_idx.len()];
        for (&(t, slot), &inside) in &inside_of {
            if slot_track[slot].is_none()
                && track_taken[t]
                && inside >= PART_INSIDE
                && part_of[slot].is_none_or(|u| inside_of[&(u, slot)] < inside || (inside_of[&(u, slot)] == inside && t < u))
            {
                part_of[slot] = Some(t);
            }
        }
        // Parts by appearance: an unmatched segment that looks the same as a track matched
        // in this frame, lying within `REID_RADIUS` × the track's size of that match.
        let matched_at: Vec<(usize, (f32, f32))> =
            slot_track.iter().enumerate().filter_map(|(slot, t)| t.map(|t| (t, centroids[slot]))).collect();
        for slot in 0..thing_idx.len() {
            if slot_track[slot].is_some() || part_of[slot].is_some() || pixels[slot].is_empty() || looks[slot].is_none() {
                continue;
            }
            let c = centroids[slot];
            let mut best: Option<(f32, usize)> = None;
            for &(t, m) in &matched_at {
                let track = &self.tracks[t];
                let r = looks_like(track, slot).unwrap_or(0.0);
                let d = ((c.0 - m.0).powi(2) + (c.1 - m.1).powi(2)).sqrt();
                if r >= LOOK_SAME && d <= REID_RADIUS * track.peak.sqrt() && best.is_none_or(|(br, _)| r > br) {
                    best = Some((r, t));
                }
            }
            part_of[slot] = best.map(|(_, t)| t);
        }
        // Lost tracks found again nearby (same stable label), nearest first.
        let mut reid: Vec<(f32, usize, usize)> = Vec::new();
        for (slot, px) in pixels.iter().enumerate() {
            if slot_track[slot].is_some() || part_of[slot].is_some() || px.is_empty() {
                continue;
            }
            let label = seg.segments[thing_idx[slot]].label_id;
            let c = centroids[slot];
            for (t, track) in self.tracks.iter().enumerate() {
                // Appearance, when known, vouches for another label, for a track out of the
                // picture and for a longer way; and it rules out an object that looks
                // different.
                let look = looks_like(track, slot);
                let same_look = look.is_some_and(|r| r >= LOOK_SAME);
                if track_taken[t]
                    || track.unseen <= 1
                    || (track.gone && !same_look)
                    || !(track.label_id == label || same_look)
                    || look.is_some_and(|r| r < LOOK_OTHER)
                    || px.len() as f32 > MAX_REAPPEAR_RATIO * track.peak
                {
                    continue;
                }
                let k = track.ref_age as f32;
                let moved = (track.centroid.0 + track.velocity.0 * k, track.centroid.1 + track.velocity.1 * k);
                let dist = |p: (f32, f32)| ((c.0 - p.0).powi(2) + (c.1 - p.1).powi(2)).sqrt();
                let d = dist(track.centroid).min(dist(moved));
                let radius = if same_look { LOOK_REID_RADIUS } else { REID_RADIUS };
                if d <= radius * track.peak.sqrt() {
                    reid.push((d, t, slot));
                }
            }
        }
        reid.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, t, slot) in reid {
            if !track_taken[t] && slot_track[slot].is_none() {
                track_taken[t] = true;
                slot_track[slot] = Some(t);
            }
        }

        let mut new_tracks = Vec::new();
        let mut parts: Vec<(usize, Vec<u32>)> = Vec::new();
        for (slot, px) in pixels.into_iter().enumerate() {
            let i = thing_idx[slot];
            let centroid = centroids[slot];
            if let Some(t) = part_of[slot] {
                let track = &self.tracks[t];
                seg.segments[i].track_id = Some(track.id);
                relabel(&mut seg.segments[i], track.label_id, &self.names, &mut self.relabelled);
                parts.push((t, px));
                continue;
            }
            match slot_track[slot] {
                Some(t) => {
                    let track = &mut self.tracks[t];
                    track.unseen = 0;
                    track.gone = false;
                    track.last = px.clone();
                    seg.segments[i].track_id = Some(track.id);
                    track.vote(seg.segments[i].label_id);
                    if let Some(new) = &looks[slot] {
                        match &mut track.look {
                            Some(look) => look.iter_mut().zip(new).for_each(|(a, b)| *a += LOOK_RATE * (b - *a)),
                            None => track.look = Some(new.clone()),
                        }
                    }
                    relabel(&mut seg.segments[i], track.label_id, &self.names, &mut self.relabelled);
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
                        votes: VecDeque::from([seg.segments[i].label_id]),
                        last: px.clone(),
                        pixels: px,
                        centroid,
                        velocity: (0.0, 0.0),
                        ref_age: 0,
                        unseen: 0,
                        hits: 1,
                        peak: px_len,
                        gone: false,
                        look: looks[slot].clone(),
                    });
                }
            }
        }
        // A part belongs to the visible mask of its object.
        for (t, px) in parts {
            self.tracks[t].last.extend(px);
        }
        let max_age = self.cfg.max_age;
        // A track out of the picture is kept (up to `max_age`) only for its appearance.
        self.tracks.retain(|t| t.unseen <= max_age && !(t.gone && t.look.is_none()));
        self.tracks.extend(new_tracks);
    }
}

impl Track {
    /// The stable label, or a label among the recent votes.
    fn is_familiar(&self, label: u32) -> bool {
        label == self.label_id || self.votes.contains(&label)
    }

    /// Count a matched segment's raw label; the stable label changes only when another
    /// label has more votes over the window than the current one.
    fn vote(&mut self, label: u32) {
        if self.votes.len() == VOTE_WINDOW {
            self.votes.pop_front();
        }
        self.votes.push_back(label);
        let count = |l: u32| self.votes.iter().filter(|&&v| v == l).count();
        let mut best = (count(self.label_id), self.label_id);
        for &l in &self.votes {
            let c = count(l);
            if c > best.0 {
                best = (c, l);
            }
        }
        self.label_id = best.1;
    }
}

/// Split every thing segment of `seg` whose pieces (4-connected regions of its mask) form
/// groups farther apart than [`SPLIT_GAP`] of the frame's diagonal: the group with the most
/// pixels keeps the segment, each other group becomes a new segment (same class and score,
/// a new id above every id in use) and its pixels take that id in the id map. Pieces
/// smaller than [`MIN_PIECE`] of the segment (or [`MIN_PIECE_PX`]) join the group of the
/// nearest larger piece. Returns (new id, original id) of the new segments.
fn split_far_pieces(seg: &mut Segmentation) -> Vec<(u32, u32)> {
    let (w, h) = (seg.width as usize, seg.height as usize);
    let things: HashMap<u32, usize> =
        seg.segments.iter().enumerate().filter(|(_, s)| s.is_thing).map(|(i, s)| (s.id, i)).collect();
    if things.is_empty() || seg.ids.len() != w * h {
        return Vec::new();
    }
    // Per-pixel test by table, not by hash (segment ids are small).
    let max_id = things.keys().copied().max().unwrap_or(0) as usize;
    let mut thing_table = vec![false; max_id + 1];
    for &id in things.keys() {
        thing_table[id as usize] = true;
    }
    let is_thing = |id: u32| thing_table.get(id as usize).copied().unwrap_or(false);
    // Connected pieces: runs of one thing id along each row, joined (union-find over runs)
    // with the runs of the row above that share their id and a column (4-connectivity).
    struct Run {
        id: u32,
        y: usize,
        x0: usize,
        x1: usize,
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    fn root(parent: &mut [u32], mut r: u32) -> u32 {
        while parent[r as usize] != r {
            let up = parent[parent[r as usize] as usize];
            parent[r as usize] = up;
            r = up;
        }
        r
    }
    let mut above = 0..0;
    for y in 0..h {
        let row = &seg.ids[y * w..(y + 1) * w];
        let start = runs.len();
        let mut x = 0;
        while x < w {
            let (id, x0) = (row[x], x);
            while x < w && row[x] == id {
                x += 1;
            }
            if is_thing(id) {
                parent.push(runs.len() as u32);
                runs.push(Run { id, y, x0, x1: x });
            }
        }
        let (mut i, mut j) = (above.start, start);
        while i < above.end && j < runs.len() {
            let (a, b) = (&runs[i], &runs[j]);
            if a.id == b.id && a.x0 < b.x1 && b.x0 < a.x1 {
                let (ra, rb) = (root(&mut parent, i as u32), root(&mut parent, j as u32));
                if ra != rb {
                    parent[ra.max(rb) as usize] = ra.min(rb);
                }
            }
            if runs[i].x1 <= runs[j].x1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        above = start..runs.len();
    }
    // Pieces: area and box (x0, x1, y0, y1), per segment id, in the raster order of their
    // first pixel.
    struct Piece {
        id: u32,
        area: u64,
        bbox: (i64, i64, i64, i64),
    }
    let mut piece_of_root: Vec<u32> = vec![u32::MAX; runs.len()];
    let mut pieces: Vec<Piece> = Vec::new();
    let mut piece_of_run: Vec<u32> = Vec::with_capacity(runs.len());
    for (r, run) in runs.iter().enumerate() {
        let top = root(&mut parent, r as u32) as usize;
        if piece_of_root[top] == u32::MAX {
            pieces.push(Piece { id: run.id, area: 0, bbox: (i64::MAX, i64::MIN, i64::MAX, i64::MIN) });
            piece_of_root[top] = (pieces.len() - 1) as u32;
        }
        let k = piece_of_root[top] as usize;
        piece_of_run.push(k as u32);
        let pc = &mut pieces[k];
        pc.area += (run.x1 - run.x0) as u64;
        let (x0, x1, y) = (run.x0 as i64, run.x1 as i64 - 1, run.y as i64);
        pc.bbox = (pc.bbox.0.min(x0), pc.bbox.1.max(x1), pc.bbox.2.min(y), pc.bbox.3.max(y));
    }
    let mut by_segment: HashMap<u32, Vec<usize>> = HashMap::new();
    for (k, pc) in pieces.iter().enumerate() {
        by_segment.entry(pc.id).or_default().push(k);
    }
    // A lower bound of the distance between two pieces: the gap between their boxes.
    let gap = |a: &Piece, b: &Piece| -> f32 {
        let gx = (b.bbox.0 - a.bbox.1 - 1).max(a.bbox.0 - b.bbox.1 - 1).max(0) as f32;
        let gy = (b.bbox.2 - a.bbox.3 - 1).max(a.bbox.2 - b.bbox.3 - 1).max(0) as f32;
        (gx * gx + gy * gy).sqrt()
    };
    let max_gap = SPLIT_GAP * ((w * w + h * h) as f32).sqrt();
    let mut next_id = seg.segments.iter().map(|s| s.id).max().unwrap_or(0) + 1;
    // Piece → new segment id, for the pieces that move.
    let mut moved: HashMap<usize, u32> = HashMap::new();
    let mut out = Vec::new();
    let mut ids: Vec<u32> = by_segment.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let ks = &by_segment[&id];
        if ks.len() < 2 {
            continue;
        }
        let total: u64 = ks.iter().map(|&k| pieces[k].area).sum();
        let min_area = MIN_PIECE_PX.max((MIN_PIECE * total as f32).ceil() as u64);
        let big: Vec<usize> = ks.iter().copied().filter(|&k| pieces[k].area >= min_area).collect();
        if big.len() < 2 {
            continue;
        }
        // Groups of big pieces: single linkage over box gaps up to `max_gap`.
        let mut group: Vec<usize> = (0..big.len()).collect();
        fn find(g: &mut [usize], mut i: usize) -> usize {
            while g[i] != i {
                i = g[i];
            }
            i
        }
        for i in 0..big.len() {
            for j in i + 1..big.len() {
                if gap(&pieces[big[i]], &pieces[big[j]]) <= max_gap {
                    let (a, b) = (find(&mut group, i), find(&mut group, j));
                    group[a.max(b)] = a.min(b);
                }
            }
        }
        let group_of = |k: usize, group: &mut Vec<usize>| -> usize {
            // Small pieces join the group of the nearest big piece.
            let i = big.iter().position(|&b| b == k).unwrap_or_else(|| {
                (0..big.len())
                    .min_by(|&a, &b| gap(&pieces[k], &pieces[big[a]]).total_cmp(&gap(&pieces[k], &pieces[big[b]])))
                    .unwrap_or(0)
            });
            find(group, i)
        };
        let mut area_of_group: HashMap<usize, u64> = HashMap::new();
        let mut members: Vec<(usize, usize)> = Vec::with_capacity(ks.len());
        for &k in ks {
            let g = group_of(k, &mut group);
            *area_of_group.entry(g).or_default() += pieces[k].area;
            members.push((k, g));
        }
        if area_of_group.len() < 2 {
            continue;
        }
        let keep = area_of_group.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(&g, _)| g).unwrap_or(0);
        let mut new_of_group: HashMap<usize, u32> = HashMap::new();
        let mut groups: Vec<usize> = area_of_group.keys().copied().filter(|&g| g != keep).collect();
        groups.sort_unstable();
        for g in groups {
            new_of_group.insert(g, next_id);
            out.push((next_id, id));
            next_id += 1;
        }
        for (k, g) in members {
            if let Some(&n) = new_of_group.get(&g) {
                moved.insert(k, n);
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    for (run, &k) in runs.iter().zip(&piece_of_run) {
        if let Some(&n) = moved.get(&(k as usize)) {
            seg.ids[run.y * w + run.x0..run.y * w + run.x1].fill(n);
        }
    }
    // Area and box of every segment that lost or gained pieces.
    let mut stats: HashMap<u32, (u64, (i64, i64, i64, i64))> = HashMap::new();
    for (k, pc) in pieces.iter().enumerate() {
        let id = moved.get(&k).copied().unwrap_or(pc.id);
        let e = stats.entry(id).or_insert((0, (i64::MAX, i64::MIN, i64::MAX, i64::MIN)));
        e.0 += pc.area;
        e.1 = (e.1.0.min(pc.bbox.0), e.1.1.max(pc.bbox.1), e.1.2.min(pc.bbox.2), e.1.3.max(pc.bbox.3));
    }
    let as_bbox = |b: (i64, i64, i64, i64)| [b.0 as u32, b.2 as u32, (b.1 - b.0 + 1) as u32, (b.3 - b.2 + 1) as u32];
    for &(new, from) in &out {
        let (area, b) = stats[&new];
        let mut s = seg.segments[things[&from]].clone();
        s.id = new;
        s.area = area;
        s.bbox = as_bbox(b);
        s.track_id = None;
        seg.segments.push(s);
    }
    let mut froms: Vec<u32> = out.iter().map(|&(_, from)| from).collect();
    froms.dedup();
    for from in froms {
        let (area, b) = stats[&from];
        let s = &mut seg.segments[things[&from]];
        s.area = area;
        s.bbox = as_bbox(b);
    }
    out
}

/// Give a thing segment its track's stable label (name from `names`), noting the segment and
/// its own label in `relabelled` when they differ.
fn relabel(s: &mut crate::segmentation::Segment, stable: u32, names: &HashMap<u32, String>, relabelled: &mut Vec<(u32, u32)>) {
    if s.label_id != stable {
        if let Some(name) = names.get(&stable) {
            s.label.clone_from(name);
        }
        relabelled.push((s.id, s.label_id));
        s.label_id = stable;
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

/// Pixel counts per segment id, by table (ids are small), with the ids counted so far.
struct Tally {
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl Tally {
    fn clear(&mut self) {
        for &id in &self.touched {
            self.counts[id as usize] = 0;
        }
        self.touched.clear();
    }

    /// Count one pixel of `id` (ids beyond the table belong to no segment: not counted).
    fn add(&mut self, id: u32) {
        if let Some(c) = self.counts.get_mut(id as usize) {
            if *c == 0 {
                self.touched.push(id);
            }
            *c += 1;
        }
    }

    /// (id, count) of every id counted since the last clear.
    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.touched.iter().map(|&id| (id, self.counts[id as usize]))
    }
}

/// Count, for every id of `ids`, the pixels of `mask` moved by (`dx`, `dy`) that land on
/// it (into `counts`); returns how many moved pixels stay inside the frame.
fn overlaps(mask: &[u32], dx: i64, dy: i64, w: u32, h: u32, ids: &[u32], counts: &mut Tally) -> u32 {
    counts.clear();
    if (dx, dy) == (0, 0) {
        // Unmoved: every pixel of a mask of this frame size is inside.
        for &p in mask {
            let id = ids[p as usize];
            if id != 0 {
                counts.add(id);
            }
        }
        return mask.len() as u32;
    }
    let mut inside = 0u32;
    for &p in mask {
        let row = p / w;
        let (x, y) = ((p - row * w) as i64 + dx, row as i64 + dy);
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            continue;
        }
        inside += 1;
        let id = ids[(y as usize) * (w as usize) + x as usize];
        if id != 0 {
            counts.add(id);
        }
    }
    inside
}

/// A segment's appearance as the tracker sees it: the colour histogram of the pixels `px`
/// of `frame` (row-major indices), 8 levels per channel (512 bins), from at most 4096 of
/// them evenly spread, normalised to sum 1. None for no pixels.
pub fn colour_histogram(frame: &Frame<'_>, px: &[u32]) -> Option<Vec<f32>> {
    if px.is_empty() {
        return None;
    }
    let w = frame.width as u32;
    let step = px.len().div_ceil(LOOK_SAMPLES);
    let shift = 8 - LOOK_LEVELS.trailing_zeros();
    let mut hist = vec![0f32; LOOK_LEVELS * LOOK_LEVELS * LOOK_LEVELS];
    let mut n = 0u32;
    for &p in px.iter().step_by(step) {
        let [r, g, b] = crate::preprocess::rgb_at(frame, (p % w) as usize, (p / w) as usize);
        let bin = (((r >> shift) as usize * LOOK_LEVELS) + (g >> shift) as usize) * LOOK_LEVELS + (b >> shift) as usize;
        hist[bin] += 1.0;
        n += 1;
    }
    hist.iter_mut().for_each(|v| *v /= n as f32);
    Some(hist)
}

/// How much two [`colour_histogram`]s look alike: their intersection, from 0 (no colour
/// in common) to 1 (the same).
pub fn resemblance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.min(*y)).sum()
}

fn centroid(px: &[u32], w: u32) -> (f32, f32) {
    if px.is_empty() {
        return (0.0, 0.0);
    }
    let (mut sx, mut sy) = (0f64, 0f64);
    for &p in px {
        let row = p / w;
        sx += (p - row * w) as f64;
        sy += row as f64;
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

    fn label_of(seg: &Segmentation, id: u32) -> (u32, &str) {
        let s = seg.segments.iter().find(|s| s.id == id).expect("segment");
        (s.label_id, s.label.as_str())
    }

    #[test]
    fn a_thing_whose_class_flickers_keeps_its_id_and_its_stable_label() {
        let mut t = Tracker::default();
        // Class 0, then 1 on single frames and on two frames in a row (A→B→A); it moves 1 px
        // every other frame.
        let labels = [0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0];
        let mut id0 = None;
        for (f, &label) in labels.iter().enumerate() {
            let mut s = frame(&[(2, label, 5 + f as u32 / 2, 6, 8)]);
            t.update(&mut s);
            let id = track_of(&s, 2);
            assert_eq!(*id0.get_or_insert(id), id, "frame {f}: the class flip opened a new track");
            assert_eq!(label_of(&s, 2), (0, "l0"), "frame {f}: the reported label is the track's stable one");
            let relabelled: &[(u32, u32)] = if label == 1 { &[(2, 1)] } else { &[] };
            assert_eq!(t.relabelled(), relabelled, "frame {f}: the raw label of a rewritten segment");
        }
        // A lasting change wins the vote once it has more of the last frames than the old
        // label (12 frames so far: 8 × class 0 and 4 × class 1).
        let mut switched = None;
        for f in 12..30u32 {
            let mut s = frame(&[(2, 1, 5 + f / 2, 6, 8)]);
            t.update(&mut s);
            assert_eq!(Some(track_of(&s, 2)), id0, "frame {f}");
            if label_of(&s, 2).0 == 1 && switched.is_none() {
                switched = Some(f);
            }
            if switched.is_some() {
                assert_eq!(label_of(&s, 2), (1, "l1"), "frame {f}: the stable label flips back");
            }
        }
        // Window of 15 votes: class 1 needs 8 of them; frames 3, 5, 6 and 9 voted 1, so it
        // wins with frame 15 (votes of frames 1..=15: 7 × class 0, 8 × class 1).
        assert_eq!(switched, Some(15));
    }

    #[test]
    fn two_things_of_different_classes_crossing_keep_their_ids() {
        let mut t = Tracker::default();
        let mut ids = None;
        for f in 0..14u32 {
            // A (class 0) moves right, B (class 1) moves left 2 rows lower, 2 px a frame: they
            // overlap in frames 6 to 8 (B in front; at frame 7 only 2 rows of A show). Each
            // shows the other's class once before they meet.
            let la = if f == 3 { 1 } else { 0 };
            let lb = if f == 4 { 0 } else { 1 };
            // Segment ids alternate, so they say nothing about identity.
            let (ia, ib) = if f % 2 == 0 { (2, 3) } else { (3, 2) };
            let mut s = frame(&[(ia, la, 2 + 2 * f, 8, 8), (ib, lb, 30 - 2 * f, 10, 8)]);
            t.update(&mut s);
            let got = (track_of(&s, ia), track_of(&s, ib));
            assert_ne!(got.0, got.1);
            assert_eq!(*ids.get_or_insert(got), got, "frame {f}: ids swapped or renewed");
            assert_eq!((label_of(&s, ia).0, label_of(&s, ib).0), (0, 1), "frame {f}: stable labels");
        }
    }

    #[test]
    fn a_new_thing_of_another_class_where_one_vanished_gets_a_new_id() {
        // A 10×10 thing of class 0 for three frames, a frame without it, then a 6×6 thing
        // lying inside where it was: IoU 0.36 (≥ the 0.3 threshold, < the 0.5 a class
        // change needs), all inside its mask and its predicted box.
        for (label, continues) in [(0, true), (1, false)] {
            let mut t = Tracker::default();
            let mut first = None;
            for _ in 0..3 {
                let mut s = frame(&[(2, 0, 5, 5, 10)]);
                t.update(&mut s);
                first = Some(track_of(&s, 2));
            }
            t.update(&mut frame(&[]));
            let mut s = frame(&[(2, label, 7, 7, 6)]);
            t.update(&mut s);
            assert_eq!(Some(track_of(&s, 2)) == first, continues, "class {label}");
            assert_eq!(label_of(&s, 2).0, label, "a new track keeps the segment's label");
        }
        // Far apart (no overlap): a new id whatever the class.
        let mut t = Tracker::default();
        let mut s1 = frame(&[(2, 0, 2, 2, 8)]);
        t.update(&mut s1);
        let mut s2 = frame(&[(2, 1, 25, 15, 8)]);
        t.update(&mut s2);
        assert_ne!(track_of(&s1, 2), track_of(&s2, 2));
    }

    #[test]
    fn a_class_change_with_a_strong_overlap_continues_the_track() {
        let mut t = Tracker::default();
        let mut s1 = frame(&[(2, 0, 2, 2, 8)]);
        t.update(&mut s1);
        let mut s2 = frame(&[(2, 1, 3, 2, 8)]); // IoU 56/72 = 0.78
        t.update(&mut s2);
        assert_eq!(track_of(&s1, 2), track_of(&s2, 2));
        // One vote each: the tie keeps the track's first label.
        assert_eq!(label_of(&s2, 2), (0, "l0"));
        assert_eq!(t.relabelled(), &[(2, 1)]);
    }

    #[test]
    fn stuff_is_never_relabelled() {
        let mut t = Tracker::default();
        let mut s1 = frame(&[]);
        t.update(&mut s1);
        let mut s2 = frame(&[]);
        s2.segments[0].label_id = 8;
        s2.segments[0].label = "l8".into();
        t.update(&mut s2);
        assert_eq!(label_of(&s2, 1), (8, "l8"));
        assert_ne!(s1.segments[0].track_id, s2.segments[0].track_id, "stuff: one id per class");
        assert!(t.relabelled().is_empty());
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

    /// Pixels of segment `id` in `seg`.
    fn area_of(seg: &Segmentation, id: u32) -> usize {
        seg.ids.iter().filter(|&&v| v == id).count()
    }

    #[test]
    fn a_mask_in_pieces_far_apart_is_split_into_segments_with_their_own_tracks() {
        // 40×30: the split gap is 8 % of the 50 px diagonal, 4 px. Segment 2 covers two
        // 8×8 squares 18 px apart (and a one-pixel speck beside the second one); segment 3
        // covers two 8×8 squares 2 px apart (one object cut by an occluder).
        let mut s = frame(&[(2, 0, 2, 2, 8), (3, 0, 2, 18, 8)]);
        for y in 2..10 {
            for x in 28..36 {
                s.ids[(y * W + x) as usize] = 2;
            }
            for x in 12..20 {
                s.ids[((y + 16) * W + x) as usize] = 3;
            }
        }
        s.ids[(11 * W + 37) as usize] = 2;
        let mut t = Tracker::default();
        t.update(&mut s);
        // The larger group (the right square and the speck) keeps the id.
        assert_eq!(t.split(), &[(4, 2)], "segment 2 split off a new segment 4; segment 3 stays whole");
        let new = s.segments.iter().find(|x| x.id == 4).expect("the new segment");
        assert_eq!((new.label_id, new.is_thing, new.area, new.bbox), (0, true, 64, [2, 2, 8, 8]));
        let old = s.segments.iter().find(|x| x.id == 2).unwrap();
        assert_eq!((old.area, old.bbox), (65, [28, 2, 10, 10]));
        assert_eq!((area_of(&s, 2), area_of(&s, 4), area_of(&s, 3)), (65, 64, 128));
        assert_ne!(track_of(&s, 2), track_of(&s, 4));
        // Each piece is followed as an object of its own.
        let mut next = frame(&[(5, 0, 3, 2, 8), (6, 0, 29, 2, 8)]);
        t.update(&mut next);
        assert!(t.split().is_empty());
        assert_eq!((track_of(&next, 5), track_of(&next, 6)), (track_of(&s, 4), track_of(&s, 2)));
    }

    #[test]
    fn a_second_segment_inside_a_tracked_object_is_a_part_of_it() {
        let mut t = Tracker::default();
        let mut first = frame(&[(2, 0, 10, 10, 10)]);
        t.update(&mut first);
        let id = track_of(&first, 2);
        // The model covers the object with two segments (left 6 columns, right 4 columns).
        let mut s = frame(&[(2, 0, 10, 10, 6), (3, 0, 16, 10, 4)]);
        t.update(&mut s);
        assert_eq!((track_of(&s, 2), track_of(&s, 3)), (id, id));
        let mut s = frame(&[(2, 0, 10, 10, 10)]);
        t.update(&mut s);
        assert_eq!(track_of(&s, 2), id);
        // A segment of a class the track has not shown is not a part of it.
        let mut s = frame(&[(2, 0, 10, 10, 6), (3, 1, 16, 10, 4)]);
        t.update(&mut s);
        assert_ne!(track_of(&s, 3), id);
    }

    #[test]
    fn a_lost_object_found_again_nearby_keeps_its_id_if_the_class_is_the_same() {
        for (label, continues) in [(0, true), (1, false)] {
            let mut t = Tracker::default();
            let first = seen_then_lost(&mut t, None);
            // Back 8 px to the right: no overlap with where it was, within 1.5 × its size.
            let mut s = frame(&[(2, label, 13, 5, 6)]);
            t.update(&mut s);
            assert_eq!(track_of(&s, 2) == first, continues, "class {label}");
        }
        // Farther than 1.5 × its size: a new object.
        let mut t = Tracker::default();
        let mut s = frame(&[(2, 0, 5, 5, 6)]);
        t.update(&mut s);
        let first = track_of(&s, 2);
        t.update(&mut frame(&[]));
        let mut s = frame(&[(2, 0, 16, 5, 6)]);
        t.update(&mut s);
        assert_ne!(track_of(&s, 2), first);
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

    const RED: [u8; 3] = [220, 30, 40];
    const BLUE: [u8; 3] = [30, 40, 220];

    /// Track `seg` with an RGB picture of it (each thing id in its colour from `colours`,
    /// the rest grey), or, for `None`, without a frame.
    fn see(t: &mut Tracker, seg: &mut Segmentation, colours: Option<&[(u32, [u8; 3])]>) {
        match colours {
            Some(colours) => {
                let picture: Vec<u8> = seg
                    .ids
                    .iter()
                    .flat_map(|id| colours.iter().find(|(c, _)| c == id).map_or([128, 128, 128], |&(_, rgb)| rgb))
                    .collect();
                let f = Frame::packed(crate::frame::PixelFormat::Rgb, W as usize, H as usize, &picture).unwrap();
                t.update_with_frame(seg, &f);
            }
            None => t.update(seg),
        }
    }

    /// A 6×6 thing of class 0 (segment 2) at (5, 5) for three frames, then four frames
    /// without it; its track id.
    fn seen_then_lost(t: &mut Tracker, colours: Option<&[(u32, [u8; 3])]>) -> u64 {
        let mut id = None;
        for _ in 0..3 {
            let mut s = frame(&[(2, 0, 5, 5, 6)]);
            see(t, &mut s, colours);
            id = Some(track_of(&s, 2));
        }
        for _ in 0..4 {
            see(t, &mut frame(&[]), colours);
        }
        id.unwrap()
    }

    #[test]
    fn a_lost_object_that_looks_the_same_continues_across_a_class_change_and_a_longer_way() {
        // (class when back, x when back: 8 px away is within 1.5 × its size of 6 px, 15 px
        // only within 3 ×) → continues with colours, without.
        for (label, x, with, without) in [(1, 13, true, false), (0, 20, true, false), (0, 13, true, true)] {
            for colours in [true, false] {
                let paint: Option<&[(u32, [u8; 3])]> = if colours { Some(&[(2, RED)]) } else { None };
                let mut t = Tracker::default();
                let first = seen_then_lost(&mut t, paint);
                let mut s = frame(&[(2, label, x, 5, 6)]);
                see(&mut t, &mut s, paint);
                let expected = if colours { with } else { without };
                assert_eq!(track_of(&s, 2) == first, expected, "class {label}, x {x}, colours {colours}");
            }
        }
    }

    #[test]
    fn a_lost_object_is_not_taken_for_one_that_looks_different() {
        for (colour, continues) in [(RED, true), (BLUE, false)] {
            let mut t = Tracker::default();
            let first = seen_then_lost(&mut t, Some(&[(2, RED)]));
            // Same class, 8 px away: masks and motion alone would continue the track.
            let mut s = frame(&[(2, 0, 13, 5, 6)]);
            see(&mut t, &mut s, Some(&[(2, colour)]));
            assert_eq!(track_of(&s, 2) == first, continues, "{colour:?}");
        }
    }

    #[test]
    fn a_second_piece_of_another_class_that_looks_the_same_shares_the_id() {
        for colours in [true, false] {
            let mut t = Tracker::default();
            let mut s = frame(&[(2, 0, 5, 5, 8)]);
            see(&mut t, &mut s, if colours { Some(&[(2, RED)]) } else { None });
            let id = track_of(&s, 2);
            // The object again, and beside it (outside its mask) a piece the model calls
            // another class.
            let mut s = frame(&[(2, 0, 5, 5, 8), (3, 1, 14, 6, 3)]);
            see(&mut t, &mut s, if colours { Some(&[(2, RED), (3, RED)]) } else { None });
            assert_eq!(track_of(&s, 2), id);
            assert_eq!(track_of(&s, 3) == id, colours, "colours {colours}");
        }
    }

    #[test]
    fn an_object_back_in_the_picture_looking_the_same_keeps_its_id() {
        for colours in [true, false] {
            let paint: Option<&[(u32, [u8; 3])]> = if colours { Some(&[(2, RED)]) } else { None };
            let mut t = Tracker::default();
            let mut first = None;
            // Moving right 3 px a frame up to the right edge, then out of the picture.
            for x in (16..=34).step_by(3) {
                let mut s = frame(&[(2, 0, x, 5, 6)]);
                see(&mut t, &mut s, paint);
                assert_eq!(*first.get_or_insert(track_of(&s, 2)), track_of(&s, 2));
            }
            for _ in 0..6 {
                see(&mut t, &mut frame(&[]), paint);
            }
            // Back where it left: a lost track whose prediction left the picture is kept
            // only for its appearance.
            let mut s = frame(&[(2, 0, 34, 5, 6)]);
            see(&mut t, &mut s, paint);
            assert_eq!(Some(track_of(&s, 2)) == first, colours, "colours {colours}");
        }
    }

    #[test]
    fn colour_histograms_and_resemblance() {
        let picture: Vec<u8> = (0..W * H).flat_map(|p| if p % W < 20 { RED } else { BLUE }).collect();
        let f = Frame::packed(crate::frame::PixelFormat::Rgb, W as usize, H as usize, &picture).unwrap();
        let red: Vec<u32> = (0..W * H).filter(|p| p % W < 20).collect();
        let half: Vec<u32> = (0..W * H).filter(|p| (10..30).contains(&(p % W))).collect();
        let a = colour_histogram(&f, &red).unwrap();
        let b = colour_histogram(&f, &half).unwrap();
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((resemblance(&a, &a) - 1.0).abs() < 1e-5);
        assert!((resemblance(&a, &b) - 0.5).abs() < 1e-5, "{}", resemblance(&a, &b));
        assert!(colour_histogram(&f, &[]).is_none());
    }
}
