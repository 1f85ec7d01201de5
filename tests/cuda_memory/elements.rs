//! `appsrc` (a CUDA buffer pool) `! mask2former ! segoverlay ! appsink` over the driver
//! double: CUDA memory on every link, one context object for the chain, pitched planes
//! read and written right, no frame mapped to system memory, and the same result (meta and
//! pixels) as the system-memory path. The GPU stages are `HostStages` (the double's
//! "device memory" is host memory and it cannot run kernels).

use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gst_video::prelude::*;
use gstreamer_video as gst_video;

use segstream::backend::{Backend, InputTensor, Logits};
use segstream::cuda::memory::{CONTEXT_TYPE, CudaCtx, MAP_CUDA};
use segstream::cuda::stages::HostStages;
use segstream::elements::{Mask2Former, SegmentationMeta};
use segstream::segmentation::Segmentation;
use segstream::segmenter::Segmenter;

use crate::common::fixtures::{K, Q, fake_card};
use crate::cuda_double;

const W: usize = 64;
const H: usize = 48;
const FRAMES: usize = 3;

/// A backend whose masks follow the input: query 0 ("square") where the red channel of
/// the network input is bright, query 1 ("background") elsewhere, query 2 no-object. So a
/// misread plane changes the segmentation.
struct PixelBackend;

impl Backend for PixelBackend {
    fn name(&self) -> &str {
        "pixel"
    }
    fn input_size(&self) -> (usize, usize) {
        (crate::common::fixtures::IN, crate::common::fixtures::IN)
    }
    fn output_dims(&self) -> (usize, usize) {
        (Q, K + 1)
    }
    fn infer(&mut self, input: &InputTensor) -> segstream::Result<Logits> {
        let n = crate::common::fixtures::IN;
        let (mh, mw) = (n / 4, n / 4);
        let mut class_logits = vec![-10.0f32; Q * (K + 1)];
        class_logits[0] = 10.0;
        class_logits[(K + 1) + 2] = 10.0;
        class_logits[2 * (K + 1) + K] = 10.0;
        let mut mask_logits = vec![-10.0f32; Q * mh * mw];
        for y in 0..mh {
            for x in 0..mw {
                // Red channel (card mean 0, std 1: the value is R/255) at the cell's centre.
                let r = input.data[(y * 4 + 2) * n + x * 4 + 2];
                let v = (r - 0.5) * 40.0;
                mask_logits[y * mw + x] = v;
                mask_logits[mh * mw + y * mw + x] = -v;
            }
        }
        Ok(Logits { batch: 1, num_queries: Q, num_classes_plus_one: K + 1, mask_height: mh, mask_width: mw, class_logits, mask_logits })
    }
}

fn segmenter() -> Segmenter {
    Segmenter::with_backend(fake_card(), Box::new(PixelBackend), std::path::Path::new("pixel.onnx")).unwrap()
}

/// NV12 content of frame `f`: a bright block that moves with the frame number, chroma
/// gradients (so the overlay's colour arithmetic sees varied input).
fn luma(f: usize, x: usize, y: usize) -> u8 {
    if (x + 64 - f * 8) % 64 < 24 && y < 36 { 235 } else { 20 }
}
fn chroma(f: usize, x: usize, y: usize, c: usize) -> u8 {
    (40 + (x * 5 + y * 3 + f * 7 + c * 50) % 170) as u8
}

/// Write frame `f` into NV12 planes given as (pointer, stride).
///
/// # Safety
/// Both planes must be writable for their stride × rows.
unsafe fn fill(f: usize, y: (*mut u8, usize), uv: (*mut u8, usize)) {
    for row in 0..H {
        for x in 0..W {
            // SAFETY: inside the plane (caller's contract).
            unsafe { *y.0.add(row * y.1 + x) = luma(f, x, row) };
        }
    }
    for row in 0..H / 2 {
        for x in 0..W / 2 {
            for c in 0..2 {
                // SAFETY: as above.
                unsafe { *uv.0.add(row * uv.1 + 2 * x + c) = chroma(f, x, row, c) };
            }
        }
    }
}

fn system_info() -> gst_video::VideoInfo {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, W as u32, H as u32).fps(gst::Fraction::new(30, 1)).build().unwrap()
}

fn cuda_caps() -> gst::Caps {
    let mut caps = system_info().to_caps().unwrap();
    caps.make_mut().set_features_simple(Some(gst::CapsFeatures::new(["memory:CUDAMemory"])));
    caps
}

fn system_frames() -> Vec<gst::Buffer> {
    let info = system_info();
    (0..FRAMES)
        .map(|f| {
            let mut buf = gst::Buffer::with_size(info.size()).unwrap();
            {
                let b = buf.get_mut().unwrap();
                let mut vf = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &info).unwrap();
                let (s0, s1) = (vf.plane_stride()[0] as usize, vf.plane_stride()[1] as usize);
                let p0 = vf.plane_data_mut(0).unwrap().as_mut_ptr();
                let p1 = vf.plane_data_mut(1).unwrap().as_mut_ptr();
                // SAFETY: the mapped planes of a W×H NV12 frame with these strides.
                unsafe { fill(f, (p0, s0), (p1, s1)) };
            }
            buf
        })
        .collect()
}

/// A configured, active CUDA pool of `ctx` for the test's caps.
fn pool(ctx: &CudaCtx) -> gst::BufferPool {
    pool_of(ctx.buffer_pool().unwrap())
}

fn pool_of(pool: gst::BufferPool) -> gst::BufferPool {
    let mut config = pool.config();
    config.set_params(Some(&cuda_caps()), system_info().size() as u32, 0, 0);
    config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
    pool.set_config(config).unwrap();
    pool.set_active(true).unwrap();
    pool
}

/// The frames in CUDA memory of `pool`, written through `GST_MAP_CUDA` (host pointers in
/// the double) at the pitched layout of their video meta.
fn cuda_frames(pool: &gst::BufferPool) -> Vec<gst::Buffer> {
    (0..FRAMES)
        .map(|f| {
            let buf = pool.acquire_buffer(None).unwrap();
            let meta = buf.meta::<gst_video::VideoMeta>().expect("CUDA pools add a video meta");
            let (offsets, strides) = (meta.offset().to_vec(), meta.stride().to_vec());
            assert!(strides[0] as usize > W, "the double pitches allocations: stride {} vs width {W}", strides[0]);
            let mem = buf.peek_memory(0).as_ptr() as *mut gst::ffi::GstMemory;
            let mut map = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
            // SAFETY: a valid memory and out struct; unmapped below.
            let ok = unsafe { gst::ffi::gst_memory_map(mem, map.as_mut_ptr(), gst::ffi::GST_MAP_WRITE | MAP_CUDA) };
            assert_ne!(ok, 0, "GST_MAP_CUDA write map");
            // SAFETY: the map succeeded.
            let mut map = unsafe { map.assume_init() };
            let base = map.data;
            // SAFETY: the double's device memory is host memory; the planes lie inside the
            // mapping at the meta's offsets and strides.
            unsafe {
                fill(f, (base.add(offsets[0]), strides[0] as usize), (base.add(offsets[1]), strides[1] as usize));
                gst::ffi::gst_memory_unmap(mem, &mut map);
            }
            buf
        })
        .collect()
}

/// What a run gives back.
struct Run {
    /// Output frames as packed NV12 bytes (rows of W), with their segmentation.
    frames: Vec<(Vec<u8>, Arc<Segmentation>, bool)>,
    /// Caps of m2f sink, m2f src, overlay src.
    caps: Vec<gst::Caps>,
    /// The CUDA contexts the two elements answer with (if any).
    contexts: Vec<Option<gst::Object>>,
    stats: gst::Structure,
    /// The double's counters over the run, before any output was read on the host.
    counters: cuda_double::Counters,
}

fn context_of(element: &gst::Element) -> Option<gst::Object> {
    let mut q = gst::query::Context::new(CONTEXT_TYPE);
    if !element.static_pad("sink").unwrap().query(&mut q) {
        return None;
    }
    q.context().and_then(|c| c.structure().get::<gst::Object>("gst.cuda.context").ok())
}

fn run(caps: gst::Caps, frames: Vec<gst::Buffer>, stages: Option<HostStages>) -> Run {
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder().caps(&caps).format(gst::Format::Time).build();
    let m2f = gst::ElementFactory::make("mask2former").build().unwrap();
    let m = m2f.clone().downcast::<Mask2Former>().unwrap();
    m.set_segmenter(segmenter());
    m.set_device_stages(stages.map(|s| Arc::new(s) as Arc<dyn segstream::cuda::stages::DeviceStages>));
    let overlay = gst::ElementFactory::make("segoverlay").build().unwrap();
    let sink = gst_app::AppSink::builder().sync(false).wait_on_eos(false).build();
    pipeline.add_many([src.upcast_ref(), &m2f, &overlay, sink.upcast_ref()]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &m2f, &overlay, sink.upcast_ref()]).unwrap();

    let before = cuda_double::counters();
    pipeline.set_state(gst::State::Playing).unwrap();
    for (i, mut buf) in frames.into_iter().enumerate() {
        buf.make_mut().set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
        src.push_buffer(buf).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS within 20 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("pipeline error: {} ({:?})", e.error(), e.debug());
    }
    let counters = cuda_double::since(before);
    let pad_caps = |e: &gst::Element, pad: &str| e.static_pad(pad).unwrap().current_caps().expect("negotiated");
    let caps = vec![pad_caps(&m2f, "sink"), pad_caps(&m2f, "src"), pad_caps(&overlay, "src")];
    let contexts = vec![context_of(&m2f), context_of(&overlay)];
    let stats = m2f.property::<gst::Structure>("stats");

    let info = system_info();
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
        let buf = sample.buffer().unwrap();
        let meta = buf.meta::<SegmentationMeta>().expect("a SegmentationMeta");
        let (seg, on_device) = (meta.segmentation().clone(), meta.device_ids().is_some());
        // Readable map: the video meta's (pitched) layout when there is one.
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
        let mut bytes = Vec::with_capacity(W * H * 3 / 2);
        for (p, rows) in [(0, H), (1, H / 2)] {
            let stride = vf.plane_stride()[p] as usize;
            let data = vf.plane_data(p as u32).unwrap();
            for r in 0..rows {
                bytes.extend_from_slice(&data[r * stride..r * stride + W]);
            }
        }
        out.push((bytes, seg, on_device));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    Run { frames: out, caps, contexts, stats, counters }
}

fn assert_same_result(cuda: &Run, system: &Run) {
    assert_eq!(cuda.frames.len(), FRAMES);
    assert_eq!(system.frames.len(), FRAMES);
    for (i, (c, s)) in cuda.frames.iter().zip(&system.frames).enumerate() {
        assert_eq!(*c.1, *s.1, "frame {i}: segmentation differs from the system-memory path");
        let labels: Vec<&str> = s.1.segments.iter().map(|s| s.label.as_str()).collect();
        assert!(labels.contains(&"square") && labels.contains(&"background"), "frame {i}: {labels:?}");
        assert!(c.0 == s.0, "frame {i}: composited pixels differ from the system-memory path");
    }
    // The block moves: the frames' results differ, so a stale or misplaced read shows.
    assert_ne!(system.frames[0].1.ids, system.frames[1].1.ids);
}

fn is_cuda(caps: &gst::Caps) -> bool {
    caps.features(0).is_some_and(|f| f.contains("memory:CUDAMemory"))
}

fn stat(run: &Run, name: &str) -> u64 {
    run.stats.get::<u64>(name).unwrap()
}

#[test]
fn cuda_chain_stays_on_the_device_and_matches_system_memory() {
    let double = cuda_double::load();
    let _serial = double.serial();
    crate::common::fixtures::init();
    let primary = CudaCtx::primary(-1).expect("the double's primary context");
    // SAFETY: the double's device memory is host memory.
    let stages = unsafe { HostStages::new(Some(primary.handle())) };
    let pool = pool(&primary);

    let cuda = run(cuda_caps(), cuda_frames(&pool), Some(stages.clone()));
    let system = run(system_info().to_caps().unwrap(), system_frames(), Some(stages));

    for (i, c) in cuda.caps.iter().enumerate() {
        assert!(is_cuda(c), "link {i} negotiated {c}, not CUDA memory");
    }
    for c in &system.caps {
        assert!(!is_cuda(c), "the system-memory run negotiated {c}");
    }
    for (i, ctx) in cuda.contexts.iter().enumerate() {
        assert_eq!(ctx.as_ref(), Some(primary.as_object()), "element {i} holds another context");
    }
    assert_eq!(cuda.counters.d2h_copies, 0, "a frame was mapped to system memory: {:?}", cuda.counters);
    assert_eq!((stat(&cuda, "cuda-frames"), stat(&cuda, "cuda-copied")), (FRAMES as u64, 0));
    assert!(cuda.frames.iter().all(|f| f.2), "every result keeps its id map on the device");
    assert_eq!(stat(&system, "cuda-frames"), 0);
    assert_same_result(&cuda, &system);
}

#[test]
fn frames_of_another_context_are_copied_not_misread() {
    let double = cuda_double::load();
    let _serial = double.serial();
    crate::common::fixtures::init();
    let primary = CudaCtx::primary(-1).expect("the double's primary context");
    // A context of its own (gst_cuda_context_new: not the primary one) for the source.
    let other = CudaCtx::from_object(crate::double::new_context()).expect("a GstCudaContext");
    assert_ne!(other.handle(), primary.handle());
    // SAFETY: the double's device memory is host memory.
    let stages = unsafe { HostStages::new(Some(primary.handle())) };
    let pool = pool(&other);

    let cuda = run(cuda_caps(), cuda_frames(&pool), Some(stages.clone()));
    let system = run(system_info().to_caps().unwrap(), system_frames(), Some(stages));

    assert!(cuda.caps.iter().all(is_cuda));
    assert_eq!((stat(&cuda, "cuda-frames"), stat(&cuda, "cuda-copied")), (0, FRAMES as u64));
    assert!(cuda.counters.d2h_copies > 0, "the frames were read through system memory: {:?}", cuda.counters);
    assert!(cuda.frames.iter().all(|f| !f.2));
    assert_same_result(&cuda, &system);
}

#[test]
fn without_gpu_stages_mask2former_offers_no_cuda_memory_but_segoverlay_does() {
    let double = cuda_double::load();
    let _serial = double.serial();
    crate::common::fixtures::init();
    let m2f = gst::ElementFactory::make("mask2former").property_from_str("device", "cpu").build().unwrap();
    let caps = m2f.static_pad("sink").unwrap().query_caps(None);
    assert!(!caps.is_empty() && !caps.iter_with_features().any(|(_, f)| f.contains("memory:CUDAMemory")), "{caps}");
    let overlay = gst::ElementFactory::make("segoverlay").build().unwrap();
    let caps = overlay.static_pad("sink").unwrap().query_caps(None);
    assert!(is_cuda(&caps), "segoverlay should offer CUDA memory first: {caps}");
    // Answered in NULL state, with the primary context.
    assert_eq!(context_of(&overlay).as_ref(), Some(CudaCtx::primary(-1).unwrap().as_object()));
}

#[test]
fn pool_buffers_are_pitched() {
    let double = cuda_double::load();
    let _serial = double.serial();
    crate::common::fixtures::init();
    let pool = pool(&CudaCtx::primary(-1).unwrap());
    let buf = pool.acquire_buffer(None).unwrap();
    let meta = buf.meta::<gst_video::VideoMeta>().unwrap();
    assert_eq!(meta.stride()[0], 512, "the double pitches rows to 512 bytes; caps say {W}");
}
