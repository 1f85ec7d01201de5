use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer_base as gst_base;
use gstreamer_video as gst_video;

use super::ColorBySetting;
use crate::cuda::memory::{self as cuda_memory, ElementContext, GstCuda};
use crate::cuda::stages::DeviceIds;
use crate::elements::meta::{SegmentationMeta, scale_segmentation};
use crate::model::Label;
use crate::segmentation::Segmentation;
use crate::util::{lock, panic_message};
use crate::frame::{FrameMut, PixelFormat};
use crate::render::{self, OverlayOptions};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segoverlay",
        gst::DebugColorFlags::empty(),
        Some("Segmentation overlay"),
    )
});

const DEFAULT_ALPHA: f64 = 0.5;
const DEFAULT_CONTOURS: bool = true;
/// Labels on: an overlay people can read (class and score inside each segment). The
/// library's `OverlayOptions::default()` leaves them off, as the CUDA overlay draws.
const DEFAULT_LABELS: bool = true;

#[derive(Debug, Clone, Copy)]
struct Settings {
    alpha: f64,
    contours: bool,
    labels: bool,
    color_by: ColorBySetting,
    cuda_device_id: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: DEFAULT_ALPHA,
            contours: DEFAULT_CONTOURS,
            labels: DEFAULT_LABELS,
            color_by: ColorBySetting::default(),
            cuda_device_id: -1,
        }
    }
}

impl Settings {
    fn options(&self) -> OverlayOptions {
        OverlayOptions {
            alpha: self.alpha as f32,
            contours: self.contours,
            labels: self.labels,
            color_by: self.color_by.into(),
        }
    }
}

/// Per-stream state: the negotiated video, set in `set_caps`, dropped in `stop`.
struct State {
    info: gst_video::VideoInfo,
    format: PixelFormat,
    /// The caps are CUDA memory.
    cuda: bool,
}

#[derive(Default)]
pub struct SegOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The CUDA context shared with the neighbours (CUDA memory caps).
    cuda: ElementContext,
    /// Why the last CUDA frame was composited through system memory (logged on change).
    copied_why: Mutex<Option<String>>,
}

#[glib::object_subclass]
impl ObjectSubclass for SegOverlay {
    const NAME: &'static str = "GstSegOverlay";
    type Type = super::SegOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for SegOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecDouble::builder("alpha")
                    .nick("Alpha")
                    .blurb("Opacity of the segment colours (0 = invisible, 1 = opaque)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_ALPHA)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("contours")
                    .nick("Contours")
                    .blurb("Draw the outline of every segment (things and stuff) in its colour, fully opaque")
                    .default_value(DEFAULT_CONTOURS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("labels")
                    .nick("Labels")
                    .blurb("Draw a label with the class name and score (e.g. \"circle 0.87\") inside each segment, white on a dark box, the 8x8 font scaled by round(frame height / 360); on by default (it was off), false = masks and contours only. On CUDA memory the label boxes alone are copied to the host, drawn and copied back; the frame stays on the device")
                    .default_value(DEFAULT_LABELS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("color-by", ColorBySetting::default())
                    .nick("Colour by")
                    .blurb("Colour segments by class or by instance")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("cuda-device-id")
                    .nick("CUDA device id")
                    .blurb("CUDA device of the context shared with neighbouring CUDA elements when frames are in CUDA memory (composited on the device with the id map mask2former's GPU stages left there; through system memory otherwise); -1 = device 0, or a neighbour's")
                    .minimum(-1)
                    .maximum(i32::MAX)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "alpha" => s.alpha = value.get().unwrap_or(DEFAULT_ALPHA),
            "contours" => s.contours = value.get().unwrap_or(DEFAULT_CONTOURS),
            "labels" => s.labels = value.get().unwrap_or(DEFAULT_LABELS),
            "color-by" => s.color_by = value.get().unwrap_or_default(),
            "cuda-device-id" => s.cuda_device_id = value.get().unwrap_or(-1),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = *lock(&self.settings);
        match pspec.name() {
            "alpha" => s.alpha.to_value(),
            "contours" => s.contours.to_value(),
            "labels" => s.labels.to_value(),
            "color-by" => s.color_by.to_value(),
            "cuda-device-id" => s.cuda_device_id.to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for SegOverlay {}

impl ElementImpl for SegOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation overlay",
                "Filter/Effect/Video",
                "Draws the SegmentationMeta of each frame (masks, contours, labels) onto the frame; frames without it pass untouched",
                "segstream developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::elements::video_filter_templates);
        TEMPLATES.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        let id = lock(&self.settings).cuda_device_id;
        self.cuda.set_context(self.obj().upcast_ref(), context, id);
        self.parent_set_context(context)
    }
}

impl SegOverlay {
    /// Composite a CUDA frame on the device with the id map the GPU stages left there.
    /// `Ok(false)`: not possible for this frame (no device map, another size or another
    /// context), the caller composites through system memory.
    #[allow(clippy::too_many_arguments)]
    fn overlay_on_device(
        &self,
        buf: &mut gst::BufferRef,
        info: &gst_video::VideoInfo,
        format: PixelFormat,
        seg: &Segmentation,
        labels: &[Label],
        opts: &OverlayOptions,
        device: Option<&Arc<dyn DeviceIds>>,
    ) -> crate::Result<bool> {
        let why = match device {
            None => Some("the result has no id map on the device".to_string()),
            Some(d) if d.size() != (info.width(), info.height()) => Some(format!("the device id map is {:?}, the frame {}x{}", d.size(), info.width(), info.height())),
            Some(_) => None,
        };
        let mapped = match (why, device) {
            (None, Some(d)) => match cuda_memory::map_device(buf, info, format, true, d.cu_context())? {
                Ok(m) => Ok((m, d)),
                Err(why) => Err(why.to_string()),
            },
            (why, _) => Err(why.unwrap_or_default()),
        };
        match mapped {
            Ok((mapping, d)) => {
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| d.overlay(mapping.frame(), seg, labels, opts)));
                drop(mapping);
                *lock(&self.copied_why) = None;
                match r {
                    Ok(r) => r.map(|()| true),
                    Err(p) => Err(crate::Error::Cuda(format!("device overlay panicked: {}", panic_message(&p)))),
                }
            }
            Err(why) => {
                let mut last = lock(&self.copied_why);
                if last.as_deref() != Some(why.as_str()) {
                    gst::info!(CAT, imp = self, "compositing through system memory: {why}");
                    *last = Some(why);
                }
                Ok(false)
            }
        }
    }
}

impl BaseTransformImpl for SegOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let format = PixelFormat::from_name(info.format().to_str()).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        let cuda = cuda_memory::is_cuda_caps(incaps);
        gst::debug!(
            CAT,
            imp = self,
            "negotiated {}x{} {:?}{}",
            info.width(),
            info.height(),
            format,
            if cuda { " in CUDA memory" } else { "" }
        );
        *lock(&self.state) = Some(State { info, format, cuda });
        if cuda {
            let id = lock(&self.settings).cuda_device_id;
            crate::elements::ensure_cuda_context(self.obj().upcast_ref(), &self.cuda, id, *CAT)?;
        }
        Ok(())
    }

    /// The same caps on both sides; CUDA memory when libgstcuda and a driver are there
    /// (composited on the device, or through system memory, see `cuda-device-id`).
    fn transform_caps(
        &self,
        _direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        Some(cuda_memory::same_caps(caps, filter, GstCuda::available()))
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if query.type_() == gst::QueryType::Context {
            let id = lock(&self.settings).cuda_device_id;
            if self.cuda.query(self.obj().upcast_ref(), query, id, GstCuda::available()) {
                return true;
            }
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some((seg, labels, device)) = buf
            .meta::<SegmentationMeta>()
            .map(|m| (m.segmentation().clone(), m.labels().clone(), m.device_ids().cloned()))
        else {
            gst::trace!(CAT, imp = self, "no SegmentationMeta: passing through");
            return Ok(gst::FlowSuccess::Ok);
        };
        let (info, format, cuda) = match lock(&self.state).as_ref() {
            Some(s) => (s.info.clone(), s.format, s.cuda),
            None => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("buffer before caps were negotiated")
                );
                return Err(gst::FlowError::NotNegotiated);
            }
        };
        let opts = lock(&self.settings).options();
        let (w, h) = (info.width(), info.height());
        let seg = if (seg.width, seg.height) != (w, h) {
            gst::debug!(
                CAT,
                imp = self,
                "meta is {}x{}, frame {w}x{h}: resizing the id map",
                seg.width,
                seg.height
            );
            Arc::new(scale_segmentation(&seg, w, h))
        } else {
            seg
        };

        if cuda {
            match self.overlay_on_device(buf, &info, format, &seg, &labels, &opts, device.as_ref()) {
                Ok(true) => return Ok(gst::FlowSuccess::Ok),
                Ok(false) => {}
                Err(e) => {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("overlay failed: {e}"));
                    return Err(gst::FlowError::Error);
                }
            }
        }

        let mut vframe = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info).map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("cannot map frame for writing"));
            gst::FlowError::Error
        })?;
        let strides_i = vframe.plane_stride();
        let n = format.num_planes();
        let mut strides = [0usize; 3];
        for (p, s) in strides.iter_mut().enumerate().take(n) {
            *s = strides_i[p].max(0) as usize;
        }
        let [p0, p1, p2, _] = vframe.planes_data_mut();
        let planes: [&mut [u8]; 3] = [p0, p1, p2];
        let mut frame = FrameMut::new(format, w as usize, h as usize, planes, strides).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
            gst::FlowError::Error
        })?;
        match std::panic::catch_unwind(AssertUnwindSafe(|| render::overlay(&mut frame, &seg, &labels, &opts))) {
            Ok(Ok(())) => Ok(gst::FlowSuccess::Ok),
            Ok(Err(e)) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("overlay failed: {e}"));
                Err(gst::FlowError::Error)
            }
            Err(p) => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("overlay panicked: {}", panic_message(&p))
                );
                Err(gst::FlowError::Error)
            }
        }
    }
}
