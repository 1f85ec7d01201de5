//! The header segstream writes before a serialized TensorRT plan, and its validation.
//!
//! A TensorRT plan only runs with the TensorRT version that built it, on the GPU model it
//! was built for (kernels are chosen for that device), and only means something with the
//! model card it was built from. A plan that breaks one of these either fails to
//! deserialize or, worse, runs wrongly; so every segstream engine file starts with a header
//! recording all three, checked before TensorRT sees a byte of the plan.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..8 | magic `SSTRTENG` |
//! | 8..12 | header format version (u32, currently 1) |
//! | 12..16 | length L of the JSON that follows (u32) |
//! | 16..16+L | [`EngineHeader`] as JSON (UTF-8) |
//! | 16+L.. | the plan, `plan_len` bytes, to the end of the file |
//!
//! The model-card hash is the SHA-256 of the card's *canonical* JSON: the parsed
//! [`ModelCard`] serialized again by serde (fixed field order, no whitespace), so
//! reformatting the card file does not invalidate engines while any change of content
//! (labels, input size, mean/std, thresholds) does.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::options::{BatchProfile, Precision};
use crate::model::ModelCard;
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"SSTRTENG";
pub const FORMAT_VERSION: u32 = 1;
const PREFIX_LEN: usize = 16;
/// Bound on the JSON part, so that a corrupt length cannot make us allocate gigabytes.
const MAX_JSON_LEN: usize = 1 << 20;

/// A TensorRT version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrtVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A CUDA device: name and compute capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub compute_capability: (u32, u32),
}

impl std::fmt::Display for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (compute capability {}.{})", self.name, self.compute_capability.0, self.compute_capability.1)
    }
}

/// What the engine file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineHeader {
    pub tensorrt: TrtVersion,
    pub gpu: Gpu,
    /// SHA-256 (hex) of the canonical model card, see [`card_hash`].
    pub card_sha256: String,
    /// The card's `name`, for messages.
    pub model: String,
    pub precision: Precision,
    pub batch: BatchProfile,
    /// Network input `(height, width)`.
    pub input: (u32, u32),
    /// The plan holds `MultiscaleDeformableAttnPlugin_TRT`: load TensorRT's plugin library
    /// before deserializing.
    pub plugin: bool,
    /// File name of the ONNX model it was built from (informational).
    pub source: String,
    /// segstream version that wrote it (informational).
    pub segstream: String,
    /// Length of the plan that follows the header.
    pub plan_len: u64,
}

/// Facts of the running system an engine must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub tensorrt: TrtVersion,
    pub gpu: Gpu,
    pub card_sha256: String,
}

/// SHA-256 (lower-case hex) of the canonical JSON of `card`.
pub fn card_hash(card: &ModelCard) -> String {
    let canonical = serde_json::to_vec(card).expect("a ModelCard always serializes");
    hex(&Sha256::digest(&canonical))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

impl EngineHeader {
    /// Header bytes followed by `plan`: the whole engine file.
    pub fn encode(&self, plan: &[u8]) -> Vec<u8> {
        let mut h = self.clone();
        h.plan_len = plan.len() as u64;
        let json = serde_json::to_vec(&h).expect("an EngineHeader always serializes");
        let mut out = Vec::with_capacity(PREFIX_LEN + json.len() + plan.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(plan);
        out
    }

    /// Split an engine file into its header and plan. `path` names the file in errors.
    pub fn decode<'a>(bytes: &'a [u8], path: &Path) -> Result<(EngineHeader, &'a [u8])> {
        let bad = |reason: String| Error::EngineMismatch { path: path.to_path_buf(), reason };
        if bytes.len() < PREFIX_LEN || &bytes[..8] != MAGIC {
            return Err(bad(
                "it is not a segstream engine file (no segstream header: a bare TensorRT plan, e.g. from trtexec, \
                 cannot be checked against the model card)"
                    .into(),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "its header format is version {version}, this segstream reads version {FORMAT_VERSION}"
            )));
        }
        let len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if len > MAX_JSON_LEN || PREFIX_LEN + len > bytes.len() {
            return Err(bad(format!("its header is truncated or corrupt (header length {len})")));
        }
        let header: EngineHeader = serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + len])
            .map_err(|e| bad(format!("its header is corrupt: {e}")))?;
        let plan = &bytes[PREFIX_LEN + len..];
        if plan.len() as u64 != header.plan_len {
            return Err(bad(format!(
                "the plan is {} bytes, the header says {} (truncated file?)",
                plan.len(),
                header.plan_len
            )));
        }
        if plan.is_empty() {
            return Err(bad("it holds no plan".into()));
        }
        Ok((header, plan))
    }

    /// Refuse an engine built by another TensorRT, for another GPU or from another card.
    /// The reason names both sides.
    pub fn check(&self, expected: &Expected, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(Error::EngineMismatch { path: path.to_path_buf(), reason });
        if self.tensorrt != expected.tensorrt {
            return bad(format!(
                "it was built with TensorRT {}, this is TensorRT {} (plans only load in the version that built them)",
                self.tensorrt, expected.tensorrt
            ));
        }
        if self.gpu != expected.gpu {
            return bad(format!("it was built for {}, this GPU is {}", self.gpu, expected.gpu));
        }
        if self.card_sha256 != expected.card_sha256 {
            return bad(format!(
                "it was built from another model card (model {:?}, card sha256 {}…; the card beside it has sha256 {}…)",
                self.model,
                short(&self.card_sha256),
                short(&expected.card_sha256)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn card() -> ModelCard {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/models/shapes-m2f.json"))
            .expect("sample card");
        ModelCard::from_json(&text, Path::new("shapes-m2f.json")).expect("valid card")
    }

    fn gpu() -> Gpu {
        Gpu { name: "NVIDIA Orin".into(), compute_capability: (8, 7) }
    }

    pub fn header(card: &ModelCard) -> EngineHeader {
        EngineHeader {
            tensorrt: TrtVersion(10, 3, 0),
            gpu: gpu(),
            card_sha256: card_hash(card),
            model: card.name.clone(),
            precision: Precision::Fp16,
            batch: BatchProfile::default(),
            input: (card.input.height, card.input.width),
            plugin: true,
            source: "shapes-m2f-trt.onnx".into(),
            segstream: env!("CARGO_PKG_VERSION").into(),
            plan_len: 0,
        }
    }

    fn expected(card: &ModelCard) -> Expected {
        Expected { tensorrt: TrtVersion(10, 3, 0), gpu: gpu(), card_sha256: card_hash(card) }
    }

    const P: &str = "m.fp16.engine";

    fn reason(e: Error) -> String {
        match e {
            Error::EngineMismatch { reason, .. } => reason,
            other => panic!("expected EngineMismatch, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_header_and_plan() {
        let c = card();
        let h = header(&c);
        let plan = b"\x00plan bytes\xff".to_vec();
        let file = h.encode(&plan);
        let (back, p) = EngineHeader::decode(&file, Path::new(P)).unwrap();
        assert_eq!(p, &plan[..]);
        assert_eq!(back.plan_len, plan.len() as u64);
        assert_eq!(EngineHeader { plan_len: 0, ..back.clone() }, h);
        back.check(&expected(&c), Path::new(P)).unwrap();
    }

    #[test]
    fn stale_tensorrt_version_is_refused() {
        let c = card();
        let h = EngineHeader { tensorrt: TrtVersion(10, 2, 0), ..header(&c) };
        let r = reason(h.check(&expected(&c), Path::new(P)).unwrap_err());
        assert!(r.contains("TensorRT 10.2.0") && r.contains("TensorRT 10.3.0"), "{r}");
        // A patch release differs too.
        let h = EngineHeader { tensorrt: TrtVersion(10, 3, 1), ..header(&c) };
        assert!(h.check(&expected(&c), Path::new(P)).is_err());
    }

    #[test]
    fn other_gpu_is_refused() {
        let c = card();
        let h = EngineHeader { gpu: Gpu { name: "NVIDIA H100 80GB HBM3".into(), compute_capability: (9, 0) }, ..header(&c) };
        let r = reason(h.check(&expected(&c), Path::new(P)).unwrap_err());
        assert!(r.contains("H100") && r.contains("Orin") && r.contains("9.0") && r.contains("8.7"), "{r}");
        // Same compute capability, other board: still another GPU.
        let h = EngineHeader { gpu: Gpu { name: "NVIDIA A10".into(), compute_capability: (8, 7) }, ..header(&c) };
        assert!(h.check(&expected(&c), Path::new(P)).is_err());
    }

    #[test]
    fn other_model_card_is_refused() {
        let c = card();
        let mut other = c.clone();
        other.labels[0].name.push_str("-renamed");
        let h = header(&other);
        let r = reason(h.check(&expected(&c), Path::new(P)).unwrap_err());
        assert!(r.contains("another model card") && r.contains(&card_hash(&c)[..12]), "{r}");
    }

    #[test]
    fn card_hash_ignores_formatting_not_content() {
        let c = card();
        let pretty = serde_json::to_string_pretty(&c).unwrap();
        let reparsed = ModelCard::from_json(&pretty, Path::new("x.json")).unwrap();
        assert_eq!(card_hash(&c), card_hash(&reparsed));
        assert_eq!(card_hash(&c).len(), 64);
        let mut changed = c.clone();
        changed.defaults.score_threshold = if c.defaults.score_threshold == 0.5 { 0.6 } else { 0.5 };
        assert_ne!(card_hash(&c), card_hash(&changed));
    }

    #[test]
    fn foreign_and_damaged_files_are_refused_with_a_reason() {
        let c = card();
        let file = header(&c).encode(b"plan");
        let path = Path::new(P);
        // A bare plan (e.g. trtexec's).
        let r = reason(EngineHeader::decode(b"ftrt\x00\x00\x00\x00somebareplanbytes", path).unwrap_err());
        assert!(r.contains("not a segstream engine"), "{r}");
        // Empty file.
        assert!(EngineHeader::decode(b"", path).is_err());
        // Newer format.
        let mut newer = file.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(reason(EngineHeader::decode(&newer, path).unwrap_err()).contains("version 2"));
        // Truncated plan.
        let r = reason(EngineHeader::decode(&file[..file.len() - 1], path).unwrap_err());
        assert!(r.contains("truncated"), "{r}");
        // Length beyond the file.
        let mut long = file.clone();
        long[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(EngineHeader::decode(&long, path).is_err());
        // Corrupt JSON.
        let mut corrupt = file.clone();
        corrupt[PREFIX_LEN] = b'!';
        assert!(reason(EngineHeader::decode(&corrupt, path).unwrap_err()).contains("corrupt"));
    }

    #[test]
    fn error_message_tells_what_to_do() {
        let c = card();
        let h = EngineHeader { tensorrt: TrtVersion(9, 0, 0), ..header(&c) };
        let msg = h.check(&expected(&c), Path::new(P)).unwrap_err().to_string();
        assert!(msg.contains(P) && msg.contains("build-engine"), "{msg}");
    }
}
