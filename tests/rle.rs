//! COCO RLE: round trips, the compressed string, area/bbox, and a cross-check with
//! pycocotools (run through `python3`; skipped, loudly, when it is not installed).

use std::io::Write;
use std::process::Command;

use segstream::segmentation::{Rle, Segment, Segmentation, Task};
use segstream::Error;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Masks of several kinds: noise, blobs, stripes, empty, full, single pixels, big runs.
fn masks() -> Vec<(usize, usize, Vec<u8>)> {
    let mut r = Rng(42);
    let mut out = Vec::new();
    for &(h, w) in &[(1, 1), (1, 7), (7, 1), (5, 9), (33, 17), (64, 64), (120, 250), (3, 4000)] {
        // random noise at several densities
        for density in [0u64, 3, 50, 97, 100] {
            out.push((h, w, (0..h * w).map(|_| (r.below(100) < density) as u8).collect()));
        }
        // rectangles and a disc
        let mut m = vec![0u8; h * w];
        for _ in 0..3 {
            let (y0, x0) = (r.below(h as u64) as usize, r.below(w as u64) as usize);
            let (y1, x1) = ((y0 + 1 + r.below(h as u64) as usize).min(h), (x0 + 1 + r.below(w as u64) as usize).min(w));
            for y in y0..y1 {
                m[y * w + x0..y * w + x1].fill(1);
            }
        }
        out.push((h, w, m));
        let (cy, cx, rad) = (h as f64 / 2.0, w as f64 / 3.0, (h.min(w) as f64) / 3.0);
        out.push((h, w, (0..h * w).map(|i| ((((i / w) as f64 - cy).powi(2) + ((i % w) as f64 - cx).powi(2)) < rad * rad) as u8).collect()));
    }
    // A very long run (counts ≥ 2^25, several LEB128 groups) and runs that shrink (negative deltas).
    out.push((4096, 4096, { let mut m = vec![0u8; 4096 * 4096]; m[4095 * 4096 + 4095] = 1; m }));
    let mut m = vec![0u8; 40 * 50];
    for x in 0..50 {
        for y in 0..(40 - (x * 37) % 40) {
            m[y * 50 + x] = 1;
        }
    }
    out.push((40, 50, m));
    out
}

fn tight_bbox(m: &[u8], h: usize, w: usize) -> [u32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if m[y * w + x] != 0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 == usize::MAX { [0; 4] } else { [x0 as u32, y0 as u32, (x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32] }
}

#[test]
fn round_trip_random_masks() {
    for (h, w, m) in masks() {
        let rle = Rle::from_mask(&m, h, w);
        assert_eq!(rle.size, [h as u32, w as u32]);
        rle.validate().unwrap();
        assert_eq!(rle.counts.iter().map(|&c| c as usize).sum::<usize>(), h * w);
        assert!(rle.counts[1..].iter().all(|&c| c > 0), "only the first run may be empty");
        assert_eq!(rle.to_mask().unwrap(), m, "{h}x{w}");
        assert_eq!(rle.area(), m.iter().filter(|&&v| v != 0).count() as u64);
        assert_eq!(rle.bbox(), tight_bbox(&m, h, w), "{h}x{w}");
        let s = rle.to_compressed();
        assert!(s.bytes().all(|b| (48..112).contains(&b)));
        assert_eq!(Rle::from_compressed(&s, h, w).unwrap(), rle);
    }
}

#[test]
fn column_major_and_starts_with_zeros() {
    // 3×4, set: (1,2), (1,3), (2,2), (2,3) → column-major runs 7 zeros, 2 ones, 1 zero, 2 ones.
    let m = [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1];
    let rle = Rle::from_mask(&m, 3, 4);
    assert_eq!(rle.counts, vec![7, 2, 1, 2]);
    assert_eq!(rle.to_compressed(), "7210"); // pycocotools' string for this mask
    assert_eq!(rle.bbox(), [2, 1, 2, 2]);
    // First pixel set → a leading empty run.
    let rle = Rle::from_mask(&[1, 0, 0, 0], 2, 2);
    assert_eq!(rle.counts, vec![0, 1, 3]);
    // Empty and full masks.
    assert_eq!(Rle::from_mask(&[0; 6], 2, 3).counts, vec![6]);
    assert_eq!(Rle::from_mask(&[1; 6], 2, 3).counts, vec![0, 6]);
}

#[test]
fn malformed_strings_are_errors() {
    for (s, h, w) in [("7210", 3, 5), ("7", 3, 4), ("7\u{7f}", 3, 4), ("o", 3, 4), ("7;", 3, 4), ("\u{e9}", 1, 1)] {
        let e = Rle::from_compressed(s, h, w).unwrap_err();
        assert!(matches!(e, Error::InvalidRle(_)), "{s:?}: {e}");
    }
    let bad = Rle { size: [2, 2], counts: vec![1, 1] };
    assert!(matches!(bad.to_mask(), Err(Error::InvalidRle(_))));
}

#[test]
fn segmentation_rles_match_per_segment_encoding() {
    let mut r = Rng(7);
    for &(h, w) in &[(1, 1), (5, 3), (37, 101), (90, 160), (17, 300)] {
        let n = 6u32;
        // Blocky map with some noise; id 5 absent from the map, id 7 not a segment.
        let ids: Vec<u32> = (0..h * w)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                let v = ((y / 7 + x / 11) % 5) as u32;
                if r.below(50) == 0 { 7 } else { v }
            })
            .collect();
        let segments: Vec<Segment> = (1..=n)
            .map(|id| Segment { id, label_id: 0, label: "x".into(), score: 1.0, is_thing: true, area: 0, bbox: [0; 4], track_id: None })
            .collect();
        let seg = Segmentation { width: w as u32, height: h as u32, task: Task::Panoptic, ids: ids.clone(), segments };
        let all = seg.rles();
        assert_eq!(all.len(), n as usize);
        for (i, rle) in all.iter().enumerate() {
            let id = i as u32 + 1;
            assert_eq!(*rle, seg.rle(id), "{h}x{w} id {id}");
            assert_eq!(*rle, Rle::from_mask(&seg.mask(id), h, w));
        }
    }
}

fn python_has_pycocotools() -> bool {
    Command::new("python3").args(["-c", "import numpy, pycocotools.mask"]).output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn pycocotools_agrees() {
    if !python_has_pycocotools() {
        println!("SKIPPED: pycocotools_agrees needs python3 with numpy and pycocotools (pip install pycocotools)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("segstream-rle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One record per mask: "h w" line, then the row-major mask as 0/1 characters, then
    // our compressed string.
    let ms: Vec<(usize, usize, Vec<u8>)> = masks().into_iter().filter(|(h, w, _)| h * w <= 1 << 20).collect();
    let mut input = String::new();
    for (h, w, m) in &ms {
        let rle = Rle::from_mask(m, *h, *w);
        input.push_str(&format!("{h} {w}\n"));
        input.extend(m.iter().map(|&v| if v != 0 { '1' } else { '0' }));
        input.push('\n');
        input.push_str(&rle.to_compressed());
        input.push('\n');
    }
    let path = dir.join("masks.txt");
    std::fs::File::create(&path).unwrap().write_all(input.as_bytes()).unwrap();
    let script = r#"
import sys, numpy as np, pycocotools.mask as mk
lines = open(sys.argv[1]).read().split("\n")
i = 0
while i + 2 < len(lines) and lines[i]:
    h, w = map(int, lines[i].split())
    m = (np.frombuffer(lines[i + 1].encode(), dtype=np.uint8) - 48).reshape(h, w)
    ours = lines[i + 2]
    r = mk.encode(np.asfortranarray(m))
    dec = mk.decode({"size": [h, w], "counts": ours.encode()})
    bb = mk.toBbox(r)
    print(r["counts"].decode(), int(mk.area(r)), ",".join(str(int(v)) for v in bb), int((dec == m).all()))
    i += 3
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&path).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ms.len());
    for ((h, w, m), line) in ms.iter().zip(lines) {
        let f: Vec<&str> = line.split(' ').collect();
        let rle = Rle::from_mask(m, *h, *w);
        assert_eq!(f[0], rle.to_compressed(), "{h}x{w}: pycocotools encodes differently");
        assert_eq!(f[1].parse::<u64>().unwrap(), rle.area(), "{h}x{w}: area");
        let bb: Vec<u32> = f[2].split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(bb, rle.bbox().to_vec(), "{h}x{w}: bbox");
        assert_eq!(f[3], "1", "{h}x{w}: pycocotools decodes our string to another mask");
    }
    println!("pycocotools agrees on {} masks", ms.len());
}
