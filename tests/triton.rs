//! `backend=triton` against a real Triton Inference Server on loopback: tritonserver 2.51
//! from PyPI's nvidia-pytriton wheel (`make triton` / scripts/triton-setup.sh prepares
//! `.triton/`), serving the sample ONNX through its Python backend and ONNX Runtime
//! (scripts/triton-serve.sh, which also serves the model card in the model's
//! configuration). Each test starts its own server on free ports and kills it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ort_env(cmd: &mut Command) -> &mut Command {
    cmd.env("ORT_DYLIB_PATH", root().join(".ort/lib/libonnxruntime.so"))
}

/// A tritonserver process serving the sample model as `shapes`.
struct Server {
    child: Child,
    http: u16,
    grpc: u16,
    metrics: u16,
    repo: PathBuf,
}

impl Server {
    /// Start a server (on the given ports, or free ones) and wait until it is ready.
    fn start(repo: &Path, ports: Option<(u16, u16, u16)>) -> Server {
        let script = root().join("scripts/triton-serve.sh");
        assert!(
            root().join(".triton/server/bin/tritonserver").exists(),
            "Triton is not prepared: run `make triton` (scripts/triton-setup.sh)"
        );
        let _ = std::fs::remove_file(repo.join("ports.env"));
        let mut cmd = Command::new(script);
        cmd.arg(root().join("samples/models/shapes-m2f.onnx")).arg(repo).args(["--name", "shapes", "--lifetime", "300"]);
        if let Some((h, g, m)) = ports {
            cmd.args(["--http-port", &h.to_string(), "--grpc-port", &g.to_string(), "--metrics-port", &m.to_string()]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start scripts/triton-serve.sh");
        let start = Instant::now();
        let ports_file = repo.join("ports.env");
        let (http, grpc, metrics) = loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file) {
                let get = |k: &str| {
                    text.lines().find_map(|l| l.strip_prefix(&format!("{k}=")).and_then(|v| v.trim().parse::<u16>().ok()))
                };
                if let (Some(h), Some(g), Some(m)) = (get("HTTP_PORT"), get("GRPC_PORT"), get("METRICS_PORT")) {
                    break (h, g, m);
                }
            }
            assert!(start.elapsed() < Duration::from_secs(60), "triton-serve.sh wrote no ports.env in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut server = Server { child, http, grpc, metrics, repo: repo.to_path_buf() };
        while !server.ready() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("tritonserver exited before it was ready: {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "tritonserver not ready after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `GET /v2/health/ready` answers 200.
    fn ready(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /v2/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    fn ports(&self) -> (u16, u16, u16) {
        (self.http, self.grpc, self.metrics)
    }

    /// SIGKILL (the script's process is the server), and the Python backend's stub of this
    /// repository's model, which does not always notice that its server is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &format!("triton_python_backend_stub {}/", self.repo.display())])
            .status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.repo.join("ports.env"));
    }
}

fn segstream(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(BIN);
    ort_env(&mut cmd).args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    common::wait_with_deadline(cmd.spawn().expect("run segstream"), &format!("segstream {args:?}"), limit)
}

fn sample() -> String {
    root().join("samples/shapes.mp4").display().to_string()
}

/// The one stderr line of a failed command, `segstream: error: ...`.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr:?}");
    assert!(lines[0].starts_with("segstream: error: "), "{:?}", lines[0]);
    lines[0].to_string()
}

#[test]
fn sample_json_through_triton_equals_local_onnxruntime() {
    let dir = common::workdir("triton", "equal");
    let server = Server::start(&dir.join("repo"), None);
    let url = server.url();
    // No --model: the card comes from the server (the model's configuration).
    let remote = segstream(
        &dir,
        &[
            "run", &sample(), "--backend", "triton", "--triton-url", &url, "--triton-model", "shapes",
            "--no-overlay", "--json", "triton.jsonl", "--max-frames", "40",
        ],
        Duration::from_secs(300),
    );
    assert!(remote.status.success(), "triton run: {}", String::from_utf8_lossy(&remote.stderr));
    let model = root().join("samples/models/shapes-m2f.onnx").display().to_string();
    let local = segstream(
        &dir,
        &[
            "run", &sample(), "--backend", "onnxruntime", "--device", "cpu", "--threads", "1", "--model", &model,
            "--no-overlay", "--json", "local.jsonl", "--max-frames", "40",
        ],
        Duration::from_secs(300),
    );
    assert!(local.status.success(), "local run: {}", String::from_utf8_lossy(&local.stderr));
    let (a, b) = (common::records(&dir.join("triton.jsonl")), common::records(&dir.join("local.jsonl")));
    assert_eq!(a.len(), 40);
    let segments: usize = a.iter().map(|r| r["segments"].as_array().unwrap().len()).sum();
    assert!(segments >= 40, "the sample's frames have segments ({segments} in 40 frames)");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "frame {i}: the Triton run and the local run differ");
    }
    // The command says where the network ran.
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert!(stderr.contains(&format!("Triton at {url}")), "{stderr}");
}

#[test]
fn unreachable_unknown_model_and_mismatched_card_are_one_line_errors() {
    let dir = common::workdir("triton", "errors");
    // Nothing listens: within --timeout, one line.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = format!("127.0.0.1:{port}");
    let t = Instant::now();
    let out = segstream(
        &dir,
        &["run", &sample(), "--backend", "triton", "--triton-url", &nowhere, "--triton-model", "shapes", "--timeout", "3"],
        Duration::from_secs(60),
    );
    let line = one_error_line(&out);
    assert!(line.contains(&format!("{nowhere} unreachable")), "{line}");
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());

    let server = Server::start(&dir.join("repo"), None);
    let url = server.url();
    let out = segstream(
        &dir,
        &["run", &sample(), "--backend", "triton", "--triton-url", &url, "--triton-model", "nope", "--timeout", "5"],
        Duration::from_secs(60),
    );
    let line = one_error_line(&out);
    assert!(line.contains("has no model \"nope\""), "{line}");

    // A local card that disagrees with the served model's contract.
    let card_text = std::fs::read_to_string(root().join("samples/models/shapes-m2f.json")).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&card_text).unwrap();
    card["input"]["height"] = 192.into();
    let card_path = dir.join("wrong.json");
    std::fs::write(&card_path, serde_json::to_string_pretty(&card).unwrap()).unwrap();
    let out = segstream(
        &dir,
        &[
            "run", &sample(), "--backend", "triton", "--triton-url", &url, "--triton-model", "shapes",
            "--model", card_path.to_str().unwrap(), "--timeout", "5",
        ],
        Duration::from_secs(60),
    );
    let line = one_error_line(&out);
    assert!(line.contains("card says input 192x288, model takes 160x288"), "{line}");

    // A bad URL is refused before any connection.
    let out = segstream(
        &dir,
        &["run", &sample(), "--backend", "triton", "--triton-url", "gpu-node", "--triton-model", "shapes"],
        Duration::from_secs(60),
    );
    assert!(one_error_line(&out).contains("is not host:port"));
}

/// Read the summary JSON's first input.
fn summary_input(path: &Path) -> serde_json::Value {
    common::read_json(path)["inputs"][0].clone()
}

#[test]
fn server_killed_mid_run_and_restarted_wait_policy_loses_nothing() {
    let dir = common::workdir("triton", "restart-wait");
    let repo = dir.join("repo");
    let mut server = Server::start(&repo, None);
    let url = server.url();
    let ports = server.ports();
    // --async=wait: a frame that meets no server waits for it; every frame gets a fresh result.
    let mut cmd = Command::new(BIN);
    ort_env(&mut cmd)
        .args([
            "run", &sample(), "--backend", "triton", "--triton-url", &url, "--triton-model", "shapes", "--no-overlay",
            "--json", "out.jsonl", "--summary", "summary.json", "--timeout", "2", "--async=wait",
        ])
        .current_dir(&*dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    server.kill();
    std::thread::sleep(Duration::from_secs(3));
    let _server = Server::start(&repo, Some(ports));
    let out = common::wait_with_deadline(child, "segstream run through a restart", Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records = common::records(&dir.join("out.jsonl"));
    assert_eq!(records.len(), 180, "every frame of the sample is written");
    assert!(records.iter().all(|r| r["stale"] == false), "overload=wait: every result fresh");
    let unavailable = summary_input(&dir.join("summary.json"))["unavailable"].as_u64().unwrap_or(0);
    assert!(unavailable >= 1, "the gap is counted in the summary: {stdout}");
    assert!(stdout.contains(&format!("inference server unavailable for {unavailable} frames")), "{stdout}");
    assert!(stderr.contains("answers again"), "the recovery is said: {stderr}");
}

#[test]
fn live_source_with_drop_policy_goes_stale_in_the_gap_and_fresh_after() {
    use gst::prelude::*;
    use gstreamer as gst;
    gst::init().unwrap();
    segstream::elements::register_static().unwrap();
    let dir = common::workdir("triton", "restart-drop");
    let repo = dir.join("repo");
    let mut server = Server::start(&repo, None);
    let ports = server.ports();
    // 10 frames/s for 10 s, live; the sample's card served with the model.
    let desc = format!(
        "videotestsrc is-live=true num-buffers=100 pattern=ball ! video/x-raw,format=RGB,width=320,height=240,framerate=10/1 \
         ! mask2former name=m backend=triton triton-url={} triton-model=shapes triton-timeout=1000 overload=drop \
         ! appsink name=sink sync=false",
        server.url()
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(bool, bool)>::new()));
    {
        let frames = frames.clone();
        sink.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let meta = buf.meta::<segstream::elements::SegmentationMeta>();
                    let entry = (meta.is_some(), meta.is_some_and(|m| m.info().stale));
                    segstream::util::lock(&frames).push(entry);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    server.kill();
    let killed_at = segstream::util::lock(&frames).len();
    std::thread::sleep(Duration::from_secs(2));
    let _server = Server::start(&repo, Some(ports));
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS within 60 s (no hang)");
    let stats = pipeline.by_name("m").unwrap().property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    let frames = segstream::util::lock(&frames).clone();
    assert_eq!(frames.len(), 100, "every frame passes");
    let unavailable = stats.get::<u64>("unavailable").unwrap();
    let stale = frames.iter().filter(|f| f.1).count() as u64;
    assert!(unavailable >= 5, "2 s without the server at 10 frames/s: {stats:?}");
    assert_eq!(stale, stats.get::<u64>("stale").unwrap(), "{stats:?}");
    assert!(stale >= unavailable.saturating_sub(1), "drop: the gap's frames carry the last result, stale");
    assert!(frames[..killed_at.min(10)].iter().all(|f| f.0 && !f.1), "fresh before the kill");
    // After the restart (and the back-off), results are fresh again to the end.
    let tail = &frames[80..];
    assert!(tail.iter().all(|f| f.0 && !f.1), "fresh after the restart: {:?}", tail);
}

/// The first `n` frames of the sample, decoded to RGB: (width, height, pixels).
fn sample_frames(n: usize) -> Vec<(usize, usize, Vec<u8>)> {
    use gst::prelude::*;
    use gstreamer as gst;
    gst::init().unwrap();
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false",
        sample()
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else { break };
        let caps = s.caps().unwrap();
        let info = gstreamer_video::VideoInfo::from_caps(caps).unwrap();
        let map = s.buffer().unwrap().map_readable().unwrap();
        let (w, h, stride) = (info.width() as usize, info.height() as usize, info.stride()[0] as usize);
        let mut px = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            px.extend_from_slice(&map[row * stride..row * stride + w * 3]);
        }
        out.push((w, h, px));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// 1, 2 and 4 streams, each its own segmenter on its own thread segmenting the sample's
/// first 30 frames: local ONNX Runtime (1 thread a stream) against the same model through
/// one Triton server on loopback (1 model instance, 1 ONNX Runtime thread, dynamic
/// batching), and through Triton with the streams in one batching group (one request per
/// batch). Prints the table of docs/BENCHMARKS.md ("Triton on loopback").
/// `cargo test --test triton -- --ignored --nocapture loopback_streams_bench`
#[test]
#[ignore = "a benchmark: prints frames/s and latency percentiles"]
fn loopback_streams_bench() {
    use segstream::backend::batching::{self, BatchConfig};

    use segstream::backend::select::BackendKind;
    use segstream::frame::{Frame, PixelFormat};
    use segstream::segmenter::{Segmenter, SegmenterConfig};
    use segstream::settings::{PostSettings, Settings};
    let dir = common::workdir("triton", "bench");
    let server = Server::start(&dir.join("repo"), None);
    let frames = std::sync::Arc::new(sample_frames(30));
    let model = root().join("samples/models/shapes-m2f.onnx");
    let open = |backend: BackendKind| {
        let settings = Settings {
            backend,
            threads: 1,
            triton_url: server.url(),
            triton_model: "shapes".into(),
            device: segstream::backend::select::Device::Cpu,
            ..Settings::default()
        };
        Segmenter::open_auto(&SegmenterConfig::from_settings(&model, &settings)).unwrap()
    };
    println!("| inference | streams | frames | wall s | frames/s (all streams) | latency p50 ms | p95 ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (what, backend, group) in [
        ("local ONNX Runtime", BackendKind::OnnxRuntime, false),
        ("Triton", BackendKind::Triton, false),
        ("Triton, one batching group", BackendKind::Triton, true),
    ] {
        for n in [1usize, 2, 4] {
            let mut segmenters: Vec<Segmenter> = (0..n).map(|_| open(backend)).collect();
            let group_name = format!("bench-{n}");
            let mut own_backends = Vec::new();
            if group {
                let cfg = BatchConfig { batch_size: n, timeout: Duration::from_millis(20) };
                for s in &mut segmenters {
                    own_backends.push(s.join_batch_group(&group_name, cfg).unwrap());
                }
            }
            // The first frame of each stream is not timed (connection, first batch).
            let start = Instant::now();
            let handles: Vec<_> = segmenters
                .into_iter()
                .map(|mut s| {
                    let frames = frames.clone();
                    std::thread::spawn(move || {
                        let mut lat = Vec::new();
                        for (i, (w, h, px)) in frames.iter().enumerate() {
                            let f = Frame::new(PixelFormat::Rgb, *w, *h, [px, &[], &[]], [w * 3, 0, 0]).unwrap();
                            let t = Instant::now();
                            s.segment(&f, &PostSettings::default()).unwrap();
                            if i > 0 {
                                lat.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                        (lat, s)
                    })
                })
                .collect();
            // The segmenters come back alive, so that the group's counters can be read.
            let (lats, _alive): (Vec<Vec<f64>>, Vec<Segmenter>) = handles.into_iter().map(|h| h.join().unwrap()).unzip();
            let mut lat: Vec<f64> = lats.into_iter().flatten().collect();
            let wall = start.elapsed().as_secs_f64();
            let total = n * frames.len();
            println!(
                "| {what} | {n} | {total} | {wall:.2} | {:.2} | {:.1} | {:.1} |",
                total as f64 / wall,
                percentile(&mut lat, 0.5),
                percentile(&mut lat, 0.95)
            );
            if group {
                let s = batching::stats(&group_name).unwrap();
                println!("|   (group: {} images in {} backend calls, {} batches of > 1) | | | | | | |", s.images, s.backend_calls, s.multi_image_batches);
            }
        }
    }
}
