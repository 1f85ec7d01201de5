//! `segpublish` and `segstream run --publish` against real brokers: each test starts its
//! own `mosquitto` / `redis-server` on a free loopback port (temporary config, killed on
//! drop). The binaries must be installed (the Makefile's DEB_PACKAGES): a missing one
//! fails the test with a message saying so.
//!
//! Frames are pushed through `appsrc ! segpublish` with a `SegmentationMeta` attached
//! directly (no model). `cargo test --test brokers -- --ignored throughput` prints the
//! records/s of docs/BENCHMARKS.md.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use segstream::elements::{SegmentationInfo, SegmentationMeta};
use segstream::segmentation::{Segment, Segmentation, Task};
use segstream::segmenter::Timings;

mod common;
use common::fixtures::{fake_card, init};

const W: u32 = 64;
const H: u32 = 48;

// ------------------------------------------------------------------ brokers

fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install it (apt-get install mosquitto redis-server; see DEB_PACKAGES in the Makefile)"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mqtt,
    Redis,
}

/// A broker process on 127.0.0.1:port, killed on drop.
struct Broker {
    kind: Kind,
    port: u16,
    dir: common::WorkDir,
    child: Option<Child>,
    /// Extra config: persistence (restart tests), password.
    persist: bool,
    password: Option<(String, String)>,
}

impl Broker {
    fn start(kind: Kind, name: &str, persist: bool, password: Option<(&str, &str)>) -> Broker {
        let dir = common::workdir("brokers", name);
        let mut b = Broker {
            kind,
            port: free_port(),
            dir,
            child: None,
            persist,
            password: password.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let d = self.dir.0.clone();
        let mut cmd = match self.kind {
            Kind::Mqtt => {
                let mut conf = format!("listener {} 127.0.0.1\n", self.port);
                if let Some((u, p)) = &self.password {
                    let pw = d.join("passwd");
                    let st = Command::new(find_binary("mosquitto_passwd")).arg("-b").arg("-c").arg(&pw).arg(u).arg(p).status().unwrap();
                    assert!(st.success(), "mosquitto_passwd failed");
                    conf += &format!("allow_anonymous false\npassword_file {}\n", pw.display());
                } else {
                    conf += "allow_anonymous true\n";
                }
                if self.persist {
                    conf += &format!("persistence true\npersistence_location {}/\nmax_queued_messages 0\n", d.display());
                }
                if std::env::var("USER").as_deref() == Ok("root") || unsafe_is_root() {
                    conf += "user root\n";
                }
                let cf = d.join("mosquitto.conf");
                std::fs::write(&cf, conf).unwrap();
                let mut c = Command::new(find_binary("mosquitto"));
                c.arg("-c").arg(cf);
                c
            }
            Kind::Redis => {
                let mut c = Command::new(find_binary("redis-server"));
                c.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
                c.arg("--dir").arg(&d);
                if self.persist {
                    c.args(["--appendonly", "yes", "--appendfsync", "always"]);
                } else {
                    c.args(["--appendonly", "no"]);
                }
                if let Some((_, p)) = &self.password {
                    c.args(["--requirepass", p]);
                }
                c
            }
        };
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start the broker");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "broker did not listen on {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (the broker saves its state) and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let end = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, target: &str) -> String {
        match self.kind {
            Kind::Mqtt => format!("mqtt://127.0.0.1:{}/{target}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}/{target}", self.port),
        }
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ subscribers

/// MQTT subscriber (persistent session, QoS 1) collecting payloads.
struct MqttSub {
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl MqttSub {
    fn start(port: u16, topic: &str) -> MqttSub {
        use rumqttc::{Event, Packet, QoS};
        let mut o = rumqttc::MqttOptions::new(format!("test-sub-{port}"), "127.0.0.1", port);
        o.set_clean_session(false);
        o.set_max_packet_size(64 << 20, 64 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = rumqttc::Client::new(o, 100);
        client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _client = client;
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                match conn.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                        let _ = tx.send(());
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        g.lock().unwrap().push(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                    _ => {}
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("MQTT subscription acknowledged");
        MqttSub { got, stop }
    }

    /// Wait until `n` payloads came (or `limit`), then stop.
    fn collect(self, n: usize, limit: Duration) -> Vec<String> {
        let end = Instant::now() + limit;
        while self.got.lock().unwrap().len() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A little more for duplicates still in flight.
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.got.lock().unwrap().clone()
    }
}

fn redis_records(port: u16, key: &str) -> Vec<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    let v: Vec<(String, Vec<String>)> = redis::cmd("XRANGE").arg(key).arg("-").arg("+").query(&mut c).unwrap();
    v.into_iter()
        .map(|(_, kv)| {
            assert_eq!(kv.len(), 2, "one field a record: {kv:?}");
            assert_eq!(kv[0], "record");
            kv[1].clone()
        })
        .collect()
}

/// Frame numbers of the records (checking each is a frame record).
fn frames(records: &[String]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).expect("JSON record");
            assert_eq!(v["schema"], "segstream.frame/1");
            v["frame"].as_u64().unwrap()
        })
        .collect()
}

// ------------------------------------------------------------------ the pipeline

fn seg() -> Segmentation {
    let mut ids = vec![0u32; (W * H) as usize];
    for y in 0..H {
        for x in 0..W {
            ids[(y * W + x) as usize] = if x < W / 2 { 1 } else { 2 };
        }
    }
    let half = u64::from(W / 2) * u64::from(H);
    let s = |id, label: &str, thing, x| Segment {
        id,
        label_id: id - 1,
        label: label.into(),
        score: 0.9,
        is_thing: thing,
        area: half,
        bbox: [x, 0, W / 2, H],
        track_id: None,
    };
    Segmentation { width: W, height: H, task: Task::Panoptic, ids, segments: vec![s(1, "square", true, 0), s(2, "background", false, W / 2)] }
}

fn buffer(n: u64, seg: &Arc<Segmentation>, labels: &Arc<[segstream::model::Label]>) -> gst::Buffer {
    let mut b = gst::Buffer::with_size((W * H) as usize).unwrap();
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(33 * n));
        let info = SegmentationInfo { frame: n, model: "fake-m2f".into(), timings: Timings::default(), stale: false };
        SegmentationMeta::add(b, seg.clone(), labels.clone(), info).unwrap();
    }
    b
}

struct Run {
    /// The end-of-stream summary, or the error.
    result: Result<gst::Structure, String>,
    elapsed: Duration,
}

/// `appsrc ! segpublish location=URL props...`: `n` frames (each after `pace`), then EOS.
fn publish(url: &str, props: &[(&str, &str)], n: u64, pace: Duration) -> Run {
    publish_chain(url, props, n, pace, false)
}

/// As [`publish`]; with `via_metaenc`, `appsrc ! segmetaenc ! segpublish` (JSON-lines input).
fn publish_chain(url: &str, props: &[(&str, &str)], n: u64, pace: Duration, via_metaenc: bool) -> Run {
    init();
    let p = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("video/x-raw").field("format", "GRAY8").field("width", W as i32).field("height", H as i32).field("framerate", gst::Fraction::new(30, 1)).build())
        .format(gst::Format::Time)
        .block(true)
        .max_buffers(4)
        .build();
    let sink = gst::ElementFactory::make("segpublish").name("pub").build().unwrap();
    sink.set_property("location", url);
    sink.set_property("stream-name", "cam");
    for (k, v) in props {
        sink.set_property_from_str(k, v);
    }
    if via_metaenc {
        let enc = gst::ElementFactory::make("segmetaenc").property("stream-name", "enc").build().unwrap();
        p.add_many([src.upcast_ref(), &enc, &sink]).unwrap();
        gst::Element::link_many([src.upcast_ref(), &enc, &sink]).unwrap();
    } else {
        p.add_many([src.upcast_ref(), &sink]).unwrap();
        src.link(&sink).unwrap();
    }
    let start = Instant::now();
    let bus = p.bus().unwrap();
    if p.set_state(gst::State::Playing).is_err() {
        let r = bus_result(&bus, Duration::from_secs(1));
        let _ = p.set_state(gst::State::Null);
        return Run { result: Err(r.err().unwrap_or_else(|| "state change failed without an error message".into())), elapsed: start.elapsed() };
    }
    let seg = Arc::new(seg());
    let labels: Arc<[segstream::model::Label]> = fake_card().labels.into();
    for i in 0..n {
        if src.push_buffer(buffer(i, &seg, &labels)).is_err() {
            break;
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    let _ = src.end_of_stream();
    let result = bus_result(&bus, Duration::from_secs(60));
    let _ = p.set_state(gst::State::Null);
    Run { result, elapsed: start.elapsed() }
}

fn bus_result(bus: &gst::Bus, limit: Duration) -> Result<gst::Structure, String> {
    let mut summary = None;
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match m.view() {
            gst::MessageView::Error(e) => return Err(e.error().to_string()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name() == "segpublish-summary"
                {
                    summary = Some(s.to_owned());
                }
            }
            gst::MessageView::Eos(_) => return summary.ok_or_else(|| "EOS without a summary".to_string()),
            _ => {}
        }
    }
    Err(format!("no EOS within {limit:?}"))
}

fn get(s: &gst::Structure, f: &str) -> u64 {
    s.get::<u64>(f).unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn mqtt_1000_frames_arrive_in_order() {
    let b = Broker::start(Kind::Mqtt, "mqtt-1000", false, None);
    let sub = MqttSub::start(b.port, "seg/cam");
    let r = publish(&b.url("seg/{stream}"), &[], 1000, Duration::ZERO);
    let s = r.result.expect("published");
    assert_eq!((get(&s, "queued"), get(&s, "published"), get(&s, "dropped")), (1000, 1000, 0), "{s}");
    let got = sub.collect(1000, Duration::from_secs(10));
    assert_eq!(frames(&got), (0..1000).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["stream"], "cam");
    assert_eq!(v["segments"][0]["mask"]["size"], serde_json::json!([H, W]));
}

#[test]
fn redis_1000_frames_arrive_in_order_and_masks_false_drops_masks() {
    let b = Broker::start(Kind::Redis, "redis-1000", false, None);
    let r = publish(&b.url("seg:{stream}"), &[("maxlen", "5000")], 1000, Duration::ZERO);
    let s = r.result.expect("published");
    assert_eq!((get(&s, "published"), get(&s, "dropped")), (1000, 0), "{s}");
    let got = redis_records(b.port, "seg:cam");
    assert_eq!(frames(&got), (0..1000).collect::<Vec<_>>());
    assert!(got[0].contains("\"mask\""));
    // Summary records.
    let r = publish(&format!("{}?masks=false", b.url("sum")), &[], 10, Duration::ZERO);
    r.result.expect("published");
    let got = redis_records(b.port, "sum");
    assert_eq!(got.len(), 10);
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    assert!(v["segments"][0].get("mask").is_none(), "{v}");
}

/// `segmetaenc ! segpublish`: segmetaenc's lines are published unchanged (its stream name
/// stays in the records; segpublish's names the key), and masks=false turns them into summaries.
#[test]
fn after_segmetaenc_lines_are_published_as_they_are() {
    let b = Broker::start(Kind::Redis, "redis-metaenc", false, None);
    let r = publish_chain(&b.url("seg:{stream}"), &[], 200, Duration::ZERO, true);
    let s = r.result.expect("published");
    assert_eq!((get(&s, "published"), get(&s, "dropped")), (200, 0), "{s}");
    let got = redis_records(b.port, "seg:cam");
    assert_eq!(frames(&got), (0..200).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["stream"], "enc");
    assert_eq!(v["segments"][0]["mask"]["size"], serde_json::json!([H, W]));
    let r = publish_chain(&b.url("sum"), &[("masks", "false")], 5, Duration::ZERO, true);
    r.result.expect("published");
    let got = redis_records(b.port, "sum");
    assert_eq!(got.len(), 5);
    let v: serde_json::Value = serde_json::from_str(&got[4]).unwrap();
    assert_eq!(v["frame"], 4);
    assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    assert!(v["segments"][0].get("mask").is_none(), "{v}");
    segstream::schema::FrameRecord::from_json_line(&got[4]).expect("a valid frame record");
}

/// Broker down for 2 s mid-run, restarted on the same port. Returns (frames sent,
/// frames received, summary).
fn restart_run(kind: Kind, overflow: &str) -> (u64, Vec<u64>, gst::Structure) {
    let name = format!("restart-{}-{overflow}", if kind == Kind::Mqtt { "mqtt" } else { "redis" });
    let b = Arc::new(Mutex::new(Broker::start(kind, &name, true, None)));
    let port = b.lock().unwrap().port;
    let sub = (kind == Kind::Mqtt).then(|| MqttSub::start(port, "r/cam"));
    let url = b.lock().unwrap().url(if kind == Kind::Mqtt { "r/{stream}" } else { "r:{stream}" });
    let bb = b.clone();
    let ctl = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        bb.lock().unwrap().stop();
        std::thread::sleep(Duration::from_secs(2));
        bb.lock().unwrap().spawn();
    });
    let n = 1200;
    let r = publish(&url, &[("overflow", overflow), ("queue-size", "100"), ("flush-timeout", "20")], n, Duration::from_millis(3));
    ctl.join().unwrap();
    let s = r.result.expect("published");
    let got = match sub {
        Some(sub) => sub.collect(n as usize, Duration::from_secs(15)),
        None => redis_records(port, "r:cam"),
    };
    (n, frames(&got), s)
}

fn check_block(kind: Kind) {
    let (n, got, s) = restart_run(kind, "block");
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len() as u64, n, "every record arrives ({} received, {} duplicates); {s}", got.len(), got.len() - unique.len());
    assert_eq!(get(&s, "dropped"), 0);
    assert!(get(&s, "reconnects") >= 1, "{s}");
    let duplicates = got.len() as u64 - unique.len() as u64;
    if kind == Kind::Redis {
        // A record is in the stream twice only when its pipeline was sent again after a
        // reconnection, which `resent` counts. (With MQTT the broker may also deliver a
        // message twice to the reconnecting subscriber, which the publisher cannot count.)
        assert!(duplicates <= get(&s, "resent"), "{duplicates} duplicates but resent {}; {s}", get(&s, "resent"));
    }
    eprintln!("block: {duplicates} duplicates, stats {s}");
}

fn check_drop_oldest(kind: Kind) {
    let (n, got, s) = restart_run(kind, "drop-oldest");
    let unique: HashSet<u64> = got.iter().copied().collect();
    let dropped = get(&s, "dropped");
    assert!(dropped > 0, "the queue overflowed while the broker was down: {s}");
    assert_eq!(n - unique.len() as u64, dropped, "loss equals dropped; {s}");
    assert_eq!(get(&s, "unsent"), 0, "{s}");
}

#[test]
fn mqtt_restart_block_loses_nothing() {
    check_block(Kind::Mqtt);
}

#[test]
fn mqtt_restart_drop_oldest_loss_is_dropped() {
    check_drop_oldest(Kind::Mqtt);
}

#[test]
fn redis_restart_block_loses_nothing() {
    check_block(Kind::Redis);
}

#[test]
fn redis_restart_drop_oldest_loss_is_dropped() {
    check_drop_oldest(Kind::Redis);
}

#[test]
fn unreachable_broker_is_one_error_within_connect_timeout() {
    for scheme in ["mqtt", "redis"] {
        let url = format!("{scheme}://127.0.0.1:{}/x", free_port());
        let r = publish(&url, &[("connect-timeout", "2")], 5, Duration::ZERO);
        let e = r.result.expect_err("unreachable");
        assert!(e.contains("cannot connect to broker") && e.contains(&url), "{e}");
        assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    }
}

#[test]
fn wait_for_broker_waits_until_it_starts() {
    let mut b = Broker::start(Kind::Redis, "wait", false, None);
    b.stop();
    let url = b.url("w");
    let port = b.port;
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        b.spawn();
        b
    });
    let r = publish(&url, &[("wait-for-broker", "true"), ("connect-timeout", "0.5")], 3, Duration::ZERO);
    let b = starter.join().unwrap();
    let s = r.result.expect("published once the broker started");
    assert_eq!(get(&s, "published"), 3);
    assert!(r.elapsed >= Duration::from_millis(1400), "{:?}", r.elapsed);
    assert_eq!(redis_records(port, "w").len(), 3);
    drop(b);
}

#[test]
fn bad_url_is_one_error() {
    for (url, needle) in [("ftp://h/x", "unknown scheme"), ("mqtt://h:99999/x", "bad port"), ("mqtts://u:hunter2@h/x", "TLS is not built in")] {
        let e = publish(url, &[], 1, Duration::ZERO).result.expect_err("bad URL");
        assert!(e.contains(needle), "{e}");
        assert!(!e.contains("hunter2"), "password leaked: {e}");
    }
}

#[test]
fn auth_failure_is_one_error_and_credentials_work() {
    for kind in [Kind::Mqtt, Kind::Redis] {
        let b = Broker::start(kind, if kind == Kind::Mqtt { "auth-mqtt" } else { "auth-redis" }, false, Some(("seg", "s3cret")));
        let scheme = if kind == Kind::Mqtt { "mqtt" } else { "redis" };
        // Redis' requirepass is the password of the default user: no user in the URL.
        let user = if kind == Kind::Mqtt { "seg" } else { "" };
        let bad = format!("{scheme}://{user}:wrongpw@127.0.0.1:{}/k", b.port);
        let e = publish(&bad, &[], 1, Duration::ZERO).result.expect_err("auth failure");
        assert!(e.contains("refused the credentials"), "{e}");
        assert!(!e.contains("wrongpw"), "password leaked: {e}");
        let good = format!("{scheme}://{user}:s3cret@127.0.0.1:{}/k", b.port);
        let s = publish(&good, &[], 5, Duration::ZERO).result.expect("good credentials");
        assert_eq!(get(&s, "published"), 5);
    }
}

// ------------------------------------------------------------------ the command

const BIN: &str = env!("CARGO_BIN_EXE_segstream");

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let child = Command::new(BIN).args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    common::wait_with_deadline(child, &format!("segstream {args:?}"), Duration::from_secs(60))
}

fn assert_one_line_error(out: &std::process::Output, needles: &[&str], secret: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr:?}");
    assert!(lines[0].starts_with("segstream: error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "{:?} lacks {n:?}", lines[0]);
    }
    assert!(!stderr.contains(secret), "secret leaked: {stderr}");
}

#[test]
fn cli_publish_bad_url_and_unreachable_broker() {
    let d = common::workdir("brokers", "cli");
    let out = cli(&d, &["run", "--no-overlay", "--publish", "mqtt://u:topsecret@127.0.0.1/a/#"]);
    assert_one_line_error(&out, &["--publish", "wildcards"], "topsecret");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/models/shapes-m2f.onnx");
    assert!(model.is_file(), "the sample model {} is needed", model.display());
    let url = format!("redis://u:topsecret@127.0.0.1:{}/k", free_port());
    let out = cli(&d, &["run", "--no-overlay", "--max-frames", "3", "--publish", &url]);
    assert_one_line_error(&out, &["cannot connect to broker", "redis://***@127.0.0.1"], "topsecret");
}

#[test]
fn cli_publish_delivers_records() {
    let b = Broker::start(Kind::Redis, "cli-ok", false, None);
    let d = common::workdir("brokers", "cli-ok");
    let out = cli(&d, &["run", "--no-overlay", "--max-frames", "5", "--publish", &b.url("{stream}"), "--summary", "sum.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The counters, printed and in the summary JSON.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 of 5 records confirmed, 0 dropped"), "{stdout}");
    let sum: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("sum.json")).unwrap()).unwrap();
    let p = &sum["inputs"][0]["publish"][0];
    assert_eq!((p["queued"].as_u64(), p["published"].as_u64(), p["unsent"].as_u64()), (Some(5), Some(5), Some(0)), "{sum}");
    assert!(p["url"].as_str().unwrap().starts_with("redis://127.0.0.1:"), "{sum}");
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", b.port)).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(frames(&redis_records(b.port, &keys[0])), (0..5).collect::<Vec<_>>());
    // Delivery options ride in the URL (the command has no flag per element property).
    let url = format!("{}?masks=false&overflow=drop-oldest&queue-size=10&flush-timeout=20&wait=true", b.url("opts"));
    let out = cli(&d, &["run", "--no-overlay", "--max-frames", "4", "--publish", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = redis_records(b.port, "opts");
    assert_eq!(frames(&got), (0..4).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert!(v["segments"].as_array().unwrap().iter().all(|s| s.get("mask").is_none()), "{v}");
    let out = cli(&d, &["run", "--no-overlay", "--max-frames", "1", "--publish", &format!("{}?overflow=sometimes", b.url("x"))]);
    assert_one_line_error(&out, &["--publish", "block or drop-oldest"], "topsecret");
}

// ------------------------------------------------------------------ throughput

#[test]
#[ignore = "benchmark: cargo test --test brokers -- --ignored throughput --nocapture"]
fn throughput() {
    let n = 5000;
    for kind in [Kind::Mqtt, Kind::Redis] {
        let b = Broker::start(kind, if kind == Kind::Mqtt { "tp-mqtt" } else { "tp-redis" }, false, None);
        for masks in ["true", "false"] {
            let r = publish(&b.url("tp"), &[("masks", masks), ("queue-size", "10000"), ("maxlen", "100000")], n, Duration::ZERO);
            let s = r.result.expect("published");
            assert_eq!(get(&s, "published"), n);
            println!(
                "{} masks={masks}: {n} records in {:.2} s = {:.0} records/s",
                if kind == Kind::Mqtt { "mqtt qos1" } else { "redis" },
                r.elapsed.as_secs_f64(),
                n as f64 / r.elapsed.as_secs_f64()
            );
        }
    }
}
