use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::util::lock;
use crate::elements::meta::SegmentationMeta;
use crate::schema::FrameRecord;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segmetaenc",
        gst::DebugColorFlags::empty(),
        Some("Segmentation meta to JSON Lines"),
    )
});

pub const NDJSON_CAPS: &str = "application/x-ndjson";

/// The `segstream.frame/1` record (one JSON line, no newline) of a buffer's meta: what
/// `segmetaenc` writes and `segpublish` publishes. `masks` false: a summary record.
pub(crate) fn record_line(
    meta: &gst::MetaRef<'_, SegmentationMeta>,
    pts: Option<gst::ClockTime>,
    stream: &str,
    masks: bool,
) -> String {
    let info = meta.info().frame_info(stream, pts.map(|t| t.nseconds()));
    FrameRecord::with_masks(meta.segmentation(), &info, masks).to_json_line()
}

#[derive(Debug, Clone, Default)]
struct Settings {
    /// `None`: the element's name.
    stream_name: Option<String>,
}

/// Per-stream state: created on the first buffer after start, dropped on stop.
#[derive(Debug, Default)]
struct State {
    records: u64,
    skipped: u64,
}

pub struct SegMetaEnc {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl SegMetaEnc {
    fn stream_name(&self) -> String {
        lock(&self.settings)
            .stream_name
            .clone()
            .unwrap_or_else(|| self.obj().name().to_string())
    }

    fn sink_chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(meta) = buffer.meta::<SegmentationMeta>() else {
            gst::trace!(
                CAT,
                imp = self,
                "buffer {:?} without SegmentationMeta: no record",
                buffer.pts()
            );
            lock(&self.state).get_or_insert_with(State::default).skipped += 1;
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut line = record_line(&meta, buffer.pts(), &self.stream_name(), true);
        line.push('\n');
        let mut out = gst::Buffer::from_mut_slice(line.into_bytes());
        if let Some(out) = out.get_mut() {
            // (always: the buffer was just created)
            out.set_pts(buffer.pts());
            out.set_duration(buffer.duration());
        }
        lock(&self.state).get_or_insert_with(State::default).records += 1;
        self.srcpad.push(out)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(_) => {
                // Video caps in, ndjson out: never forward the video caps.
                let caps = gst::Caps::builder(NDJSON_CAPS).build();
                self.srcpad.push_event(gst::event::Caps::new(&caps))
            }
            gst::EventView::FlushStop(_) => {
                if let Some(s) = lock(&self.state).as_mut() {
                    *s = State::default();
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            gst::EventView::Eos(_) => {
                if let Some(s) = lock(&self.state).as_ref() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "EOS after {} records ({} buffers without meta)",
                        s.records,
                        s.skipped
                    );
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Allocation(q) => {
                // We only read metas: any layout works, so upstream may use GstVideoMeta
                // strides; don't forward a video allocation query to a JSON sink.
                q.add_allocation_meta::<gst_video::VideoMeta>(None);
                true
            }
            gst::QueryViewMut::Caps(q) => {
                let templ = pad.pad_template_caps();
                let caps = match q.filter() {
                    Some(f) => f.intersect_with_mode(&templ, gst::CapsIntersectMode::First),
                    None => templ,
                };
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let templ = pad.pad_template_caps();
                let caps = match q.filter() {
                    Some(f) => f.intersect_with_mode(&templ, gst::CapsIntersectMode::First),
                    None => templ,
                };
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegMetaEnc {
    const NAME: &'static str = "GstSegMetaEnc";
    type Type = super::SegMetaEnc;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                SegMetaEnc::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                SegMetaEnc::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                SegMetaEnc::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .query_function(|pad, parent, query| {
                SegMetaEnc::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .build();
        SegMetaEnc {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
        }
    }
}

impl ObjectImpl for SegMetaEnc {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("add sink pad");
        obj.add_pad(&self.srcpad).expect("add src pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("stream-name")
                    .nick("Stream name")
                    .blurb("Value of the records' `stream` field (default: the element's name)")
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.name() == "stream-name" {
            lock(&self.settings).stream_name = value.get::<Option<String>>().unwrap_or(None);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stream-name" => self.stream_name().to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for SegMetaEnc {}

impl ElementImpl for SegMetaEnc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation meta encoder",
                "Encoder/Metadata",
                "Writes the SegmentationMeta of each video buffer as one JSON line (segstream.frame/1, masks as COCO RLE); buffers without it produce nothing",
                "segstream developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = crate::elements::any_video_caps();
            let src_caps = gst::Caps::builder(NDJSON_CAPS).build();
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &sink_caps)
                    .expect("valid sink template"),
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &src_caps)
                    .expect("valid src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            *lock(&self.state) = Some(State::default());
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            *lock(&self.state) = None;
        }
        Ok(ret)
    }
}
