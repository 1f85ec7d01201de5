//! Post-processing: the two network outputs of one image → a [`Segmentation`].
//!
//! Each task is a short pure function over the logits, with the semantics of the
//! reference implementations (detectron2's `semantic_inference` / `instance_inference` /
//! `panoptic_inference`, transformers' `post_process_*_segmentation`).

pub(crate) mod common;
pub mod instance;
pub mod panoptic;
pub mod semantic;
pub(crate) mod tiles;
pub mod upsample;

use gstreamer::glib;

use crate::backend::ImageLogits;
use crate::model::Label;
use crate::segmentation::{Segmentation, Task};
use crate::Result;

/// Which reference implementation's exact semantics to follow. They differ in how mask
/// logits reach the frame size and in where the sigmoid and the mask threshold apply.
/// Also the `mask2former` element's `semantics` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamSemantics")]
pub enum Semantics {
    /// detectron2 (`semantic_inference` / `instance_inference` / `panoptic_inference` +
    /// `sem_seg_postprocess`): logits bilinear to the network input `H×W`, crop the valid
    /// (unpadded) region, bilinear to the frame size, then sigmoid. The right answer for
    /// padded inputs; the pipeline's default.
    #[default]
    #[enum_value(name = "detectron2: crop the padding, then resize the masks to the frame", nick = "detectron2")]
    Detectron2 = 0,
    /// transformers' `post_process_*_segmentation`: logits bilinear to a fixed 384×384,
    /// sigmoid, then to the frame size, no crop. Used to compare against transformers.
    #[enum_value(
        name = "transformers: post_process_*_segmentation exactly (masks through a 384x384 square)",
        nick = "transformers"
    )]
    Transformers = 1,
}

impl Semantics {
    pub fn as_str(self) -> &'static str {
        match self {
            Semantics::Detectron2 => "detectron2",
            Semantics::Transformers => "transformers",
        }
    }
}

impl std::str::FromStr for Semantics {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "detectron2" => Ok(Semantics::Detectron2),
            "transformers" => Ok(Semantics::Transformers),
            other => Err(crate::Error::InvalidArgument(format!(
                "unknown post-processing semantics {other:?} (expected detectron2 or transformers)"
            ))),
        }
    }
}

/// Where the frame sits inside the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Network input size (H, W).
    pub input_height: usize,
    pub input_width: usize,
    /// Size of the resized frame inside the input (top-left, the rest is padding).
    pub valid_height: usize,
    pub valid_width: usize,
    /// Output (frame) size.
    pub frame_height: usize,
    pub frame_width: usize,
    pub semantics: Semantics,
}

/// Thresholds, as named by the element properties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub task: Task,
    /// Panoptic/instance: minimum class score of a kept query (default 0.8).
    pub score_threshold: f32,
    /// Panoptic: minimum ratio of a query's final area to its own mask area (default 0.8).
    pub overlap_threshold: f32,
    /// Binarization threshold of mask probabilities (default 0.5).
    pub mask_threshold: f32,
    /// Instance: number of (query, class) pairs kept before thresholding (default 100).
    pub top_k: usize,
    /// Panoptic: merge stuff segments of one class into one segment (default true).
    pub merge_stuff: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            task: Task::Panoptic,
            score_threshold: 0.8,
            overlap_threshold: 0.8,
            mask_threshold: 0.5,
            top_k: 100,
            merge_stuff: true,
        }
    }
}

/// Run the task named in `params` on one image's logits.
pub fn run(logits: &ImageLogits<'_>, labels: &[Label], geom: &Geometry, params: &Params) -> Result<Segmentation> {
    match params.task {
        Task::Panoptic => panoptic::panoptic(logits, labels, geom, params),
        Task::Instance => instance::instance(logits, labels, geom, params),
        Task::Semantic => semantic::semantic(logits, labels, geom, params),
    }
}
