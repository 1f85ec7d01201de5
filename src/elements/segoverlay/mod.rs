//! `segoverlay`: composites the [`SegmentationMeta`](crate::elements::SegmentationMeta) of
//! each buffer onto the frame in place (`segstream::render::overlay`). Buffers without the
//! meta pass through untouched (never mapped for writing).
//!
//! By default it draws masks, contours and labels: the class name and score of every
//! segment inside it (`render::placement`), white on a dark box, scaled with the frame
//! height (`render::text`). `labels=false` leaves masks and contours, which is also what
//! the CUDA device overlay draws; with labels on, CUDA frames composite through system
//! memory.
//!
//! If the meta's size differs from the frame's (an element that scaled the frame without
//! transforming metas), the id map is resized to the frame first.

mod imp;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;

glib::wrapper! {
    pub struct SegOverlay(ObjectSubclass<imp::SegOverlay>)
        @extends gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

/// The `color-by` property.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamColorBy")]
pub enum ColorBySetting {
    /// Each class has its colour (from the model card).
    #[default]
    #[enum_value(name = "Colour by class (model card colours)", nick = "class")]
    Class = 0,
    /// Each segment (or track) has its own colour.
    #[enum_value(name = "Colour by instance (segment or track id)", nick = "instance")]
    Instance = 1,
}

impl From<ColorBySetting> for crate::render::ColorBy {
    fn from(c: ColorBySetting) -> Self {
        match c {
            ColorBySetting::Class => crate::render::ColorBy::Class,
            ColorBySetting::Instance => crate::render::ColorBy::Instance,
        }
    }
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "segoverlay", gst::Rank::NONE, SegOverlay::static_type())
}
