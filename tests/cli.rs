//! The `segstream` command: every bad input gives one error line and a non-zero exit,
//! and no output is left looking complete. The tests at the end need the sample model
//! (`samples/models/shapes-m2f.onnx`) and the ONNX Runtime library; without them they
//! print `SKIPPED: <reason>` and pass without checking anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreamer as gst;

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

mod common;
use common::WorkDir;

fn workdir(name: &str) -> WorkDir {
    common::workdir("cli", name)
}

/// Run the command in `dir`, killing it (and failing) after `limit`.
fn segstream(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run segstream");
    common::wait_with_deadline(child, &format!("segstream {args:?}"), limit)
}

/// The command failed with exactly one line on stderr, `segstream: error: ...`, that
/// contains every one of `needles`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert_ne!(out.status.code(), Some(0));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr:?}");
    assert!(lines[0].starts_with("segstream: error: "), "{:?}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "error line {:?} lacks {n:?}", lines[0]);
    }
}

/// Files under `dir` (not in `inputs/`) that look like finished outputs.
fn finished_outputs(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return v };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "inputs") {
                v.extend(finished_outputs(&p));
            }
        } else if p.extension().is_some_and(|e| e == "mp4" || e == "jsonl" || e == "png") {
            v.push(p);
        }
    }
    v
}

/// Write a small H.264/MP4 test video (`frames` frames, 10 fps) with GStreamer.
fn make_video(path: &Path, frames: u32, w: u32, h: u32, pattern: &str) {
    gst::init().unwrap();
    let line = format!(
        "videotestsrc num-buffers={frames} pattern={pattern} ! video/x-raw,width={w},height={h},framerate=10/1 \
         ! x264enc ! mp4mux faststart=true ! filesink location={}",
        path.display()
    );
    let p = gst::parse::launch(&line).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("test video written in time");
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(
        msg.type_(),
        gst::MessageType::Eos,
        "writing the test video failed: {msg:?}"
    );
}

fn inputs(dir: &Path) -> PathBuf {
    let d = dir.join("inputs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SHORT: Duration = Duration::from_secs(60);

#[test]
fn missing_input_is_one_line_error() {
    let d = workdir("missing-input");
    let out = segstream(&d, &["run", "no/such/video.mp4"], SHORT);
    assert_one_line_error(&out, &["not found", "no/such/video.mp4"]);
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn non_video_file_is_one_line_error() {
    let d = workdir("non-video");
    let f = inputs(&d).join("notes.mp4");
    std::fs::write(&f, "these are not the frames you are looking for\n").unwrap();
    let out = segstream(&d, &["run", f.to_str().unwrap()], SHORT);
    assert_one_line_error(&out, &["notes.mp4", "not a video"]);
    assert!(finished_outputs(&d).is_empty(), "{:?}", finished_outputs(&d));

    let empty = inputs(&d).join("empty.mkv");
    std::fs::write(&empty, "").unwrap();
    let out = segstream(&d, &["run", empty.to_str().unwrap()], SHORT);
    assert_one_line_error(&out, &["empty.mkv", "not a video"]);
}

#[test]
fn missing_model_is_one_line_error() {
    let d = workdir("missing-model");
    let v = inputs(&d).join("clip.mp4");
    make_video(&v, 5, 160, 120, "ball");
    let out = segstream(&d, &["run", v.to_str().unwrap(), "--model", "models/nope.onnx"], SHORT);
    assert_one_line_error(&out, &["model not found", "models/nope.onnx"]);
    assert!(finished_outputs(&d).is_empty(), "{:?}", finished_outputs(&d));
}

#[test]
fn unwritable_output_is_one_line_error() {
    let d = workdir("unwritable");
    let v = inputs(&d).join("clip.mp4");
    make_video(&v, 5, 160, 120, "ball");
    // A regular file where the output folder should be (root ignores permission bits, so
    // this is the portable way to make a folder unwritable).
    std::fs::write(d.join("blocker"), "x").unwrap();
    let out = segstream(&d, &["run", v.to_str().unwrap(), "-o", "blocker/out.mp4"], SHORT);
    assert_one_line_error(&out, &["blocker"]);
    #[cfg(target_os = "linux")]
    {
        let out = segstream(
            &d,
            &["run", v.to_str().unwrap(), "--json", "/proc/segstream-test/x.jsonl"],
            SHORT,
        );
        assert_one_line_error(&out, &["/proc/segstream-test"]);
    }
    assert!(finished_outputs(&d).is_empty(), "{:?}", finished_outputs(&d));
}

#[test]
fn unreachable_rtsp_fails_within_the_timeout() {
    let d = workdir("rtsp");
    let start = Instant::now();
    let out = segstream(
        &d,
        &["run", "rtsp://127.0.0.1:1/x", "--timeout", "3"],
        Duration::from_secs(45),
    );
    assert_one_line_error(&out, &["rtsp://127.0.0.1:1/x"]);
    assert!(start.elapsed() < Duration::from_secs(40), "took {:?}", start.elapsed());
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn bad_arguments_are_rejected() {
    let d = workdir("args");
    let out = segstream(&d, &["run", "x.mp4", "--score-threshold", "1.5"], SHORT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 0..1"));
    let (a, b) = (inputs(&d).join("a.mp4"), inputs(&d).join("b.mp4"));
    make_video(&a, 2, 160, 120, "ball");
    make_video(&b, 2, 160, 120, "ball");
    let out = segstream(
        &d,
        &["run", a.to_str().unwrap(), b.to_str().unwrap(), "-o", "single.mp4"],
        SHORT,
    );
    assert_one_line_error(&out, &["several inputs", "single.mp4"]);
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn inspect_missing_model_is_one_line_error() {
    let d = workdir("inspect-missing");
    let out = segstream(&d, &["inspect", "nope.onnx"], SHORT);
    assert_one_line_error(&out, &["model not found", "nope.onnx"]);
}

// ---------------------------------------------------------------------------------------
// With the real sample model

fn sample_model() -> Result<PathBuf, String> {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/models/shapes-m2f.onnx");
    if !m.is_file() {
        return Err(format!("{} not present", m.display()));
    }
    // The command finds the library the same way (ORT_DYLIB_PATH, .ort/lib beside the
    // repository, the system path).
    segstream::backend::onnxruntime::ensure_runtime().map_err(|e| e.to_string())?;
    Ok(m)
}

macro_rules! need_model {
    ($name:literal) => {
        match sample_model() {
            Ok(m) => m,
            Err(reason) => {
                // Straight to stderr, past the test harness's capture, so that a skip is
                // visible in a plain `cargo test` run.
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "SKIPPED: {}: {reason}", $name);
                return;
            }
        }
    };
}

#[test]
fn run_writes_overlay_and_json_with_the_sample_model() {
    let model = need_model!("run_writes_overlay_and_json_with_the_sample_model");
    let d = workdir("run-ok");
    let v = inputs(&d).join("clip.mp4");
    make_video(&v, 4, 320, 180, "ball");
    let out = segstream(
        &d,
        &[
            "run",
            v.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--threads",
            "2",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("4 frames") && stdout.contains("p50") && stdout.contains("inference"),
        "{stdout}"
    );
    let mp4 = d.join("out/clip.mp4");
    let jsonl = d.join("out/clip.jsonl");
    assert!(std::fs::metadata(&mp4).unwrap().len() > 0);
    assert!(!d.join("out/clip.mp4.partial").exists() && !d.join("out/clip.jsonl.partial").exists());
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        let r = segstream::schema::FrameRecord::from_json_line(l).unwrap();
        assert_eq!(r.frame, i as u64);
        assert_eq!((r.width, r.height), (320, 180));
        assert_eq!(r.model, "shapes-m2f");
    }
}

#[test]
fn truncated_video_keeps_only_partial_outputs() {
    let model = need_model!("truncated_video_keeps_only_partial_outputs");
    let d = workdir("truncated");
    let full = inputs(&d).join("full.mp4");
    make_video(&full, 20, 160, 120, "snow");
    let bytes = std::fs::read(&full).unwrap();
    let cut = inputs(&d).join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let out = segstream(
        &d,
        &["run", cut.to_str().unwrap(), "--model", model.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a truncated input must not succeed");
    assert!(stderr.contains("truncated") || stderr.contains("corrupt"), "{stderr}");
    assert!(
        finished_outputs(&d).is_empty(),
        "finished-looking outputs: {:?}",
        finished_outputs(&d)
    );
    assert!(
        d.join("out/cut.jsonl.partial").exists(),
        "what decoded is kept as .partial"
    );
}

#[test]
fn folder_batch_reports_a_bad_file_and_goes_on() {
    let model = need_model!("folder_batch_reports_a_bad_file_and_goes_on");
    let d = workdir("batch");
    let folder = inputs(&d).join("batch");
    std::fs::create_dir_all(&folder).unwrap();
    make_video(&folder.join("a.mp4"), 2, 160, 120, "ball");
    std::fs::write(folder.join("b.mp4"), "not a video").unwrap();
    make_video(&folder.join("c.mp4"), 2, 160, 120, "smpte");
    let out = segstream(
        &d,
        &[
            "run",
            folder.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--no-overlay",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout} stderr: {stderr}");
    assert!(stderr.contains("b.mp4"), "{stderr}");
    assert!(
        d.join("out/a.jsonl").is_file() && d.join("out/c.jsonl").is_file(),
        "{stdout}"
    );
    assert!(!d.join("out/b.jsonl").exists());
    assert!(!d.join("out/a.mp4").exists(), "--no-overlay writes no video");
    assert!(
        stdout.contains("a.mp4") && stdout.contains("error"),
        "summary table: {stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// Batch jobs across machines: --shard I/N, @LIST, globs, the per-shard summary

#[test]
fn bad_shard_values_are_one_line_errors() {
    let d = workdir("shard-args");
    for (value, needle) in [
        ("4/4", "0-based"),
        ("0/0", "at least 1"),
        ("x", "I/N"),
        ("-1/2", "I/N"),
        ("1/", "I/N"),
        ("1/2/3", "I/N"),
    ] {
        let flag = format!("--shard={value}");
        let out = segstream(&d, &["run", "x.mp4", &flag], SHORT);
        assert_one_line_error(&out, &["--shard", needle]);
    }
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn list_file_errors_are_one_line() {
    let d = workdir("list-file");
    let out = segstream(&d, &["run", "@no/such/list.txt"], SHORT);
    assert_one_line_error(&out, &["list file not found", "no/such/list.txt"]);

    let dir = inputs(&d);
    std::fs::write(dir.join("a.mp4"), "x").unwrap();
    // Relative to the list's folder (inputs/), comments and blank lines skipped.
    std::fs::write(dir.join("list.txt"), "# batch\n\na.mp4\n\nmissing.mp4\n").unwrap();
    let out = segstream(&d, &["run", "@inputs/list.txt", "--shard", "0/2"], SHORT);
    assert_one_line_error(&out, &["input not found", "inputs/missing.mp4", "inputs/list.txt line 5"]);

    let out = segstream(&d, &["run", "inputs/*.mkv"], SHORT);
    assert_one_line_error(&out, &["no files match", "inputs/*.mkv"]);

    std::fs::write(dir.join("empty.txt"), "# nothing today\n\n").unwrap();
    let out = segstream(&d, &["run", "@inputs/empty.txt"], SHORT);
    assert_one_line_error(&out, &["no inputs", "@inputs/empty.txt"]);
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn empty_shard_succeeds_and_writes_its_summary() {
    let d = workdir("shard-empty");
    let dir = inputs(&d);
    for n in ["b.mp4", "a.mp4"] {
        std::fs::write(dir.join(n), "x").unwrap();
    }
    std::fs::write(dir.join("list.txt"), "a.mp4\n").unwrap();
    // Two inputs (a.mp4 listed twice: deduplicated), shard 2 of 3 is empty. The model is
    // never opened, so this runs without it.
    let out = segstream(
        &d,
        &["run", "inputs/*.mp4", "@inputs/list.txt", "--shard", "2/3", "--model", "nope.onnx"],
        SHORT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("shard 2/3 has no inputs"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/shard-2-of-3.json")).unwrap()).unwrap();
    assert_eq!(summary["schema"], "segstream.shard/1");
    assert_eq!(summary["shard"]["index"], 2);
    assert_eq!(summary["shard"]["count"], 3);
    assert_eq!(summary["inputs_total"], 2);
    assert_eq!(summary["inputs"].as_array().unwrap().len(), 0);
    assert_eq!(summary["totals"]["inputs"], 0);
    assert!(finished_outputs(&d).is_empty());
}

#[test]
fn shards_together_cover_every_input_once() {
    let model = need_model!("shards_together_cover_every_input_once");
    let d = workdir("shards");
    let dir = inputs(&d);
    for (sub, name, pattern) in [("x", "a", "ball"), ("x", "b", "smpte"), ("y", "a", "snow")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        make_video(&dir.join(sub).join(format!("{name}.mp4")), 2, 160, 120, pattern);
    }
    // Sorted: x/a, x/b, y/a -> shard 0 takes x/a and y/a, shard 1 x/b. Output names are
    // chosen over the whole list (y/a.mp4 -> a-2), so the shards never collide.
    let mut taken = Vec::new();
    for i in 0..2 {
        let shard = format!("{i}/2");
        let out = segstream(
            &d,
            &[
                "run",
                "inputs/*/*.mp4",
                "--shard",
                &shard,
                "--no-overlay",
                "--json",
                "results",
                "--model",
                model.to_str().unwrap(),
                "--threads",
                "2",
            ],
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "shard {shard}: {}", String::from_utf8_lossy(&out.stderr));
        let path = d.join(format!("results/shard-{i}-of-2.json"));
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(s["inputs_total"], 3);
        assert!(s["error"].is_null());
        for input in s["inputs"].as_array().unwrap() {
            assert_eq!(input["status"], "ok", "{input}");
            assert_eq!(input["frames"], 2);
            assert_eq!(input["outputs"].as_array().unwrap().len(), 1);
            taken.push(input["input"].as_str().unwrap().to_owned());
        }
        assert_eq!(s["totals"]["frames"], 2 * s["inputs"].as_array().unwrap().len() as u64);
    }
    assert_eq!(taken, ["inputs/x/a.mp4", "inputs/y/a.mp4", "inputs/x/b.mp4"]);
    for name in ["a", "a-2", "b"] {
        assert!(d.join(format!("results/{name}.jsonl")).is_file(), "results/{name}.jsonl");
    }
}
