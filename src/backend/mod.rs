//! Inference backends behind one trait. A backend takes the preprocessed NCHW tensor and
//! returns the two Mask2Former outputs of the ONNX contract. [`batching`] wraps a backend
//! to share it, batched, between streams.

pub mod batching;
pub mod onnxruntime;
pub mod select;
pub mod tensorrt;

use crate::{Error, Result};

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
}
