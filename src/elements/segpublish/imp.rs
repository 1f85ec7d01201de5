use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gstreamer as gst;
use gstreamer_base as gst_base;

use crate::broker::{BrokerUrl, Overflow, PublishOptions, Publisher, StatsSnapshot};
use crate::elements::meta::SegmentationMeta;
use crate::elements::segmetaenc::record_line;
use crate::schema::FrameRecord;
use crate::util::lock;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("segpublish", gst::DebugColorFlags::empty(), Some("Frame records to a message broker"))
});

const DEFAULT_QUEUE_SIZE: u32 = 1000;
const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
const DEFAULT_FLUSH_TIMEOUT: f64 = 10.0;

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    stream_name: Option<String>,
    masks: bool,
    qos: u32,
    maxlen: u64,
    queue_size: u32,
    overflow: Overflow,
    connect_timeout: f64,
    flush_timeout: f64,
    wait_for_broker: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            stream_name: None,
            masks: true,
            qos: 1,
            maxlen: crate::broker::DEFAULT_MAXLEN,
            queue_size: DEFAULT_QUEUE_SIZE,
            overflow: Overflow::Block,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            wait_for_broker: false,
        }
    }
}

struct State {
    publisher: Arc<Publisher>,
    masks: bool,
    stream: String,
    flush_timeout: Duration,
    /// Set once the queue was flushed at EOS.
    finished: bool,
    /// The input is `application/x-ndjson` (after `segmetaenc`): buffers are record lines.
    ndjson: bool,
    /// The end of a line split across buffers (JSON input from a source that does not
    /// push one line per buffer).
    partial: Vec<u8>,
}

/// What to publish of one JSON line of the input: the line itself, checked to be a frame
/// record, or its summary (masks left out). Blank lines give `None`.
pub(crate) fn record_from_json_line(line: &[u8], masks: bool) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("input line is not UTF-8: {e}"))?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut record = FrameRecord::from_json_line(text).map_err(|e| {
        let start: String = text.chars().take(60).collect();
        format!("{e} (line starts {start:?})")
    })?;
    if masks {
        return Ok(Some(text.to_string()));
    }
    for s in &mut record.segments {
        s.mask = Default::default();
    }
    Ok(Some(record.to_json_line()))
}

#[derive(Default)]
pub struct SegPublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Counters of the last run (after stop).
    last: Mutex<StatsSnapshot>,
}

impl SegPublish {
    fn stream_name(&self) -> String {
        lock(&self.settings).stream_name.clone().unwrap_or_else(|| self.obj().name().to_string())
    }

    fn stats(&self) -> StatsSnapshot {
        match lock(&self.state).as_ref() {
            Some(s) => s.publisher.stats(),
            None => *lock(&self.last),
        }
    }

    fn stats_structure(&self, name: &str) -> gst::Structure {
        super::stats_structure(name, &self.stats())
    }

    /// Flush the queue (bounded by `flush-timeout`) and post the summary; once.
    fn finish(&self) {
        let (publisher, timeout) = {
            let mut st = lock(&self.state);
            match st.as_mut() {
                Some(s) if !s.finished => {
                    s.finished = true;
                    (s.publisher.clone(), s.flush_timeout)
                }
                _ => return,
            }
        };
        let stats = publisher.finish(timeout);
        *lock(&self.last) = stats;
        if stats.unsent > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ["{}: {} records not confirmed within flush-timeout {:.1} s", publisher.url().redacted(), stats.unsent, timeout.as_secs_f64()]
            );
        }
        let s = self.stats_structure(super::SUMMARY_MESSAGE);
        gst::info!(CAT, imp = self, "end of stream: {s}");
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }
}

impl SegPublish {
    /// JSON-lines input: every complete line is one record.
    fn render_json(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ["segpublish: cannot map an input buffer"]);
            gst::FlowError::Error
        })?;
        let (publisher, masks, lines) = {
            let mut st = lock(&self.state);
            let s = st.as_mut().ok_or(gst::FlowError::Flushing)?;
            s.partial.extend_from_slice(map.as_slice());
            let Some(end) = s.partial.iter().rposition(|&b| b == b'\n') else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let rest = s.partial.split_off(end + 1);
            let complete = std::mem::replace(&mut s.partial, rest);
            (s.publisher.clone(), s.masks, complete)
        };
        for line in lines.split(|&b| b == b'\n') {
            match record_from_json_line(line, masks) {
                Ok(Some(record)) => publisher.send(record),
                Ok(None) => {}
                Err(e) => {
                    gst::element_imp_error!(self, gst::StreamError::Decode, ["segpublish: {e}"]);
                    return Err(gst::FlowError::Error);
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// At EOS: a last line without its newline is still a record.
    fn publish_partial_line(&self) {
        let (publisher, masks, line) = {
            let mut st = lock(&self.state);
            let Some(s) = st.as_mut() else { return };
            if !s.ndjson || s.partial.is_empty() {
                return;
            }
            (s.publisher.clone(), s.masks, std::mem::take(&mut s.partial))
        };
        match record_from_json_line(&line, masks) {
            Ok(Some(record)) => publisher.send(record),
            Ok(None) => {}
            Err(e) => gst::element_imp_warning!(self, gst::StreamError::Decode, ["segpublish: last line at end of stream: {e}"]),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegPublish {
    const NAME: &'static str = "GstSegPublish";
    type Type = super::SegPublish;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for SegPublish {
    fn constructed(&self) {
        self.parent_constructed();
        // Records go out as they come: no clock sync.
        self.obj().set_sync(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Broker URL")
                    .blurb("mqtt://[user:pass@]host:port/topic[?qos=0|1&masks=false] or redis://[user:pass@]host:port/key[?maxlen=N&masks=false]; also ?overflow=, queue-size=, connect-timeout=, flush-timeout=, wait= (override the properties of those names; wait = wait-for-broker); {stream} is replaced by stream-name; credentials may instead come from SEGSTREAM_BROKER_USER / SEGSTREAM_BROKER_PASSWORD; mqtts:// and rediss:// are refused (TLS not built in)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("stream-name")
                    .nick("Stream name")
                    .blurb("Value of the records' `stream` field and of {stream} in the topic / key (default: the element's name)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("masks")
                    .nick("Masks")
                    .blurb("Include each segment's mask (COCO RLE); false: summary records (URL option masks= overrides)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("qos")
                    .nick("MQTT QoS")
                    .blurb("MQTT quality of service, 0 (at most once) or 1 (at least once; URL option qos= overrides)")
                    .minimum(0)
                    .maximum(1)
                    .default_value(1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("maxlen")
                    .nick("Redis MAXLEN")
                    .blurb("Redis: XADD key MAXLEN ~ N (approximate stream length cap; URL option maxlen= overrides)")
                    .minimum(1)
                    .default_value(crate::broker::DEFAULT_MAXLEN)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("queue-size")
                    .nick("Queue size")
                    .blurb("Records queued in memory for the publisher thread, at most")
                    .minimum(1)
                    .maximum(10_000_000)
                    .default_value(DEFAULT_QUEUE_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("overflow")
                    .nick("Overflow")
                    .blurb("When the queue is full: block (wait; nothing is lost) or drop-oldest (counted in stats' dropped)")
                    .default_value(Some("block"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("connect-timeout")
                    .nick("Connect timeout")
                    .blurb("Seconds to wait for the broker when starting (and for each reconnection attempt)")
                    .minimum(0.1)
                    .maximum(3600.0)
                    .default_value(DEFAULT_CONNECT_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("flush-timeout")
                    .nick("Flush timeout")
                    .blurb("Seconds to wait at end of stream for queued records to be confirmed before EOS goes on")
                    .minimum(0.0)
                    .maximum(3600.0)
                    .default_value(DEFAULT_FLUSH_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("wait-for-broker")
                    .nick("Wait for broker")
                    .blurb("When starting, wait (with back-off) until the broker answers instead of failing after connect-timeout")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Counters: queued, published (confirmed), dropped (overflow=drop-oldest), resent (after reconnections; may arrive twice), reconnects, unsent (left at the flush timeout)")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "location" => s.location = value.get::<Option<String>>().unwrap_or(None),
            "stream-name" => s.stream_name = value.get::<Option<String>>().unwrap_or(None),
            "masks" => s.masks = value.get().unwrap_or(true),
            "qos" => s.qos = value.get().unwrap_or(1),
            "maxlen" => s.maxlen = value.get().unwrap_or(crate::broker::DEFAULT_MAXLEN),
            "queue-size" => s.queue_size = value.get().unwrap_or(DEFAULT_QUEUE_SIZE),
            "overflow" => {
                let v = value.get::<Option<String>>().unwrap_or(None).unwrap_or_else(|| "block".into());
                match v.parse() {
                    Ok(o) => s.overflow = o,
                    Err(e) => gst::warning!(CAT, imp = self, "{e}; keeping {:?}", s.overflow),
                }
            }
            "connect-timeout" => s.connect_timeout = value.get().unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            "flush-timeout" => s.flush_timeout = value.get().unwrap_or(DEFAULT_FLUSH_TIMEOUT),
            "wait-for-broker" => s.wait_for_broker = value.get().unwrap_or(false),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats_structure("stats").to_value();
        }
        if pspec.name() == "stream-name" {
            return self.stream_name().to_value();
        }
        let s = lock(&self.settings);
        match pspec.name() {
            // Never the credentials.
            "location" => s.location.as_deref().map(crate::broker::redact).to_value(),
            "masks" => s.masks.to_value(),
            "qos" => s.qos.to_value(),
            "maxlen" => s.maxlen.to_value(),
            "queue-size" => s.queue_size.to_value(),
            "overflow" => s.overflow.as_str().to_value(),
            "connect-timeout" => s.connect_timeout.to_value(),
            "flush-timeout" => s.flush_timeout.to_value(),
            "wait-for-broker" => s.wait_for_broker.to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for SegPublish {}

impl ElementImpl for SegPublish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation record publisher",
                "Sink/Network/Metadata",
                "Publishes the SegmentationMeta of each video buffer as a segstream.frame/1 record to MQTT or Redis Streams",
                "segstream developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Video with `SegmentationMeta` (records made here), or the JSON lines of
            // `segmetaenc` (published as they are, or as summaries with masks=false).
            let mut caps = crate::elements::any_video_caps();
            caps.make_mut().append(gst::Caps::new_empty_simple("application/x-ndjson"));
            vec![gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).expect("valid sink template")]
        });
        TEMPLATES.as_ref()
    }
}

// gstreamer-rs' BaseSink trampolines catch panics of these functions (an element error,
// not an unwind into C).
impl BaseSinkImpl for SegPublish {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = lock(&self.settings).clone();
        let location = s
            .location
            .clone()
            .ok_or_else(|| gst::error_msg!(gst::ResourceError::Settings, ("segpublish: no location (broker URL) set")))?;
        let url = BrokerUrl::parse(&location).map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        // Options in the URL (how `run --publish` sets them) override the properties.
        let opts = PublishOptions {
            queue_size: url.queue_size.unwrap_or(s.queue_size as usize),
            overflow: url.overflow.unwrap_or(s.overflow),
            connect_timeout: url.connect_timeout.unwrap_or(Duration::from_secs_f64(s.connect_timeout)),
            wait_for_broker: url.wait_for_broker.unwrap_or(s.wait_for_broker),
            qos: s.qos as u8,
            maxlen: s.maxlen,
        };
        let stream = self.stream_name();
        let publisher = Publisher::start(&url, &stream, &opts).map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{e}")))?;
        gst::info!(CAT, imp = self, "publishing to {}", publisher.url().redacted());
        *lock(&self.state) = Some(State {
            publisher: Arc::new(publisher),
            masks: url.masks.unwrap_or(s.masks),
            stream,
            flush_timeout: url.flush_timeout.unwrap_or(Duration::from_secs_f64(s.flush_timeout)),
            finished: false,
            ndjson: false,
            partial: Vec::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = lock(&self.state).take() {
            s.publisher.shutdown();
            *lock(&self.last) = s.publisher.stats();
        }
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let ndjson = caps.structure(0).is_some_and(|s| s.name() == "application/x-ndjson");
        if let Some(st) = lock(&self.state).as_mut() {
            st.ndjson = ndjson;
        }
        gst::debug!(CAT, imp = self, "input {}", if ndjson { "JSON lines" } else { "video with meta" });
        self.parent_set_caps(caps)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        if lock(&self.state).as_ref().is_some_and(|s| s.ndjson) {
            return self.render_json(buffer);
        }
        let Some(meta) = buffer.meta::<SegmentationMeta>() else {
            gst::trace!(CAT, imp = self, "buffer {:?} without SegmentationMeta: no record", buffer.pts());
            return Ok(gst::FlowSuccess::Ok);
        };
        let (publisher, masks, stream) = {
            let st = lock(&self.state);
            let s = st.as_ref().ok_or(gst::FlowError::Flushing)?;
            (s.publisher.clone(), s.masks, s.stream.clone())
        };
        publisher.send(record_line(&meta, buffer.pts(), &stream, masks));
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            self.publish_partial_line();
            self.finish();
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = lock(&self.state).as_ref() {
            s.publisher.interrupt();
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = lock(&self.state).as_ref() {
            s.publisher.resume();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::record_from_json_line;

    const LINE: &str = r#"{"schema":"segstream.frame/1","stream":"a","frame":3,"pts":100,"width":4,"height":2,"model":"m","task":"panoptic","timings":{"preprocess_ms":1.0,"inference_ms":2.0,"postprocess_ms":3.0},"stale":false,"segments":[{"id":1,"label_id":0,"label":"circle","score":0.9,"is_thing":true,"area":2,"bbox":[0,0,1,2],"mask":{"size":[2,4],"counts":"02N0"}}]}"#;

    #[test]
    fn a_record_line_passes_unchanged_or_as_its_summary() {
        assert_eq!(record_from_json_line(format!("{LINE}\r").as_bytes(), true).unwrap().as_deref(), Some(LINE));
        let summary = record_from_json_line(LINE.as_bytes(), false).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(v["frame"], 3);
        assert_eq!(v["segments"][0]["label"], "circle");
        assert!(v["segments"][0].get("mask").is_none(), "{summary}");
        assert_eq!(record_from_json_line(b"  ", true).unwrap(), None);
    }

    #[test]
    fn a_line_that_is_not_a_frame_record_is_an_error_naming_it() {
        let e = record_from_json_line(b"{\"hello\": 1}", true).unwrap_err();
        assert!(e.contains("invalid frame record") && e.contains("hello"), "{e}");
        let e = record_from_json_line(LINE.replace("segstream.frame/1", "other/2").as_bytes(), true).unwrap_err();
        assert!(e.contains("\"other/2\""), "{e}");
        let e = record_from_json_line(&[0xff, 0xfe], true).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }
}
