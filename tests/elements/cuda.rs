//! Both elements where no CUDA driver is loadable (this test binary never loads the test
//! double): CUDA memory is not offered, `device=auto` stays on the CPU and says why in its
//! `processing` property, `device=cuda` is one clear error, and nothing aborts. On a
//! machine where CUDA does work, the assertions that need its absence are skipped (said
//! on stderr), and what it offers instead is checked.

use super::*;
use segstream::cuda::memory::GstCuda;

fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}: a CUDA driver is loadable here");
}

fn offers_cuda_memory(e: &gst::Element) -> bool {
    let caps = e.static_pad("sink").unwrap().query_caps(None);
    caps.iter_with_features().any(|(_, f)| f.contains("memory:CUDAMemory"))
}

#[test]
fn no_cuda_memory_without_a_driver() {
    init();
    if GstCuda::available() {
        return skipped("no_cuda_memory_without_a_driver");
    }
    let e = GstCuda::get().unwrap_err().to_string();
    assert!(e.starts_with("CUDA is not available: "), "{e}");
    for name in ["mask2former", "segoverlay"] {
        let el = gst::ElementFactory::make(name).build().unwrap();
        assert!(!offers_cuda_memory(&el), "{name} offers CUDA memory without a driver");
        // The pad templates (what gst-inspect shows) still list it.
        let templ = el.static_pad("sink").unwrap().pad_template_caps();
        assert!(templ.iter_with_features().any(|(_, f)| f.contains("memory:CUDAMemory")), "{name}: {templ}");
        // A CONTEXT query is not answered (no context can exist), and does not abort.
        let mut q = gst::query::Context::new(segstream::cuda::memory::CONTEXT_TYPE);
        assert!(!el.static_pad("sink").unwrap().query(&mut q), "{name} answered a CUDA context query");
    }
}

#[test]
fn device_auto_stays_on_the_cpu_and_says_why() {
    let (m, _) = mask2former_with_fake();
    let mut h = harness(&m);
    h.set_src_caps(info("RGB", W, H).to_caps().unwrap());
    let out = h.push_and_pull(frame(&info("RGB", W, H), 0)).unwrap();
    assert!(out.meta::<SegmentationMeta>().is_some());
    let processing = m.property::<String>("processing");
    if segstream::cuda::probe().is_ok() {
        assert!(processing.starts_with("cuda:"), "{processing}");
        return skipped("device_auto_stays_on_the_cpu_and_says_why (the GPU stages opened)");
    }
    assert!(processing.starts_with("cpu (GPU processing unavailable, using the CPU: "), "{processing}");
    assert_eq!(m.property::<gst::Structure>("stats").get::<u64>("cuda-frames").unwrap(), 0);
}

#[test]
fn device_cpu_says_cpu() {
    let (m, _) = mask2former_with_fake();
    m.set_property_from_str("device", "cpu");
    let mut h = harness(&m);
    h.set_src_caps(info("RGB", W, H).to_caps().unwrap());
    h.push_and_pull(frame(&info("RGB", W, H), 0)).unwrap();
    assert_eq!(m.property::<String>("processing"), "cpu");
}

#[test]
fn device_cuda_without_cuda_is_one_clear_error() {
    if segstream::cuda::probe().is_ok() {
        return skipped("device_cuda_without_cuda_is_one_clear_error");
    }
    let (m, _) = mask2former_with_fake();
    m.set_property_from_str("device", "cuda");
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("videotestsrc").property("num-buffers", 1).build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&src, m.upcast_ref(), &sink]).unwrap();
    gst::Element::link_many([&src, m.upcast_ref(), &sink]).unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err(), "device=cuda started without CUDA");
    let bus = pipeline.bus().unwrap();
    let errors: Vec<String> = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
        .map(|msg| match msg.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => unreachable!(),
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("device=cuda: the GPU stages cannot run: "), "{}", errors[0]);
    // The injected segmenter went back to the element (a retry can reuse it).
    assert!(m.take_segmenter().is_some());
}
