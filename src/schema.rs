//! The frame record: one JSON object a line, `"schema": "segstream.frame/1"`.
//! `docs/frame.schema.json` documents it; tests validate records against it.

use serde::{Deserialize, Serialize};

use crate::segmentation::{Segmentation, Task};
use crate::segmenter::Timings;

pub const FRAME_SCHEMA: &str = "segstream.frame/1";

/// COCO compressed RLE, as pycocotools writes it: `size` is `[height, width]`, `counts`
/// the LEB128-like string of column-major run lengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RleJson {
    pub size: [u32; 2],
    pub counts: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub id: u32,
    pub label_id: u32,
    pub label: String,
    pub score: f32,
    pub is_thing: bool,
    pub area: u64,
    /// `[x, y, width, height]` in frame pixels.
    pub bbox: [u32; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    pub mask: RleJson,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub schema: String,
    /// Name of the stream (file name, URI, or element name).
    pub stream: String,
    pub frame: u64,
    /// Presentation timestamp in nanoseconds, if the buffer had one.
    pub pts: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub model: String,
    pub task: Task,
    pub timings: Timings,
    /// True when the result was reused from an earlier frame (`interval` > 1).
    #[serde(default)]
    pub stale: bool,
    pub segments: Vec<SegmentRecord>,
}

/// Identity and timing of a frame, everything a record holds besides the segmentation.
#[derive(Debug, Clone, Default)]
pub struct FrameInfo {
    pub stream: String,
    pub frame: u64,
    pub pts: Option<u64>,
    pub model: String,
    pub timings: Timings,
    pub stale: bool,
}
