//! `segmetaenc`: turns the [`SegmentationMeta`](crate::elements::SegmentationMeta) of each
//! video buffer into one JSON line (`segstream.frame/1`, see `segstream::schema`).
//!
//! Sink: `video/x-raw` with any memory (only the meta is read, never the pixels).
//! Src: `application/x-ndjson`; each output buffer holds exactly one record followed by
//! `\n`, with the input buffer's PTS and duration.
//!
//! Buffers without the meta produce no output (no record, no gap event): a record with
//! no segments would be indistinguishable from "the model found nothing", and frames
//! that `mask2former` did process always carry the meta (even with zero segments).
//!
//! ```text
//! ... ! mask2former model=m.onnx ! segmetaenc ! filesink location=out.jsonl
//! ```

mod imp;

pub(crate) use imp::record_line;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;

glib::wrapper! {
    pub struct SegMetaEnc(ObjectSubclass<imp::SegMetaEnc>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "segmetaenc", gst::Rank::NONE, SegMetaEnc::static_type())
}
