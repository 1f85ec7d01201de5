//! Build script: with the `tensorrt` feature, compile the C++ shim over TensorRT
//! (src/backend/tensorrt/shim/) with `cc` and link TensorRT and the CUDA runtime.
//!
//! TensorRT is looked up in `TENSORRT_ROOT` (include/, lib/ or lib64/), then in the standard
//! Debian / JetPack locations (/usr/include/<triple>, /usr/lib/<triple>, /usr/include,
//! /usr/lib). CUDA in `CUDA_HOME` / `CUDA_PATH`, then /usr/local/cuda, then the same system
//! dirs. `SEGSTREAM_TRT_SKIP_SHIM=1` skips all of it: for `cargo check --features tensorrt`
//! on machines without TensorRT (check links nothing).

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
    use std::path::{Path, PathBuf};

    const SHIM_DIR: &str = "src/backend/tensorrt/shim";

    fn var(name: &str) -> Option<PathBuf> {
        println!("cargo:rerun-if-env-changed={name}");
        env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    /// The first of `dirs` that holds `file`.
    fn find(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
        dirs.iter().find(|d| d.join(file).is_file()).cloned()
    }

    fn fail(what: &str, file: &str, dirs: &[PathBuf], hint: &str) -> ! {
        let list: Vec<String> = dirs.iter().map(|d| format!("  {}", d.display())).collect();
        eprintln!(
            "\nerror: the `tensorrt` feature needs {what}: {file} was not found in\n{}\n{hint}\n\
             (for `cargo check` without TensorRT, set SEGSTREAM_TRT_SKIP_SHIM=1)\n",
            list.join("\n")
        );
        std::process::exit(1);
    }

    pub fn build() {
        println!("cargo:rerun-if-changed={SHIM_DIR}/segstream_trt.cpp");
        println!("cargo:rerun-if-changed={SHIM_DIR}/segstream_trt.h");
        println!("cargo:rerun-if-env-changed=SEGSTREAM_TRT_SKIP_SHIM");
        if env::var_os("SEGSTREAM_TRT_SKIP_SHIM").is_some_and(|v| v != "0") {
            println!(
                "cargo:warning=SEGSTREAM_TRT_SKIP_SHIM is set: the TensorRT shim is not compiled and nothing \
                 links against TensorRT (fine for `cargo check`, a link error for anything else)"
            );
            return;
        }
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        let triple = format!("{arch}-linux-gnu");
        let root = var("TENSORRT_ROOT");
        let mut inc = Vec::new();
        let mut lib = Vec::new();
        if let Some(r) = &root {
            inc.push(r.join("include"));
            lib.extend([r.join("lib"), r.join("lib64"), r.join("targets").join(format!("{arch}-linux")).join("lib")]);
        }
        inc.extend([Path::new("/usr/include").join(&triple), PathBuf::from("/usr/include")]);
        lib.extend([Path::new("/usr/lib").join(&triple), PathBuf::from("/usr/lib"), PathBuf::from("/usr/lib64")]);
        let hint = "Install TensorRT (Debian/Ubuntu: libnvinfer-dev libnvonnxparsers-dev; JetPack 6 ships them) \
                    or point TENSORRT_ROOT at an unpacked TensorRT tarball.";
        let trt_inc = find(&inc, "NvInfer.h").unwrap_or_else(|| fail("TensorRT's headers", "NvInfer.h", &inc, hint));
        let parser_inc =
            find(&inc, "NvOnnxParser.h").unwrap_or_else(|| fail("TensorRT's ONNX parser headers", "NvOnnxParser.h", &inc, hint));
        let trt_lib = find(&lib, "libnvinfer.so").unwrap_or_else(|| fail("the TensorRT library", "libnvinfer.so", &lib, hint));
        let parser_lib = find(&lib, "libnvonnxparser.so")
            .unwrap_or_else(|| fail("TensorRT's ONNX parser library", "libnvonnxparser.so", &lib, hint));

        let mut cuda_roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"].iter().filter_map(|v| var(v)).collect();
        cuda_roots.push(PathBuf::from("/usr/local/cuda"));
        let mut cinc: Vec<PathBuf> = cuda_roots.iter().map(|r| r.join("include")).collect();
        cinc.extend(inc.iter().cloned());
        let mut clib: Vec<PathBuf> = Vec::new();
        for r in &cuda_roots {
            clib.extend([r.join("lib64"), r.join("lib"), r.join("targets").join(format!("{arch}-linux")).join("lib")]);
        }
        clib.extend(lib.iter().cloned());
        let cuda_hint = "Install the CUDA toolkit (or its runtime dev package) and set CUDA_HOME if it is not in /usr/local/cuda.";
        let cuda_inc = find(&cinc, "cuda_runtime_api.h")
            .unwrap_or_else(|| fail("CUDA's runtime headers", "cuda_runtime_api.h", &cinc, cuda_hint));
        let cuda_lib =
            find(&clib, "libcudart.so").unwrap_or_else(|| fail("the CUDA runtime library", "libcudart.so", &clib, cuda_hint));

        // A TensorRT upgrade in place rebuilds the shim.
        println!("cargo:rerun-if-changed={}", trt_inc.join("NvInferVersion.h").display());
        let mut build = cc::Build::new();
        build.cpp(true).std("c++17").file(format!("{SHIM_DIR}/segstream_trt.cpp")).include(SHIM_DIR).warnings(true);
        // -isystem: warnings inside TensorRT's and CUDA's headers (deprecations) are theirs.
        for d in [&trt_inc, &parser_inc, &cuda_inc] {
            build.flag("-isystem").flag(d.to_string_lossy().as_ref());
        }
        build.compile("segstream_trt");
        for d in [&trt_lib, &parser_lib, &cuda_lib] {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        for l in ["nvinfer", "nvonnxparser", "cudart", "dl"] {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
    }
}
