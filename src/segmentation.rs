//! The result of one frame: an id map plus the list of segments, and COCO compressed RLE
//! for masks (the encoding the JSON frame record uses, decodable by pycocotools).

use serde::{Deserialize, Serialize};

/// Which inference a result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Panoptic,
    Instance,
    Semantic,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Panoptic => "panoptic",
            Task::Instance => "instance",
            Task::Semantic => "semantic",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "panoptic" => Ok(Task::Panoptic),
            "instance" => Ok(Task::Instance),
            "semantic" => Ok(Task::Semantic),
            other => Err(crate::Error::InvalidArgument(format!(
                "unknown task {other:?} (expected panoptic, instance or semantic)"
            ))),
        }
    }
}

/// One segment of a [`Segmentation`]. `id` is the value its pixels hold in the id map
/// (ids start at 1; 0 means "no segment").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: u32,
    pub label_id: u32,
    pub label: String,
    pub score: f32,
    pub is_thing: bool,
    /// Number of pixels of the id map that hold `id`.
    pub area: u64,
    /// Tight box around the segment's pixels: `[x, y, width, height]`.
    pub bbox: [u32; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// Frame-size id map (row-major, `width * height`, 0 = no segment) plus its segments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segmentation {
    pub width: u32,
    pub height: u32,
    pub task: Task,
    pub ids: Vec<u32>,
    pub segments: Vec<Segment>,
}
