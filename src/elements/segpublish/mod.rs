//! `segpublish`: a sink that publishes the `segstream.frame/1` record of each video
//! buffer's [`SegmentationMeta`](crate::elements::SegmentationMeta), or each JSON line of
//! `segmetaenc` (`application/x-ndjson`, checked to be a frame record), to a message broker:
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

use crate::broker::StatsSnapshot;

/// Name of the end-of-stream element message.
pub const SUMMARY_MESSAGE: &str = "segpublish-summary";

/// The counters as the `stats` property and the summary message carry them.
pub(crate) fn stats_structure(name: &str, s: &StatsSnapshot) -> gst::Structure {
    gst::Structure::builder(name)
        .field("queued", s.queued)
        .field("published", s.published)
        .field("dropped", s.dropped)
        .field("resent", s.resent)
        .field("reconnects", s.reconnects)
        .field("unsent", s.unsent)
        .build()
}

/// The counters back from such a structure (a missing field reads 0).
pub fn stats_from_structure(s: &gst::StructureRef) -> StatsSnapshot {
    let get = |f: &str| s.get::<u64>(f).unwrap_or(0);
    StatsSnapshot {
        queued: get("queued"),
        published: get("published"),
        dropped: get("dropped"),
        resent: get("resent"),
        reconnects: get("reconnects"),
        unsent: get("unsent"),
    }
}

glib::wrapper! {
    pub struct SegPublish(ObjectSubclass<imp::SegPublish>) @extends gstreamer_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "segpublish", gst::Rank::NONE, SegPublish::static_type())
}
