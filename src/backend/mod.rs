//! Inference backends behind one trait. A backend takes the preprocessed NCHW tensor and
//! returns the two Mask2Former outputs of the ONNX contract.

pub mod onnxruntime;
pub mod select;
pub mod tensorrt;

use crate::Result;

/// Preprocessed network input: `pixel_values` `[N, 3, H, W]`, float32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
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
    /// View of image `n` of the batch. Panics if `n >= batch` (a programming error).
    pub fn image(&self, n: usize) -> ImageLogits<'_> {
        assert!(n < self.batch, "image index {n} out of batch {}", self.batch);
        let c = self.num_queries * self.num_classes_plus_one;
        let m = self.num_queries * self.mask_height * self.mask_width;
        ImageLogits {
            num_queries: self.num_queries,
            num_classes_plus_one: self.num_classes_plus_one,
            mask_height: self.mask_height,
            mask_width: self.mask_width,
            class_logits: &self.class_logits[n * c..(n + 1) * c],
            mask_logits: &self.mask_logits[n * m..(n + 1) * m],
        }
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
}
