//! Build script: with the `tensorrt` feature, compile the C++ shim over TensorRT
//! (src/backend/tensorrt/shim/) with `cc` and link TensorRT and the CUDA runtime.
//!
//! TensorRT is looked up in `TENSORRT_ROOT` (include/, lib/ or lib64/), then in the standard
//! Debian / JetPack locations (/usr/include/<triple>, /usr/lib/<triple>, /usr/include,
//! /usr/lib). CUDA in `CUDA_HOME` / `CUDA_PATH`, then /usr/local/cuda, then the system
//! dirs. `SEGSTREAM_TRT_SKIP_SHIM=1` skips all of it: for `cargo check --features tensorrt`
//! on machines without TensorRT (check links nothing).
//!
//! The search and the flags are in src/backend/tensorrt/build_support.rs (unit-tested by
//! `cargo test --lib backend::tensorrt::build_support`): system include dirs are never
//! passed to the compiler, non-system library dirs get an rpath, and the CUDA runtime's
//! library dir comes first.

#[cfg(feature = "tensorrt")]
#[path = "src/backend/tensorrt/build_support.rs"]
mod build_support;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "tensorrt")]
    if std::env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        tensorrt::build();
    }
}

#[cfg(feature = "tensorrt")]
mod tensorrt {
    use std::env;
    use std::path::PathBuf;

    use crate::build_support::Search;

    const SHIM_DIR: &str = "src/backend/tensorrt/shim";

    fn var(name: &str) -> Option<PathBuf> {
        println!("cargo:rerun-if-env-changed={name}");
        env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    pub fn build() {
        println!("cargo:rerun-if-changed={SHIM_DIR}/segstream_trt.cpp");
        println!("cargo:rerun-if-changed={SHIM_DIR}/segstream_trt.h");
        println!("cargo:rerun-if-changed=src/backend/tensorrt/build_support.rs");
        println!("cargo:rerun-if-env-changed=SEGSTREAM_TRT_SKIP_SHIM");
        if env::var_os("SEGSTREAM_TRT_SKIP_SHIM").is_some_and(|v| v != "0") {
            println!(
                "cargo:warning=SEGSTREAM_TRT_SKIP_SHIM is set: the TensorRT shim is not compiled and nothing \
                 links against TensorRT (fine for `cargo check`, a link error for anything else)"
            );
            return;
        }
        let search = Search {
            arch: env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default(),
            tensorrt_root: var("TENSORRT_ROOT"),
            cuda_env: ["CUDA_HOME", "CUDA_PATH"].iter().filter_map(|v| var(v)).collect(),
            sysroot: PathBuf::from("/"),
        };
        let found = match search.locate() {
            Ok(f) => f,
            Err(missing) => {
                eprintln!("\nerror: {missing}\n");
                std::process::exit(1);
            }
        };
        let flags = search.flags(&found);

        // A TensorRT upgrade in place rebuilds the shim.
        println!("cargo:rerun-if-changed={}", found.trt_inc.join("NvInferVersion.h").display());
        let mut build = cc::Build::new();
        build.cpp(true).std("c++17").file(format!("{SHIM_DIR}/segstream_trt.cpp")).include(SHIM_DIR).warnings(true);
        // -isystem: warnings inside TensorRT's and CUDA's headers (deprecations) are theirs.
        // System include dirs are not in `flags.includes` (see build_support.rs).
        for d in &flags.includes {
            build.flag("-isystem").flag(d.to_string_lossy().as_ref());
        }
        build.compile("segstream_trt");
        for d in &flags.link_search {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        for l in &flags.libs {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
        // Binaries, tests and examples of this package find libnvinfer, libcudart and the
        // plugin library (dlopen'ed by the shim) at run time without LD_LIBRARY_PATH.
        // Cargo passes link args to this package's targets only: the gst-segstream plugin
        // (another package) needs LD_LIBRARY_PATH or ldconfig (README, TensorRT).
        for d in &flags.rpath {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
        }
    }
}
