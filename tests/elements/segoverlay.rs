//! `segoverlay`: properties, frames without a meta, drawing in each format, metas of
//! another size.

use super::*;

#[test]
fn segoverlay_property_defaults_and_roundtrip() {
    init();
    let e = gst::ElementFactory::make("segoverlay").build().unwrap();
    assert_eq!(e.property::<f64>("alpha"), 0.5);
    assert!(e.property::<bool>("contours"));
    assert!(e.property::<bool>("labels"), "labels are on by default");
    assert_eq!(e.property_value("color-by").serialize().unwrap().as_str(), "class");
    e.set_property("alpha", 0.9f64);
    e.set_property("contours", false);
    e.set_property("labels", false);
    e.set_property_from_str("color-by", "instance");
    assert_eq!(e.property::<f64>("alpha"), 0.9);
    assert!(!e.property::<bool>("contours"));
    assert!(!e.property::<bool>("labels"));
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

/// White pixels (text) of an RGB frame, as `(x, y)`.
fn white_pixels(data: &[u8], w: usize, h: usize, stride: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if data[y * stride + 3 * x..][..3] == [255, 255, 255] {
                v.push((x, y));
            }
        }
    }
    v
}

/// Default properties: a label inside each half ("square 0.99" left, "background 0.98"
/// right), nowhere else; `labels=false`: no text at all. The input pattern never reaches
/// 255 and the card's colours are not white, so white pixels are text.
#[test]
fn segoverlay_labels_each_segment_by_default_and_not_with_labels_false() {
    init();
    let (w, h) = (320u32, 240u32);
    for labels in [None, Some(false)] {
        let e = gst::ElementFactory::make("segoverlay").build().unwrap();
        if let Some(l) = labels {
            e.set_property("labels", l);
        }
        let mut harness = harness(&e);
        let vi = info("RGB", w, h);
        harness.set_src_caps(vi.to_caps().unwrap());
        let out = harness.push_and_pull(with_meta(frame(&vi, 0), halves(w, h), 0)).unwrap();
        let map = out.map_readable().unwrap();
        let white = white_pixels(map.as_slice(), w as usize, h as usize, vi.stride()[0] as usize);
        if labels == Some(false) {
            assert!(white.is_empty(), "labels=false drew {} text pixels", white.len());
            continue;
        }
        // 360p-like scale 1: glyphs 8 rows; text in the middle rows of each half.
        let left: Vec<_> = white.iter().filter(|p| p.0 < w as usize / 2).collect();
        let right: Vec<_> = white.iter().filter(|p| p.0 >= w as usize / 2).collect();
        assert!(left.len() > 100 && right.len() > 100, "text pixels: {} left, {} right", left.len(), right.len());
        for &(x, y) in &white {
            assert!((h as usize / 2 - 8..h as usize / 2 + 8).contains(&y), "text at ({x},{y}), away from the label row");
        }
        let (lx0, lx1) = (left.iter().map(|p| p.0).min().unwrap(), left.iter().map(|p| p.0).max().unwrap());
        assert!(lx1 < w as usize / 2 - 1 && lx0 > 0, "left label {lx0}..{lx1} leaves its half");
    }
}
