//! `segstream run --rtsp-out [HOST]:PORT/PATH`: serve the overlay stream over RTSP with
//! gst-rtsp-server.
//!
//! The run pipeline gets one more branch after its `tee`: `queue (leaky) ! segoverlay !
//! videoconvert ! appsink`. Each frame reaching the appsink is handed to the `appsrc` of
//! the served media, which every client shares (H.264 encoded once, `x264enc
//! tune=zerolatency`, timestamps taken when the frame is handed over). With no client
//! connected the frames are dropped at the appsink; the branch's queue is leaky, so a
//! slow client never holds back inference or the other outputs. The stream runs at the
//! pace frames are processed: a file input is served as fast as it is segmented.
//!
//! The server has its own GLib main context and thread; [`RtspServer`] stops it when
//! dropped.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use crate::util::lock;

use anyhow::{Context, Result, anyhow, bail};
use gst::glib;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;

/// Where to serve: `[HOST]:PORT/PATH` (host default `0.0.0.0`, all interfaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspOut {
    pub host: String,
    pub port: u16,
    /// Mount path, starting with `/`.
    pub path: String,
}

impl FromStr for RtspOut {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("--rtsp-out {s:?}: {why} (expected [HOST]:PORT/PATH, e.g. :8554/seg)");
        let s = s.strip_prefix("rtsp://").unwrap_or(s);
        let (addr, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => return Err(bad("no /PATH")),
        };
        if path.len() < 2 || path.contains(char::is_whitespace) {
            return Err(bad("empty or invalid PATH"));
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("PORT is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("PORT 0"));
        }
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(RtspOut { host: host.to_string(), port, path: path.to_string() })
    }
}

impl fmt::Display for RtspOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host == "0.0.0.0" { "127.0.0.1" } else { &self.host };
        write!(f, "rtsp://{host}:{}{}", self.port, self.path)
    }
}

/// The media's pipeline: frames from the run pipeline, encoded once for every client.
const MEDIA_LAUNCH: &str = "( appsrc name=src is-live=true format=time do-timestamp=true \
    ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 \
    ! rtph264pay name=pay0 pt=96 config-interval=1 )";

/// A running server (see the module docs). Dropping it stops it.
pub struct RtspServer {
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    /// The server's source in its main context (it holds the server and its socket).
    source: Option<glib::SourceId>,
    url: String,
}

impl RtspServer {
    /// The URL clients open.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(id) = self.source.take()
            && let Some(source) = self.main_loop.context().find_source_by_id(&id)
        {
            source.destroy();
        }
    }
}

/// The served media's source while a client is connected.
type Slot = Arc<Mutex<Option<gst_app::AppSrc>>>;

/// Add the RTSP branch after `tee` in `pipeline` (not yet started) and start the server.
/// Fails with a message naming the address when it cannot listen there.
pub fn serve(pipeline: &gst::Pipeline, tee: &gst::Element, out: &RtspOut) -> Result<RtspServer> {
    let make = |f: &str| gst::ElementFactory::make(f).build().map_err(|_| anyhow!("GStreamer element `{f}` is missing"));
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", 2u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    queue.set_property_from_str("leaky", "downstream");
    let overlay = make("segoverlay")?;
    let convert = make("videoconvert")?;
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder("video/x-raw").field("format", "I420").build())
        .sync(false)
        .max_buffers(2)
        .drop(true)
        .build();
    sink.set_async(false);

    let slot: Slot = Arc::default();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample({
                let slot = slot.clone();
                move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(src) = lock(&slot).clone() else { return Ok(gst::FlowSuccess::Ok) };
                    if src.caps().is_none() {
                        src.set_caps(sample.caps().map(|c| c.to_owned()).as_ref());
                    }
                    if let Some(buf) = sample.buffer() {
                        // The served stream has its own timeline (do-timestamp).
                        let mut b = buf.copy();
                        if let Some(b) = b.get_mut() {
                            b.set_pts(gst::ClockTime::NONE);
                            b.set_dts(gst::ClockTime::NONE);
                        }
                        // A client that left: its media is being torn down, drop the frame.
                        let _ = src.push_buffer(b);
                    }
                    Ok(gst::FlowSuccess::Ok)
                }
            })
            .build(),
    );
    // On the GPU frame path (the run pipeline has `cudaupload`), frames come down to
    // system memory after the overlay.
    let mut chain = vec![queue.clone(), overlay];
    if pipeline.by_name("upload").is_some() {
        chain.push(make("cudadownload")?);
    }
    chain.extend([convert, sink.upcast()]);
    pipeline.add_many(chain.iter())?;
    gst::Element::link_many(chain.iter()).context("cannot link the RTSP branch")?;
    tee.link(&queue).context("cannot link the RTSP branch to the tee")?;

    let server = rtsp::RTSPServer::new();
    server.set_address(&out.host);
    server.set_service(&out.port.to_string());
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_shared(true);
    factory.set_launch(MEDIA_LAUNCH);
    factory.connect_media_configure({
        let slot = slot.clone();
        move |_, media| {
            let Some(bin) = media.element().downcast::<gst::Bin>().ok() else { return };
            let Some(src) = bin.by_name_recurse_up("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) else {
                return;
            };
            *lock(&slot) = Some(src);
            let slot = slot.clone();
            media.connect_unprepared(move |_| {
                *lock(&slot) = None;
            });
        }
    });
    server.mount_points().context("RTSP server without mount points")?.add_factory(&out.path, factory);

    let ctx = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&ctx), false);
    let source = server
        .attach(Some(&ctx))
        .map_err(|e| anyhow!("cannot serve RTSP on {}:{} ({e}): is the port in use?", out.host, out.port))?;
    let thread = std::thread::Builder::new().name("segstream-rtsp".into()).spawn({
        let main_loop = main_loop.clone();
        move || main_loop.run()
    });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            if let Some(s) = ctx.find_source_by_id(&source) {
                s.destroy();
            }
            bail!("cannot start the RTSP server thread: {e}")
        }
    };
    Ok(RtspServer { main_loop, thread: Some(thread), source: Some(source), url: out.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_address_forms() {
        let o: RtspOut = ":8554/seg".parse().unwrap();
        assert_eq!(o, RtspOut { host: "0.0.0.0".into(), port: 8554, path: "/seg".into() });
        assert_eq!(o.to_string(), "rtsp://127.0.0.1:8554/seg");
        let o: RtspOut = "192.168.1.5:9000/cam/1".parse().unwrap();
        assert_eq!((o.host.as_str(), o.port, o.path.as_str()), ("192.168.1.5", 9000, "/cam/1"));
        let o: RtspOut = "rtsp://127.0.0.1:8554/x".parse().unwrap();
        assert_eq!(o.host, "127.0.0.1");
        for bad in [":8554", "8554/seg", ":0/seg", ":70000/seg", ":port/seg", ":8554/"] {
            let e = bad.parse::<RtspOut>().unwrap_err();
            assert!(e.contains("--rtsp-out"), "{bad}: {e}");
        }
    }
}
