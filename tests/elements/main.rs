//! Element tests with `gstreamer_check::Harness`: caps negotiation, properties, the
//! SegmentationMeta, passthrough, EOS, flush; one file per element (`mask2former.rs`,
//! `segoverlay.rs`, `segmetaenc.rs`) and the meta across elements (`meta.rs`).
//!
//! No model is needed: `mask2former` gets a `Segmenter` built on a fake backend
//! (`common::fixtures`: query 0 = "square" on the left half, query 1 = "background" on the
//! right half, query 2 = no-object) through `Mask2Former::set_segmenter`, the Rust-only
//! injection API of the element.

use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_check as gst_check;
use gstreamer_video as gst_video;

use segstream::backend::{Backend, InputTensor, Logits};
use segstream::elements::{Mask2Former, SegmentationInfo, SegmentationMeta};
use segstream::model::Label;
use segstream::segmentation::{Segment, Segmentation, Task};
use segstream::segmenter::{Segmenter, Timings};

#[path = "../common/mod.rs"]
mod common;
mod cuda;
mod mask2former;
mod meta;
mod segmetaenc;
mod segoverlay;

use common::fixtures::{FakeBackend, fake_card as card, fake_segmenter, init};

const FORMATS: [&str; 5] = ["RGB", "RGBA", "BGRx", "NV12", "I420"];
const W: u32 = 64;
const H: u32 = 48;

fn mask2former_with_fake() -> (Mask2Former, Arc<std::sync::atomic::AtomicUsize>) {
    init();
    let e = gst::ElementFactory::make("mask2former").build().expect("mask2former");
    let m: Mask2Former = e.downcast().expect("our element");
    let (s, calls) = fake_segmenter();
    m.set_segmenter(s);
    (m, calls)
}

// ---------------------------------------------------------------------------------------
// Frames and metas

fn info(format: &str, w: u32, h: u32) -> gst_video::VideoInfo {
    let f = gst_video::VideoFormat::from_string(format);
    gst_video::VideoInfo::builder(f, w, h)
        .fps(gst::Fraction::new(30, 1))
        .build()
        .expect("video info")
}

/// A frame filled with a deterministic pattern, with PTS `n * 33 ms`.
fn frame(info: &gst_video::VideoInfo, n: u64) -> gst::Buffer {
    let data: Vec<u8> = (0..info.size())
        .map(|i| ((i * 7 + n as usize * 13) % 251) as u8)
        .collect();
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(33 * n));
        b.set_duration(gst::ClockTime::from_mseconds(33));
    }
    b
}

fn labels() -> Arc<[Label]> {
    card().labels.into()
}

/// A segmentation of a `w`×`h` frame: left half "square" (id 1), right half "background" (id 2).
fn halves(w: u32, h: u32) -> Segmentation {
    let mut ids = vec![0u32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            ids[(y * w + x) as usize] = if x < w / 2 { 1 } else { 2 };
        }
    }
    let half = u64::from(w / 2) * u64::from(h);
    Segmentation {
        width: w,
        height: h,
        task: Task::Panoptic,
        ids,
        segments: vec![
            Segment {
                id: 1,
                label_id: 0,
                label: "square".into(),
                score: 0.99,
                is_thing: true,
                area: half,
                bbox: [0, 0, w / 2, h],
                track_id: None,
            },
            Segment {
                id: 2,
                label_id: 2,
                label: "background".into(),
                score: 0.98,
                is_thing: false,
                area: half,
                bbox: [w / 2, 0, w / 2, h],
                track_id: None,
            },
        ],
    }
}

fn with_meta(mut buf: gst::Buffer, seg: Segmentation, frame_no: u64) -> gst::Buffer {
    let info = SegmentationInfo {
        frame: frame_no,
        model: "fake-m2f".into(),
        timings: Timings {
            preprocess_ms: 1.0,
            inference_ms: 2.0,
            postprocess_ms: 3.0,
        },
        stale: false,
    };
    SegmentationMeta::add(buf.make_mut(), Arc::new(seg), labels(), info).expect("add meta");
    buf
}

/// Flush the harness (flush-start, flush-stop, a new segment), each event accepted.
fn flush(h: &mut gst_check::Harness) {
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())));
}

/// Whether an EOS is among the events waiting at the harness' sink.
fn pulled_eos(h: &mut gst_check::Harness) -> bool {
    let mut saw_eos = false;
    while let Some(ev) = h.try_pull_event() {
        saw_eos |= ev.type_() == gst::EventType::Eos;
    }
    saw_eos
}

fn harness(element: &impl IsA<gst::Element>) -> gst_check::Harness {
    gst_check::Harness::with_element(element, Some("sink"), Some("src"))
}

// ---------------------------------------------------------------------------------------
// Registration and properties

#[test]
fn registers_three_elements() {
    init();
    for name in ["mask2former", "segoverlay", "segmetaenc"] {
        let f = gst::ElementFactory::find(name).unwrap_or_else(|| panic!("{name} not registered"));
        assert_eq!(f.plugin_name().as_deref(), Some("segstream"), "{name}");
        assert!(
            !f.metadata(gst::ELEMENT_METADATA_DESCRIPTION)
                .unwrap_or_default()
                .is_empty()
        );
    }
    // registering again is harmless
    segstream::elements::register_static().unwrap();
}

// ---------------------------------------------------------------------------------------
// Caps

#[test]
fn filters_accept_each_format_and_reject_others() {
    init();
    for name in ["mask2former", "segoverlay"] {
        let e = gst::ElementFactory::make(name).build().unwrap();
        let sink = e.static_pad("sink").unwrap();
        for f in FORMATS {
            assert!(
                sink.query_accept_caps(&info(f, W, H).to_caps().unwrap()),
                "{name} rejects {f}"
            );
        }
        assert!(
            !sink.query_accept_caps(&info("GRAY8", W, H).to_caps().unwrap()),
            "{name} accepts GRAY8"
        );
    }
    let e = gst::ElementFactory::make("segmetaenc").build().unwrap();
    assert!(
        e.static_pad("sink")
            .unwrap()
            .query_accept_caps(&info("GRAY8", W, H).to_caps().unwrap())
    );
    let src_caps = e.static_pad("src").unwrap().query_caps(None);
    assert_eq!(src_caps.structure(0).unwrap().name().as_str(), "application/x-ndjson");
}
