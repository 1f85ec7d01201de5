//! `segoverlay`: properties, frames without a meta, drawing in each format, metas of
//! another size.

use super::*;

#[test]
fn segoverlay_property_defaults_and_roundtrip() {
    init();
    let e = gst::ElementFactory::make("segoverlay").build().unwrap();
    assert_eq!(e.property::<f64>("alpha"), 0.5);
    assert!(e.property::<bool>("contours"));
    assert!(!e.property::<bool>("labels"));
    assert_eq!(e.property_value("color-by").serialize().unwrap().as_str(), "class");
    e.set_property("alpha", 0.9f64);
    e.set_property("contours", false);
    e.set_property("labels", true);
    e.set_property_from_str("color-by", "instance");
    assert_eq!(e.property::<f64>("alpha"), 0.9);
    assert!(!e.property::<bool>("contours"));
    assert!(e.property::<bool>("labels"));
    assert_eq!(e.property_value("color-by").serialize().unwrap().as_str(), "instance");
}

#[test]
fn segoverlay_passes_frames_without_meta_untouched() {
    init();
    for f in FORMATS {
        let e = gst::ElementFactory::make("segoverlay").build().unwrap();
        let mut h = harness(&e);
        let vi = info(f, W, H);
        h.set_src_caps(vi.to_caps().unwrap());
        let input = frame(&vi, 0);
        let data = input.map_readable().unwrap().to_vec();
        let out = h.push_and_pull(input).unwrap();
        assert_eq!(out.map_readable().unwrap().as_slice(), data.as_slice(), "{f}");
        assert!(out.meta::<SegmentationMeta>().is_none());
    }
}

#[test]
fn segoverlay_draws_the_meta_in_each_format() {
    init();
    for f in FORMATS {
        let e = gst::ElementFactory::make("segoverlay").build().unwrap();
        e.set_property("alpha", 1.0f64);
        let mut h = harness(&e);
        let vi = info(f, W, H);
        h.set_src_caps(vi.to_caps().unwrap());
        let input = with_meta(frame(&vi, 0), halves(W, H), 0);
        let data = input.map_readable().unwrap().to_vec();
        let out = h.push_and_pull(input).unwrap();
        let out_data = out.map_readable().unwrap().to_vec();
        assert_eq!(out_data.len(), data.len());
        assert_ne!(out_data, data, "{f}: nothing drawn");
        assert!(
            out.meta::<SegmentationMeta>().is_some(),
            "{f}: meta must stay on the buffer"
        );
    }
}

#[test]
fn segoverlay_handles_a_meta_of_another_size() {
    init();
    let e = gst::ElementFactory::make("segoverlay").build().unwrap();
    let mut h = harness(&e);
    let vi = info("RGB", W, H);
    h.set_src_caps(vi.to_caps().unwrap());
    let input = with_meta(frame(&vi, 0), halves(W / 2, H / 2), 0);
    h.push_and_pull(input)
        .expect("meta of another size is resized, not an error");
}
