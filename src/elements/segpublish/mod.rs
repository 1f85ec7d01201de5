//! `segpublish`: a sink that publishes the `segstream.frame/1` record of each video
//! buffer's [`SegmentationMeta`](crate::elements::SegmentationMeta) to a message broker:
//! MQTT (`mqtt://[user:pass@]host:port/topic`, QoS 1 by default) or Redis Streams
//! (`redis://[user:pass@]host:port/key`, `XADD key MAXLEN ~ N * record <json>`). The
//! records are those `segmetaenc` writes (the same function makes them); `masks=false`
//! publishes summary records (segments without `mask`).
//!
//! Delivery ([`crate::broker`]): a bounded queue (`queue-size`, `overflow=block|drop-oldest`)
//! drained by a publisher thread that reconnects with back-off (0.5 s doubling to 8 s) and
//! re-sends unconfirmed records; at end of stream the queue is flushed (at most
//! `flush-timeout`) before EOS goes on, and a `segpublish-summary` element message carries
//! the counters (also in the `stats` property). A broker that cannot be reached when the
//! element starts is one error within `connect-timeout`, unless `wait-for-broker=true`.
//!
//! ```text
//! ... ! mask2former model=m.onnx ! segpublish location=mqtt://127.0.0.1:1883/seg/{stream}
//! ```

mod imp;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;

/// Name of the end-of-stream element message.
pub const SUMMARY_MESSAGE: &str = "segpublish-summary";

glib::wrapper! {
    pub struct SegPublish(ObjectSubclass<imp::SegPublish>) @extends gstreamer_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "segpublish", gst::Rank::NONE, SegPublish::static_type())
}
