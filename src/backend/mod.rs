//! Inference backends behind one trait. A backend takes the preprocessed NCHW tensor and
//! returns the two Mask2Former outputs of the ONNX contract. [`batching`] wraps a backend
//! to share it, batched, between streams.

pub mod batching;
pub mod onnxruntime;
pub mod openvino;
pub mod select;
pub mod tensorrt;
pub mod triton;

use crate::{Error, Result};

/// Preprocessed network input: `pixel_values` `[N, 3, H, W]`, float32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl InputTensor {
    /// Check the tensor against a model's input `(H, W)` and fixed batch (`None`: any):
    /// returns the batch `N`. A mismatch is [`Error::InvalidArgument`].
    pub fn check(&self, input_hw: (usize, usize), fixed_batch: Option<usize>) -> Result<usize> {
        let [n, c, h, w] = self.shape;
        if c != 3 || (h, w) != input_hw {
            return Err(Error::InvalidArgument(format!(
                "input tensor is {:?}, model takes [N,3,{},{}]",
                self.shape, input_hw.0, input_hw.1
            )));
        }
        if n == 0 || fixed_batch.is_some_and(|b| b != n) {
            return Err(Error::InvalidArgument(format!("batch {n} does not fit the model's batch {fixed_batch:?}")));
        }
        if self.data.len() != n * c * h * w {
            return Err(Error::InvalidArgument(format!(
                "input tensor holds {} values, shape needs {}",
                self.data.len(),
                n * c * h * w
            )));
        }
        Ok(n)
    }
}

/// What a model that keeps the ONNX contract declares ([`check_contract`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractDims {
    /// Fixed input `(H, W)`.
    pub input_hw: (usize, usize),
    /// Batch size fixed in the model, or `None` when dynamic.
    pub fixed_batch: Option<usize>,
    pub queries: usize,
    pub classes_plus_one: usize,
}

/// Check a model's declared inputs and outputs (name, dimensions with `-1` for a dynamic
/// one) against the ONNX contract (see DESIGN.md): one input `pixel_values` `[N,3,H,W]`
/// with fixed H, W multiples of 32; `class_queries_logits` `[N,Q,K+1]` and
/// `masks_queries_logits` `[N,Q,H/4,W/4]`.
pub fn check_contract(inputs: &[(String, Vec<i64>)], outputs: &[(String, Vec<i64>)]) -> Result<ContractDims> {
    use onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
    if inputs.len() != 1 || inputs[0].0 != INPUT_NAME {
        let names: Vec<_> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::ModelContract(format!("expected one input {INPUT_NAME:?}, model has {names:?}")));
    }
    let in_dims = &inputs[0].1;
    if in_dims.len() != 4 || in_dims[1] != 3 || in_dims[2] <= 0 || in_dims[3] <= 0 {
        return Err(Error::ModelContract(format!(
            "input {INPUT_NAME:?} must be [N,3,H,W] with fixed H and W, model has {in_dims:?}"
        )));
    }
    let (h, w) = (in_dims[2] as usize, in_dims[3] as usize);
    if h % 32 != 0 || w % 32 != 0 {
        return Err(Error::ModelContract(format!("input size {h}x{w} is not a multiple of 32")));
    }
    let names: Vec<_> = outputs.iter().map(|(n, _)| n.as_str()).collect();
    let find = |n: &str| {
        outputs
            .iter()
            .find(|(o, _)| o == n)
            .map(|(_, d)| d)
            .ok_or_else(|| Error::ModelContract(format!("missing output {n:?} (outputs: {names:?})")))
    };
    let cls = find(CLASS_OUTPUT)?;
    let msk = find(MASK_OUTPUT)?;
    if cls.len() != 3 || cls[1] <= 0 || cls[2] < 2 {
        return Err(Error::ModelContract(format!("{CLASS_OUTPUT:?} must be [N,Q,K+1] with fixed Q and K, model has {cls:?}")));
    }
    if msk.len() != 4 || msk[1] != cls[1] {
        return Err(Error::ModelContract(format!("{MASK_OUTPUT:?} must be [N,Q,H/4,W/4], model has {msk:?}")));
    }
    let (mh, mw) = (msk[2], msk[3]);
    if (mh > 0 && mh as usize != h / 4) || (mw > 0 && mw as usize != w / 4) {
        return Err(Error::ModelContract(format!("{MASK_OUTPUT:?} is {mh}x{mw}, expected {}x{} (input / 4)", h / 4, w / 4)));
    }
    Ok(ContractDims {
        input_hw: (h, w),
        fixed_batch: (in_dims[0] > 0).then_some(in_dims[0] as usize),
        queries: cls[1] as usize,
        classes_plus_one: cls[2] as usize,
    })
}

/// The two outputs of the network for a batch.
///
/// `class_logits`: `[N, Q, K+1]` (last class = no-object);
/// `mask_logits`: `[N, Q, h, w]` with `h = H/4`, `w = W/4`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub num_queries: usize,
    /// K + 1 (the last entry is the no-object class).
    pub num_classes_plus_one: usize,
    pub mask_height: usize,
    pub mask_width: usize,
    pub class_logits: Vec<f32>,
    pub mask_logits: Vec<f32>,
}

/// A borrowed view of one image of a [`Logits`] batch.
#[derive(Debug, Clone, Copy)]
pub struct ImageLogits<'a> {
    pub num_queries: usize,
    pub num_classes_plus_one: usize,
    pub mask_height: usize,
    pub mask_width: usize,
    /// `[Q, K+1]`
    pub class_logits: &'a [f32],
    /// `[Q, h, w]`
    pub mask_logits: &'a [f32],
}

impl Logits {
    /// View of image `n` of the batch. A batch index past the end, or buffers shorter
    /// than the dimensions say (a backend that broke the contract), is an
    /// [`Error::ModelContract`](crate::Error::ModelContract), never a panic.
    pub fn image(&self, n: usize) -> Result<ImageLogits<'_>> {
        if n >= self.batch {
            return Err(Error::ModelContract(format!("image index {n} out of a batch of {}", self.batch)));
        }
        let c = self.num_queries * self.num_classes_plus_one;
        let m = self.num_queries * self.mask_height * self.mask_width;
        let need = |per: usize| self.batch.checked_mul(per);
        if need(c) != Some(self.class_logits.len()) || need(m) != Some(self.mask_logits.len()) {
            return Err(Error::ModelContract(format!(
                "output buffers of {} class and {} mask values do not match batch {} × Q {} × K+1 {} and masks {}×{}",
                self.class_logits.len(),
                self.mask_logits.len(),
                self.batch,
                self.num_queries,
                self.num_classes_plus_one,
                self.mask_height,
                self.mask_width
            )));
        }
        Ok(ImageLogits {
            num_queries: self.num_queries,
            num_classes_plus_one: self.num_classes_plus_one,
            mask_height: self.mask_height,
            mask_width: self.mask_width,
            class_logits: &self.class_logits[n * c..(n + 1) * c],
            mask_logits: &self.mask_logits[n * m..(n + 1) * m],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(batch: usize, class_len: usize, mask_len: usize) -> Logits {
        Logits {
            batch,
            num_queries: 2,
            num_classes_plus_one: 3,
            mask_height: 2,
            mask_width: 2,
            class_logits: vec![0.0; class_len],
            mask_logits: vec![0.0; mask_len],
        }
    }

    #[test]
    fn image_views_each_batch_entry() {
        let mut l = logits(2, 12, 16);
        l.class_logits[6] = 1.0;
        l.mask_logits[8] = 2.0;
        let v = l.image(1).unwrap();
        assert_eq!(v.class_logits[0], 1.0);
        assert_eq!(v.mask(0)[0], 2.0);
    }

    /// A backend that only implements the required methods.
    struct Plain;
    impl Backend for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn input_size(&self) -> (usize, usize) {
            (32, 32)
        }
        fn output_dims(&self) -> (usize, usize) {
            (2, 3)
        }
        fn infer(&mut self, _: &InputTensor) -> Result<Logits> {
            Ok(logits(1, 6, 8))
        }
    }

    #[test]
    fn default_device_path_is_not_supported() {
        let mut b: Box<dyn Backend> = Box::new(Plain);
        let io = DeviceIo { device: 0, input: 0, class_logits: 0, mask_logits: 0, stream: std::ptr::null_mut() };
        // SAFETY: the default implementation touches none of the addresses.
        assert!(unsafe { b.infer_device(&io) }.is_none());
    }

    #[test]
    fn contract_checks_names_and_dims() {
        let io = |v: &[(&str, &[i64])]| v.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect::<Vec<_>>();
        let inputs = io(&[("pixel_values", &[-1, 3, 64, 96])]);
        let outputs = io(&[("class_queries_logits", &[-1, 5, 4]), ("masks_queries_logits", &[-1, 5, 16, 24])]);
        let d = check_contract(&inputs, &outputs).unwrap();
        assert_eq!(d, ContractDims { input_hw: (64, 96), fixed_batch: None, queries: 5, classes_plus_one: 4 });
        let fixed = io(&[("pixel_values", &[1, 3, 64, 96])]);
        assert_eq!(check_contract(&fixed, &outputs).unwrap().fixed_batch, Some(1));
        for (i, o, what) in [
            (io(&[("images", &[1, 3, 64, 96])]), outputs.clone(), "expected one input"),
            (io(&[("pixel_values", &[1, 3, 60, 96])]), outputs.clone(), "multiple of 32"),
            (inputs.clone(), outputs[..1].to_vec(), "missing output"),
            (inputs.clone(), io(&[("class_queries_logits", &[-1, 5, 4]), ("masks_queries_logits", &[-1, 5, 8, 24])]), "input / 4"),
        ] {
            let e = check_contract(&i, &o).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        let t = InputTensor { shape: [2, 3, 64, 96], data: vec![0.0; 2 * 3 * 64 * 96] };
        assert_eq!(t.check((64, 96), None).unwrap(), 2);
        assert!(t.check((64, 96), Some(1)).is_err());
        assert!(t.check((32, 96), None).is_err());
    }

    #[test]
    fn image_out_of_batch_or_short_buffers_is_a_typed_error() {
        for (l, n, what) in [
            (logits(1, 6, 8), 1, "out of a batch"),
            (logits(2, 6, 16), 0, "do not match"),
            (logits(1, 6, 7), 0, "do not match"),
        ] {
            match l.image(n) {
                Err(Error::ModelContract(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("expected a contract error, got {other:?}"),
            }
        }
    }
}

impl Logits {
    /// Images `start..start + len` of the batch as a batch of their own.
    pub fn slice(&self, start: usize, len: usize) -> Result<Logits> {
        if len == 0 || start.checked_add(len).is_none_or(|end| end > self.batch) {
            return Err(Error::ModelContract(format!("images {start}..+{len} out of a batch of {}", self.batch)));
        }
        // Checks the buffer lengths against the dimensions.
        self.image(start)?;
        let c = self.num_queries * self.num_classes_plus_one;
        let m = self.num_queries * self.mask_height * self.mask_width;
        Ok(Logits {
            batch: len,
            class_logits: self.class_logits[start * c..(start + len) * c].to_vec(),
            mask_logits: self.mask_logits[start * m..(start + len) * m].to_vec(),
            ..*self
        })
    }

    /// Append the images of `other` (same Q, K+1 and mask size) to this batch.
    pub fn append(&mut self, other: Logits) -> Result<()> {
        let dims = |l: &Logits| (l.num_queries, l.num_classes_plus_one, l.mask_height, l.mask_width);
        if dims(self) != dims(&other) {
            return Err(Error::ModelContract(format!(
                "batch parts disagree: Q, K+1, h, w {:?} vs {:?}",
                dims(self),
                dims(&other)
            )));
        }
        self.batch += other.batch;
        self.class_logits.extend_from_slice(&other.class_logits);
        self.mask_logits.extend_from_slice(&other.mask_logits);
        Ok(())
    }
}

impl<'a> ImageLogits<'a> {
    /// Class logits of query `q` (`K+1` values).
    pub fn class_row(&self, q: usize) -> &'a [f32] {
        let k = self.num_classes_plus_one;
        &self.class_logits[q * k..(q + 1) * k]
    }
    /// Mask logits of query `q` (`h*w` values, row-major).
    pub fn mask(&self, q: usize) -> &'a [f32] {
        let n = self.mask_height * self.mask_width;
        &self.mask_logits[q * n..(q + 1) * n]
    }
}

/// Device addresses for one image ([`Backend::infer_device`]): the input `pixel_values`
/// f32 `[1, 3, H, W]` and the outputs `class_queries_logits` f32 `[1, Q, K+1]` and
/// `masks_queries_logits` f32 `[1, Q, H/4, W/4]` (dimensions: [`Backend::input_size`] and
/// [`Backend::output_dims`]), all allocated in the primary CUDA context of device
/// `device`, which is current on the calling thread, and the CUDA stream (`CUstream` /
/// `cudaStream_t`, null = the legacy default stream) to enqueue on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIo {
    /// CUDA device ordinal the addresses and the stream belong to.
    pub device: usize,
    pub input: u64,
    pub class_logits: u64,
    pub mask_logits: u64,
    pub stream: *mut std::ffi::c_void,
}

/// What every backend does: run the network on a preprocessed batch.
pub trait Backend: Send {
    /// Human-readable name (e.g. `onnxruntime-cpu`).
    fn name(&self) -> &str;
    /// Fixed network input size `(height, width)`.
    fn input_size(&self) -> (usize, usize);
    /// Number of queries Q and classes K+1 the model outputs.
    fn output_dims(&self) -> (usize, usize);
    /// Run the network. `input.shape[1..]` must be `[3, H, W]` of [`Backend::input_size`].
    fn infer(&mut self, input: &InputTensor) -> Result<Logits>;
    /// Largest batch `N` one [`Backend::infer`] call takes. The default, 1, is safe for
    /// any backend: a batching group ([`batching`]) then runs a batch
    /// image by image. ONNX Runtime overrides it for models with a dynamic batch dimension.
    fn max_batch(&self) -> usize {
        1
    }
    /// How this backend runs the model where it decided something the user did not fix
    /// (OpenVINO: the library, the device, the precision `precision=auto` picked and why),
    /// for the command to print and the element to report. The default: `None`.
    fn details(&self) -> Option<String> {
        None
    }
    /// Run the network on one image in device memory, the outputs written to device
    /// memory: no host copy. `None` when this backend (or this model on it: another
    /// device, a batch that cannot be 1, I/O that is not f32) has no device path; the
    /// caller then uses [`Backend::infer`]. `Some(Err(_))`: the device path failed.
    ///
    /// The work is finished when the call returns (the backend synchronises `io.stream`),
    /// so the outputs can be read and the buffers reused or freed right after. The
    /// default: `None`.
    ///
    /// # Safety
    /// `io.input`, `io.class_logits` and `io.mask_logits` must be device memory of the
    /// primary context of device `io.device`, which is current on the calling thread,
    /// holding at least the bytes of their tensors as described on [`DeviceIo`] (f32,
    /// batch 1), each address 256-byte aligned (`cuMemAlloc` gives such addresses); the
    /// input must not be written, nor the outputs read or written, by other work until
    /// the call returns. `io.stream` must be null or a live stream of that context; the
    /// input's producer must be ordered before the call on it (enqueued on the same
    /// stream, or synchronised). All of them must stay valid until the call returns.
    unsafe fn infer_device(&mut self, io: &DeviceIo) -> Option<Result<()>> {
        let _ = io;
        None
    }
}
