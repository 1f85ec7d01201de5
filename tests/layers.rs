//! The library's layers, checked on its source: the modules under `src/` (one per top-level
//! file or folder) use each other without a cycle; the core uses neither the elements nor
//! the application; the elements do not use the application; and only the application
//! uses `anyhow` or installs signal handlers. And the GStreamer API floor: every
//! gstreamer-rs crate is built for the 1.20 API (JetPack 6's GStreamer), so nothing newer
//! can be called without a run-time check.
//!
//! A use is a `crate::NAME` path in a module's code (the library's own way of naming
//! another module; `super::` stays inside a module). Comments, doc links included, do not
//! count: a doc may point anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module of each library file (`src/app/main.rs` and `src/app/cli/` are the
/// binary, not the library, and are left out), with the file's text.
fn library_files() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_path_buf();
            let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
            if first == "lib.rs" || rel.starts_with("app/cli") || rel == Path::new("app/main.rs") {
                return None;
            }
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            Some((module, rel, code.join("\n")))
        })
        .collect()
}

/// The top-level modules each module uses, and one file that shows each use.
fn uses() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (module, rel, text) in library_files() {
        let entry = g.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // `crate::{a, b}` groups and `crate::Error`/`Result` re-exports.
            let names: Vec<String> = if rest.starts_with('{') {
                let inner = &rest[1..rest.find('}').unwrap_or(1)];
                inner
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![name]
            };
            for n in names {
                let n = match n.as_str() {
                    "Error" | "Result" => "error".to_string(),
                    _ => n,
                };
                if !n.is_empty() && n != module && n.chars().next().is_some_and(|c| c.is_lowercase()) {
                    entry.entry(n).or_insert_with(|| rel.clone());
                }
            }
        }
    }
    g
}

#[test]
fn module_uses_form_no_cycle() {
    let g = uses();
    assert!(g.len() > 10, "found only {:?}", g.keys());
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if let Some(c) = visit(&m, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(cycle) = visit(n, &g, &mut state, &mut Vec::new()) {
            let shown: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]].display()))
                .collect();
            panic!("module cycle: {}", shown.join(", "));
        }
    }
}

#[test]
fn core_uses_neither_elements_nor_app_and_elements_do_not_use_app() {
    let g = uses();
    for (module, used) in &g {
        let banned: &[&str] = match module.as_str() {
            "app" => &[],
            "elements" => &["app"],
            _ => &["elements", "app"],
        };
        for b in banned {
            if let Some(file) = used.get(*b) {
                panic!("{module} uses {b} ({}): layers go core <- elements <- app", file.display());
            }
        }
    }
}

#[test]
fn only_the_application_uses_anyhow_or_signal_handlers() {
    for (module, rel, text) in library_files() {
        if module == "app" {
            continue;
        }
        for needle in ["anyhow", "libc::signal", "sigaction"] {
            assert!(!text.contains(needle), "{} ({module}) uses {needle}: that belongs to src/app", rel.display());
        }
    }
}

/// Every `gstreamer*` dependency (library, plugin, tests) asks for the `v1_20` API and no
/// newer one: the bindings then do not even declare a 1.22+ function.
#[test]
fn gstreamer_api_is_the_1_20_floor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for manifest in [root.join("Cargo.toml"), root.join("plugins/gst-segstream/Cargo.toml")] {
        let text = std::fs::read_to_string(&manifest).unwrap();
        for line in text.lines().filter(|l| l.trim_start().starts_with("gstreamer")) {
            seen += 1;
            let versions: Vec<u32> = line
                .match_indices("\"v1_")
                .filter_map(|(i, _)| line[i + 4..].split('"').next()?.parse().ok())
                .collect();
            assert!(!versions.is_empty(), "{}: {line}: no API level feature", manifest.display());
            assert!(versions.iter().all(|&v| v <= 20), "{}: {line}: API newer than 1.20", manifest.display());
        }
    }
    assert!(seen >= 6, "found only {seen} gstreamer dependencies");
}
