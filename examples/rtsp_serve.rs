//! Serve a video file over RTSP on 127.0.0.1 (used by `tests/rtsp.rs`; also handy to try
//! `segstream run rtsp://...` by hand).
//!
//! ```text
//! cargo run --example rtsp_serve -- PORT FILE [FPS]
//! ```
//!
//! Serves FILE, decoded and re-encoded as H.264 at FPS frames per second (default 10),
//! at `rtsp://127.0.0.1:PORT/test`; prints `ready` once listening.

use gstreamer as gst;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rtsp_serve PORT FILE [FPS]");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("PORT");
    let file = std::fs::canonicalize(&args[2]).expect("FILE");
    let fps: u32 = args.get(3).map(|s| s.parse().expect("FPS")).unwrap_or(10);
    gst::init().expect("gst init");

    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let factory = rtsp::RTSPMediaFactory::new();
    // One shared media: every client sees the same stream (and the test's client
    // reconnects to a running one).
    factory.set_shared(true);
    factory.set_launch(&format!(
        "( filesrc location=\"{}\" ! qtdemux ! decodebin ! videoconvert ! videorate \
         ! video/x-raw,framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} \
         ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        file.display()
    ));
    server
        .mount_points()
        .expect("mount points")
        .add_factory("/test", factory);
    let main_loop = gst::glib::MainLoop::new(None, false);
    let _id = server.attach(None).expect("cannot listen (port in use?)");
    println!("ready");
    main_loop.run();
}
