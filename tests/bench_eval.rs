//! `segstream bench`, `segstream eval` and the COCO options of `segstream run`, on a few
//! frames of the sample (the figures themselves are checked against the Python references
//! in tests/python/test_eval.py). Tests that need the sample model and ONNX Runtime print
//! `SKIPPED: <reason>` and pass without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

mod common;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

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

fn one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].starts_with("segstream: error: ") && lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
}

fn sample() -> Result<(PathBuf, PathBuf), String> {
    let m = root().join("samples/models/shapes-m2f.onnx");
    let v = root().join("samples/shapes.mp4");
    if !m.is_file() || !v.is_file() {
        return Err("sample model or video not present".into());
    }
    segstream::backend::onnxruntime::ensure_runtime().map_err(|e| e.to_string())?;
    Ok((m, v))
}

macro_rules! need_sample {
    ($name:literal) => {
        match sample() {
            Ok(s) => s,
            Err(reason) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "SKIPPED: {}: {reason}", $name);
                return;
            }
        }
    };
}

#[test]
fn bench_json_has_every_stage() {
    let (model, video) = need_sample!("bench_json_has_every_stage");
    let d = common::workdir("bench", "json");
    let chart = d.join("chart.png");
    let out = segstream(
        &d,
        &[
            "bench",
            video.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--frames",
            "3",
            "--warmup",
            "0",
            "--threads",
            "2",
            "--json",
            "--chart",
            chart.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --json prints JSON");
    assert_eq!(v["schema"], "segstream.bench/1");
    assert_eq!(v["frames"], 3);
    let names: Vec<&str> = v["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, segstream::app::bench::STAGES);
    for s in v["stages"].as_array().unwrap() {
        for k in ["p50_ms", "p95_ms", "mean_ms"] {
            let x = s[k].as_f64().unwrap_or(-1.0);
            assert!(x >= 0.0 && x.is_finite(), "{}: {k} = {x}", s["name"]);
        }
        assert!(s["samples"].as_u64().unwrap() >= 1, "{}", s["name"]);
    }
    assert!(v["stages"][2]["mean_ms"].as_f64().unwrap() > 0.0, "inference took no time");
    let e = &v["end_to_end"];
    assert_eq!(e["frames"], 3);
    assert!(e["fps"].as_f64().unwrap() > 0.0);
    assert!(e["cpu_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let png = common::read_png(&chart);
    assert!(png.width > 100 && png.height > 50);
}

#[test]
fn run_writes_coco_outputs_and_eval_reads_them() {
    let (model, video) = need_sample!("run_writes_coco_outputs_and_eval_reads_them");
    let d = common::workdir("bench", "coco");
    let (coco, inst, jsonl) = (d.join("coco"), d.join("inst.json"), d.join("s.jsonl"));
    let out = segstream(
        &d,
        &[
            "run",
            video.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--no-overlay",
            "--json",
            jsonl.to_str().unwrap(),
            "--max-frames",
            "2",
            "--semantics",
            "transformers",
            "--threads",
            "2",
            "--coco-panoptic",
            coco.to_str().unwrap(),
            "--coco-instances",
            inst.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 frames"));
    let pan = common::read_json(&coco.join("panoptic.json"));
    assert_eq!(pan["annotations"].as_array().unwrap().len(), 2);
    let png = common::read_png(&coco.join("panoptic/00001.png"));
    assert_eq!((png.width, png.height, png.channels), (640, 360, 3));
    assert!(common::read_json(&inst).is_array());

    let gt = root().join("samples/gt");
    let ok = segstream(
        &d,
        &["eval", "--gt", gt.to_str().unwrap(), "--pred", coco.to_str().unwrap(), "--only-predicted", "--json", "-"],
        Duration::from_secs(120),
    );
    assert!(ok.status.success(), "stderr: {}", String::from_utf8_lossy(&ok.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["panoptic"]["images"], 2);
    let pq = v["panoptic"]["all"]["pq"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&pq));
    assert!(v["panoptic"]["miou"].as_f64().is_some());

    // Every ground-truth image needs a prediction unless --only-predicted.
    let strict = segstream(&d, &["eval", "--gt", gt.to_str().unwrap(), "--pred", coco.to_str().unwrap()], Duration::from_secs(120));
    one_line_error(&strict, "no prediction for image id 2");
}

#[test]
fn eval_bad_inputs_are_one_line_errors() {
    let d = common::workdir("bench", "eval-bad");
    let gt = root().join("samples/gt");
    let missing = segstream(&d, &["eval", "--gt", "nope", "--pred", gt.to_str().unwrap()], Duration::from_secs(60));
    one_line_error(&missing, "not found: nope");
    // A prediction for an image the ground truth lacks.
    std::fs::create_dir_all(d.join("pred/panoptic")).unwrap();
    std::fs::write(
        d.join("pred/panoptic.json"),
        r#"{"images":[{"id":500,"file_name":"x.png","width":640,"height":360}],
            "annotations":[{"image_id":500,"file_name":"x.png","segments_info":[]}],"categories":[]}"#,
    )
    .unwrap();
    let pred = d.join("pred");
    let mismatched = segstream(&d, &["eval", "--gt", gt.to_str().unwrap(), "--pred", pred.to_str().unwrap()], Duration::from_secs(60));
    one_line_error(&mismatched, "image id 500");
    std::fs::write(d.join("junk.json"), "42").unwrap();
    let junk = segstream(&d, &["eval", "--gt", gt.to_str().unwrap(), "--pred", "junk.json"], Duration::from_secs(60));
    one_line_error(&junk, "neither COCO panoptic");
}

#[test]
fn coco_outputs_take_one_input() {
    let d = common::workdir("bench", "coco-many");
    let v = root().join("samples/shapes.mp4");
    let out = segstream(
        &d,
        &["run", v.to_str().unwrap(), v.to_str().unwrap(), "--coco-panoptic", "c"],
        Duration::from_secs(60),
    );
    one_line_error(&out, "take one input");
}
