//! Checks that need no TensorRT: an engine's I/O against the segstream ONNX contract, the
//! deformable-attention plugin in an ONNX file, and where models, engines and cards live.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::backend::onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
use crate::{Error, Result};

/// The op type `engines/export.py --deform-attn trt-plugin` writes.
pub const PLUGIN_OP: &str = "MultiscaleDeformableAttnPlugin_TRT";

/// TensorRT's `DataType::kFLOAT` (same value in 10.x and 11.x).
pub const DTYPE_FLOAT: i32 = 0;
/// TensorRT's `DataType::kHALF`.
pub const DTYPE_HALF: i32 = 1;

fn dtype_name(d: i32) -> String {
    match d {
        0 => "float32".into(),
        1 => "float16".into(),
        2 => "int8".into(),
        3 => "int32".into(),
        4 => "bool".into(),
        5 => "uint8".into(),
        6 => "fp8".into(),
        7 => "bfloat16".into(),
        8 => "int64".into(),
        other => format!("TensorRT DataType {other}"),
    }
}

/// Bytes per element of a TensorRT `DataType`, `None` for sub-byte or unknown types.
pub fn dtype_size(d: i32) -> Option<usize> {
    match d {
        0 | 3 => Some(4),     // float32, int32
        1 | 7 => Some(2),     // float16, bfloat16
        2 | 4 | 5 | 6 => Some(1), // int8, bool, uint8, fp8
        8 => Some(8),         // int64
        _ => None,
    }
}

/// Alignment TensorRT requires of every I/O tensor address given to `setTensorAddress`
/// (documented for `IExecutionContext::setTensorAddress`; 256 bytes). `cudaMalloc`
/// returns such addresses; a sub-buffer (one image of a batch, a slice of a pool) may not.
pub const IO_ALIGNMENT: usize = 256;

/// Bytes a tensor of `dims` (all resolved, as the execution context reports them after
/// the input shape is set) and `dtype` takes.
pub fn tensor_bytes(name: &str, dims: &[i64], dtype: i32) -> Result<usize> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    let Some(size) = dtype_size(dtype) else {
        return bad(format!("{name:?} is {}, whose size this backend does not know", dtype_name(dtype)));
    };
    let mut n = size;
    for &d in dims {
        if d < 0 {
            return bad(format!("{name:?} has unresolved shape {dims:?} (is the input shape set?)"));
        }
        n = match n.checked_mul(d as usize) {
            Some(v) => v,
            None => return bad(format!("{name:?} of shape {dims:?} does not fit in memory")),
        };
    }
    Ok(n)
}

/// Check one binding before `enqueueV3`: its buffer (`have` bytes at `addr`) holds the
/// tensor at the shape the execution context reports (`dims`), and `addr` is aligned to
/// [`IO_ALIGNMENT`]. TensorRT itself would write past a short output buffer.
pub fn check_binding(name: &str, dims: &[i64], dtype: i32, addr: usize, have: usize) -> Result<()> {
    if addr == 0 {
        return Err(Error::InvalidArgument(format!("{name:?} is bound to a null pointer")));
    }
    if !addr.is_multiple_of(IO_ALIGNMENT) {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is bound to {addr:#x}, which is not aligned to {IO_ALIGNMENT} bytes as TensorRT requires"
        )));
    }
    let need = tensor_bytes(name, dims, dtype)?;
    if have < need {
        return Err(Error::InvalidArgument(format!(
            "{name:?} needs {need} bytes at shape {dims:?}, its buffer has {have}"
        )));
    }
    Ok(())
}

/// One I/O tensor of an engine, as TensorRT reports it (`-1` = dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoTensor {
    pub name: String,
    pub is_input: bool,
    pub dtype: i32,
    pub dims: Vec<i64>,
}

/// What the contract check learns about an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineIo {
    pub input_hw: (usize, usize),
    pub queries: usize,
    pub classes_plus_one: usize,
    pub mask_hw: (usize, usize),
    /// Batch fixed in the engine, or `None` when it comes from an optimization profile.
    pub fixed_batch: Option<usize>,
}

/// Check an engine's I/O tensors against the segstream ONNX contract: exactly one input
/// `pixel_values` float32 `[N,3,H,W]` (H, W fixed multiples of 32), exactly the outputs
/// `class_queries_logits` float32 `[N,Q,K+1]` and `masks_queries_logits` float32
/// `[N,Q,H/4,W/4]`. Every tensor must be bound at execution, so extra ones are refused too.
pub fn check_io(tensors: &[IoTensor]) -> Result<EngineIo> {
    let bad = |m: String| Err(Error::ModelContract(m));
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&IoTensor> = tensors.iter().filter(|t| t.is_input).collect();
    if inputs.len() != 1 || inputs[0].name != INPUT_NAME {
        let n: Vec<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
        return bad(format!("expected one input {INPUT_NAME:?}, the engine has {n:?}"));
    }
    let outputs: Vec<&IoTensor> = tensors.iter().filter(|t| !t.is_input).collect();
    let find = |n: &str| outputs.iter().find(|t| t.name == n).copied();
    let (Some(cls), Some(msk)) = (find(CLASS_OUTPUT), find(MASK_OUTPUT)) else {
        return bad(format!("expected outputs {CLASS_OUTPUT:?} and {MASK_OUTPUT:?}, the engine has {names:?}"));
    };
    if outputs.len() != 2 {
        return bad(format!("expected exactly the outputs {CLASS_OUTPUT:?} and {MASK_OUTPUT:?}, the engine has {names:?}"));
    }
    for t in [inputs[0], cls, msk] {
        if t.dtype != DTYPE_FLOAT {
            return bad(format!(
                "{:?} is {}, the contract says float32 (keep float32 I/O in the ONNX; FP16 belongs inside the graph)",
                t.name,
                dtype_name(t.dtype)
            ));
        }
    }
    let i = &inputs[0].dims;
    if i.len() != 4 || i[1] != 3 || i[2] <= 0 || i[3] <= 0 {
        return bad(format!("input {INPUT_NAME:?} must be [N,3,H,W] with fixed H and W, the engine has {i:?}"));
    }
    let (h, w) = (i[2] as usize, i[3] as usize);
    if h % 32 != 0 || w % 32 != 0 {
        return bad(format!("input size {h}x{w} is not a multiple of 32"));
    }
    let c = &cls.dims;
    if c.len() != 3 || c[1] <= 0 || c[2] < 2 {
        return bad(format!("{CLASS_OUTPUT:?} must be [N,Q,K+1] with fixed Q and K, the engine has {c:?}"));
    }
    let m = &msk.dims;
    if m.len() != 4 || m[1] != c[1] || m[2] as usize != h / 4 || m[3] as usize != w / 4 {
        return bad(format!(
            "{MASK_OUTPUT:?} must be [N,{},{},{}] (queries, input / 4), the engine has {m:?}",
            c[1],
            h / 4,
            w / 4
        ));
    }
    let batches = [i[0], c[0], m[0]];
    let fixed_batch = if batches.iter().all(|&b| b > 0) {
        if batches.iter().any(|&b| b != i[0]) {
            return bad(format!("batch dimensions disagree: {batches:?}"));
        }
        Some(i[0] as usize)
    } else {
        None
    };
    Ok(EngineIo {
        input_hw: (h, w),
        queries: c[1] as usize,
        classes_plus_one: c[2] as usize,
        mask_hw: (h / 4, w / 4),
        fixed_batch,
    })
}

/// The bindings of the device path ([`crate::backend::Backend::infer_device`]) for one
/// image: the input shape to set, and each I/O tensor's name with its size in bytes, in
/// the order input, class logits, mask logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIoPlan {
    pub input_dims: [i64; 4],
    pub tensors: [(&'static str, usize); 3],
}

/// The device path's bindings for an engine whose I/O tensors are `tensors` (checked into
/// `io` by [`check_io`]) and whose batch range is `min_batch..=max_batch`: one image,
/// float32 everywhere. `None` when the engine cannot run that way: a tensor that is not
/// float32, a batch range without 1, or sizes that overflow.
pub fn device_io_plan(tensors: &[IoTensor], io: &EngineIo, min_batch: usize, max_batch: usize) -> Option<DeviceIoPlan> {
    if !(min_batch..=max_batch).contains(&1) || io.fixed_batch.is_some_and(|b| b != 1) {
        return None;
    }
    for name in [INPUT_NAME, CLASS_OUTPUT, MASK_OUTPUT] {
        if tensors.iter().find(|t| t.name == name)?.dtype != DTYPE_FLOAT {
            return None;
        }
    }
    let f32_bytes = |dims: &[usize]| dims.iter().try_fold(size_of::<f32>(), |n, &d| n.checked_mul(d));
    let (h, w) = io.input_hw;
    let (mh, mw) = io.mask_hw;
    let dims = [1, 3, i64::try_from(h).ok()?, i64::try_from(w).ok()?];
    Some(DeviceIoPlan {
        input_dims: dims,
        tensors: [
            (INPUT_NAME, f32_bytes(&[3, h, w])?),
            (CLASS_OUTPUT, f32_bytes(&[io.queries, io.classes_plus_one])?),
            (MASK_OUTPUT, f32_bytes(&[io.queries, mh, mw])?),
        ],
    })
}

/// Whether an ONNX file holds a `MultiscaleDeformableAttnPlugin_TRT` node. Op types are
/// stored verbatim in the protobuf, so a byte search answers without an ONNX parser.
pub fn onnx_uses_plugin(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let needle = PLUGIN_OP.as_bytes();
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    loop {
        let n = f.read(&mut buf[carry..]).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(false);
        }
        let end = carry + n;
        if buf[..end].windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
        // Keep the tail that could start a match across the chunk boundary.
        let keep = (needle.len() - 1).min(end);
        buf.copy_within(end - keep..end, 0);
        carry = keep;
    }
}

/// The `--deform-attn trt-plugin` export beside a portable ONNX file (`x.onnx` →
/// `x-trt.onnx`, the exporter's naming), if there is one.
pub fn plugin_variant(onnx: &Path) -> Option<PathBuf> {
    let stem = onnx.file_stem()?.to_str()?;
    if stem.ends_with("-trt") {
        return None;
    }
    let p = onnx.with_file_name(format!("{stem}-trt.onnx"));
    p.is_file().then_some(p)
}

/// What `model=` names for the TensorRT backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFile {
    /// A built engine (`.engine` / `.plan`).
    Engine(PathBuf),
    /// An ONNX file: the engine is built from it and cached beside it.
    Onnx(PathBuf),
}

impl ModelFile {
    pub fn classify(model: &Path) -> Result<Self> {
        match model.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("engine" | "plan") => Ok(ModelFile::Engine(model.to_path_buf())),
            Some("onnx") => Ok(ModelFile::Onnx(model.to_path_buf())),
            _ => Err(Error::InvalidArgument(format!(
                "{}: the TensorRT backend takes a .engine file (segstream build-engine) or an .onnx model",
                model.display()
            ))),
        }
    }
}

/// The model card of a model file. For `x.onnx` it is `x.json`; for an engine
/// `x.fp16.engine` it is `x.fp16.json` when that exists, else `x.json` (the card of the
/// ONNX file the engine was cached from).
pub fn card_path_for(model: &Path) -> PathBuf {
    let direct = model.with_extension("json");
    if matches!(ModelFile::classify(model), Ok(ModelFile::Engine(_))) && !direct.is_file() {
        let inner = model.with_extension("");
        if matches!(inner.extension().and_then(|e| e.to_str()), Some("fp16" | "fp32")) {
            return inner.with_extension("json");
        }
    }
    direct
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, is_input: bool, dims: &[i64]) -> IoTensor {
        IoTensor { name: name.into(), is_input, dtype: DTYPE_FLOAT, dims: dims.to_vec() }
    }

    fn good(batch: i64) -> Vec<IoTensor> {
        vec![
            t(INPUT_NAME, true, &[batch, 3, 288, 512]),
            t(CLASS_OUTPUT, false, &[batch, 20, 7]),
            t(MASK_OUTPUT, false, &[batch, 20, 72, 128]),
        ]
    }

    fn err(v: &[IoTensor]) -> String {
        match check_io(v) {
            Err(Error::ModelContract(m)) => m,
            other => panic!("expected a contract error, got {other:?}"),
        }
    }

    #[test]
    fn contract_accepts_fixed_and_dynamic_batch() {
        let io = check_io(&good(-1)).unwrap();
        assert_eq!(io, EngineIo { input_hw: (288, 512), queries: 20, classes_plus_one: 7, mask_hw: (72, 128), fixed_batch: None });
        assert_eq!(check_io(&good(2)).unwrap().fixed_batch, Some(2));
        // Order of tensors does not matter.
        let mut v = good(1);
        v.reverse();
        assert!(check_io(&v).is_ok());
    }

    #[test]
    fn contract_refuses_wrong_names_and_counts() {
        let mut v = good(1);
        v[0].name = "images".into();
        assert!(err(&v).contains("pixel_values"));
        let mut v = good(1);
        v[2].name = "pred_masks".into();
        assert!(err(&v).contains("masks_queries_logits"));
        let mut v = good(1);
        v.push(t("aux", false, &[1, 2]));
        assert!(err(&v).contains("exactly"));
        let mut v = good(1);
        v.push(t("second_input", true, &[1]));
        assert!(err(&v).contains("one input"));
    }

    #[test]
    fn contract_refuses_wrong_shapes_and_types() {
        let mut v = good(1);
        v[0].dims = vec![1, 3, -1, 512];
        assert!(err(&v).contains("fixed H and W"));
        let mut v = good(1);
        v[0].dims = vec![1, 3, 300, 512];
        assert!(err(&v).contains("multiple of 32"));
        let mut v = good(1);
        v[2].dims = vec![1, 20, 144, 256];
        assert!(err(&v).contains("input / 4"));
        let mut v = good(1);
        v[2].dims = vec![1, 10, 72, 128];
        assert!(err(&v).contains("[N,20,72,128]"));
        let mut v = good(1);
        v[1].dims = vec![1, 20, 1];
        assert!(err(&v).contains("K+1"));
        let mut v = good(1);
        v[1].dtype = DTYPE_HALF;
        assert!(err(&v).contains("float16"));
        let mut v = good(2);
        v[1].dims[0] = 1;
        assert!(err(&v).contains("disagree"));
    }

    /// Item 14: output sizes come from the shape after `setInputShape`, and a short buffer
    /// is refused before TensorRT writes into it.
    #[test]
    fn binding_sizes_follow_the_resolved_shape() {
        assert_eq!(tensor_bytes("m", &[2, 20, 72, 128], DTYPE_FLOAT).unwrap(), 2 * 20 * 72 * 128 * 4);
        assert_eq!(tensor_bytes("m", &[2, 20, 72, 128], DTYPE_HALF).unwrap(), 2 * 20 * 72 * 128 * 2);
        assert_eq!(tensor_bytes("s", &[], DTYPE_FLOAT).unwrap(), 4);
        // The engine-level shape (-1 batch) is not a size.
        let e = tensor_bytes("m", &[-1, 20, 72, 128], DTYPE_FLOAT).unwrap_err().to_string();
        assert!(e.contains("unresolved"), "{e}");
        assert!(tensor_bytes("m", &[i64::MAX, i64::MAX], DTYPE_FLOAT).is_err());
        assert!(tensor_bytes("m", &[1], 99).is_err());
        let a = 0x7f00_0000_0000usize;
        let need = 4 * 20 * 72 * 128 * 4;
        check_binding(MASK_OUTPUT, &[4, 20, 72, 128], DTYPE_FLOAT, a, need).unwrap();
        // A buffer sized for batch 1 bound at batch 4.
        let e = check_binding(MASK_OUTPUT, &[4, 20, 72, 128], DTYPE_FLOAT, a, need / 4).unwrap_err().to_string();
        assert!(e.contains(&format!("needs {need} bytes")) && e.contains(&format!("has {}", need / 4)), "{e}");
    }

    /// Item 16: I/O addresses are 256-byte aligned.
    #[test]
    fn binding_addresses_are_aligned() {
        let base = 0x7f00_0000_0000usize;
        check_binding("x", &[1, 3], DTYPE_FLOAT, base + 256, 12).unwrap();
        // One image into a batch of [3,288,512] float32: 1 769 472 bytes, a multiple of 256.
        check_binding("x", &[1, 3, 288, 512], DTYPE_FLOAT, base + 3 * 288 * 512 * 4, 3 * 288 * 512 * 4).unwrap();
        // Class logits of one image [20,7] float32 = 560 bytes: the second image's slice
        // is misaligned.
        let e = check_binding(CLASS_OUTPUT, &[1, 20, 7], DTYPE_FLOAT, base + 560, 560).unwrap_err().to_string();
        assert!(e.contains("not aligned to 256"), "{e}");
        assert!(check_binding("x", &[1], DTYPE_FLOAT, 0, 4).is_err());
    }

    #[test]
    fn device_plan_binds_one_float_image() {
        for batch in [-1, 1] {
            let v = good(batch);
            let io = check_io(&v).unwrap();
            let p = device_io_plan(&v, &io, 1, if batch < 0 { 4 } else { 1 }).unwrap();
            assert_eq!(p.input_dims, [1, 3, 288, 512]);
            assert_eq!(
                p.tensors,
                [(INPUT_NAME, 3 * 288 * 512 * 4), (CLASS_OUTPUT, 20 * 7 * 4), (MASK_OUTPUT, 20 * 72 * 128 * 4)]
            );
            // The sizes are those the execution context checks at the resolved shapes.
            for ((name, bytes), t) in p.tensors.iter().zip(&v) {
                let mut dims = t.dims.clone();
                dims[0] = 1;
                assert_eq!(*bytes, tensor_bytes(name, &dims, DTYPE_FLOAT).unwrap(), "{name}");
            }
        }
    }

    #[test]
    fn device_plan_refuses_what_one_float_image_cannot_run() {
        // A fixed batch of 2, or a profile that starts above 1.
        let v = good(2);
        assert_eq!(device_io_plan(&v, &check_io(&v).unwrap(), 2, 2), None);
        let v = good(-1);
        let io = check_io(&v).unwrap();
        assert_eq!(device_io_plan(&v, &io, 2, 8), None);
        assert!(device_io_plan(&v, &io, 1, 8).is_some());
        // Not float32 (check_io refuses it already; the plan does not rely on that).
        let mut h = good(-1);
        h[2].dtype = DTYPE_HALF;
        assert_eq!(device_io_plan(&h, &io, 1, 1), None);
        // A tensor list without the contract's names.
        assert_eq!(device_io_plan(&v[..2], &io, 1, 1), None);
        // Sizes that do not fit.
        let huge = EngineIo { queries: usize::MAX / 2, ..io };
        assert_eq!(device_io_plan(&v, &huge, 1, 1), None);
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("segstream-trt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn plugin_node_is_found_across_chunks() {
        let d = tmp("plugin");
        let with = d.join("with.onnx");
        // Put the op name across the 1 MiB chunk boundary.
        let mut bytes = vec![7u8; (1 << 20) - 10];
        bytes.extend_from_slice(PLUGIN_OP.as_bytes());
        bytes.extend_from_slice(&[0u8; 100]);
        std::fs::write(&with, &bytes).unwrap();
        assert!(onnx_uses_plugin(&with).unwrap());
        let without = d.join("without.onnx");
        std::fs::write(&without, b"GridSample GridSample").unwrap();
        assert!(!onnx_uses_plugin(&without).unwrap());
        assert!(onnx_uses_plugin(&d.join("missing.onnx")).is_err());
        // The shipped sample is a portable export.
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/models/shapes-m2f.onnx");
        assert!(!onnx_uses_plugin(&sample).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn plugin_variant_and_card_paths() {
        let d = tmp("paths");
        let onnx = d.join("m.onnx");
        std::fs::write(&onnx, b"x").unwrap();
        assert_eq!(plugin_variant(&onnx), None);
        std::fs::write(d.join("m-trt.onnx"), b"x").unwrap();
        assert_eq!(plugin_variant(&onnx), Some(d.join("m-trt.onnx")));
        assert_eq!(plugin_variant(&d.join("m-trt.onnx")), None);

        assert_eq!(card_path_for(&onnx), d.join("m.json"));
        assert_eq!(card_path_for(&d.join("m.fp16.engine")), d.join("m.json"));
        std::fs::write(d.join("m.fp16.json"), b"{}").unwrap();
        assert_eq!(card_path_for(&d.join("m.fp16.engine")), d.join("m.fp16.json"));
        assert_eq!(card_path_for(&d.join("custom.engine")), d.join("custom.json"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn model_file_kinds() {
        assert_eq!(ModelFile::classify(Path::new("a.engine")).unwrap(), ModelFile::Engine("a.engine".into()));
        assert_eq!(ModelFile::classify(Path::new("a.PLAN")).unwrap(), ModelFile::Engine("a.PLAN".into()));
        assert_eq!(ModelFile::classify(Path::new("a.onnx")).unwrap(), ModelFile::Onnx("a.onnx".into()));
        assert!(ModelFile::classify(Path::new("a.pt")).is_err());
    }
}
