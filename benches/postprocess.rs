//! Post-processing benchmarks: panoptic / instance / semantic, the RLE of every segment
//! and the tracker (masks alone, and with colours), for a 1920×1080 and a 640×360 frame,
//! Q = 100 queries, K = 133 classes, network input 384×640 (the frame fits as 360×640, 24
//! rows of padding; masks 96×160).
//!
//! The logits are synthetic and fixed: 29 confident queries whose masks tile the frame
//! like a Voronoi diagram (logit 4 per grid pixel of distance difference to the nearest
//! other seed, clamped to [-20, 12], a little noise), 71 no-object queries with smooth random masks. All 29
//! survive panoptic inference.
//!
//! The bench also writes the logits to `$TMPDIR/segstream-bench/` as .npy (with a
//! `meta.json`), so that `engines/bench_transformers_post.py` times transformers'
//! post-processing on the very same input.
//!
//! `cargo bench --bench postprocess` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use segstream::backend::Logits;
use segstream::frame::{Frame, PixelFormat};
use segstream::model::CardInput;
use segstream::preprocess::Preprocessor;
use segstream::model::Label;
use segstream::postprocess::{self, Geometry, Params, Semantics};
use segstream::segmentation::Task;
use segstream::tracking::Tracker;

const Q: usize = 100;
const K: usize = 133;
const KEPT: usize = 29;
const THINGS: usize = 80;
const INPUT: (usize, usize) = (384, 640);
const VALID: (usize, usize) = (360, 640);

struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn labels() -> Vec<Label> {
    (0..K).map(|i| Label { id: i as u32, name: format!("class{i}"), isthing: i < THINGS, color: [0, 0, 0] }).collect()
}

fn synth() -> Logits {
    let (mh, mw) = (INPUT.0 / 4, INPUT.1 / 4);
    let (vh, vw) = (VALID.0 / 4, VALID.1 / 4);
    let mut r = Lcg(2024);
    // Class logits.
    let mut cls = vec![0.0f32; Q * (K + 1)];
    for q in 0..Q {
        let row = &mut cls[q * (K + 1)..(q + 1) * (K + 1)];
        for v in row.iter_mut() {
            *v = r.unit() * 4.0 - 2.0;
        }
        if q < KEPT {
            row[(q * 37) % K] = 10.0;
            row[K] = 2.0;
        } else {
            row[K] = 10.0;
        }
    }
    // Masks: Voronoi cells for the kept queries.
    let seeds: Vec<(f32, f32)> = (0..KEPT).map(|_| (r.unit() * vh as f32, r.unit() * vw as f32)).collect();
    let mut masks = vec![0.0f32; Q * mh * mw];
    for y in 0..mh {
        for x in 0..mw {
            let d: Vec<f32> = seeds.iter().map(|&(sy, sx)| ((y as f32 - sy).powi(2) + (x as f32 - sx).powi(2)).sqrt()).collect();
            for q in 0..KEPT {
                // Positive inside the cell, 0 on the bisector with the nearest other seed.
                let other = d.iter().enumerate().filter(|&(j, _)| j != q).map(|(_, &v)| v).fold(f32::INFINITY, f32::min);
                let v = 4.0 * (other - d[q]) + (r.unit() - 0.5);
                masks[q * mh * mw + y * mw + x] = v.clamp(-20.0, 12.0);
            }
        }
    }
    // Smooth random blobs for the rest.
    for q in KEPT..Q {
        let (cy, cx, s) = (r.unit() * mh as f32, r.unit() * mw as f32, 5.0 + r.unit() * 20.0);
        for y in 0..mh {
            for x in 0..mw {
                let d = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)) / (s * s);
                masks[q * mh * mw + y * mw + x] = 10.0 * (-d).exp() - 5.0;
            }
        }
    }
    Logits { batch: 1, num_queries: Q, num_classes_plus_one: K + 1, mask_height: mh, mask_width: mw, class_logits: cls, mask_logits: masks }
}

fn write_npy(path: &PathBuf, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

fn export(l: &Logits, labels: &[Label]) {
    let dir = std::env::temp_dir().join("segstream-bench");
    let res = std::fs::create_dir_all(&dir)
        .and_then(|_| write_npy(&dir.join("class_queries_logits.npy"), &[1, Q, K + 1], &l.class_logits))
        .and_then(|_| write_npy(&dir.join("masks_queries_logits.npy"), &[1, Q, l.mask_height, l.mask_width], &l.mask_logits))
        .and_then(|_| {
            let stuff: Vec<u32> = labels.iter().filter(|l| !l.isthing).map(|l| l.id).collect();
            let meta = serde_json::json!({
                "frames": [[1080, 1920], [360, 640]],
                "input": [INPUT.0, INPUT.1],
                "valid": [VALID.0, VALID.1],
                "threshold": 0.8, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.8,
                "label_ids_to_fuse": stuff,
            });
            std::fs::write(dir.join("meta.json"), meta.to_string())
        });
    match res {
        Ok(()) => eprintln!("logits written to {}", dir.display()),
        Err(e) => eprintln!("could not write the logits to {}: {e}", dir.display()),
    }
}

fn bench(c: &mut Criterion) {
    let l = synth();
    let labels = labels();
    export(&l, &labels);
    let img = l.image(0).unwrap();
    for (fh, fw) in [(1080usize, 1920usize), (360, 640)] {
        let g = Geometry {
            input_height: INPUT.0,
            input_width: INPUT.1,
            valid_height: VALID.0,
            valid_width: VALID.1,
            frame_height: fh,
            frame_width: fw,
            semantics: Semantics::Detectron2,
        };
        let gt = Geometry { semantics: Semantics::Transformers, ..g };
        let p = Params::default();
        let pan = postprocess::panoptic::panoptic(&img, &labels, &g, &p).unwrap();
        assert_eq!(pan.segments.len(), KEPT, "the synthetic logits should give {KEPT} panoptic segments");
        let tag = format!("{fw}x{fh}");
        let mut grp = c.benchmark_group(tag.clone());
        grp.sample_size(20);
        grp.bench_function("panoptic", |b| b.iter(|| postprocess::panoptic::panoptic(black_box(&img), &labels, &g, &p).unwrap()));
        grp.bench_function("panoptic+rle", |b| {
            b.iter(|| {
                let s = postprocess::panoptic::panoptic(black_box(&img), &labels, &g, &p).unwrap();
                s.rles().iter().map(|r| r.to_compressed().len()).sum::<usize>()
            })
        });
        grp.bench_function("rle", |b| b.iter(|| black_box(&pan).rles().iter().map(|r| r.to_compressed().len()).sum::<usize>()));
        // The tracker, fed the same segmentation every frame (every thing matched): masks
        // and motion alone, and with the frame's colours as `mask2former track=true` does
        // (an NV12 frame: each colour sample is a YUV conversion).
        let luma: Vec<u8> = (0..fw * fh).map(|i| (16 + i * 7 % 219) as u8).collect();
        let chroma: Vec<u8> = (0..fw * fh / 2).map(|i| (64 + i * 13 % 128) as u8).collect();
        let picture = Frame::new(PixelFormat::Nv12, fw, fh, [&luma, &chroma, &[]], [fw, fw, 0]).unwrap();
        let mut tracker = Tracker::default();
        grp.bench_function("track", |b| b.iter_batched_ref(|| pan.clone(), |s| tracker.update(s), BatchSize::LargeInput));
        let mut tracker = Tracker::default();
        grp.bench_function("track+colours", |b| {
            b.iter_batched_ref(|| pan.clone(), |s| tracker.update_with_frame(s, &picture), BatchSize::LargeInput)
        });
        grp.bench_function("panoptic_transformers", |b| b.iter(|| postprocess::panoptic::panoptic(black_box(&img), &labels, &gt, &p).unwrap()));
        let pi = Params { task: Task::Instance, ..p };
        grp.bench_function("instance", |b| b.iter(|| postprocess::instance::instance(black_box(&img), &labels, &g, &pi).unwrap()));
        grp.bench_function("instance_transformers", |b| b.iter(|| postprocess::instance::instance(black_box(&img), &labels, &gt, &pi).unwrap()));
        grp.sample_size(10);
        let ps = Params { task: Task::Semantic, ..p };
        grp.bench_function("semantic", |b| b.iter(|| postprocess::semantic::semantic(black_box(&img), &labels, &g, &ps).unwrap()));
        grp.bench_function("semantic_transformers", |b| b.iter(|| postprocess::semantic::semantic(black_box(&img), &labels, &gt, &ps).unwrap()));
        grp.finish();
    }

    // The per-frame CPU work around the network for a 1080p NV12 frame, as the core
    // library's target counts it: preprocess (to the 384×640 input) + panoptic + RLE.
    let (w, h) = (1920usize, 1080usize);
    let y: Vec<u8> = (0..w * h).map(|i| (16 + i * 7 % 219) as u8).collect();
    let uv: Vec<u8> = (0..w * h / 2).map(|i| (64 + i * 13 % 128) as u8).collect();
    let frame = Frame::new(PixelFormat::Nv12, w, h, [&y, &uv, &[]], [w, w, 0]).unwrap();
    let input = CardInput {
        height: INPUT.0 as u32,
        width: INPUT.1 as u32,
        mean: vec![123.675, 116.28, 103.53],
        std: vec![58.395, 57.12, 57.375],
        channel_order: "RGB".into(),
    };
    let mut pre = Preprocessor::new(&input).unwrap();
    let g = Geometry {
        input_height: INPUT.0,
        input_width: INPUT.1,
        valid_height: VALID.0,
        valid_width: VALID.1,
        frame_height: h,
        frame_width: w,
        semantics: Semantics::Detectron2,
    };
    let p = Params::default();
    let mut grp = c.benchmark_group("1920x1080-nv12");
    grp.sample_size(20);
    grp.bench_function("preprocess", |b| b.iter(|| pre.run(black_box(&frame)).unwrap().1));
    grp.bench_function("preprocess+panoptic+rle", |b| {
        b.iter(|| {
            let (_, valid) = pre.run(black_box(&frame)).unwrap();
            assert_eq!(valid, VALID);
            let s = postprocess::panoptic::panoptic(black_box(&img), &labels, &g, &p).unwrap();
            s.rles().iter().map(|r| r.to_compressed().len()).sum::<usize>()
        })
    });
    grp.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
