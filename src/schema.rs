//! The frame record: one JSON object a line, `"schema": "segstream.frame/1"`.
//! `docs/frame.schema.json` documents it; tests validate records against it.

use serde::{Deserialize, Serialize};

use crate::segmentation::{Rle, Segmentation, Task};
use crate::segmenter::Timings;

pub const FRAME_SCHEMA: &str = "segstream.frame/1";

/// COCO compressed RLE, as pycocotools writes it: `size` is `[height, width]`, `counts`
/// the LEB128-like string of column-major run lengths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Empty (size `[0, 0]`, no counts) in summary records (`segpublish masks=false`),
    /// which then have no `mask` key.
    #[serde(default, skip_serializing_if = "RleJson::is_empty")]
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

impl RleJson {
    /// The placeholder of summary records (no mask).
    pub fn is_empty(&self) -> bool {
        self.size == [0, 0] && self.counts.is_empty()
    }

    /// The JSON form of an RLE (compressed counts string).
    pub fn from_rle(rle: &Rle) -> RleJson {
        RleJson { size: rle.size, counts: rle.to_compressed() }
    }

    /// Back to run lengths (checks that they cover the mask).
    pub fn to_rle(&self) -> crate::Result<Rle> {
        Rle::from_compressed(&self.counts, self.size[0] as usize, self.size[1] as usize)
    }
}

impl FrameRecord {
    /// The record of one frame: every segment with its mask as COCO compressed RLE of
    /// the pixels that hold its id in the id map (for instance results: the visible
    /// part; `area` and `bbox` are the instance's whole mask, see [`Segment`]).
    ///
    /// [`Segment`]: crate::segmentation::Segment
    pub fn new(seg: &Segmentation, info: &FrameInfo) -> FrameRecord {
        FrameRecord::with_masks(seg, info, true)
    }

    /// [`new`](Self::new), or with `masks` false a summary record: segments without
    /// `mask` (no RLE is computed).
    pub fn with_masks(seg: &Segmentation, info: &FrameInfo, masks: bool) -> FrameRecord {
        let rles = if masks { seg.rles() } else { Vec::new() };
        let segments = seg
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentRecord {
                id: s.id,
                label_id: s.label_id,
                label: s.label.clone(),
                score: s.score,
                is_thing: s.is_thing,
                area: s.area,
                bbox: s.bbox,
                track_id: s.track_id,
                mask: rles.get(i).map(RleJson::from_rle).unwrap_or_default(),
            })
            .collect();
        FrameRecord {
            schema: FRAME_SCHEMA.to_string(),
            stream: info.stream.clone(),
            frame: info.frame,
            pts: info.pts,
            width: seg.width,
            height: seg.height,
            model: info.model.clone(),
            task: seg.task,
            timings: info.timings,
            stale: info.stale,
            segments,
        }
    }

    /// One line of JSON Lines (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serializing these plain types cannot fail; non-finite floats (a NaN score or
        // timing) become `null` rather than an error.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"schema\":\"{FRAME_SCHEMA}\",\"error\":{:?}}}", e.to_string()))
    }

    /// Parse one line, checking the schema tag.
    pub fn from_json_line(line: &str) -> crate::Result<FrameRecord> {
        let r: FrameRecord = serde_json::from_str(line).map_err(|e| crate::Error::InvalidArgument(format!("invalid frame record: {e}")))?;
        if r.schema != FRAME_SCHEMA {
            return Err(crate::Error::InvalidArgument(format!("frame record schema {:?}, expected {FRAME_SCHEMA:?}", r.schema)));
        }
        Ok(r)
    }
}
