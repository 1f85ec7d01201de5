//! Readers shared by the integration tests: `.npy` (little-endian f32, C order) and PNG.
#![allow(dead_code)]

pub mod fixtures;

use std::path::{Path, PathBuf};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every golden case folder (those holding a `meta.json`), sorted.
pub fn golden_cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("meta.json").is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Read a float32 little-endian C-order `.npy` file: (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not a .npy file", path.display());
    let major = bytes[6];
    let (hlen, start) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{}: only <f4 supported: {header}", path.display());
    assert!(header.contains("'fortran_order': False"), "{}: C order only", path.display());
    let shape_txt = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_txt.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data: Vec<f32> = bytes[start + hlen..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}: size mismatch", path.display());
    (shape, data)
}

/// Decoded PNG: width, height, channels, bit depth, samples (16-bit samples widened).
pub struct Png {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub samples: Vec<u32>,
}

pub fn read_png(path: &Path) -> Png {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let samples = match info.bit_depth {
        png::BitDepth::Eight => buf[..info.buffer_size()].iter().map(|&b| b as u32).collect(),
        png::BitDepth::Sixteen => buf[..info.buffer_size()].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).collect(),
        other => panic!("{}: unsupported bit depth {other:?}", path.display()),
    };
    Png { width: info.width as usize, height: info.height as usize, channels, samples }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A fresh, empty working folder for one test, removed when the test passes (kept for a
/// look when it fails).
pub struct WorkDir(pub PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `$TMPDIR/segstream-<suite>-<pid>-<name>`, emptied.
pub fn workdir(suite: &str, name: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("segstream-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

/// Run a spawned child to completion, killing it (and failing the test) after `limit`: a
/// hang fails instead of blocking the suite.
pub fn wait_with_deadline(mut child: std::process::Child, what: &str, limit: std::time::Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} still running after {limit:?} (hang); stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The JSON Lines of a run as what must agree between two runs: every record's identity
/// and segments (ids, labels, scores, boxes, track ids, RLE masks), timings and stream
/// name aside.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let r = segstream::schema::FrameRecord::from_json_line(l).unwrap();
            serde_json::json!({
                "frame": r.frame, "pts": r.pts, "size": [r.width, r.height], "model": r.model,
                "task": r.task, "stale": r.stale, "segments": r.segments,
            })
        })
        .collect()
}

