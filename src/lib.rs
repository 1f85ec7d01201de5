//! segstream: real-time Mask2Former segmentation for video.
//!
//! Three layers, each using only those above it in this list:
//! - **core** (frames in, segmentations out; typed [`Error`]s): [`settings`], [`model`],
//!   [`preprocess`], [`backend`] (with cross-stream [`backend::batching`]), [`postprocess`],
//!   [`segmentation`], [`segmenter`], [`tracking`], [`render`], [`cuda`], [`schema`];
//! - **elements** ([`elements`]): the GStreamer elements, thin shells over the core;
//! - **application** ([`app`]): what the `segstream` command runs (pipelines, bench, eval,
//!   RTSP out; anyhow errors, signal handlers, progress). The library below never installs
//!   a signal handler.
//!
//! One frame goes through pure stages: [`preprocess`] → [`backend`] → [`postprocess`] →
//! [`segmentation::Segmentation`], tied together by [`segmenter::Segmenter`]; flow goes one
//! way, elements → segmenter → backend.

pub mod app;
pub mod backend;
pub mod broker;
pub mod cuda;
pub mod elements;
pub mod error;
pub mod frame;
pub mod model;
pub mod postprocess;
pub mod preprocess;
pub mod render;
pub mod schema;
pub mod segmentation;
pub mod segmenter;
pub mod settings;
pub mod tracking;
pub mod util;

pub use error::{Error, Result};
