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
    /// Set once the queue was flushed at EOS.
    finished: bool,
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
        let s = self.stats();
        gst::Structure::builder(name)
            .field("queued", s.queued)
            .field("published", s.published)
            .field("dropped", s.dropped)
            .field("resent", s.resent)
            .field("reconnects", s.reconnects)
            .field("unsent", s.unsent)
            .build()
    }

    /// Flush the queue (bounded by `flush-timeout`) and post the summary; once.
    fn finish(&self) {
        let publisher = {
            let mut st = lock(&self.state);
            match st.as_mut() {
                Some(s) if !s.finished => {
                    s.finished = true;
                    s.publisher.clone()
                }
                _ => return,
            }
        };
        let timeout = Duration::from_secs_f64(lock(&self.settings).flush_timeout);
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
                    .blurb("mqtt://[user:pass@]host:port/topic[?qos=0|1&masks=false] or redis://[user:pass@]host:port/key[?maxlen=N&masks=false]; {stream} is replaced by stream-name; credentials may instead come from SEGSTREAM_BROKER_USER / SEGSTREAM_BROKER_PASSWORD; mqtts:// and rediss:// are refused (TLS not built in)")
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
            "overflow" => match s.overflow {
                Overflow::Block => "block",
                Overflow::DropOldest => "drop-oldest",
            }
            .to_value(),
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
            let caps = crate::elements::any_video_caps();
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
        let opts = PublishOptions {
            queue_size: s.queue_size as usize,
            overflow: s.overflow,
            connect_timeout: Duration::from_secs_f64(s.connect_timeout),
            wait_for_broker: s.wait_for_broker,
            qos: s.qos as u8,
            maxlen: s.maxlen,
        };
        let stream = self.stream_name();
        let publisher = Publisher::start(&url, &stream, &opts).map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{e}")))?;
        gst::info!(CAT, imp = self, "publishing to {}", publisher.url().redacted());
        *lock(&self.state) = Some(State { publisher: Arc::new(publisher), masks: url.masks.unwrap_or(s.masks), stream, finished: false });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = lock(&self.state).take() {
            s.publisher.shutdown();
            *lock(&self.last) = s.publisher.stats();
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
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
