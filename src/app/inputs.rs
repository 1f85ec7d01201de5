//! The inputs of `segstream run`: command-line arguments turned into sources.
//!
//! Each argument is one of
//! - `@LIST`: a list file, one input a line; blank lines and lines starting with `#` are
//!   skipped; a relative path is relative to the list file's folder; URIs, cameras and
//!   absolute paths are taken as written. A line may be a folder or a glob, not another list;
//! - a glob the shell did not expand (`'videos/*.mp4'`: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`
//!   in any path component; a leading `.` is matched only by a pattern that starts with
//!   one, as in the shell). A glob that matches nothing is an error;
//! - anything [`Source::expand`] takes: a file, a folder (every video in it), a URI, a camera.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use super::pipeline::Source;

/// Expand every argument (list files, globs, folders) into sources, in the order given.
pub fn expand_sources(inputs: &[String]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for arg in inputs {
        if let Some(list) = arg.strip_prefix('@') {
            for (line_no, entry) in read_list(Path::new(list))? {
                let sources = expand_one(&entry)
                    .map_err(|e| anyhow!("{e} (listed in {list} line {line_no})"))?;
                out.extend(sources);
            }
        } else {
            out.extend(expand_one(arg)?);
        }
    }
    Ok(out)
}

/// One argument that is not a list file: a glob, or what [`Source::expand`] takes.
fn expand_one(input: &str) -> Result<Vec<Source>> {
    if input.starts_with('@') {
        bail!("a list file cannot name another list file ({input})");
    }
    if is_glob(input) && !input.contains("://") && !Path::new(input).exists() {
        let matches = glob(input)?;
        if matches.is_empty() {
            bail!("no files match {input}");
        }
        let mut out = Vec::new();
        for m in matches {
            out.extend(Source::expand(&m.to_string_lossy())?);
        }
        return Ok(out);
    }
    Source::expand(input)
}

/// The entries of a list file with their line numbers, relative paths resolved against
/// the list file's folder.
pub fn read_list(list: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(list).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("list file not found: {}", list.display()),
        _ => anyhow!("cannot read list file {}: {e}", list.display()),
    })?;
    let base = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let resolved = if l.contains("://") || l.starts_with('@') || Path::new(l).is_absolute()
            {
                l.to_owned()
            } else {
                base.join(l).to_string_lossy().into_owned()
            };
            Some((i + 1, resolved))
        })
        .collect())
}

/// Does this argument hold glob characters?
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The paths (files and folders) that match `pattern`, sorted.
pub fn glob(pattern: &str) -> Result<Vec<PathBuf>> {
    let pat = Path::new(pattern);
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    let comps: Vec<Component> = pat.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let part = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &current {
            if !matches!(comp, Component::Normal(_)) || !is_glob(&part) {
                let p = base.join(comp.as_os_str());
                if last || p.is_dir() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| wildcard_match(&part, n))
                .collect();
            names.sort();
            for n in names {
                let p = base.join(&n);
                if last || p.is_dir() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    let mut out: Vec<PathBuf> = current.into_iter().filter(|p| p.exists()).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Shell-style match of one path component: `*`, `?`, `[set]`, `[!set]`, `[a-z]`; a
/// leading `.` in `name` must be matched by a literal `.`.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_from(&p, &n)
}

fn matches_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|k| matches_from(&p[1..], &n[k..])),
        Some('?') => !n.is_empty() && matches_from(&p[1..], &n[1..]),
        Some('[') => match class_end(p) {
            Some(end) => {
                let Some(&c) = n.first() else { return false };
                class_matches(&p[1..end], c) && matches_from(&p[end + 1..], &n[1..])
            }
            // An unclosed `[` is a literal.
            None => n.first() == Some(&'[') && matches_from(&p[1..], &n[1..]),
        },
        Some(&c) => n.first() == Some(&c) && matches_from(&p[1..], &n[1..]),
    }
}

/// Index of the `]` that closes the class opening at `p[0]` (a `]` right after `[` or
/// `[!` is a member).
fn class_end(p: &[char]) -> Option<usize> {
    let mut i = 1;
    if p.get(i) == Some(&'!') {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    p[i..].iter().position(|&c| c == ']').map(|k| k + i)
}

fn class_matches(set: &[char], c: char) -> bool {
    let (neg, set) = match set.first() {
        Some('!') => (true, &set[1..]),
        _ => (false, set),
    };
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            hit |= set[i] <= c && c <= set[i + 2];
            i += 3;
        } else {
            hit |= set[i] == c;
            i += 1;
        }
    }
    hit != neg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.mp4", "a.mp4"));
        assert!(!wildcard_match("*.mp4", "a.mkv"));
        assert!(!wildcard_match("*.mp4", ".hidden.mp4"));
        assert!(wildcard_match(".*.mp4", ".hidden.mp4"));
        assert!(wildcard_match("cam?.mp4", "cam1.mp4"));
        assert!(!wildcard_match("cam?.mp4", "cam12.mp4"));
        assert!(wildcard_match("cam[0-3].mp4", "cam2.mp4"));
        assert!(!wildcard_match("cam[0-3].mp4", "cam7.mp4"));
        assert!(wildcard_match("cam[!0-3].mp4", "cam7.mp4"));
        assert!(wildcard_match("a[.mp4", "a[.mp4"));
        assert!(wildcard_match("*", "x"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn globs_and_lists() {
        let dir = std::env::temp_dir().join(format!("segstream-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("v/sub")).unwrap();
        for f in ["v/b.mp4", "v/a.mp4", "v/c.txt", "v/sub/d.mp4"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let pat = format!("{}/v/*.mp4", dir.display());
        let got = glob(&pat).unwrap();
        assert_eq!(got, vec![dir.join("v/a.mp4"), dir.join("v/b.mp4")]);
        let pat = format!("{}/*/s*/*.mp4", dir.display());
        assert_eq!(glob(&pat).unwrap(), vec![dir.join("v/sub/d.mp4")]);

        std::fs::write(
            dir.join("list.txt"),
            "# inputs\n\nv/a.mp4\n  v/b.mp4  \nrtsp://cam/1\n/abs/x.mp4\n",
        )
        .unwrap();
        let entries = read_list(&dir.join("list.txt")).unwrap();
        let v = |s: &str| dir.join(s).to_string_lossy().into_owned();
        assert_eq!(
            entries,
            vec![
                (3, v("v/a.mp4")),
                (4, v("v/b.mp4")),
                (5, "rtsp://cam/1".to_owned()),
                (6, "/abs/x.mp4".to_owned())
            ]
        );
        let err = expand_sources(&[format!("@{}", dir.join("list.txt").display())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/abs/x.mp4") && err.contains("line 6"),
            "{err}"
        );
        let err = expand_sources(&["@nope/list.txt".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("list file not found: nope/list.txt"), "{err}");
        let err = expand_sources(&[format!("{}/v/*.mkv", dir.display())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no files match"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
