//! The bookkeeping around engine builds that needs no TensorRT, so that it is compiled and
//! tested everywhere: lock files and unique temporary names (several pipelines building
//! one engine at once), the locked read-merge-write of a shared file (the timing cache),
//! "rebuild once" after a plan fails to load, the fallback from the plugin export to the
//! portable ONNX, and the set of plugin libraries already loaded.
//!
//! Locks are `flock`s (`std::fs::File::lock`) on a `.lock` file beside the guarded file.
//! They are held by an open file description, so two threads of one process exclude each
//! other as two processes do; the kernel drops them when the holder exits, so a crashed
//! build leaves no stale lock (the empty `.lock` file itself stays, harmlessly).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// `x.fp16.engine` → `x.fp16.engine.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A temporary name beside `path`, unique to this process and call:
/// `x.fp16.engine` → `x.fp16.engine.<pid>.<n>.partial`.
pub fn unique_temp(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(format!(".{}.{}.partial", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    PathBuf::from(s)
}

/// An exclusive lock, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Take the exclusive lock on `lock` (created if missing), waiting for its holder.
    pub fn acquire(lock: &Path) -> Result<FileLock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(lock).map_err(|e| Error::io(lock, e))?;
        file.lock().map_err(|e| Error::io(lock, e))?;
        Ok(FileLock { file, path: lock.to_path_buf() })
    }

    /// The lock if nobody holds it, `None` if someone does.
    pub fn try_acquire(lock: &Path) -> Result<Option<FileLock>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(lock).map_err(|e| Error::io(lock, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { file, path: lock.to_path_buf() })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(lock, e)),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Err(e) = self.file.unlock() {
            // Closing the file releases it anyway.
            super::log(super::LogLevel::Verbose, &format!("unlocking {}: {e}", self.path.display()));
        }
    }
}

/// Write `bytes` to `path` through a unique temporary file renamed over it, so that readers
/// see the old or the new content, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = unique_temp(path);
    let r = std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e)).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Unless `fresh()` says the product is already there, take the lock `lock`, ask `fresh()`
/// again (another process or thread may have built it while we waited) and run `build`
/// if still needed. Returns whether `build` ran. One build per product at a time; the
/// others wait for it and then reuse its result.
pub fn build_once(lock: &Path, mut fresh: impl FnMut() -> bool, build: impl FnOnce() -> Result<()>) -> Result<bool> {
    if fresh() {
        return Ok(false);
    }
    let _guard = FileLock::acquire(lock)?;
    if fresh() {
        return Ok(false);
    }
    build()?;
    Ok(true)
}

/// Read-merge-write of a file shared by concurrent builds, under its lock: `merge` gets
/// the file's current content (`None` when missing or unreadable) and returns what to
/// write (`None`: leave it). Nothing written by another holder is lost in between.
pub fn merge_locked(path: &Path, merge: impl FnOnce(Option<Vec<u8>>) -> Result<Option<Vec<u8>>>) -> Result<()> {
    let _guard = FileLock::acquire(&lock_path(path))?;
    let current = std::fs::read(path).ok();
    if let Some(bytes) = merge(current)? {
        write_atomic(path, &bytes)?;
    }
    Ok(())
}

/// What a build writes back to a timing cache file shared with other builds, given what
/// it started from, what the file holds now (under its lock) and its own updated cache:
/// its own cache when nobody wrote meanwhile (this also replaces a cache TensorRT refused,
/// e.g. one from another GPU, which the build started afresh), else the two combined by
/// `combine`, else (they do not combine) its own.
pub fn timing_cache_to_write(
    started_from: Option<&[u8]>,
    current: Option<Vec<u8>>,
    ours: Vec<u8>,
    combine: impl FnOnce(&[u8], &[u8]) -> Option<Vec<u8>>,
) -> Vec<u8> {
    match current {
        Some(cur) if Some(cur.as_slice()) != started_from => combine(&ours, &cur).unwrap_or(ours),
        _ => ours,
    }
}

/// Run `load`; when it fails, `rebuild` once (given the error) and `load` again. For a
/// cached engine that decodes and matches but that TensorRT refuses to deserialize.
pub fn load_or_rebuild_once<T>(mut load: impl FnMut() -> Result<T>, rebuild: impl FnOnce(&Error) -> Result<()>) -> Result<T> {
    match load() {
        Ok(t) => Ok(t),
        Err(e) => {
            rebuild(&e)?;
            load()
        }
    }
}

/// Build from the first of `sources` that builds; on a failure that `retry` accepts,
/// `warn` and try the next one. Returns the result and the source used; the error is the
/// last source's. For the plugin export (first) and the portable ONNX (last).
pub fn build_with_fallback<T>(
    sources: &[PathBuf],
    mut build: impl FnMut(&Path) -> Result<T>,
    retry: impl Fn(&Error) -> bool,
    warn: impl Fn(&str),
) -> Result<(T, PathBuf)> {
    let Some(last) = sources.len().checked_sub(1) else {
        return Err(Error::InvalidArgument("no ONNX file to build from".into()));
    };
    for (i, s) in sources.iter().enumerate() {
        match build(s) {
            Ok(t) => return Ok((t, s.clone())),
            Err(e) if i < last && retry(&e) => {
                warn(&format!("building from {} failed ({e}); building from {} instead", s.display(), sources[i + 1].display()))
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last source returns")
}

/// The plugin libraries loaded into TensorRT's registry in this process. TensorRT's
/// `IPluginRegistry::loadLibrary` fails for a library whose plugins are registered
/// already, so each library is loaded once.
#[derive(Debug, Default)]
pub struct LoadedPlugins {
    loaded: Mutex<BTreeSet<String>>,
}

impl LoadedPlugins {
    pub const fn new() -> Self {
        LoadedPlugins { loaded: Mutex::new(BTreeSet::new()) }
    }

    /// The key of a library: `""` for TensorRT's default plugin library, else the
    /// canonical path when the file exists (one library under two spellings is one), else
    /// the name as given (a bare soname the loader resolves).
    pub fn key(library: Option<&Path>) -> String {
        match library {
            None => String::new(),
            Some(p) if p.as_os_str().is_empty() => String::new(),
            Some(p) => p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned(),
        }
    }

    /// Run `load` unless `library` was loaded before. Returns whether it ran. A failed load
    /// is not recorded, so a later call tries again. Loads are serialized.
    pub fn ensure(&self, library: Option<&Path>, load: impl FnOnce() -> Result<()>) -> Result<bool> {
        let key = Self::key(library);
        let mut set = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if set.contains(&key) {
            return Ok(false);
        }
        load()?;
        set.insert(key);
        Ok(true)
    }

    pub fn is_loaded(&self, library: Option<&Path>) -> bool {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).contains(&Self::key(library))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("segstream-trt-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(d: &Path) -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    }

    #[test]
    fn temp_names_are_unique_and_beside_the_target() {
        let p = Path::new("models/m.fp16.engine");
        let names: HashSet<PathBuf> = (0..100).map(|_| unique_temp(p)).collect();
        assert_eq!(names.len(), 100);
        for n in &names {
            assert_eq!(n.parent(), Some(Path::new("models")));
            let s = n.to_string_lossy();
            assert!(s.starts_with("models/m.fp16.engine.") && s.ends_with(".partial"), "{s}");
            assert!(s.contains(&format!(".{}.", std::process::id())), "{s}");
        }
        assert_eq!(lock_path(p), Path::new("models/m.fp16.engine.lock"));
    }

    #[test]
    fn lock_excludes_other_holders_until_dropped() {
        let d = tmp("lock");
        let l = d.join("m.engine.lock");
        let held = FileLock::acquire(&l).unwrap();
        // Another open of the same file, in this process: excluded (flock, not fcntl).
        assert!(FileLock::try_acquire(&l).unwrap().is_none());
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let _g = FileLock::acquire(&l2).unwrap();
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        assert!(waiter.join().unwrap() >= Duration::from_millis(150));
        assert!(FileLock::try_acquire(&l).unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Item 9: eight pipelines opening one model at once: one build, everyone gets it.
    #[test]
    fn concurrent_opens_build_once() {
        let d = tmp("build-once");
        let engine = d.join("m.fp16.engine");
        let builds = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (engine, builds, barrier) = (engine.clone(), builds.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    build_once(
                        &lock_path(&engine),
                        || engine.is_file(),
                        || {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            write_atomic(&engine, format!("plan from thread {i}").as_bytes())
                        },
                    )
                    .unwrap()
                })
            })
            .collect();
        let ran: usize = threads.into_iter().map(|t| t.join().unwrap() as usize).sum();
        assert_eq!(ran, 1);
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert!(std::fs::read_to_string(&engine).unwrap().starts_with("plan from thread "));
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Item 9: concurrent read-merge-writes of one cache lose nothing.
    #[test]
    fn locked_merges_lose_no_update() {
        let d = tmp("merge");
        let cache = d.join("tensorrt.timing-cache");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for j in 0..5 {
                        merge_locked(&cache, |cur| {
                            let mut lines: Vec<String> =
                                cur.map(|b| String::from_utf8(b).unwrap().lines().map(String::from).collect()).unwrap_or_default();
                            // Widen the window in which an unlocked writer would lose updates.
                            std::thread::sleep(Duration::from_millis(2));
                            lines.push(format!("{i}-{j}"));
                            Ok(Some(lines.join("\n").into_bytes()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&cache).unwrap();
        let entries: HashSet<&str> = text.lines().collect();
        assert_eq!(entries.len(), 40, "{text}");
        assert!(leftovers(&d).is_empty());
        // `None` leaves the file alone.
        merge_locked(&cache, |_| Ok(None)).unwrap();
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), text);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Items 9 and 11: another build's timings are combined, not overwritten; a refused
    /// (foreign) cache nobody else touched is replaced.
    #[test]
    fn timing_cache_write_back() {
        let cat = |a: &[u8], b: &[u8]| Some([a, b].concat());
        // Nobody wrote since the build read it (also: the refused foreign cache): ours.
        assert_eq!(timing_cache_to_write(Some(b"foreign"), Some(b"foreign".to_vec()), b"ours".to_vec(), cat), b"ours");
        assert_eq!(timing_cache_to_write(None, None, b"ours".to_vec(), cat), b"ours");
        // Another build wrote meanwhile: combined.
        assert_eq!(timing_cache_to_write(Some(b"old"), Some(b"theirs".to_vec()), b"ours".to_vec(), cat), b"ourstheirs");
        assert_eq!(timing_cache_to_write(None, Some(b"theirs".to_vec()), b"ours".to_vec(), cat), b"ourstheirs");
        // They do not combine (another GPU): ours.
        assert_eq!(timing_cache_to_write(Some(b"old"), Some(b"theirs".to_vec()), b"ours".to_vec(), |_, _| None), b"ours");
        // The file vanished: ours.
        assert_eq!(timing_cache_to_write(Some(b"old"), None, b"ours".to_vec(), |_, _| panic!("nothing to combine")), b"ours");
    }

    /// Item 5: a plan that does not load is rebuilt once, not in a loop.
    #[test]
    fn load_failure_rebuilds_once() {
        let loads = AtomicUsize::new(0);
        let rebuilt = AtomicUsize::new(0);
        let r: Result<u32> = load_or_rebuild_once(
            || if loads.fetch_add(1, Ordering::SeqCst) == 0 { Err(Error::TensorRt("deserializeCudaEngine failed".into())) } else { Ok(7) },
            |e| {
                assert!(e.to_string().contains("deserializeCudaEngine"));
                rebuilt.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(r.unwrap(), 7);
        assert_eq!((loads.load(Ordering::SeqCst), rebuilt.load(Ordering::SeqCst)), (2, 1));
        // Still failing after the rebuild: the second error, no third try.
        let loads = AtomicUsize::new(0);
        let r: Result<u32> = load_or_rebuild_once(
            || Err(Error::TensorRt(format!("failure {}", loads.fetch_add(1, Ordering::SeqCst)))),
            |_| Ok(()),
        );
        assert!(r.unwrap_err().to_string().contains("failure 1"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        // A failed rebuild is the error.
        let r: Result<u32> = load_or_rebuild_once(|| Err(Error::TensorRt("x".into())), |_| Err(Error::TensorRt("no GPU".into())));
        assert!(r.unwrap_err().to_string().contains("no GPU"));
    }

    /// Item 8: the plugin export fails to parse/build → the portable file is built, with a
    /// warning; a cancelled build does not fall back.
    #[test]
    fn plugin_export_falls_back_to_the_portable_file() {
        let sources = vec![PathBuf::from("m-trt.onnx"), PathBuf::from("m.onnx")];
        let warnings = Mutex::new(Vec::new());
        let retry = |e: &Error| !e.to_string().contains("cancelled");
        let (plan, used) = build_with_fallback(
            &sources,
            |s| if s.ends_with("m-trt.onnx") { Err(Error::TensorRt("ONNX parser rejected node MSDA".into())) } else { Ok("plan") },
            retry,
            |w| warnings.lock().unwrap().push(w.to_string()),
        )
        .unwrap();
        assert_eq!((plan, used.as_path()), ("plan", Path::new("m.onnx")));
        let w = warnings.lock().unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("m-trt.onnx") && w[0].contains("MSDA") && w[0].contains("instead"), "{w:?}");
        // First one builds: no fallback.
        let (_, used) = build_with_fallback(&sources, |_| Ok(()), retry, |_| panic!("no warning")).unwrap();
        assert_eq!(used, Path::new("m-trt.onnx"));
        // Cancelled: stop.
        let tries = AtomicUsize::new(0);
        let e = build_with_fallback(
            &sources,
            |_| -> Result<()> {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(Error::TensorRt("engine build cancelled".into()))
            },
            retry,
            |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("cancelled"));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        // Both fail: the portable file's error.
        let e = build_with_fallback(&sources, |s| -> Result<()> { Err(Error::TensorRt(format!("{}", s.display()))) }, retry, |_| {})
            .unwrap_err();
        assert!(e.to_string().ends_with("m.onnx") && !e.to_string().contains("trt"), "{e}");
        assert!(build_with_fallback(&[], |_| Ok(()), retry, |_| {}).is_err());
    }

    /// Item 7: each plugin library is loaded once per process; a failed load is retried.
    #[test]
    fn plugin_libraries_load_once() {
        let d = tmp("plugins");
        let lib = d.join("libmyplugins.so");
        std::fs::write(&lib, b"").unwrap();
        let set = LoadedPlugins::new();
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        assert!(set.ensure(Some(&lib), load).unwrap());
        assert!(!set.ensure(Some(&lib), load).unwrap());
        // The same file under another spelling.
        let other_spelling = d.join(".").join("libmyplugins.so");
        assert!(!set.ensure(Some(&other_spelling), load).unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The default library is another entry.
        assert!(!set.is_loaded(None));
        assert!(set.ensure(None, load).unwrap());
        assert!(!set.ensure(Some(Path::new("")), load).unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        // A failure is not remembered.
        let bare = Path::new("libnotthere.so");
        assert!(set.ensure(Some(bare), || Err(Error::TensorRt("dlopen failed".into()))).is_err());
        assert!(!set.is_loaded(Some(bare)));
        assert!(set.ensure(Some(bare), load).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
