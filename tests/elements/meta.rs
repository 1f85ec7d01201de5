//! The SegmentationMeta across elements: copies, videoconvert, queue, tee, videoscale,
//! and the whole chain on the fake model.

use super::*;

#[test]
fn meta_is_copied_with_the_buffer() {
    init();
    let b = with_meta(frame(&info("RGB", W, H), 0), halves(W, H), 0);
    let c = b.copy();
    let (m1, m2) = (
        b.meta::<SegmentationMeta>().unwrap(),
        c.meta::<SegmentationMeta>().unwrap(),
    );
    assert!(Arc::ptr_eq(m1.segmentation(), m2.segmentation()));
    assert_eq!(m2.info().frame, 0);
    assert_eq!(c.iter_meta::<SegmentationMeta>().count(), 1);
}

#[test]
fn meta_survives_videoconvert_and_queue() {
    init();
    let mut h = gst_check::Harness::new_parse("queue ! videoconvert ! capsfilter caps=video/x-raw,format=I420");
    let vi = info("RGB", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    let out = h.push_and_pull(with_meta(frame(&vi, 0), halves(W, H), 4)).unwrap();
    assert_eq!(out.iter_meta::<SegmentationMeta>().count(), 1);
    let m = out.meta::<SegmentationMeta>().unwrap();
    assert_eq!(m.info().frame, 4);
    assert_eq!(**m.segmentation(), halves(W, H));
}

#[test]
fn meta_reaches_both_branches_of_a_tee() {
    use gstreamer_app as gst_app;
    init();
    let p = gst::parse::launch(
        "appsrc name=src format=time ! tee name=t \
         t. ! queue ! videoconvert ! capsfilter caps=video/x-raw,format=NV12 ! appsink name=a sync=false \
         t. ! queue ! appsink name=b sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let vi = info("RGBA", W, H);
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    src.set_caps(Some(&vi.to_caps().unwrap()));
    p.set_state(gst::State::Playing).unwrap();
    src.push_buffer(with_meta(frame(&vi, 0), halves(W, H), 9)).unwrap();
    src.end_of_stream().unwrap();
    for name in ["a", "b"] {
        let sink = p.by_name(name).unwrap().downcast::<gst_app::AppSink>().unwrap();
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .unwrap_or_else(|| panic!("branch {name}: no buffer"));
        let buf = sample.buffer().unwrap();
        assert_eq!(buf.iter_meta::<SegmentationMeta>().count(), 1, "branch {name}");
        assert_eq!(buf.meta::<SegmentationMeta>().unwrap().info().frame, 9, "branch {name}");
    }
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn meta_is_scaled_by_videoscale() {
    init();
    let mut h = gst_check::Harness::new_parse("videoscale ! capsfilter caps=video/x-raw,width=32,height=24");
    let vi = info("RGB", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    let out = h.push_and_pull(with_meta(frame(&vi, 0), halves(W, H), 0)).unwrap();
    assert_eq!(
        out.iter_meta::<SegmentationMeta>().count(),
        1,
        "exactly one meta after scaling"
    );
    let m = out.meta::<SegmentationMeta>().unwrap();
    let seg = m.segmentation();
    assert_eq!((seg.width, seg.height), (32, 24));
    assert_eq!(seg.ids.len(), 32 * 24);
    assert_eq!(seg.segments.len(), 2);
    assert_eq!(seg.segments[0].area, 16 * 24);
    assert_eq!(seg.segments[0].bbox, [0, 0, 16, 24]);
    assert_eq!(seg.segments[1].bbox, [16, 0, 16, 24]);
}

#[test]
fn elements_chain_end_to_end_with_fake_model() {
    let (m, _) = mask2former_with_fake();
    let bin = gst::Bin::new();
    let overlay = gst::ElementFactory::make("segoverlay").build().unwrap();
    let scale = gst::ElementFactory::make("videoscale").build().unwrap();
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", 32)
                .field("height", 24)
                .build(),
        )
        .build()
        .unwrap();
    let enc = gst::ElementFactory::make("segmetaenc")
        .property("stream-name", "e2e")
        .build()
        .unwrap();
    bin.add_many([m.upcast_ref(), &overlay, &scale, &caps, &enc]).unwrap();
    gst::Element::link_many([m.upcast_ref(), &overlay, &scale, &caps, &enc]).unwrap();
    bin.add_pad(&gst::GhostPad::with_target(&m.static_pad("sink").unwrap()).unwrap())
        .unwrap();
    bin.add_pad(&gst::GhostPad::with_target(&enc.static_pad("src").unwrap()).unwrap())
        .unwrap();
    let mut h = gst_check::Harness::with_element(&bin, Some("sink"), Some("src"));
    let vi = info("I420", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    for n in 0..3 {
        let out = h.push_and_pull(frame(&vi, n)).unwrap();
        let text = String::from_utf8(out.map_readable().unwrap().to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["frame"], n);
        assert_eq!(v["width"], 32);
        assert_eq!(v["stream"], "e2e");
        assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    }
}
