//! One frame in, one [`Segmentation`] out: preprocess → backend → postprocess. The
//! elements and the command call this; the user's post-processing settings come with each
//! frame ([`PostSettings`]) and meet the model card's defaults in
//! [`PostSettings::resolve`], so a segmenter holds no user setting of its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::onnxruntime::{OrtBackend, OrtOptions};
use crate::backend::openvino::{OpenVinoBackend, OpenVinoOptions};
use crate::backend::select::{self, Attempt, BackendKind, Device};
use crate::backend::tensorrt::{self, contract::card_path_for};
use crate::backend::triton::{self, TritonBackend, TritonOptions};
use crate::backend::{Backend, DeviceIo, InputTensor, Logits};
use crate::backend::batching::{self, BatchConfig};
use crate::frame::Frame;
use crate::model::ModelCard;
use crate::postprocess::{self, Geometry};
use crate::preprocess::Preprocessor;
use crate::segmentation::Segmentation;
use crate::settings::{PostSettings, Settings};
use crate::Result;

/// Milliseconds spent in each stage for one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
}

/// Everything needed to open a model.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    pub model: PathBuf,
    pub ort: OrtOptions,
    /// Native TensorRT: engine build options (precision, batch profile, caches).
    pub trt: tensorrt::BuildOptions,
    /// OpenVINO: device, precision, threads, performance hint, cache.
    pub openvino: OpenVinoOptions,
    /// Triton: server, served model, deadline. With [`BackendKind::Triton`], `model` is the
    /// local card (`x.json`, or `x.onnx` with `x.json` beside it) or empty: then the card
    /// the server keeps in the model's configuration.
    pub triton: TritonOptions,
    /// Which backend [`Segmenter::open_auto`] uses, and on which device
    /// (see [`crate::backend::select`] for the fallback order).
    /// [`Segmenter::open`] ignores `device` and uses `ort.provider`, or the native TensorRT
    /// backend when `backend` is [`BackendKind::TensorRt`], or OpenVINO when it is
    /// [`BackendKind::OpenVino`].
    pub backend: BackendKind,
    pub device: Device,
}

impl SegmenterConfig {
    /// How to open `model` with the user's settings (backend, device, threads): the one
    /// mapping, used by the element and the command alike.
    pub fn from_settings(model: impl Into<PathBuf>, settings: &Settings) -> Self {
        let mut cfg = SegmenterConfig::new(model);
        let threads = (settings.threads > 0).then_some(settings.threads as usize);
        cfg.ort.intra_threads = threads;
        cfg.openvino = OpenVinoOptions {
            device: settings.openvino_device.clone(),
            precision: settings.precision,
            threads,
            hint: settings.performance_hint,
            cache_dir: None,
        };
        cfg.triton = TritonOptions {
            url: settings.triton_url.clone(),
            model: settings.triton_model.clone(),
            timeout: settings.triton_timeout,
        };
        cfg.backend = settings.backend;
        cfg.device = settings.device;
        cfg
    }

    pub fn new(model: impl Into<PathBuf>) -> Self {
        SegmenterConfig {
            model: model.into(),
            ort: OrtOptions::default(),
            trt: tensorrt::BuildOptions::default(),
            openvino: OpenVinoOptions::default(),
            triton: TritonOptions::default(),
            backend: BackendKind::default(),
            device: Device::default(),
        }
    }
}

pub struct Segmenter {
    card: ModelCard,
    model_path: PathBuf,
    backend: Box<dyn Backend>,
    pre: Preprocessor,
    /// Why earlier attempts of [`Segmenter::open_auto`] failed (empty when the first one
    /// opened).
    fallbacks: Vec<String>,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter").field("model", &self.model_path).field("backend", &self.backend.name()).finish()
    }
}

impl Segmenter {
    /// Open a model file and its card (`x.onnx` + `x.json`), checking that they agree.
    /// ONNX Runtime with `cfg.ort.provider`, or the native TensorRT backend when
    /// `cfg.backend` is [`BackendKind::TensorRt`] (`x.engine`, or `x.onnx` built on first use).
    pub fn open(cfg: &SegmenterConfig) -> Result<Self> {
        let attempt = match cfg.backend {
            BackendKind::TensorRt => Attempt::NativeTensorRt,
            BackendKind::OpenVino => Attempt::OpenVino,
            BackendKind::Triton => Attempt::Triton,
            _ => Attempt::Ort(cfg.ort.provider),
        };
        Self::open_attempt(cfg, attempt)
    }

    /// Open with `cfg.backend` on `cfg.device`, trying the fallbacks of
    /// [`select::plan`] in order; [`Segmenter::fallbacks`] tells what failed before.
    /// When every attempt fails, the error is the last one's.
    pub fn open_auto(cfg: &SegmenterConfig) -> Result<Self> {
        let attempts = select::plan(cfg.backend, cfg.device)?;
        let mut notes = Vec::new();
        let mut last = None;
        for a in attempts {
            match Self::open_attempt(cfg, a) {
                Ok(mut s) => {
                    s.fallbacks = notes;
                    return Ok(s);
                }
                Err(e) => {
                    notes.push(format!("{}: {e}", a.name()));
                    last = Some(e);
                }
            }
        }
        Err(last.expect("a plan has at least one attempt"))
    }

    /// Open with one backend and provider.
    pub fn open_attempt(cfg: &SegmenterConfig, attempt: Attempt) -> Result<Self> {
        if attempt == Attempt::Triton {
            return Self::open_triton(cfg);
        }
        let card = ModelCard::load(&card_path_for(&cfg.model)).map_err(|e| match e {
            crate::Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound && !cfg.model.exists() => {
                let _ = path;
                crate::Error::ModelNotFound(cfg.model.clone())
            }
            other => other,
        })?;
        if attempt != Attempt::NativeTensorRt
            && matches!(cfg.model.extension().and_then(|e| e.to_str()), Some("engine" | "plan"))
        {
            return Err(crate::Error::InvalidArgument(format!(
                "{} is a TensorRT engine: only backend=tensorrt runs it",
                cfg.model.display()
            )));
        }
        let backend: Box<dyn Backend> = match attempt {
            Attempt::NativeTensorRt => tensorrt::open(&cfg.model, &card, &cfg.trt)?,
            Attempt::Ort(provider) => {
                let ort = OrtOptions { provider, ..cfg.ort.clone() };
                Box::new(OrtBackend::open(&cfg.model, &ort)?)
            }
            Attempt::OpenVino => {
                let ov_device = cfg.openvino.device.trim();
                if cfg.device == Device::Cpu && !ov_device.to_ascii_uppercase().starts_with("CPU") {
                    return Err(crate::Error::InvalidArgument(format!(
                        "device=cpu and openvino-device={ov_device} disagree (use device=auto for OpenVINO's other devices)"
                    )));
                }
                Box::new(OpenVinoBackend::open(&cfg.model, &card, &cfg.openvino)?)
            }
            Attempt::Triton => return Self::open_triton(cfg),
        };
        Self::with_backend(card, backend, &cfg.model)
    }

    /// The network on a Triton server: the card from `cfg.model` when given, else the one
    /// served with the model; the served model's contract is checked against the card.
    fn open_triton(cfg: &SegmenterConfig) -> Result<Self> {
        let local = if cfg.model.as_os_str().is_empty() {
            None
        } else {
            let path = card_path_for(&cfg.model);
            Some(ModelCard::load(&path).map_err(|e| match e {
                crate::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    crate::Error::InvalidArgument(format!("no model card {} for the Triton model", path.display()))
                }
                other => other,
            })?)
        };
        let backend = TritonBackend::connect(&cfg.triton)?;
        let Some(card) = local.or_else(|| backend.served_card().cloned()) else {
            return Err(crate::Error::InvalidArgument(format!(
                "no model card for Triton model {:?}: give one (model=CARD.json, or the .onnx with its card beside it), \
                 or serve it in the model's configuration (parameter {})",
                cfg.triton.model,
                triton::CARD_PARAMETER
            )));
        };
        // The network is the served model, whatever card file was given: that is what a
        // batching group must share.
        let served = cfg.triton.endpoint_uri()?.replacen("http://", "triton://", 1) + "/" + cfg.triton.model.trim();
        Self::with_backend(card, Box::new(backend), Path::new(&served))
    }

    /// What failed before the backend in use opened (see [`Segmenter::open_auto`]).
    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }

    /// Combine a card with an already opened backend (checks that they agree).
    pub fn with_backend(card: ModelCard, backend: Box<dyn Backend>, model_path: &Path) -> Result<Self> {
        let (h, w) = backend.input_size();
        if (h, w) != (card.input.height as usize, card.input.width as usize) {
            return Err(crate::Error::CardMismatch(format!(
                "card says input {}x{}, model takes {h}x{w}",
                card.input.height, card.input.width
            )));
        }
        let (q, k1) = backend.output_dims();
        if k1 != card.num_classes() + 1 {
            return Err(crate::Error::CardMismatch(format!(
                "card lists {} labels, model outputs {} classes + no-object",
                card.num_classes(),
                k1.saturating_sub(1)
            )));
        }
        if q != card.num_queries as usize {
            return Err(crate::Error::CardMismatch(format!("card says {} queries, model outputs {q}", card.num_queries)));
        }
        let pre = Preprocessor::new(&card.input)?;
        Ok(Segmenter { card, model_path: model_path.to_path_buf(), backend, pre, fallbacks: Vec::new() })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }
    /// How the backend runs the model, where it chose something ([`Backend::details`]).
    pub fn backend_details(&self) -> Option<String> {
        self.backend.details()
    }
    /// Put `backend` in place of the current one and return the old one. The new backend
    /// must take the same input size and give the same outputs (the card was checked
    /// against them).
    pub fn replace_backend(&mut self, backend: Box<dyn Backend>) -> Result<Box<dyn Backend>> {
        if backend.input_size() != self.backend.input_size() || backend.output_dims() != self.backend.output_dims() {
            return Err(crate::Error::CardMismatch(format!(
                "backend {} takes {:?} and outputs {:?}, the model in use {:?} and {:?}",
                backend.name(),
                backend.input_size(),
                backend.output_dims(),
                self.backend.input_size(),
                self.backend.output_dims()
            )));
        }
        Ok(std::mem::replace(&mut self.backend, backend))
    }

    /// Infer through the batching group `name` ([`batching::join`]), while preprocess and
    /// postprocess stay here, per stream. Returns this segmenter's own backend when it
    /// joined a live group (give it back with [`Segmenter::replace_backend`] to leave),
    /// `None` when its backend moved into a new group.
    pub fn join_batch_group(&mut self, name: &str, cfg: BatchConfig) -> Result<Option<Box<dyn Backend>>> {
        let model = format!("{} ({})", self.model_path.display(), self.card.name);
        batching::join(name, &model, &mut self.backend, cfg)
    }

    /// Input size and output dims of the backend: `((H, W), (Q, K+1))`.
    pub fn backend_dims(&self) -> ((usize, usize), (usize, usize)) {
        (self.backend.input_size(), self.backend.output_dims())
    }

    /// Segment one frame with the user's post-processing settings (`None` fields: the
    /// card's defaults).
    pub fn segment(&mut self, frame: &Frame<'_>, post: &PostSettings) -> Result<(Segmentation, Timings)> {
        let t0 = Instant::now();
        let (input, valid) = self.pre.run(frame)?;
        let t1 = Instant::now();
        let logits = self.backend.infer(input)?;
        let t2 = Instant::now();
        let seg = self.postprocess(&logits, valid, (frame.width, frame.height), post)?;
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok((seg, Timings { preprocess_ms: ms(t0, t1), inference_ms: ms(t1, t2), postprocess_ms: ms(t2, t3) }))
    }

    /// Run the backend on an input tensor preprocessed elsewhere (the GPU preprocess of
    /// [`crate::cuda::memory`]); same contract as the CPU preprocess' output.
    pub fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        self.backend.infer(input)
    }

    /// Run the backend on an input tensor in device memory, the logits written to device
    /// memory ([`Backend::infer_device`]): `None` when the backend has no device path (the
    /// caller then copies the input to the host for [`Segmenter::infer`]). Finished when it
    /// returns.
    ///
    /// # Safety
    /// As [`Backend::infer_device`]: the addresses and the stream of `io` are valid
    /// device memory / a live stream of the primary context of `io.device`, current on the
    /// calling thread, sized for one f32 image of [`Segmenter::backend_dims`], 256-byte
    /// aligned, and alive and otherwise unused until the call returns.
    pub unsafe fn infer_device(&mut self, io: &DeviceIo) -> Option<Result<()>> {
        // SAFETY: the caller's guarantees are the backend's.
        unsafe { self.backend.infer_device(io) }
    }

    /// Where the post-processing of a `frame` (width, height) whose resized image covers
    /// `valid` (height, width) of the network input maps back to the frame.
    pub fn geometry(&self, valid: (usize, usize), frame: (usize, usize), post: &PostSettings) -> Geometry {
        Geometry {
            input_height: self.card.input.height as usize,
            input_width: self.card.input.width as usize,
            valid_height: valid.0,
            valid_width: valid.1,
            frame_height: frame.1,
            frame_width: frame.0,
            semantics: post.semantics,
        }
    }

    /// The CPU post-processing of image 0 of `logits` for a `frame` (width, height).
    pub fn postprocess(&self, logits: &Logits, valid: (usize, usize), frame: (usize, usize), post: &PostSettings) -> Result<Segmentation> {
        let geom = self.geometry(valid, frame, post);
        postprocess::run(&logits.image(0)?, &self.card.labels, &geom, &post.resolve(&self.card.defaults))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::select::{BackendKind, Device};

    #[test]
    fn config_from_settings_takes_backend_device_threads() {
        let s = Settings { backend: BackendKind::OnnxRuntimeCuda, device: Device::Cpu, threads: 3, ..Settings::default() };
        let c = SegmenterConfig::from_settings("m.onnx", &s);
        assert_eq!((c.backend, c.device, c.ort.intra_threads), (BackendKind::OnnxRuntimeCuda, Device::Cpu, Some(3)));
        assert_eq!(c.model, PathBuf::from("m.onnx"));
        assert_eq!(SegmenterConfig::from_settings("m.onnx", &Settings::default()).ort.intra_threads, None);
    }
}
