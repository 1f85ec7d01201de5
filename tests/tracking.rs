//! The tracker on the sample's ground truth: `samples/gt` holds the COCO panoptic
//! segmentation of every frame of `samples/shapes.mp4`, with the generator's true identity
//! of every thing (`track_id`). The segment ids are re-assigned in a random order on every
//! frame before the tracker sees them, so it cannot read the truth from them; the test
//! then checks that each true instance keeps one track id over its lifetime and that no
//! track id is shared by two instances. The bar is 95% of the instances (with the
//! sample's 11 instances: all of them).
//!
//! This measures the tracker alone (perfect masks in). What it gives on the sample model's
//! own output (`model_output_tracking_report`, ignored: it runs the model) is recorded in
//! docs/BENCHMARKS.md, "Tracking on the model's output".

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use segstream::segmentation::{Segment, Segmentation, Task};
use segstream::tracking::{Tracker, TrackerConfig};

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

#[test]
fn ground_truth_instances_keep_one_track_id() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let frames = load_gt(&mut rng);
    assert_eq!(frames.len(), 180, "the sample has 180 annotated frames");

    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut ids_of_truth: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut truth_of_id: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut stuff_ids: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut observations = 0usize;
    let mut last_of_truth: HashMap<u64, (usize, u64)> = HashMap::new();
    for (fi, mut f) in frames.into_iter().enumerate() {
        tracker.update(&mut f.seg);
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
        "tracking on GT: {kept}/{total} instances kept one track id ({:.1}%), {merged} track ids shared by two instances, {observations} thing observations; per instance: {ids_of_truth:?}",
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

/// What `mask2former track=true` gives on the sample model's own output. Each true
/// instance is matched per frame to the predicted thing with the highest mask IoU (≥ 0.5);
/// the report counts the instances ever matched, those whose matches all carry one track
/// id, the track ids matched to two true instances (swaps) and the extra ids (one per
/// change of id along an instance's matches).
///
/// The issue's ≥ 95% (11 of 11 here) is not reached on this model's output
/// (docs/BENCHMARKS.md, "Tracking on the model's output"): the test holds the floor reached
/// so far (8 of 11, no id given to two instances) so that a change of the tracker cannot
/// lose it unnoticed. Carrying a track across a class flip took it from 1 to 3 of 11 (the
/// previous sample model); with the staged model, splitting masks of two far-apart objects,
/// parts, the stale-guess penalty and re-identification nearby took it from 5 to 8 (3 ids
/// shared before, none after). What is left: an object hidden for 20 frames that comes
/// back 130 px off, one occluded while the model calls its pieces three classes in turn,
/// one that comes back after 21 frames labelled with another class.
///
/// Slow (the model over 180 frames) and needs the ONNX Runtime library:
/// `ORT_DYLIB_PATH=$PWD/.ort/lib/libonnxruntime.so cargo test --test tracking -- --ignored --nocapture`
#[test]
#[ignore = "slow: runs the sample model over the 180 frames of the sample"]
fn model_output_tracking_report() {
    use gst::prelude::*;
    use gstreamer as gst;
    gst::init().unwrap();
    segstream::elements::register_static().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! mask2former name=m device=cpu track=true model={} ! appsink name=sink sync=false",
        root.join("samples/shapes.mp4").display(),
        root.join("samples/models/shapes-m2f.onnx").display()
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut predicted = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let buf = sample.buffer().unwrap();
        let meta = buf.meta::<segstream::elements::SegmentationMeta>().expect("meta on every frame");
        predicted.push(meta.segmentation().clone());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let gt = load_gt(&mut Rng(7));
    assert_eq!(predicted.len(), gt.len());

    let mut ids_of_truth: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut truth_of_id: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last_id: HashMap<u64, u64> = HashMap::new();
    let mut id_changes = 0usize;
    let mut matched = 0usize;
    let mut observations = 0usize;
    for (p, g) in predicted.iter().zip(&gt) {
        let mut inter: HashMap<(u32, u32), u32> = HashMap::new();
        let mut gt_area: HashMap<u32, u32> = HashMap::new();
        let mut pr_area: HashMap<u32, u32> = HashMap::new();
        for (&a, &b) in g.seg.ids.iter().zip(&p.ids) {
            *gt_area.entry(a).or_default() += 1;
            *pr_area.entry(b).or_default() += 1;
            *inter.entry((a, b)).or_default() += 1;
        }
        for (&gid, &truth) in &g.truth {
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
                if last_id.insert(truth, tid).is_some_and(|prev| prev != tid) {
                    id_changes += 1;
                }
                ids_of_truth.entry(truth).or_default().insert(tid);
                truth_of_id.entry(tid).or_default().insert(truth);
            }
        }
    }
    let kept = ids_of_truth.values().filter(|s| s.len() == 1).count();
    let extra: usize = ids_of_truth.values().map(|s| s.len() - 1).sum();
    let swaps: Vec<_> = truth_of_id.iter().filter(|(_, t)| t.len() > 1).collect();
    eprintln!(
        "model output: {matched}/{observations} thing observations matched (IoU >= 0.5); {} of 11 instances ever matched, {kept} of them with one track id; {extra} extra ids ({id_changes} id changes); {} track ids given to two instances {swaps:?}; ids per instance {ids_of_truth:?}",
        ids_of_truth.len(),
        swaps.len()
    );
    assert!(swaps.is_empty(), "a track id was given to two true instances: {swaps:?}");
    assert!(kept >= 8, "only {kept} of 11 instances kept one track id (8 before): {ids_of_truth:?}");
}
