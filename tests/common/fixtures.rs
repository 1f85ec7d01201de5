//! Fixtures shared by the element, batching and pipeline tests: GStreamer with the
//! segstream elements registered, a fake model card, and a fake backend with fixed logits.

use std::sync::{Arc, Once};

use gstreamer as gst;
use segstream::backend::{Backend, InputTensor, Logits};
use segstream::model::ModelCard;
use segstream::segmenter::Segmenter;

/// `gst::init` and the static registration of the segstream elements, once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        segstream::elements::register_static().expect("register the elements");
    });
}

/// Network input of the fake model (64×64), its queries and classes.
pub const IN: usize = 64;
pub const Q: usize = 3;
pub const K: usize = 3; // square, circle, background

/// The fake model's card: labels square, circle (things), background (stuff); input
/// normalised with `std` (mean 0); every card threshold `threshold`.
pub fn fake_card_with(std: f32, threshold: f32) -> ModelCard {
    let json = serde_json::json!({
        "format": "segstream.model/1",
        "name": "fake-m2f",
        "source": {"checkpoint": "test/fake"},
        "input": {"height": IN, "width": IN, "mean": [0.0, 0.0, 0.0], "std": [std, std, std], "channel_order": "RGB"},
        "num_queries": Q,
        "labels": [
            {"id": 0, "name": "square", "isthing": true, "color": [255, 0, 0]},
            {"id": 1, "name": "circle", "isthing": true, "color": [0, 255, 0]},
            {"id": 2, "name": "background", "isthing": false, "color": [0, 0, 255]}
        ],
        "defaults": {"task": "panoptic", "score_threshold": threshold, "overlap_threshold": threshold, "mask_threshold": 0.5}
    });
    ModelCard::from_json(&json.to_string(), std::path::Path::new("fake.json")).expect("valid card")
}

/// The element tests' card: std 1, thresholds 0.8.
pub fn fake_card() -> ModelCard {
    fake_card_with(1.0, 0.8)
}

/// Returns the same logits for every frame: query 0 → class 0 ("square") over the left
/// half of the network input, query 1 → class 2 ("background") over the right half,
/// query 2 → no-object.
pub struct FakeBackend {
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn input_size(&self) -> (usize, usize) {
        (IN, IN)
    }
    fn output_dims(&self) -> (usize, usize) {
        (Q, K + 1)
    }
    fn infer(&mut self, input: &InputTensor) -> segstream::Result<Logits> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(input.shape[1..], [3, IN, IN]);
        let (mh, mw) = (IN / 4, IN / 4);
        let mut class_logits = vec![-10.0f32; Q * (K + 1)];
        class_logits[0] = 10.0; // q0: square
        class_logits[(K + 1) + 2] = 10.0; // q1: background
        class_logits[2 * (K + 1) + K] = 10.0; // q2: no-object
        let mut mask_logits = vec![-10.0f32; Q * mh * mw];
        for y in 0..mh {
            for x in 0..mw {
                if x < mw / 2 {
                    mask_logits[y * mw + x] = 10.0;
                } else {
                    mask_logits[mh * mw + y * mw + x] = 10.0;
                }
            }
        }
        Ok(Logits {
            batch: 1,
            num_queries: Q,
            num_classes_plus_one: K + 1,
            mask_height: mh,
            mask_width: mw,
            class_logits,
            mask_logits,
        })
    }
}

/// A segmenter on [`FakeBackend`] and the count of its network calls.
pub fn fake_segmenter() -> (Segmenter, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = Segmenter::with_backend(fake_card(), Box::new(FakeBackend { calls: calls.clone() }), std::path::Path::new("fake.onnx"))
        .expect("fake backend matches the card");
    (s, calls)
}
