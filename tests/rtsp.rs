//! Live RTSP input with reconnection, on loopback only: the sample is served with
//! gst-rtsp-server (`examples/rtsp_serve.rs`) on 127.0.0.1, `segstream run rtsp://...`
//! reads it, the server is killed and restarted mid-stream, and the JSON Lines must go on
//! after the restart with strictly increasing pts. Needs the ONNX Runtime library (skips
//! with `SKIPPED: <reason>` otherwise); uses the tiny contract model so that it is fast.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example server binary, built next to the test binaries by cargo (`cargo test`
/// builds examples); built here if missing.
fn server_bin() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples/rtsp_serve");
    if !bin.is_file() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--example", "rtsp_serve"])
            .current_dir(repo())
            .status()
            .expect("cargo build --example rtsp_serve");
        assert!(st.success());
    }
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the server and wait for its `ready` line.
fn serve(port: u16) -> Child {
    let mut child = Command::new(server_bin())
        .args([&port.to_string(), repo().join("samples/shapes.mp4").to_str().unwrap(), "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rtsp_serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "rtsp_serve did not start");
    child
}

/// pts of every complete record in `path`.
fn pts_of(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("pts").and_then(|p| p.as_u64()))
        .collect()
}

fn wait_for_records(path: &Path, n: usize, limit: Duration, what: &str) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let p = pts_of(path);
        if p.len() >= n {
            return p;
        }
        assert!(start.elapsed() < limit, "{what}: only {} records after {limit:?}", p.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rtsp_input_reconnects_after_the_server_restarts() {
    if let Err(e) = segstream::backend::onnxruntime::ensure_runtime() {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED: rtsp_input_reconnects_after_the_server_restarts: {e}");
        return;
    }
    let d = common::workdir("rtsp", "reconnect");
    let port = free_port();
    let mut server = serve(port);
    let json = d.join("out.jsonl");
    let url = format!("rtsp://127.0.0.1:{port}/test");
    let seg = Command::new(BIN)
        .args([
            "run",
            &url,
            "--json",
            json.to_str().unwrap(),
            "--no-overlay",
            "--model",
            repo().join("tests/data/tiny_contract.onnx").to_str().unwrap(),
            "--timeout",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run segstream");
    let partial = d.join("out.jsonl.partial");
    let before = wait_for_records(&partial, 10, Duration::from_secs(30), "before the restart");

    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut server = serve(port);
    let after = wait_for_records(&partial, before.len() + 10, Duration::from_secs(30), "after the restart");

    // SIGINT: a live run finishes its outputs and renames them.
    // SAFETY: plain kill(2) on the child's pid.
    unsafe { libc::kill(seg.id() as libc::pid_t, libc::SIGINT) };
    let out = common::wait_with_deadline(seg, "segstream run rtsp://", Duration::from_secs(20));
    server.kill().unwrap();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "segstream failed: {stderr}\n{stdout}");
    assert!(stderr.contains("source dropped"), "no drop warning: {stderr}");
    assert!(stderr.contains("source reconnected"), "no reconnect line: {stderr}");
    assert!(stdout.contains("reconnected 1 time"), "summary: {stdout}");

    let pts = pts_of(&json);
    assert!(pts.len() >= after.len(), "{} records in the final file, {} seen before", pts.len(), after.len());
    for w in pts.windows(2) {
        assert!(w[1] > w[0], "pts not increasing: {} then {}", w[0], w[1]);
    }
}

/// `--rtsp-out`: segstream reads the sample over RTSP (loopback) and serves its overlay
/// stream at another RTSP address; a client decodes frames of the input's size from it.
#[test]
fn rtsp_out_serves_the_overlay_stream() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    if let Err(e) = segstream::backend::onnxruntime::ensure_runtime() {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED: rtsp_out_serves_the_overlay_stream: {e}");
        return;
    }
    gst::init().unwrap();
    let d = common::workdir("rtsp", "serve");
    let port_in = free_port();
    let mut server = serve(port_in);
    let port_out = free_port();
    let json = d.join("out.jsonl");
    let mut seg = Command::new(BIN)
        .args([
            "run",
            &format!("rtsp://127.0.0.1:{port_in}/test"),
            "--json",
            json.to_str().unwrap(),
            "--no-overlay",
            "--rtsp-out",
            &format!("127.0.0.1:{port_out}/seg"),
            "--model",
            repo().join("tests/data/tiny_contract.onnx").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run segstream");
    // The server line comes before the first frame.
    let mut stderr = BufReader::new(seg.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("serving the overlay at") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
            let _ = seg.kill();
            let _ = server.kill();
            panic!("no 'serving the overlay' line: {seen}");
        }
        seen += &line;
    }
    assert!(seen.contains(&format!("rtsp://127.0.0.1:{port_out}/seg")), "{seen}");
    // Keep draining stderr so that segstream never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });

    let client = gst::parse::launch(&format!(
        "rtspsrc location=rtsp://127.0.0.1:{port_out}/seg latency=0 protocols=tcp ! rtph264depay ! avdec_h264 \
         ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = client.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    client.set_state(gst::State::Playing).unwrap();
    let mut sizes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while sizes.len() < 5 && Instant::now() < deadline {
        if let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(1)) {
            let st = s.caps().unwrap().structure(0).unwrap().to_owned();
            sizes.push((st.get::<i32>("width").unwrap(), st.get::<i32>("height").unwrap()));
        }
    }
    client.set_state(gst::State::Null).unwrap();

    // SAFETY: plain kill(2) on the child's pid.
    unsafe { libc::kill(seg.id() as libc::pid_t, libc::SIGINT) };
    let out = common::wait_with_deadline(seg, "segstream run --rtsp-out", Duration::from_secs(20));
    server.kill().unwrap();
    let _ = server.wait();
    let rest = drain.join().unwrap();
    assert!(sizes.len() >= 5, "the client decoded {} frames from --rtsp-out; segstream: {seen}{rest}", sizes.len());
    assert!(sizes.iter().all(|&s| s == (640, 360)), "frame sizes {sizes:?}");
    assert!(out.status.success(), "segstream failed: {seen}{rest}");
    assert!(!pts_of(&json).is_empty(), "the JSON output was written too");
}
