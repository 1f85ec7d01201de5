//! Batching across streams (`mask2former batch-group=...`): streams of different frame
//! sizes, frame counts and rates share one batch group; each stream's results equal those of a
//! single-stream run of the same frames, and batches of more than one image happen.
//!
//! The fake backend's output depends on each image's tensor content (a per-image mean
//! picks the class and the mask split), so a result given to the wrong stream or frame
//! is detected. The ONNX test does the same with `tests/data/tiny_contract.onnx`
//! (dynamic batch) through ONNX Runtime, where it is installed.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_check as gst_check;
use gstreamer_video as gst_video;

use segstream::backend::{Backend, InputTensor, Logits};
use segstream::backend::batching::{self, BatchConfig};
use segstream::elements::{Mask2Former, SegmentationMeta};
use segstream::model::ModelCard;
use segstream::segmentation::Segmentation;
use segstream::segmenter::{Segmenter, SegmenterConfig};

mod common;
use common::fixtures::{IN, K, Q, fake_card_with, init};

fn card() -> ModelCard {
    fake_card_with(255.0, 0.5)
}

/// Per image: `v` = mean of its tensor; query 0 is "square" or "circle" (by `v`) over the
/// columns left of a split that moves with `v`, query 1 "background" right of it, query 2
/// no-object. Takes any batch up to `max`.
struct ContentBackend {
    max: usize,
}

impl Backend for ContentBackend {
    fn name(&self) -> &str {
        "content-fake"
    }
    fn input_size(&self) -> (usize, usize) {
        (IN, IN)
    }
    fn output_dims(&self) -> (usize, usize) {
        (Q, K + 1)
    }
    fn max_batch(&self) -> usize {
        self.max
    }
    fn infer(&mut self, input: &InputTensor) -> segstream::Result<Logits> {
        let n = input.shape[0];
        assert!(n <= self.max, "batch {n} over max {}", self.max);
        let per = 3 * IN * IN;
        assert_eq!(input.data.len(), n * per);
        let (mh, mw) = (IN / 4, IN / 4);
        let mut class_logits = Vec::new();
        let mut mask_logits = Vec::new();
        for img in input.data.chunks_exact(per) {
            let v = img.iter().map(|&x| f64::from(x)).sum::<f64>() / per as f64;
            let split = 1 + ((v * 37.0).fract() * (mw - 2) as f64) as usize;
            let class = if (v * 53.0).fract() > 0.5 { 0 } else { 1 };
            let mut c = vec![-10.0f32; Q * (K + 1)];
            c[class] = 10.0;
            c[(K + 1) + 2] = 10.0;
            c[2 * (K + 1) + K] = 10.0;
            class_logits.extend(c);
            let mut m = vec![-10.0f32; Q * mh * mw];
            for y in 0..mh {
                for x in 0..mw {
                    if x < split {
                        m[y * mw + x] = 10.0;
                    } else {
                        m[mh * mw + y * mw + x] = 10.0;
                    }
                }
            }
            mask_logits.extend(m);
        }
        Ok(Logits { batch: n, num_queries: Q, num_classes_plus_one: K + 1, mask_height: mh, mask_width: mw, class_logits, mask_logits })
    }
}

fn fake_segmenter(max: usize) -> Segmenter {
    Segmenter::with_backend(card(), Box::new(ContentBackend { max }), Path::new("fake.onnx")).expect("fake matches card")
}

/// One test stream: frame size, frame count, frames per second.
#[derive(Clone, Copy)]
struct Stream {
    w: u32,
    h: u32,
    frames: u64,
    fps: i32,
}

const STREAMS: [Stream; 4] = [
    Stream { w: 320, h: 240, frames: 7, fps: 30 },
    Stream { w: 640, h: 360, frames: 4, fps: 25 },
    Stream { w: 256, h: 256, frames: 6, fps: 15 },
    Stream { w: 480, h: 270, frames: 5, fps: 10 },
];

/// RGB frame `n` of stream `s`: a flat level that depends on both, plus a texture.
fn frame(info: &gst_video::VideoInfo, s: usize, n: u64, fps: i32) -> gst::Buffer {
    let level = (s * 61 + n as usize * 29) % 200;
    let data: Vec<u8> = (0..info.size()).map(|i| (level + (i * 7) % 50) as u8).collect();
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        let period = 1000 / fps as u64;
        b.set_pts(gst::ClockTime::from_mseconds(period * n));
        b.set_duration(gst::ClockTime::from_mseconds(period));
    }
    b
}

/// Run stream `s` through a `mask2former` holding `segmenter`, with `props` set; return
/// each output frame's (frame number, segmentation). `barrier`: wait there before the
/// first frame (so streams start together).
fn run_stream(
    s: usize,
    segmenter: Segmenter,
    props: &[(&str, String)],
    barrier: Option<&Barrier>,
) -> Vec<(u64, Segmentation)> {
    init();
    let st = STREAMS[s];
    let e = gst::ElementFactory::make("mask2former").build().unwrap();
    for (k, v) in props {
        e.set_property_from_str(k, v);
    }
    let m: Mask2Former = e.downcast().unwrap();
    m.set_segmenter(segmenter);
    let mut h = gst_check::Harness::with_element(&m, Some("sink"), Some("src"));
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, st.w, st.h)
        .fps(gst::Fraction::new(st.fps, 1))
        .build()
        .unwrap();
    h.set_src_caps(info.to_caps().unwrap());
    if let Some(b) = barrier {
        b.wait();
    }
    let mut out = Vec::new();
    for n in 0..st.frames {
        let buf = h.push_and_pull(frame(&info, s, n, st.fps)).expect("frame through");
        let meta = buf.meta::<SegmentationMeta>().expect("a SegmentationMeta");
        assert_eq!((meta.segmentation().width, meta.segmentation().height), (st.w, st.h));
        out.push((meta.info().frame, (**meta.segmentation()).clone()));
        if barrier.is_some() {
            // Different frame rates: streams arrive at the group at their own pace.
            std::thread::sleep(Duration::from_millis(100 / st.fps as u64));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    drop(h);
    let _ = m.set_state(gst::State::Null);
    out
}

/// Element properties as strings (`glib::Value` is not `Send`; the streams run on threads).
fn group_props(name: &str, batch: u32, timeout_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("batch-group", name.to_string()),
        ("batch-size", batch.to_string()),
        ("batch-timeout", (timeout_ms * 1_000_000).to_string()),
    ]
}

/// Runs the 4 streams concurrently in batch group `name` with segmenters from `make`, and
/// each stream alone (own model, no group); asserts equal results and returns the
/// group's stats.
fn batched_equals_single(name: &str, make: impl Fn() -> Segmenter + Sync, extra: Vec<(&'static str, String)>) -> batching::GroupStats {
    let single: Vec<_> = (0..STREAMS.len()).map(|s| run_stream(s, make(), &extra, None)).collect();
    for (s, r) in single.iter().enumerate() {
        assert_eq!(r.len() as u64, STREAMS[s].frames);
        assert!(r.iter().all(|(_, seg)| !seg.segments.is_empty()), "stream {s}: empty results prove nothing");
    }
    let barrier = Barrier::new(STREAMS.len());
    let mut props = group_props(name, 4, 150);
    props.extend(extra.iter().cloned());
    let stats = Arc::new(std::sync::Mutex::new(None));
    let batched: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..STREAMS.len())
            .map(|s| {
                let (make, props, barrier, stats) = (&make, props.clone(), &barrier, stats.clone());
                // Segmenter is not Send: each thread makes its own.
                scope.spawn(move || run_stream_keep(s, make(), &props, barrier, name, &stats))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("stream thread")).collect()
    });
    for s in 0..STREAMS.len() {
        assert_eq!(batched[s].len(), single[s].len(), "stream {s}: frame count");
        for (i, (b, one)) in batched[s].iter().zip(&single[s]).enumerate() {
            assert_eq!(b.0, one.0, "stream {s} frame {i}: frame number");
            assert!(b.1 == one.1, "stream {s} frame {i}: batched result differs from the single-stream run");
        }
    }
    // Results differ between streams (else a mix-up could go unseen).
    assert!(batched[0][0].1 != batched[1][0].1 || batched[0][0].1 != batched[2][0].1);
    let s = stats.lock().unwrap().take().expect("group stats seen");
    s
}

/// `run_stream`, and the last stream to finish records the group's stats before leaving.
fn run_stream_keep(
    s: usize,
    seg: Segmenter,
    props: &[(&str, String)],
    barrier: &Barrier,
    name: &str,
    stats: &std::sync::Mutex<Option<batching::GroupStats>>,
) -> Vec<(u64, Segmentation)> {
    let out = run_stream(s, seg, props, Some(barrier));
    // The element gave its segmenter back on stop; take the latest stats while the
    // group lives (members' segmenters, kept by the elements, keep it alive).
    if let Some(st) = batching::stats(name) {
        let mut g = stats.lock().unwrap();
        let newer = g.as_ref().is_none_or(|o| st.requests >= o.requests);
        if newer {
            *g = Some(st);
        }
    }
    out
}

#[test]
fn four_streams_batched_equal_single_stream_runs() {
    let total: u64 = STREAMS.iter().map(|s| s.frames).sum();
    let stats = batched_equals_single("test-fake-4", || fake_segmenter(usize::MAX), vec![]);
    println!("batch group stats: {stats:?}");
    assert!(stats.requests >= total - 3, "{stats:?}");
    assert!(stats.multi_image_batches > 0, "no batch of more than one frame formed: {stats:?}");
    assert!(stats.max_batch > 1 && stats.max_batch <= 4, "{stats:?}");
    assert_eq!(stats.backend_calls, stats.batches, "{stats:?}");
}

/// A backend that takes one image a call (a model exported with a fixed batch of 1):
/// the group runs each batch image by image, results unchanged.
#[test]
fn fixed_batch_backend_runs_batches_image_by_image() {
    let stats = batched_equals_single("test-fake-fixed", || fake_segmenter(1), vec![]);
    println!("batch group stats: {stats:?}");
    assert!(stats.multi_image_batches > 0, "{stats:?}");
    assert!(stats.backend_calls > stats.batches, "{stats:?}");
}

#[test]
fn mismatched_batch_settings_are_refused() {
    init();
    let mk = |batch: u32| {
        let e = gst::ElementFactory::make("mask2former").build().unwrap();
        for (k, v) in group_props("test-mismatch", batch, 5) {
            e.set_property_from_str(k, &v);
        }
        let m: Mask2Former = e.downcast().unwrap();
        m.set_segmenter(fake_segmenter(usize::MAX));
        m
    };
    let a = mk(4);
    a.set_state(gst::State::Paused).expect("first member starts");
    assert_eq!(batching::stats("test-mismatch").map(|s| s.members), Some(1));
    let b = mk(2);
    let bus = gst::Bus::new();
    b.set_bus(Some(&bus));
    assert!(b.set_state(gst::State::Paused).is_err(), "another batch-size must be refused");
    let err = bus
        .iter_filtered(&[gst::MessageType::Error])
        .next()
        .expect("an error message");
    let gst::MessageView::Error(err) = err.view() else { unreachable!() };
    assert!(err.error().to_string().contains("batch-size"), "{}", err.error());
    // A different model is refused too.
    let c = gst::ElementFactory::make("mask2former").build().unwrap();
    for (k, v) in group_props("test-mismatch", 4, 5) {
        c.set_property_from_str(k, &v);
    }
    let c: Mask2Former = c.downcast().unwrap();
    let other = Segmenter::with_backend(card(), Box::new(ContentBackend { max: 4 }), Path::new("other.onnx")).unwrap();
    c.set_segmenter(other);
    let bus = gst::Bus::new();
    c.set_bus(Some(&bus));
    assert!(c.set_state(gst::State::Paused).is_err());
    let msg = bus.iter_filtered(&[gst::MessageType::Error]).next().expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else { unreachable!() };
    assert!(err.error().to_string().contains("same model"), "{}", err.error());
    // The refused elements keep their segmenter (it goes back to the injection slot).
    assert!(b.take_segmenter().is_some());
    a.set_state(gst::State::Null).unwrap();
    // The first member's segmenter still holds its place in the group until dropped.
    let kept = a.take_segmenter().expect("segmenter back after stop");
    drop(kept);
    drop(a);
    assert!(batching::stats("test-mismatch").is_none(), "group gone with its last member");
}

#[test]
fn join_and_leave_restore_the_own_backend() {
    let mut a = fake_segmenter(usize::MAX);
    let mut b = fake_segmenter(usize::MAX);
    let cfg = BatchConfig { batch_size: 2, timeout: Duration::from_millis(1) };
    assert!(a.join_batch_group("test-join", cfg).unwrap().is_none(), "a creates the group");
    let own = b.join_batch_group("test-join", cfg).unwrap().expect("b joins and keeps its backend");
    assert_eq!(batching::stats("test-join").unwrap().members, 2);
    b.replace_backend(own).unwrap();
    assert_eq!(batching::stats("test-join").unwrap().members, 1);
    drop(a);
    assert!(batching::stats("test-join").is_none());
}

// ---------------------------------------------------------------------------------------
// The real ONNX contract model

fn tiny_contract() -> Option<Segmenter> {
    if let Err(e) = segstream::backend::onnxruntime::ensure_runtime() {
        println!("SKIPPED: ONNX Runtime not available: {e}");
        return None;
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_contract.onnx");
    let mut cfg = SegmenterConfig::new(model);
    cfg.ort.intra_threads = Some(1);
    Some(Segmenter::open(&cfg).expect("tiny contract model opens"))
}

#[test]
fn four_streams_batched_on_tiny_contract_onnx_equal_single_stream_runs() {
    if tiny_contract().is_none() {
        return;
    }
    let extra = vec![("task", "semantic".to_string())];
    let stats = batched_equals_single("test-onnx-4", || tiny_contract().unwrap(), extra);
    println!("batch group stats: {stats:?}");
    assert!(stats.multi_image_batches > 0, "{stats:?}");
    assert_eq!(stats.backend_calls, stats.batches, "dynamic batch: one call a batch: {stats:?}");
}
