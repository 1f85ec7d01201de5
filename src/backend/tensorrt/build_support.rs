//! Where `build.rs` finds TensorRT and the CUDA runtime, and which compiler and linker
//! flags it derives from what it found.
//!
//! This file is shared: `build.rs` includes it with `#[path]`, and the library compiles it
//! under `cfg(test)` so that its unit tests run with `cargo test --lib` against fake
//! `TENSORRT_ROOT` / `CUDA_HOME` layouts in temporary folders. It therefore uses `std` only
//! and prints nothing (the build script turns [`Flags`] into `cargo:` lines).
//!
//! Rules (each has a test below):
//! - System include dirs (`/usr/include`, `/usr/include/<triple>`, `/usr/local/include`)
//!   are never passed to the compiler: `-isystem /usr/include` moves that dir ahead of the
//!   C++ library's own headers, and libstdc++'s `#include_next <stdlib.h>` in `<cstdlib>`
//!   then finds nothing ("stdlib.h: No such file or directory"). The compiler searches
//!   them anyway.
//! - System library dirs get no `-L` and no rpath (the linker and the dynamic loader search
//!   them anyway); every other library dir gets both, so a TensorRT tarball or a CUDA
//!   toolkit outside the loader's path starts without `LD_LIBRARY_PATH`.
//! - The CUDA runtime's library dir comes first in the search order, and the CUDA root
//!   whose include dir holds `cuda_runtime_api.h` is preferred only when the same root also
//!   holds `libcudart.so`: headers and library come from one toolkit, and a distro
//!   `libcudart.so` beside TensorRT's libraries cannot win `-lcudart`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where to look: the environment of the build, as plain data.
#[derive(Debug, Clone)]
pub struct Search {
    /// `CARGO_CFG_TARGET_ARCH`, e.g. `x86_64`, `aarch64`.
    pub arch: String,
    /// `TENSORRT_ROOT`.
    pub tensorrt_root: Option<PathBuf>,
    /// `CUDA_HOME`, `CUDA_PATH`, in that order (set ones only).
    pub cuda_env: Vec<PathBuf>,
    /// `/` on a real build; a temporary folder in tests.
    pub sysroot: PathBuf,
}

/// The directories holding each piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub trt_inc: PathBuf,
    pub parser_inc: PathBuf,
    pub trt_lib: PathBuf,
    pub parser_lib: PathBuf,
    pub cuda_inc: PathBuf,
    pub cuda_lib: PathBuf,
}

/// A piece that was not found: what, which file, where we looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: &'static str,
    pub file: &'static str,
    pub dirs: Vec<PathBuf>,
    pub hint: &'static str,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the `tensorrt` feature needs {}: {} was not found in", self.what, self.file)?;
        for d in &self.dirs {
            writeln!(f, "  {}", d.display())?;
        }
        write!(f, "{}\n(for `cargo check` without TensorRT, set SEGSTREAM_TRT_SKIP_SHIM=1)", self.hint)
    }
}

/// What the build script passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-isystem` dirs for the shim, in order, without system dirs and duplicates.
    pub includes: Vec<PathBuf>,
    /// `-L` dirs, in order (CUDA runtime first), without system dirs and duplicates.
    pub link_search: Vec<PathBuf>,
    /// rpath entries (the same dirs as `link_search`).
    pub rpath: Vec<PathBuf>,
    /// Libraries to link, in order.
    pub libs: Vec<&'static str>,
}

const TRT_HINT: &str = "Install TensorRT (Debian/Ubuntu: libnvinfer-dev libnvonnxparsers-dev; JetPack 6 ships them) \
                        or point TENSORRT_ROOT at an unpacked TensorRT tarball.";
const CUDA_HINT: &str =
    "Install the CUDA toolkit (or its runtime dev package) and set CUDA_HOME if it is not in /usr/local/cuda.";

/// The first of `dirs` that holds `file`.
pub fn find(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    dirs.iter().find(|d| d.join(file).is_file()).cloned()
}

fn push_unique(v: &mut Vec<PathBuf>, p: &Path) {
    if !v.iter().any(|q| same_dir(q, p)) {
        v.push(p.to_path_buf());
    }
}

/// Same directory, also through symlinks (`/usr/local/cuda` → `/usr/local/cuda-12.6`).
fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Search {
    fn triple(&self) -> String {
        format!("{}-linux-gnu", self.arch)
    }

    fn sys(&self, p: &str) -> PathBuf {
        self.sysroot.join(p.trim_start_matches('/'))
    }

    /// Dirs the compiler searches by itself: never passed with `-I` / `-isystem`.
    pub fn system_include_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.sys("/usr/include").join(self.triple()),
            self.sys("/usr/include"),
            self.sys("/usr/local/include"),
        ]
    }

    /// Dirs the linker (through the compiler driver) and the dynamic loader both search by
    /// themselves: no `-L`, no rpath. `/usr/lib64` is not one of them: Debian's loader does
    /// not search it, so a TensorRT there gets `-L` and an rpath (harmless where it is a
    /// default dir, as on RPM systems).
    pub fn system_lib_dirs(&self) -> Vec<PathBuf> {
        let t = self.triple();
        vec![self.sys("/usr/lib").join(&t), self.sys("/usr/lib"), self.sys("/lib").join(&t), self.sys("/lib")]
    }

    fn is_system_include(&self, d: &Path) -> bool {
        self.system_include_dirs().iter().any(|s| same_dir(s, d))
    }

    fn is_system_lib(&self, d: &Path) -> bool {
        self.system_lib_dirs().iter().any(|s| same_dir(s, d))
    }

    /// Where TensorRT's headers are looked for, in order.
    pub fn trt_include_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(r) = &self.tensorrt_root {
            v.push(r.join("include"));
        }
        v.push(self.sys("/usr/include").join(self.triple()));
        v.push(self.sys("/usr/include"));
        v
    }

    /// Where TensorRT's libraries are looked for, in order.
    pub fn trt_lib_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(r) = &self.tensorrt_root {
            v.extend([r.join("lib"), r.join("lib64"), r.join("targets").join(format!("{}-linux", self.arch)).join("lib")]);
        }
        v.extend([self.sys("/usr/lib").join(self.triple()), self.sys("/usr/lib"), self.sys("/usr/lib64")]);
        v
    }

    /// CUDA toolkit roots: `CUDA_HOME`, `CUDA_PATH`, then `/usr/local/cuda`.
    pub fn cuda_roots(&self) -> Vec<PathBuf> {
        let mut v = self.cuda_env.clone();
        v.push(self.sys("/usr/local/cuda"));
        v
    }

    fn cuda_root_libs(&self, root: &Path) -> Vec<PathBuf> {
        vec![root.join("lib64"), root.join("lib"), root.join("targets").join(format!("{}-linux", self.arch)).join("lib")]
    }

    fn cuda_root_incs(&self, root: &Path) -> Vec<PathBuf> {
        vec![root.join("include"), root.join("targets").join(format!("{}-linux", self.arch)).join("include")]
    }

    /// CUDA runtime headers and library, from one toolkit where one has both.
    fn locate_cuda(&self) -> Result<(PathBuf, PathBuf), Missing> {
        for root in self.cuda_roots() {
            if let (Some(i), Some(l)) =
                (find(&self.cuda_root_incs(&root), "cuda_runtime_api.h"), find(&self.cuda_root_libs(&root), "libcudart.so"))
            {
                return Ok((i, l));
            }
        }
        // No toolkit holds both: the system's, then TensorRT's dirs (last, so a libcudart
        // there never shadows a toolkit's).
        let mut incs: Vec<PathBuf> = self.cuda_roots().iter().flat_map(|r| self.cuda_root_incs(r)).collect();
        incs.extend(self.trt_include_dirs());
        let mut libs: Vec<PathBuf> = self.cuda_roots().iter().flat_map(|r| self.cuda_root_libs(r)).collect();
        libs.extend(self.system_lib_dirs());
        libs.push(self.sys("/usr/lib64"));
        libs.extend(self.trt_lib_dirs());
        let mut libs_u = Vec::new();
        for l in &libs {
            push_unique(&mut libs_u, l);
        }
        let inc = find(&incs, "cuda_runtime_api.h").ok_or_else(|| Missing {
            what: "CUDA's runtime headers",
            file: "cuda_runtime_api.h",
            dirs: incs.clone(),
            hint: CUDA_HINT,
        })?;
        let lib = find(&libs_u, "libcudart.so").ok_or_else(|| Missing {
            what: "the CUDA runtime library",
            file: "libcudart.so",
            dirs: libs_u.clone(),
            hint: CUDA_HINT,
        })?;
        Ok((inc, lib))
    }

    /// Find every piece, or say which one is missing and where we looked.
    pub fn locate(&self) -> Result<Found, Missing> {
        let inc = self.trt_include_dirs();
        let lib = self.trt_lib_dirs();
        let need = |dirs: &Vec<PathBuf>, file: &'static str, what: &'static str| {
            find(dirs, file).ok_or_else(|| Missing { what, file, dirs: dirs.clone(), hint: TRT_HINT })
        };
        let trt_inc = need(&inc, "NvInfer.h", "TensorRT's headers")?;
        let parser_inc = need(&inc, "NvOnnxParser.h", "TensorRT's ONNX parser headers")?;
        let trt_lib = need(&lib, "libnvinfer.so", "the TensorRT library")?;
        let parser_lib = need(&lib, "libnvonnxparser.so", "TensorRT's ONNX parser library")?;
        let (cuda_inc, cuda_lib) = self.locate_cuda()?;
        Ok(Found { trt_inc, parser_inc, trt_lib, parser_lib, cuda_inc, cuda_lib })
    }

    /// Compiler and linker flags for what was found.
    pub fn flags(&self, f: &Found) -> Flags {
        let mut includes = Vec::new();
        for d in [&f.trt_inc, &f.parser_inc, &f.cuda_inc] {
            if !self.is_system_include(d) {
                push_unique(&mut includes, d);
            }
        }
        let mut link_search = Vec::new();
        // CUDA first: `-lcudart` binds the toolkit's runtime whose headers the shim saw.
        for d in [&f.cuda_lib, &f.trt_lib, &f.parser_lib] {
            if !self.is_system_lib(d) {
                push_unique(&mut link_search, d);
            }
        }
        Flags { rpath: link_search.clone(), includes, link_search, libs: vec!["nvinfer", "nvonnxparser", "cudart", "dl"] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh temporary folder acting as `/`.
    fn root(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "segstream-buildrs-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    fn search(sysroot: &Path) -> Search {
        Search { arch: "x86_64".into(), tensorrt_root: None, cuda_env: vec![], sysroot: sysroot.to_path_buf() }
    }

    fn trt_in(root: &Path, inc: &str, lib: &str) {
        for h in ["NvInfer.h", "NvOnnxParser.h"] {
            touch(root, &format!("{inc}/{h}"));
        }
        for l in ["libnvinfer.so", "libnvonnxparser.so"] {
            touch(root, &format!("{lib}/{l}"));
        }
    }

    /// Item 1: headers in /usr/include (RPM TensorRT, distro CUDA) give no -isystem at all.
    #[test]
    fn system_include_dirs_are_never_passed() {
        let r = root("sysinc");
        trt_in(&r, "usr/include", "usr/lib64");
        touch(&r, "usr/include/cuda_runtime_api.h");
        touch(&r, "usr/lib64/libcudart.so");
        let s = search(&r);
        let f = s.locate().unwrap();
        assert_eq!(f.trt_inc, r.join("usr/include"));
        let flags = s.flags(&f);
        assert!(flags.includes.is_empty(), "{flags:?}");
        // /usr/lib64 is not a loader default on Debian: -L and rpath.
        assert_eq!(flags.link_search, vec![r.join("usr/lib64")]);
        assert_eq!(flags.rpath, flags.link_search);
        // In /usr/lib: none.
        let r2 = root("sysinc-usrlib");
        trt_in(&r2, "usr/include", "usr/lib");
        touch(&r2, "usr/include/cuda_runtime_api.h");
        touch(&r2, "usr/lib/libcudart.so");
        let s2 = search(&r2);
        let flags = s2.flags(&s2.locate().unwrap());
        assert!(flags.includes.is_empty() && flags.link_search.is_empty() && flags.rpath.is_empty(), "{flags:?}");
        std::fs::remove_dir_all(&r2).unwrap();
        std::fs::remove_dir_all(&r).unwrap();
        // Debian multiarch dir: also a compiler default.
        let r = root("multiarch");
        trt_in(&r, "usr/include/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu");
        touch(&r, "usr/local/cuda/include/cuda_runtime_api.h");
        touch(&r, "usr/local/cuda/lib64/libcudart.so");
        let s = search(&r);
        let flags = s.flags(&s.locate().unwrap());
        assert_eq!(flags.includes, vec![r.join("usr/local/cuda/include")]);
        assert_eq!(flags.link_search, vec![r.join("usr/local/cuda/lib64")]);
        std::fs::remove_dir_all(&r).unwrap();
    }

    /// Item 2: a tarball's lib dir gets an rpath (and -L); the order is CUDA first.
    #[test]
    fn tarball_dirs_get_an_rpath() {
        let r = root("tarball");
        trt_in(&r, "opt/TensorRT-10.3/include", "opt/TensorRT-10.3/lib");
        touch(&r, "opt/cuda-12.6/include/cuda_runtime_api.h");
        touch(&r, "opt/cuda-12.6/lib64/libcudart.so");
        let s = Search {
            tensorrt_root: Some(r.join("opt/TensorRT-10.3")),
            cuda_env: vec![r.join("opt/cuda-12.6")],
            ..search(&r)
        };
        let flags = s.flags(&s.locate().unwrap());
        assert_eq!(flags.includes, vec![r.join("opt/TensorRT-10.3/include"), r.join("opt/cuda-12.6/include")]);
        assert_eq!(flags.link_search, vec![r.join("opt/cuda-12.6/lib64"), r.join("opt/TensorRT-10.3/lib")]);
        assert_eq!(flags.rpath, flags.link_search);
        assert_eq!(flags.libs, vec!["nvinfer", "nvonnxparser", "cudart", "dl"]);
        std::fs::remove_dir_all(&r).unwrap();
    }

    /// Item 3: a distro libcudart.so beside TensorRT's libraries never wins over the
    /// toolkit whose headers are used.
    #[test]
    fn cudart_comes_from_the_toolkit_of_its_headers() {
        let r = root("cudart");
        trt_in(&r, "opt/trt/include", "opt/trt/lib");
        touch(&r, "opt/trt/lib/libcudart.so"); // a stray runtime beside TensorRT
        touch(&r, "usr/lib/x86_64-linux-gnu/libcudart.so"); // and a distro one
        touch(&r, "usr/local/cuda/include/cuda_runtime_api.h");
        touch(&r, "usr/local/cuda/lib64/libcudart.so");
        let s = Search { tensorrt_root: Some(r.join("opt/trt")), ..search(&r) };
        let f = s.locate().unwrap();
        assert_eq!(f.cuda_inc, r.join("usr/local/cuda/include"));
        assert_eq!(f.cuda_lib, r.join("usr/local/cuda/lib64"));
        let flags = s.flags(&f);
        assert_eq!(flags.link_search.first(), Some(&r.join("usr/local/cuda/lib64")), "{flags:?}");
        // CUDA_HOME with headers only (e.g. a header-only package) does not split the pair:
        // the next root that has both is used.
        touch(&r, "opt/cuda-headers/include/cuda_runtime_api.h");
        let s = Search { cuda_env: vec![r.join("opt/cuda-headers")], ..s };
        let f = s.locate().unwrap();
        assert_eq!((f.cuda_inc.clone(), f.cuda_lib.clone()), (r.join("usr/local/cuda/include"), r.join("usr/local/cuda/lib64")));
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn symlinked_toolkit_and_jetson_layout() {
        let r = root("jetson");
        let s = Search { arch: "aarch64".into(), ..search(&r) };
        trt_in(&r, "usr/include/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu");
        touch(&r, "usr/local/cuda-12.6/targets/aarch64-linux/include/cuda_runtime_api.h");
        touch(&r, "usr/local/cuda-12.6/targets/aarch64-linux/lib/libcudart.so");
        std::os::unix::fs::symlink(r.join("usr/local/cuda-12.6"), r.join("usr/local/cuda")).unwrap();
        let f = s.locate().unwrap();
        let flags = s.flags(&f);
        assert_eq!(flags.includes.len(), 1, "{flags:?}");
        assert_eq!(flags.link_search.len(), 1, "{flags:?}");
        assert!(flags.link_search[0].ends_with("targets/aarch64-linux/lib"));
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn missing_pieces_name_the_file_and_the_dirs() {
        let r = root("missing");
        let s = Search { tensorrt_root: Some(r.join("opt/trt")), ..search(&r) };
        let m = s.locate().unwrap_err();
        assert_eq!(m.file, "NvInfer.h");
        assert!(m.dirs.contains(&r.join("opt/trt/include")));
        let text = m.to_string();
        assert!(text.contains("NvInfer.h") && text.contains("SEGSTREAM_TRT_SKIP_SHIM"), "{text}");
        trt_in(&r, "opt/trt/include", "opt/trt/lib");
        let m = s.locate().unwrap_err();
        assert_eq!(m.file, "cuda_runtime_api.h");
        touch(&r, "usr/local/cuda/include/cuda_runtime_api.h");
        assert_eq!(s.locate().unwrap_err().file, "libcudart.so");
        std::fs::remove_dir_all(&r).unwrap();
    }
}
