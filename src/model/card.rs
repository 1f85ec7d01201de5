//! Serde types for `segstream.model/1`, validated on load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::segmentation::Task;
use crate::{Error, Result};

pub const CARD_FORMAT: &str = "segstream.model/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub id: u32,
    pub name: String,
    pub isthing: bool,
    /// RGB colour used by the overlay when colouring by class.
    pub color: [u8; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Checkpoint id or local path the model was exported from.
    pub checkpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardInput {
    pub height: u32,
    pub width: u32,
    /// Per-channel mean in 0..255 pixel units, in `channel_order`.
    pub mean: Vec<f32>,
    /// Per-channel std in 0..255 pixel units.
    pub std: Vec<f32>,
    /// Channel order the network expects: "RGB" or "BGR".
    #[serde(default = "default_order")]
    pub channel_order: String,
}

fn default_order() -> String {
    "RGB".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    #[serde(default)]
    pub task: Task,
    #[serde(default = "d08")]
    pub score_threshold: f32,
    #[serde(default = "d08")]
    pub overlap_threshold: f32,
    #[serde(default = "d05")]
    pub mask_threshold: f32,
}

fn d08() -> f32 {
    0.8
}
fn d05() -> f32 {
    0.5
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults { task: Task::Panoptic, score_threshold: 0.8, overlap_threshold: 0.8, mask_threshold: 0.5 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub name: String,
    pub source: Source,
    pub input: CardInput,
    pub num_queries: u32,
    pub labels: Vec<Label>,
    #[serde(default)]
    pub defaults: Defaults,
    /// Whether `precision=auto` may run this model in bfloat16 where the device supports
    /// it (absent: yes; `false`: the model is known to lose too much in bf16, so auto stays
    /// in f32; an explicit `precision=bf16` still runs it). See the OpenVINO backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16: Option<bool>,
}

impl ModelCard {
    /// Number of classes K (without the no-object class).
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// The card path for a model file: `x.onnx` → `x.json`.
    pub fn path_for_model(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(text)
            .map_err(|e| Error::InvalidCard { path: path.into(), msg: e.to_string() })?;
        card.validate(path)?;
        Ok(card)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Check what serde cannot: format tag, sizes, mean/std lengths, label ids.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidCard { path: path.into(), msg });
        if self.format != CARD_FORMAT {
            return bad(format!("format is {:?}, expected {CARD_FORMAT:?}", self.format));
        }
        let i = &self.input;
        if i.height == 0 || i.width == 0 || i.height % 32 != 0 || i.width % 32 != 0 {
            return bad(format!("input size {}x{} is not a non-zero multiple of 32", i.height, i.width));
        }
        if i.mean.len() != 3 || i.std.len() != 3 {
            return bad(format!("mean and std need 3 values each, got {} and {}", i.mean.len(), i.std.len()));
        }
        if i.std.iter().any(|s| !(*s > 0.0)) {
            return bad("std values must be positive".into());
        }
        if i.channel_order != "RGB" && i.channel_order != "BGR" {
            return bad(format!("channel_order {:?} must be \"RGB\" or \"BGR\"", i.channel_order));
        }
        if self.num_queries == 0 {
            return bad("num_queries must be positive".into());
        }
        if self.labels.is_empty() {
            return bad("labels must not be empty".into());
        }
        for (idx, l) in self.labels.iter().enumerate() {
            if l.id as usize != idx {
                return bad(format!("label #{idx} ({}) has id {}, ids must be 0..K in order", l.name, l.id));
            }
        }
        let d = &self.defaults;
        for (n, v) in [("score_threshold", d.score_threshold), ("overlap_threshold", d.overlap_threshold), ("mask_threshold", d.mask_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{n} {v} is outside 0..1"));
            }
        }
        Ok(())
    }
}

/// Load a label set file from `configs/labels/` (a JSON array of [`Label`]).
pub fn load_label_set(path: &Path) -> Result<Vec<Label>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidCard { path: path.into(), msg: e.to_string() })
}
