//! The plugin as `gst-launch-1.0` users see it: `gst-inspect-1.0` and real pipelines with
//! `GST_PLUGIN_PATH` pointing at the built cdylib.
//!
//! Needs `libgstsegstream.so` next to the test binary's target folder (`target/debug/`):
//! `cargo build -p gst-segstream` (or `make test`, which builds the workspace first).
//! Without it, or without `gst-launch-1.0`, the tests print `SKIPPED: <reason>` and pass
//! without checking anything. The pipelines that segment need the sample model
//! (`samples/models/shapes-m2f.onnx`) and the ONNX Runtime library (`ORT_DYLIB_PATH` or
//! `.ort/lib/libonnxruntime.so`), and are skipped the same way without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Folder holding the built plugin: the target profile dir above this test binary.
fn plugin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/deps/gst_launch-xxxx → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target folder")?
        .to_path_buf();
    if dir.join("libgstsegstream.so").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{} not built (run `cargo build -p gst-segstream` first)",
            dir.join("libgstsegstream.so").display()
        ))
    }
}

fn tool(name: &str) -> Result<(), String> {
    match Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!("{name} not installed")),
    }
}

fn ort_library() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(repo().join(".ort/lib/libonnxruntime.so"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "ONNX Runtime library not found (ORT_DYLIB_PATH or .ort/lib/libonnxruntime.so)".into())
}

fn sample_model() -> Result<PathBuf, String> {
    let m = repo().join("samples/models/shapes-m2f.onnx");
    if m.is_file() {
        Ok(m)
    } else {
        Err(format!("{} not present", m.display()))
    }
}

/// Everything a test needs, or the reason to skip it.
struct Env {
    plugin_dir: PathBuf,
    registry: PathBuf,
    ort: Option<PathBuf>,
}

fn env(needs_model: bool) -> Result<(Env, Option<PathBuf>), String> {
    tool("gst-launch-1.0")?;
    tool("gst-inspect-1.0")?;
    let plugin_dir = plugin_dir()?;
    let (model, ort) = if needs_model {
        (Some(sample_model()?), Some(ort_library()?))
    } else {
        (None, ort_library().ok())
    };
    let registry = std::env::temp_dir().join(format!("segstream-gst-registry-{}.bin", std::process::id()));
    Ok((
        Env {
            plugin_dir,
            registry,
            ort,
        },
        model,
    ))
}

macro_rules! env_or_skip {
    ($name:literal, $needs_model:expr) => {
        match env($needs_model) {
            Ok(e) => e,
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

impl Env {
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GST_PLUGIN_PATH", &self.plugin_dir)
            .env("GST_REGISTRY", &self.registry)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ort) = &self.ort {
            c.env("ORT_DYLIB_PATH", ort);
        }
        c
    }

    /// Run with a deadline; a hang fails the test.
    fn run(&self, program: &str, args: &[&str], limit: Duration) -> Output {
        let child = self.command(program).args(args).spawn().expect("spawn");
        common::wait_with_deadline(child, &format!("{program} {args:?}"), limit)
    }

    /// `gst-launch-1.0 -e` with a pipeline description split on whitespace.
    fn launch(&self, pipeline: &str, limit: Duration) -> Output {
        let mut args = vec!["-e"];
        args.extend(pipeline.split_whitespace());
        self.run("gst-launch-1.0", &args, limit)
    }
}

mod common;

fn tmp(name: &str) -> common::WorkDir {
    common::workdir("launch", name)
}

#[test]
fn inspect_lists_the_four_elements_and_their_properties() {
    let (env, _) = env_or_skip!("inspect_lists_the_four_elements_and_their_properties", false);
    let out = env.run("gst-inspect-1.0", &["segstream"], Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gst-inspect-1.0 segstream failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in ["mask2former", "segoverlay", "segmetaenc", "segpublish"] {
        assert!(text.contains(e), "{e} missing from:\n{text}");
    }
    assert!(text.contains("4 elements"), "{text}");

    let props: [(&str, &[&str]); 4] = [
        (
            "mask2former",
            &[
                "model",
                "backend",
                "device",
                "task",
                "semantics",
                "score-threshold",
                "overlap-threshold",
                "mask-threshold",
                "interval",
                "post-messages",
                "threads",
                "mode",
                "overload",
                "track",
                "track-max-age",
                "track-iou-threshold",
                "batch-group",
                "batch-size",
                "batch-timeout",
                "batch-stats",
                "stats",
                "cuda-device-id",
                "processing",
            ],
        ),
        ("segoverlay", &["alpha", "contours", "labels", "color-by", "cuda-device-id"]),
        ("segmetaenc", &["stream-name"]),
        ("segpublish", &["location", "stream-name", "masks", "qos", "overflow", "queue-size", "stats"]),
    ];
    for (element, names) in props {
        let out = env.run("gst-inspect-1.0", &[element], Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "gst-inspect-1.0 {element}");
        for n in names {
            assert!(
                text.contains(&format!("  {n} ")),
                "{element}: property {n} missing:\n{text}"
            );
        }
    }
    let out = env.run("gst-inspect-1.0", &["segmetaenc"], Duration::from_secs(60));
    assert!(String::from_utf8_lossy(&out.stdout).contains("application/x-ndjson"));
}

#[test]
fn launch_with_a_missing_model_fails_with_its_path() {
    let (env, _) = env_or_skip!("launch_with_a_missing_model_fails_with_its_path", false);
    let out = env.launch(
        "videotestsrc num-buffers=2 ! mask2former model=/nonexistent/m2f.onnx ! fakesink",
        Duration::from_secs(60),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("/nonexistent/m2f.onnx"), "{all}");
}

/// Probe an MP4 written by a pipeline: it must demux to an H.264 stream (`h264parse` links
/// only to H.264) and decode to `frames` frames of 320×180 (counted as GRAY8 bytes).
fn check_h264_frames(env: &Env, mp4: &Path, frames: usize) {
    let raw = mp4.with_extension("gray");
    let out = env.launch(
        &format!(
            "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8,width=320,height=180 ! filesink location={}",
            mp4.display(),
            raw.display()
        ),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "written mp4 does not decode: {}", String::from_utf8_lossy(&out.stderr));
    let len = std::fs::metadata(&raw).map(|m| m.len() as usize).unwrap_or(0);
    assert_eq!(len, frames * 320 * 180, "decoded {} frames, the input had {frames}", len as f64 / (320.0 * 180.0));
}

#[test]
fn launch_overlay_to_mp4() {
    let (env, model) = env_or_skip!("launch_overlay_to_mp4", true);
    let model = model.unwrap();
    let d = tmp("mp4");
    let mp4 = d.join("overlay.mp4");
    let out = env.launch(
        &format!(
            "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=320,height=180,framerate=10/1 \
             ! mask2former model={} threads=2 ! segoverlay labels=true ! videoconvert ! x264enc ! mp4mux \
             ! filesink location={}",
            model.display(),
            mp4.display()
        ),
        Duration::from_secs(400),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let len = std::fs::metadata(&mp4).map(|m| m.len()).unwrap_or(0);
    assert!(len > 1000, "mp4 is {len} bytes");
    check_h264_frames(&env, &mp4, 10);
}

#[test]
fn launch_tee_to_mp4_and_json_lines() {
    let (env, model) = env_or_skip!("launch_tee_to_mp4_and_json_lines", true);
    let model = model.unwrap();
    let d = tmp("tee");
    let (mp4, jsonl) = (d.join("overlay.mp4"), d.join("frames.jsonl"));
    let out = env.launch(
        &format!(
            "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=320,height=180,framerate=10/1 \
             ! videoconvert ! video/x-raw,format=NV12 ! mask2former model={} threads=2 ! tee name=t \
             t. ! queue ! segoverlay ! videoconvert ! x264enc ! mp4mux ! filesink location={} \
             t. ! queue ! segmetaenc stream-name=test ! filesink location={}",
            model.display(),
            mp4.display(),
            jsonl.display()
        ),
        Duration::from_secs(400),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_h264_frames(&env, &mp4, 10);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/frame.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "one record per frame");
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let errs: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "line {i} does not validate: {errs:?}");
        let r = segstream::schema::FrameRecord::from_json_line(l).unwrap();
        assert_eq!(r.frame, i as u64);
        assert_eq!(r.stream, "test");
        assert_eq!((r.width, r.height), (320, 180));
        assert_eq!(r.model, "shapes-m2f");
        assert_eq!(r.pts, Some(i as u64 * 100_000_000));
    }
}


/// Every `segstream run` flag that is a `mask2former` property gives the JSON that the
/// property gives in `gst-launch-1.0`, on a model and clip of the test's own making: the
/// sample network with a card of other defaults (score threshold 0.35, named `own-m2f`),
/// on a portrait clip (160×240) that the 288×160 network sees with wide padding, where
/// detectron2's and transformers' semantics differ. Rows marked `differs` must also change
/// the output from the defaults'.
#[test]
fn every_run_flag_equals_its_property_in_gst_launch() {
    let (env, model) = env_or_skip!("every_run_flag_equals_its_property_in_gst_launch", true);
    let model = model.unwrap();
    let d = tmp("flags");
    // The model: the sample's network under a card of our own.
    let own = d.join("own-m2f.onnx");
    std::fs::copy(&model, &own).unwrap();
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_extension("json")).unwrap()).unwrap();
    card["name"] = "own-m2f".into();
    card["defaults"]["score_threshold"] = 0.35.into();
    std::fs::write(own.with_extension("json"), card.to_string()).unwrap();
    // The clip: the first frames of the sample (identity ends it after 12), scaled to portrait.
    let clip = d.join("portrait.mp4");
    let out = env.launch(
        &format!(
            "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! identity eos-after=12 ! videoconvert ! videoscale \
             ! video/x-raw,width=160,height=240 ! x264enc ! mp4mux ! filesink location={}",
            repo().join("samples/shapes.mp4").display(),
            clip.display()
        ),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "making the clip: {}", String::from_utf8_lossy(&out.stderr));

    // (run flags, mask2former properties, must differ from the defaults)
    let rows: &[(&[&str], &str, bool)] = &[
        (&[], "", false),
        (&["--task", "semantic"], "task=semantic", true),
        (&["--task", "instance"], "task=instance", true),
        (&["--task", "panoptic"], "task=panoptic", false),
        (&["--semantics", "transformers"], "semantics=transformers", true),
        (&["--score-threshold", "0.9"], "score-threshold=0.9", true),
        (&["--overlap-threshold", "0.99"], "overlap-threshold=0.99", true),
        (&["--mask-threshold", "0.9"], "mask-threshold=0.9", true),
        (&["--interval", "3"], "interval=3", true),
        (&["--track"], "track=true", true),
        (&["--track", "--track-max-age", "0", "--track-iou-threshold", "0.95"], "track=true track-max-age=0 track-iou-threshold=0.95", true),
        (&["--async", "wait"], "mode=async overload=wait", false),
        (&["--threads", "1"], "threads=1", false),
        (&["--backend", "onnxruntime", "--device", "cpu"], "backend=onnxruntime device=cpu", false),
    ];
    let mut defaults = None;
    for (i, (flags, props, differs)) in rows.iter().enumerate() {
        let cli_json = d.join(format!("cli-{i}.jsonl"));
        let mut args = vec![
            "run".to_string(),
            clip.display().to_string(),
            "--model".into(),
            own.display().to_string(),
            "--no-overlay".into(),
            "--json".into(),
            cli_json.display().to_string(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(env!("CARGO_BIN_EXE_segstream"), &args, Duration::from_secs(300));
        assert!(out.status.success(), "segstream {flags:?}: {}", String::from_utf8_lossy(&out.stderr));

        let launch_json = d.join(format!("launch-{i}.jsonl"));
        let out = env.launch(
            &format!(
                "filesrc location={} ! decodebin ! videoconvert ! mask2former model={} {props} ! segmetaenc ! filesink location={}",
                clip.display(),
                own.display(),
                launch_json.display()
            ),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "gst-launch {props}: {}", String::from_utf8_lossy(&out.stderr));

        let (cli, launch) = (common::records(&cli_json), common::records(&launch_json));
        assert!(cli.len() >= 12, "{flags:?}: {} records, one per frame of the clip expected", cli.len());
        assert!(cli == launch, "{flags:?} and `{props}` disagree");
        assert!(cli.iter().all(|r| r["model"] == "own-m2f"));
        match &defaults {
            None => defaults = Some(cli),
            Some(base) => assert_eq!(&cli != base, *differs, "{flags:?}: differs from the defaults' output: expected {differs}"),
        }
    }
}
