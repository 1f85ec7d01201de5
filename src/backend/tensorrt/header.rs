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
//! What a cached engine is compared against before reuse (`model=x.onnx`):
//! - the TensorRT library, including its build number (`getInferLibBuildVersion`), and
//!   the GPU (name and compute capability): [`EngineHeader::check`];
//! - the part of the model card the plan depends on: input height and width, number of
//!   queries, number of labels ([`card_hash`]). Thresholds, colours, label names and the
//!   normalisation are applied outside the plan, so editing them keeps the engine;
//! - the SHA-256 of the ONNX file the plan was built from (re-exporting with the same card
//!   is caught) and the build options: precision, requested batch profile, portable vs
//!   plugin source, plugin library ([`EngineHeader::check_build`]).
//!
//! An engine file given directly (`model=x.engine`) is checked with [`EngineHeader::check`]
//! only: its ONNX file need not be there.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::contract::plugin_variant;
use super::options::{BatchProfile, BuildOptions, Precision};
use crate::model::ModelCard;
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"SSTRTENG";
/// 2: build number, ONNX hash, requested batch profile and plugin library recorded; the
/// card hash covers only what the plan depends on.
pub const FORMAT_VERSION: u32 = 2;
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
    /// Build number of the TensorRT library that built the plan (`getInferLibBuildVersion`).
    pub tensorrt_build: u32,
    pub gpu: Gpu,
    /// SHA-256 (hex) of what the plan depends on in the model card, see [`card_hash`].
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
    /// File name of the ONNX model it was built from (`m.onnx`, or the plugin export
    /// `m-trt.onnx`).
    pub source: String,
    /// SHA-256 (hex) of that ONNX file.
    pub onnx_sha256: String,
    /// The batch profile the build asked for ([`EngineHeader::batch`] is the range the
    /// engine has: a fixed-batch export ignores the request).
    pub requested_batch: BatchProfile,
    /// The plugin library given for the build (`None`: TensorRT's default).
    pub plugin_library: Option<String>,
    /// segstream version that wrote it (informational).
    pub segstream: String,
    /// Length of the plan that follows the header.
    pub plan_len: u64,
}

/// Facts of the running system an engine must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub tensorrt: TrtVersion,
    pub tensorrt_build: u32,
    pub gpu: Gpu,
    pub card_sha256: String,
}

/// What a build would do now, for [`EngineHeader::check_build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    /// The ONNX files a build may use, preferred first: the plugin export (when preferred
    /// and present) and the portable file (the fallback when the plugin does not load,
    /// parse or build).
    pub sources: Vec<PathBuf>,
    pub precision: Precision,
    pub batch: BatchProfile,
    pub plugin_library: Option<String>,
}

impl BuildRecord {
    /// What a build from `onnx` with `opts` would use: the plugin export `x-trt.onnx`
    /// first when `opts.prefer_plugin_model` and it exists, then `onnx`.
    pub fn for_build(onnx: &Path, opts: &BuildOptions) -> BuildRecord {
        let mut sources = Vec::new();
        if opts.prefer_plugin_model
            && let Some(v) = plugin_variant(onnx)
        {
            sources.push(v);
        }
        sources.push(onnx.to_path_buf());
        BuildRecord {
            sources,
            precision: opts.precision,
            batch: opts.batch,
            plugin_library: opts.plugin_library.as_ref().map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

/// SHA-256 (lower-case hex) of what a TensorRT plan depends on in `card`: the input
/// height and width, the number of queries and the number of labels. Everything else in
/// the card (names, colours, thresholds, mean/std, channel order) is applied outside the
/// plan; the network itself is covered by the ONNX hash.
pub fn card_hash(card: &ModelCard) -> String {
    let facts = format!(
        "segstream.plan-card/1 input={}x{} queries={} labels={}",
        card.input.height,
        card.input.width,
        card.num_queries,
        card.labels.len()
    );
    hex(&Sha256::digest(facts.as_bytes()))
}

/// SHA-256 (lower-case hex) of a file's content, read in chunks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
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
        if self.tensorrt_build != expected.tensorrt_build {
            return bad(format!(
                "it was built with TensorRT {} build {}, this is build {} (plans only load in the build that made them)",
                self.tensorrt, self.tensorrt_build, expected.tensorrt_build
            ));
        }
        if self.gpu != expected.gpu {
            return bad(format!("it was built for {}, this GPU is {}", self.gpu, expected.gpu));
        }
        if self.card_sha256 != expected.card_sha256 {
            return bad(format!(
                "it was built from another model card (model {:?}: input size, queries or label count differ; \
                 card sha256 {}…, the card beside it has {}…)",
                self.model,
                short(&self.card_sha256),
                short(&expected.card_sha256)
            ));
        }
        Ok(())
    }

    /// Refuse a cached engine that a build with `want` would not reproduce: another
    /// precision, batch profile or plugin library, or an ONNX source that is not one of
    /// `want.sources` or whose content changed since the build.
    pub fn check_build(&self, want: &BuildRecord, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(Error::EngineMismatch { path: path.to_path_buf(), reason });
        if self.precision != want.precision {
            return bad(format!("it is {}, {} was asked for", self.precision, want.precision));
        }
        if self.requested_batch != want.batch {
            return bad(format!("it was built for batch profile {}, {} was asked for", self.requested_batch, want.batch));
        }
        if self.plugin && self.plugin_library != want.plugin_library {
            let name = |l: &Option<String>| l.clone().unwrap_or_else(|| "TensorRT's default".into());
            return bad(format!(
                "it was built with plugin library {}, {} was asked for",
                name(&self.plugin_library),
                name(&want.plugin_library)
            ));
        }
        let Some(source) = want.sources.iter().find(|s| s.file_name().is_some_and(|n| n.to_string_lossy() == self.source))
        else {
            let names: Vec<String> =
                want.sources.iter().filter_map(|s| s.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
            return bad(format!("it was built from {}, the build now uses {}", self.source, names.join(" or ")));
        };
        let now = file_sha256(source)?;
        if now != self.onnx_sha256 {
            return bad(format!(
                "{} changed since it was built (sha256 {}… then, {}… now)",
                self.source,
                short(&self.onnx_sha256),
                short(&now)
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
            tensorrt_build: 42,
            gpu: gpu(),
            card_sha256: card_hash(card),
            model: card.name.clone(),
            precision: Precision::Fp16,
            batch: BatchProfile::default(),
            input: (card.input.height, card.input.width),
            plugin: true,
            source: "shapes-m2f-trt.onnx".into(),
            onnx_sha256: "0".repeat(64),
            requested_batch: BatchProfile::default(),
            plugin_library: None,
            segstream: env!("CARGO_PKG_VERSION").into(),
            plan_len: 0,
        }
    }

    fn expected(card: &ModelCard) -> Expected {
        Expected { tensorrt: TrtVersion(10, 3, 0), tensorrt_build: 42, gpu: gpu(), card_sha256: card_hash(card) }
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
        other.labels.pop();
        let h = header(&other);
        let r = reason(h.check(&expected(&c), Path::new(P)).unwrap_err());
        assert!(r.contains("another model card") && r.contains(&card_hash(&c)[..12]), "{r}");
    }

    /// Item 5: another build of the same TensorRT version is refused too.
    #[test]
    fn other_tensorrt_build_is_refused() {
        let c = card();
        let h = EngineHeader { tensorrt_build: 41, ..header(&c) };
        let r = reason(h.check(&expected(&c), Path::new(P)).unwrap_err());
        assert!(r.contains("build 41") && r.contains("build 42"), "{r}");
    }

    /// Item 6: only what the plan depends on is hashed.
    #[test]
    fn card_hash_covers_only_what_the_plan_depends_on() {
        let c = card();
        assert_eq!(card_hash(&c).len(), 64);
        // Formatting: same hash.
        let pretty = serde_json::to_string_pretty(&c).unwrap();
        let reparsed = ModelCard::from_json(&pretty, Path::new("x.json")).unwrap();
        assert_eq!(card_hash(&c), card_hash(&reparsed));
        // Thresholds, colours, names, normalisation, model name: same hash.
        let mut edited = c.clone();
        edited.defaults.score_threshold = if c.defaults.score_threshold == 0.5 { 0.6 } else { 0.5 };
        edited.defaults.mask_threshold += 0.1;
        edited.labels[0].color = [1, 2, 3];
        edited.labels[0].name.push_str("-renamed");
        edited.input.mean = vec![0.1, 0.2, 0.3];
        edited.input.std = vec![0.9, 0.8, 0.7];
        edited.name.push_str("-v2");
        assert_eq!(card_hash(&c), card_hash(&edited));
        // Input size, queries, label count: another hash.
        let mut h = c.clone();
        h.input.height += 32;
        let mut w = c.clone();
        w.input.width += 32;
        let mut q = c.clone();
        q.num_queries += 1;
        let mut l = c.clone();
        l.labels.push(l.labels[0].clone());
        for other in [h, w, q, l] {
            assert_ne!(card_hash(&c), card_hash(&other));
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("segstream-header-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Item 4: the source ONNX and the build options are compared before reuse.
    #[test]
    fn stale_source_or_options_are_refused() {
        let d = tmpdir("stale");
        let portable = d.join("m.onnx");
        let plugin = d.join("m-trt.onnx");
        std::fs::write(&portable, b"portable graph v1").unwrap();
        std::fs::write(&plugin, b"plugin graph v1").unwrap();
        let c = card();
        let built = EngineHeader {
            source: "m-trt.onnx".into(),
            onnx_sha256: file_sha256(&plugin).unwrap(),
            plugin: true,
            requested_batch: BatchProfile::new(1, 2, 4).unwrap(),
            ..header(&c)
        };
        let want = BuildRecord {
            sources: vec![plugin.clone(), portable.clone()],
            precision: Precision::Fp16,
            batch: BatchProfile::new(1, 2, 4).unwrap(),
            plugin_library: None,
        };
        let p = Path::new(P);
        built.check_build(&want, p).unwrap();
        // Precision, batch profile, plugin library.
        let r = reason(built.check_build(&BuildRecord { precision: Precision::Fp32, ..want.clone() }, p).unwrap_err());
        assert!(r.contains("fp16") && r.contains("fp32"), "{r}");
        let r = reason(built.check_build(&BuildRecord { batch: BatchProfile::default(), ..want.clone() }, p).unwrap_err());
        assert!(r.contains("1:2:4") && r.contains("1:1:1"), "{r}");
        let lib = BuildRecord { plugin_library: Some("/opt/libmine.so".into()), ..want.clone() };
        let r = reason(built.check_build(&lib, p).unwrap_err());
        assert!(r.contains("libmine.so") && r.contains("default"), "{r}");
        // A portable engine does not depend on the plugin library.
        let portable_built =
            EngineHeader { source: "m.onnx".into(), onnx_sha256: file_sha256(&portable).unwrap(), plugin: false, ..built.clone() };
        portable_built.check_build(&lib, p).unwrap();
        // Plugin export no longer wanted (--no-plugin-model): the plugin engine is stale.
        let r = reason(built.check_build(&BuildRecord { sources: vec![portable.clone()], ..want.clone() }, p).unwrap_err());
        assert!(r.contains("m-trt.onnx") && r.contains("now uses m.onnx"), "{r}");
        // Re-exported ONNX with the same card: stale.
        std::fs::write(&plugin, b"plugin graph v2").unwrap();
        let r = reason(built.check_build(&want, p).unwrap_err());
        assert!(r.contains("m-trt.onnx changed"), "{r}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn build_record_lists_the_sources_a_build_may_use() {
        let d = tmpdir("record");
        let onnx = d.join("m.onnx");
        std::fs::write(&onnx, b"x").unwrap();
        let opts = BuildOptions { plugin_library: None, ..BuildOptions::default() };
        assert_eq!(BuildRecord::for_build(&onnx, &opts).sources, vec![onnx.clone()]);
        std::fs::write(d.join("m-trt.onnx"), b"y").unwrap();
        let r = BuildRecord::for_build(&onnx, &opts);
        assert_eq!(r.sources, vec![d.join("m-trt.onnx"), onnx.clone()]);
        assert_eq!((r.precision, r.batch, r.plugin_library), (opts.precision, opts.batch, None));
        let no_plugin = BuildOptions { prefer_plugin_model: false, plugin_library: Some("/l/p.so".into()), ..opts };
        let r = BuildRecord::for_build(&onnx, &no_plugin);
        assert_eq!((r.sources, r.plugin_library.as_deref()), (vec![onnx.clone()], Some("/l/p.so")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn file_hash_is_sha256_of_the_content() {
        let d = tmpdir("hash");
        let f = d.join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(file_sha256(&f).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(file_sha256(&d.join("missing")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
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
        newer[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert!(reason(EngineHeader::decode(&newer, path).unwrap_err()).contains("version 3"));
        // An engine of the first format (no ONNX hash, whole-card hash): refused, so that a
        // cached one is rebuilt.
        let mut older = file.clone();
        older[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(reason(EngineHeader::decode(&older, path).unwrap_err()).contains("version 1"));
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
