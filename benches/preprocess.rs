//! Preprocess of a 1920×1080 frame (RGB and NV12) into the sample model's 288×512 input and
//! a COCO-size 512×896 input: colour conversion, resize, normalize, pad.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use segstream::frame::{Frame, PixelFormat};
use segstream::model::CardInput;
use segstream::preprocess::Preprocessor;

fn bench(c: &mut Criterion) {
    let (w, h) = (1920usize, 1080usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    let y: Vec<u8> = (0..w * h).map(|i| (16 + i * 7 % 219) as u8).collect();
    let uv: Vec<u8> = (0..w * h / 2).map(|i| (64 + i * 13 % 128) as u8).collect();
    for (ih, iw) in [(288u32, 512u32), (512, 896)] {
        let input = CardInput {
            height: ih,
            width: iw,
            mean: vec![123.675, 116.28, 103.53],
            std: vec![58.395, 57.12, 57.375],
            channel_order: "RGB".into(),
        };
        let mut pre = Preprocessor::new(&input).unwrap();
        let mut grp = c.benchmark_group(format!("preprocess-1080p-to-{ih}x{iw}"));
        let f = Frame::packed(PixelFormat::Rgb, w, h, &rgb).unwrap();
        grp.bench_function("rgb", |b| b.iter(|| pre.run(black_box(&f)).unwrap().1));
        let f = Frame::new(PixelFormat::Nv12, w, h, [&y, &uv, &[]], [w, w, 0]).unwrap();
        grp.bench_function("nv12", |b| b.iter(|| pre.run(black_box(&f)).unwrap().1));
        grp.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
