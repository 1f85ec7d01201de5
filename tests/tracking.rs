//! The tracker on the sample's ground truth: `samples/gt` holds the COCO panoptic
//! segmentation of every frame of `samples/shapes.mp4`, with the generator's true identity
//! of every thing (`track_id`). The segment ids are re-assigned in a random order on every
//! frame before the tracker sees them, so it cannot read the truth from them; the test
//! then checks that each true instance keeps one track id over its lifetime and that no
//! track id is shared by two instances. The bar is 95% of the instances (with the
//! sample's 11 instances: all of them).
//!
//! This measures the tracker alone (perfect masks in), on masks and motion alone and with
//! the frames' colours. `model_output_tracking` holds the bar on the sample model's
//! own output (docs/BENCHMARKS.md, "Tracking on the model's output").

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use segstream::frame::{Frame, PixelFormat};
use segstream::segmentation::{Segment, Segmentation, Task};
use segstream::tracking::{Tracker, TrackerConfig, colour_histogram, resemblance};

struct GtFrame {
    seg: Segmentation,
    /// New segment id → true track id (things only).
    truth: HashMap<u32, u64>,
}

/// Tiny deterministic generator (xorshift) for the id shuffles.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn load_gt(rng: &mut Rng) -> Vec<GtFrame> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/gt");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("panoptic.json")).expect("panoptic.json")).unwrap();
    let is_thing: HashMap<u64, bool> = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_u64().unwrap(), c["isthing"].as_u64().unwrap() == 1))
        .collect();
    let mut frames = Vec::new();
    for ann in json["annotations"].as_array().unwrap() {
        let png = common::read_png(&root.join("panoptic").join(ann["file_name"].as_str().unwrap()));
        assert_eq!(png.channels, 3);
        let infos = ann["segments_info"].as_array().unwrap();
        // Shuffle: the k-th segment of a random permutation gets id k + 1.
        let mut order: Vec<usize> = (0..infos.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut remap: HashMap<u32, u32> = HashMap::new();
        let mut segments = Vec::new();
        let mut truth = HashMap::new();
        for (k, &i) in order.iter().enumerate() {
            let s = &infos[i];
            let old = s["id"].as_u64().unwrap() as u32;
            let new = k as u32 + 1;
            remap.insert(old, new);
            let cat = s["category_id"].as_u64().unwrap();
            if let Some(t) = s["track_id"].as_u64() {
                truth.insert(new, t);
            }
            segments.push(Segment {
                id: new,
                label_id: cat as u32,
                label: format!("c{cat}"),
                score: 1.0,
                is_thing: is_thing[&cat],
                area: s["area"].as_u64().unwrap(),
                bbox: [0; 4],
                track_id: None,
            });
        }
        let ids: Vec<u32> = png
            .samples
            .chunks_exact(3)
            .map(|c| {
                let old = c[0] + 256 * c[1] + 256 * 256 * c[2];
                remap.get(&old).copied().unwrap_or(0)
            })
            .collect();
        frames.push(GtFrame {
            seg: Segmentation { width: png.width as u32, height: png.height as u32, task: Task::Panoptic, ids, segments },
            truth,
        });
    }
    frames
}

/// The sample's decoded frames, packed RGB (what the element sees after `videoconvert`).
fn sample_frames() -> Vec<Vec<u8>> {
    use gst::prelude::*;
    use gstreamer as gst;
    gst::init().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false",
        root.join("samples/shapes.mp4").display()
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let info = gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        assert_eq!(info.stride()[0] as u32, 3 * info.width(), "packed RGB rows");
        frames.push(sample.buffer().unwrap().map_readable().unwrap().as_slice().to_vec());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

/// Masks and motion alone (`Tracker::update`, as for a result without its frame).
#[test]
fn ground_truth_instances_keep_one_track_id() {
    ground_truth_tracking(false);
}

/// With the frames' colours (`Tracker::update_with_frame`, as `mask2former track=true`).
#[test]
fn ground_truth_instances_keep_one_track_id_with_colours() {
    ground_truth_tracking(true);
}

fn ground_truth_tracking(colours: bool) {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let frames = load_gt(&mut rng);
    assert_eq!(frames.len(), 180, "the sample has 180 annotated frames");
    let pictures = if colours { sample_frames() } else { Vec::new() };
    if colours {
        assert_eq!(pictures.len(), frames.len(), "one decoded frame per annotated frame");
    }

    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut ids_of_truth: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut truth_of_id: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut stuff_ids: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut observations = 0usize;
    let mut last_of_truth: HashMap<u64, (usize, u64)> = HashMap::new();
    for (fi, mut f) in frames.into_iter().enumerate() {
        if colours {
            let (w, h) = (f.seg.width as usize, f.seg.height as usize);
            let picture = Frame::packed(PixelFormat::Rgb, w, h, &pictures[fi]).unwrap();
            tracker.update_with_frame(&mut f.seg, &picture);
        } else {
            tracker.update(&mut f.seg);
        }
        for s in &f.seg.segments {
            let tid = s.track_id.expect("every segment gets a track id");
            match f.truth.get(&s.id) {
                Some(&truth) => {
                    if let Some(&(pf, ptid)) = last_of_truth.get(&truth)
                        && ptid != tid
                    {
                        let area = f.seg.ids.iter().filter(|&&v| v == s.id).count();
                        eprintln!("frame {fi}: instance {truth} changed track {ptid} -> {tid} (last seen frame {pf}, visible area {area})");
                    }
                    last_of_truth.insert(truth, (fi, tid));
                    observations += 1;
                    ids_of_truth.entry(truth).or_default().insert(tid);
                    truth_of_id.entry(tid).or_default().insert(truth);
                }
                None => {
                    stuff_ids.entry(s.label_id).or_default().insert(tid);
                }
            }
        }
    }
    let kept = ids_of_truth.values().filter(|ids| ids.len() == 1).count();
    let total = ids_of_truth.len();
    let merged = truth_of_id.values().filter(|t| t.len() > 1).count();
    let ratio = kept as f64 / total as f64;
    eprintln!(
        "tracking on GT (colours: {colours}): {kept}/{total} instances kept one track id ({:.1}%), {merged} track ids shared by two instances, {observations} thing observations; per instance: {ids_of_truth:?}",
        100.0 * ratio
    );
    assert!(total >= 10, "the sample has at least 10 thing instances, found {total}");
    // Instance 5 is the hard one: hidden for 5 frames behind another shape while cut by
    // the bottom edge, it comes back as a 97-pixel sliver of a part of its shape the
    // tracker never saw; the lost track's predicted box catches it (src/tracking.rs).
    assert!(ratio >= 0.95, "only {kept}/{total} instances kept one track id: {ids_of_truth:?}");
    assert_eq!(merged, 0, "a track id was given to two true instances: {truth_of_id:?}");
    for (label, ids) in &stuff_ids {
        assert_eq!(ids.len(), 1, "stuff class {label} got several ids: {ids:?}");
    }
}

/// The sample model's output for every frame of the sample, through `mask2former` with
/// `track` as given.
fn model_output(track: bool) -> Vec<Segmentation> {
    use gst::prelude::*;
    use gstreamer as gst;
    gst::init().unwrap();
    segstream::elements::register_static().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! mask2former name=m device=cpu track={track} model={} ! appsink name=sink sync=false",
        root.join("samples/shapes.mp4").display(),
        root.join("samples/models/shapes-m2f.onnx").display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut predicted = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let buf = sample.buffer().unwrap();
        let meta = buf
            .meta::<segstream::elements::SegmentationMeta>()
            .expect("meta on every frame");
        predicted.push((**meta.segmentation()).clone());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    predicted
}

/// How tracked predictions follow the true instances: each true instance is matched per
/// frame to the predicted thing with the highest mask IoU (≥ 0.5). Returns the instances
/// ever matched and, of them, those whose matches all carry one track id, the extra ids
/// (one per change of id along an instance's matches) and the track ids matched to two
/// true instances (swaps); prints them under `name`.
fn follow(
    name: &str,
    predicted: &[Segmentation],
    gt: &[GtFrame],
) -> (usize, usize, usize, Vec<u64>) {
    assert_eq!(predicted.len(), gt.len());
    let mut ids_of_truth: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut truth_of_id: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last_id: HashMap<u64, u64> = HashMap::new();
    let (mut matched, mut observations) = (0usize, 0usize);
    for (fi, (p, g)) in predicted.iter().zip(gt).enumerate() {
        let mut inter: HashMap<(u32, u32), u32> = HashMap::new();
        let mut gt_area: HashMap<u32, u32> = HashMap::new();
        let mut pr_area: HashMap<u32, u32> = HashMap::new();
        for (&a, &b) in g.seg.ids.iter().zip(&p.ids) {
            *gt_area.entry(a).or_default() += 1;
            *pr_area.entry(b).or_default() += 1;
            *inter.entry((a, b)).or_default() += 1;
        }
        let mut truths: Vec<(u32, u64)> = g.truth.iter().map(|(&gid, &t)| (gid, t)).collect();
        truths.sort_by_key(|&(_, t)| t);
        for (gid, truth) in truths {
            observations += 1;
            let best = p
                .segments
                .iter()
                .filter(|s| s.is_thing)
                .map(|s| {
                    let i = *inter.get(&(gid, s.id)).unwrap_or(&0) as f64;
                    let u = gt_area[&gid] as f64 + *pr_area.get(&s.id).unwrap_or(&0) as f64 - i;
                    (i / u.max(1.0), s.track_id)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((iou, Some(tid))) = best
                && iou >= 0.5
            {
                matched += 1;
                if let Some(prev) = last_id.insert(truth, tid)
                    && prev != tid
                {
                    eprintln!(
                        "{name}: frame {fi}: instance {truth} changed track {prev} -> {tid} (IoU {iou:.2})"
                    );
                }
                ids_of_truth.entry(truth).or_default().insert(tid);
                truth_of_id.entry(tid).or_default().insert(truth);
            }
        }
    }
    let kept = ids_of_truth.values().filter(|s| s.len() == 1).count();
    let extra: usize = ids_of_truth.values().map(|s| s.len() - 1).sum();
    let swaps: Vec<u64> = truth_of_id
        .iter()
        .filter(|(_, t)| t.len() > 1)
        .map(|(&id, _)| id)
        .collect();
    eprintln!(
        "{name}: {matched}/{observations} thing observations matched (IoU >= 0.5); {} instances ever matched, {kept} of them with one track id; {extra} extra ids; {} track ids given to two instances {swaps:?}; ids per instance {ids_of_truth:?}",
        ids_of_truth.len(),
        swaps.len()
    );
    (ids_of_truth.len(), kept, extra, swaps)
}

/// Colour resemblance (the tracker's [`resemblance`] of [`colour_histogram`]s over the
/// sample's frames) between pairs of the model's untracked thing masks on every other
/// frame, each mask taken for the true instance holding at least 60 % of it (masks of 64
/// pixels or more): (pairs of one instance, pairs of two instances), each sorted.
fn resemblances(raw: &[Segmentation], gt: &[GtFrame]) -> (Vec<f32>, Vec<f32>) {
    let pictures = sample_frames();
    let mut looks: Vec<(u64, Vec<f32>)> = Vec::new();
    for (fi, (p, g)) in raw.iter().zip(gt).enumerate().step_by(2) {
        let picture = Frame::packed(PixelFormat::Rgb, p.width as usize, p.height as usize, &pictures[fi]).unwrap();
        for s in p.segments.iter().filter(|s| s.is_thing) {
            let px: Vec<u32> = (0..p.ids.len() as u32).filter(|&i| p.ids[i as usize] == s.id).collect();
            if px.len() < 64 {
                continue;
            }
            let mut owners: HashMap<u64, usize> = HashMap::new();
            for &i in &px {
                if let Some(&t) = g.truth.get(&g.seg.ids[i as usize]) {
                    *owners.entry(t).or_default() += 1;
                }
            }
            if let Some((&t, &n)) = owners.iter().max_by_key(|&(t, n)| (*n, *t))
                && n as f64 >= 0.6 * px.len() as f64
            {
                looks.push((t, colour_histogram(&picture, &px).unwrap()));
            }
        }
    }
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for (i, (ta, a)) in looks.iter().enumerate() {
        for (tb, b) in &looks[i + 1..] {
            if ta == tb { same.push(resemblance(a, b)) } else { different.push(resemblance(a, b)) }
        }
    }
    same.sort_by(f32::total_cmp);
    different.sort_by(f32::total_cmp);
    (same, different)
}

/// What `mask2former track=true` gives on the sample model's own output (the bar:
/// ≥ 95 % of the true instances keep one track id, no id given to two instances), and, for
/// comparison, the tracker on masks and motion alone (`Tracker::update` over the untracked
/// output; docs/BENCHMARKS.md, "Tracking on the model's output").
///
/// On this model's output, masks, motion and labels alone keep 8 of the 11 instances: an
/// object missed for 21 frames comes back 130 px off, one is covered while the model calls
/// its pieces three classes in turn, one leaves the picture and comes back labelled with
/// another class. The element also compares the colours of segments with those of tracks
/// (a segment that looks like a lost track continues it across a class change, a longer
/// way, or after the object left the picture), which keeps all 11.
///
/// Runs the model twice over the 180 frames (about 25 s).
#[test]
fn model_output_tracking() {
    let gt = load_gt(&mut Rng(7));
    let tracked = model_output(true);
    let (total, kept, _, swaps) = follow("mask2former track=true", &tracked, &gt);
    let mut raw = model_output(false);
    let (same, different) = resemblances(&raw, &gt);
    let mut tracker = Tracker::new(TrackerConfig::default());
    for seg in &mut raw {
        tracker.update(seg);
    }
    let (_, kept_masks, _, swaps_masks) = follow("masks and motion alone", &raw, &gt);

    // What the appearance rules stand on: the model's masks of one object look alike (the
    // tracker's threshold for "looks the same" is 0.5), masks of two objects do not.
    let pct = |v: &[f32], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "colour resemblance of the model's masks (every other frame): one object, {} pairs: 1st/5th/50th percentile {:.3}/{:.3}/{:.3}; two objects, {} pairs: 50th/95th/99th/99.9th percentile {:.3}/{:.3}/{:.3}/{:.3}, max {:.3}",
        same.len(),
        pct(&same, 0.01),
        pct(&same, 0.05),
        pct(&same, 0.5),
        different.len(),
        pct(&different, 0.5),
        pct(&different, 0.95),
        pct(&different, 0.99),
        pct(&different, 0.999),
        different.last().unwrap()
    );
    assert!(
        pct(&same, 0.05) > pct(&different, 0.99),
        "masks of one object should resemble each other more than masks of two objects"
    );

    assert_eq!(
        total, 11,
        "every true instance is found by the model at some frame"
    );
    assert!(
        swaps.is_empty(),
        "a track id was given to two true instances: {swaps:?}"
    );
    assert!(
        kept as f64 >= 0.95 * total as f64,
        "only {kept} of {total} instances kept one track id"
    );
    // The floor of the masks-and-motion mode (8 of 11 when colours came in), so that a
    // change of the tracker cannot lose it unnoticed.
    assert!(
        swaps_masks.is_empty(),
        "masks alone: a track id was given to two true instances: {swaps_masks:?}"
    );
    assert!(
        kept_masks >= 8,
        "masks alone: only {kept_masks} of 11 instances kept one track id (8 before)"
    );
}
