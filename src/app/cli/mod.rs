//! Subcommands of the `segstream` command.

pub mod bench;
pub mod eval;
pub mod build_engine;
pub mod inspect;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print one error line and return the failure exit code.
pub fn fail(msg: impl AsRef<str>) -> ExitCode {
    eprintln!("segstream: error: {}", segstream::app::pipeline::one_line(msg.as_ref()));
    ExitCode::from(1)
}

/// Find a shipped file (`samples/...`): in the current directory, then above the
/// executable (`target/debug/segstream` → the repository), then in the source tree the
/// binary was built from.
pub fn find_shipped(rel: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from(rel)];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(rel));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel));
    candidates.into_iter().find(|p| p.exists())
}

pub const SAMPLE_VIDEO: &str = "samples/shapes.mp4";
pub const SAMPLE_MODEL: &str = "samples/models/shapes-m2f.onnx";
