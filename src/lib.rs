//! segstream: real-time Mask2Former segmentation for video.
//!
//! The library is the whole product; the GStreamer elements (`elements`) and the
//! `segstream` command are thin shells over it. One frame goes through pure stages:
//! [`preprocess`] → [`backend`] → [`postprocess`] → [`segmentation::Segmentation`],
//! tied together by [`segmenter::Segmenter`].

pub mod backend;
pub mod batching;
pub mod bench;
pub mod cuda;
pub mod elements;
pub mod error;
pub mod eval;
pub mod frame;
pub mod model;
pub mod pipeline;
pub mod rtsp_out;
pub mod postprocess;
pub mod preprocess;
pub mod render;
pub mod schema;
pub mod segmentation;
pub mod segmenter;
pub mod tracking;

pub use error::{Error, Result};
