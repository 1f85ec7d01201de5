//! Build options of TensorRT engines and their parsing (CLI flags, element properties).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Engine precision.
///
/// TensorRT 10.x builds weakly typed networks: `Fp16` sets the builder's FP16 flag and
/// TensorRT picks FP16 kernels where it is faster. TensorRT 11 removed the weakly typed
/// precision flags (every network is strongly typed): the precision is the one written
/// in the ONNX graph, so `Fp16` there needs an FP16 ONNX (or one with explicit casts) and
/// the shim refuses an all-FP32 graph with a message saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "float16" | "half" => Ok(Precision::Fp16),
            _ => Err(Error::InvalidArgument(format!("unknown precision {s:?} (fp32, fp16)"))),
        }
    }
}

/// Optimization profile of the batch dimension (used when the ONNX batch is dynamic;
/// a model exported with a fixed `--batch` ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProfile {
    pub min: u32,
    pub opt: u32,
    pub max: u32,
}

impl Default for BatchProfile {
    fn default() -> Self {
        BatchProfile { min: 1, opt: 1, max: 1 }
    }
}

/// Largest batch a profile may ask for (a sanity bound, not a TensorRT limit).
pub const MAX_BATCH: u32 = 256;

impl BatchProfile {
    pub fn new(min: u32, opt: u32, max: u32) -> Result<Self> {
        if min == 0 || !(min <= opt && opt <= max) || max > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "batch profile {min}:{opt}:{max} must satisfy 1 <= min <= opt <= max <= {MAX_BATCH}"
            )));
        }
        Ok(BatchProfile { min, opt, max })
    }
}

impl std::fmt::Display for BatchProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.min, self.opt, self.max)
    }
}

/// `N` (profile 1:N:N) or `MIN:OPT:MAX`.
impl std::str::FromStr for BatchProfile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("batch {s:?} is not N or MIN:OPT:MAX"));
        let parts: Vec<u32> = s.split(':').map(|p| p.trim().parse::<u32>().map_err(|_| bad())).collect::<Result<_>>()?;
        match parts[..] {
            [n] => BatchProfile::new(1, n, n),
            [min, opt, max] => BatchProfile::new(min, opt, max),
            _ => Err(bad()),
        }
    }
}

/// Parse a workspace limit: `512M`, `2G`, `1024` (MiB when no unit), `0` = TensorRT's default.
pub fn parse_workspace(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1u64 << 30),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1u64 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        _ => (t, 1u64 << 20),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("workspace {s:?} is not a size such as 512M or 2G")))?;
    n.checked_mul(mult).ok_or_else(|| Error::InvalidArgument(format!("workspace {s:?} is too large")))
}

/// Everything an engine build takes besides the ONNX file.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    pub precision: Precision,
    /// Workspace memory pool limit in bytes; 0 = TensorRT's default (the device's memory).
    pub workspace_bytes: u64,
    pub batch: BatchProfile,
    /// Timing cache file, read before and written after the build (`None`: no cache).
    pub timing_cache: Option<PathBuf>,
    /// Plugin library to load instead of TensorRT's `libnvinfer_plugin.so.<major>`
    /// (`SEGSTREAM_TRT_PLUGIN_LIB` sets it too).
    pub plugin_library: Option<PathBuf>,
    /// Prefer the `-trt` export (deformable attention as TensorRT's plugin) beside the
    /// given ONNX file when there is one.
    pub prefer_plugin_model: bool,
    /// CUDA device index.
    pub device: u32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            precision: Precision::Fp16,
            workspace_bytes: 0,
            batch: BatchProfile::default(),
            timing_cache: None,
            plugin_library: std::env::var_os("SEGSTREAM_TRT_PLUGIN_LIB").filter(|v| !v.is_empty()).map(PathBuf::from),
            prefer_plugin_model: true,
            device: 0,
        }
    }
}

/// File name of the timing cache shared by the builds of one folder.
pub const TIMING_CACHE_NAME: &str = "tensorrt.timing-cache";

/// The default timing cache: beside the engine.
pub fn default_timing_cache(engine: &Path) -> PathBuf {
    engine.parent().unwrap_or(Path::new(".")).join(TIMING_CACHE_NAME)
}

/// The engine cached beside an ONNX file: `x.onnx` → `x.fp16.engine`.
pub fn cached_engine_path(onnx: &Path, precision: Precision) -> PathBuf {
    onnx.with_extension(format!("{precision}.engine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_names_and_refuses_others() {
        assert_eq!("fp16".parse::<Precision>().unwrap(), Precision::Fp16);
        assert_eq!("FP32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!("half".parse::<Precision>().unwrap(), Precision::Fp16);
        let e = "int8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("int8") && e.contains("fp16"), "{e}");
        assert_eq!(Precision::Fp16.to_string(), "fp16");
    }

    #[test]
    fn batch_profile_forms() {
        assert_eq!("4".parse::<BatchProfile>().unwrap(), BatchProfile { min: 1, opt: 4, max: 4 });
        assert_eq!("1:2:8".parse::<BatchProfile>().unwrap(), BatchProfile { min: 1, opt: 2, max: 8 });
        for bad in ["0", "4:2:8", "1:2", "x", "", "1:2:3:4", "1:1:1000"] {
            assert!(bad.parse::<BatchProfile>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(BatchProfile::new(1, 2, 8).unwrap().to_string(), "1:2:8");
    }

    #[test]
    fn workspace_units() {
        assert_eq!(parse_workspace("512M").unwrap(), 512 << 20);
        assert_eq!(parse_workspace("2g").unwrap(), 2 << 30);
        assert_eq!(parse_workspace("64").unwrap(), 64 << 20);
        assert_eq!(parse_workspace("0").unwrap(), 0);
        assert!(parse_workspace("lots").is_err());
        assert!(parse_workspace("99999999999999G").is_err());
    }

    #[test]
    fn cache_paths_sit_beside_the_model() {
        let p = Path::new("models/m.onnx");
        assert_eq!(cached_engine_path(p, Precision::Fp16), Path::new("models/m.fp16.engine"));
        assert_eq!(cached_engine_path(p, Precision::Fp32), Path::new("models/m.fp32.engine"));
        assert_eq!(default_timing_cache(Path::new("models/m.fp16.engine")), Path::new("models/tensorrt.timing-cache"));
    }
}
