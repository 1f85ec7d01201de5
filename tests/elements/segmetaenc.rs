//! `segmetaenc`: properties, one JSON line per meta, frames without a meta, flush.

use super::*;

#[test]
fn segmetaenc_property_defaults_and_roundtrip() {
    init();
    let e = gst::ElementFactory::make("segmetaenc").name("enc7").build().unwrap();
    assert_eq!(e.property::<Option<String>>("stream-name").as_deref(), Some("enc7"));
    e.set_property("stream-name", "cam-1");
    assert_eq!(e.property::<Option<String>>("stream-name").as_deref(), Some("cam-1"));
}

#[test]
fn segmetaenc_writes_one_json_line_per_meta() {
    init();
    let e = gst::ElementFactory::make("segmetaenc").build().unwrap();
    e.set_property("stream-name", "test-stream");
    let mut h = harness(&e);
    let vi = info("NV12", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    let out = h.push_and_pull(with_meta(frame(&vi, 3), halves(W, H), 3)).unwrap();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().name().as_str(), "application/x-ndjson");
    assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(99)));
    let text = String::from_utf8(out.map_readable().unwrap().to_vec()).unwrap();
    assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["schema"], "segstream.frame/1");
    assert_eq!(v["stream"], "test-stream");
    assert_eq!(v["frame"], 3);
    assert_eq!(v["pts"], 99_000_000u64);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(W as u64), Some(H as u64))
    );
    assert_eq!(v["model"], "fake-m2f");
    assert_eq!(v["task"], "panoptic");
    assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    assert_eq!(v["segments"][0]["label"], "square");
    assert_eq!(v["segments"][0]["mask"]["size"], serde_json::json!([H, W]));
}

#[test]
fn segmetaenc_writes_nothing_for_frames_without_meta_and_forwards_eos() {
    init();
    let e = gst::ElementFactory::make("segmetaenc").build().unwrap();
    let mut h = harness(&e);
    let vi = info("I420", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    assert_eq!(h.push(frame(&vi, 0)), Ok(gst::FlowSuccess::Ok));
    assert!(h.try_pull().is_none(), "no record for a frame without meta");
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(pulled_eos(&mut h), "EOS forwarded");
}

#[test]
fn segmetaenc_survives_flush() {
    init();
    let e = gst::ElementFactory::make("segmetaenc").build().unwrap();
    let mut h = harness(&e);
    let vi = info("RGB", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    h.push_and_pull(with_meta(frame(&vi, 0), halves(W, H), 0)).unwrap();
    flush(&mut h);
    h.push_and_pull(with_meta(frame(&vi, 1), halves(W, H), 1)).unwrap();
}
