//! The application layer: what the `segstream` command runs, on top of the elements and
//! the core. Errors here are `anyhow` (one line for the user); signal handling and
//! progress live here, never below.
//!
//! - [`pipeline`]: the pipelines `segstream run` builds (sources, outputs, live reconnection);
//! - [`bench`]: `segstream bench` (per-stage timings, live and batching runs, charts);
//! - [`eval`]: `segstream eval` (PQ / SQ / RQ, mIoU, mask AP against COCO ground truth);
//! - [`rtsp_out`]: `--rtsp-out` (the overlay served over RTSP);
//! - [`inputs`]: the inputs of `segstream run` (list files `@LIST`, globs, folders);
//! - [`shard`]: `--shard I/N` (one worker's part of a batch) and its summary JSON.
//!
//! The command itself (argument parsing, printing) is `src/app/main.rs` and `src/app/cli/`.

pub mod bench;
pub mod eval;
pub mod inputs;
pub mod pipeline;
pub mod rtsp_out;
pub mod shard;
