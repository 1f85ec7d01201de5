//! `segstream run --shard I/N`: one worker's part of a batch that N workers share.
//!
//! The split rule ([`split`]): the expanded inputs are sorted by their path (or URI) as a
//! string, byte order, with `.` path components dropped (`./a.mp4` is `a.mp4`);
//! duplicates are removed; then the k-th input of that list (0-based) goes to shard
//! `k mod N` (round-robin: shard sizes differ by at most one, and neighbouring files,
//! often of similar length, land on different workers). `I` is 0-based, as Kubernetes'
//! `JOB_COMPLETION_INDEX`. Every worker must see the same paths (the same command line
//! over the same shared folder); then the N shards together take every input exactly once,
//! whatever order the inputs were given in.
//!
//! [`Summary`] is the per-shard JSON record (`segstream.shard/1`) the command writes.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

/// Shard `index` of `count` (0 <= index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Does the input at `position` of the sorted, deduplicated list belong to this shard?
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The default summary file name: `shard-I-of-N.json`.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}.json", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard takes I/N with 0 <= I < N (0-based, e.g. 0/4), not {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("--shard {s}: N must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "--shard {s}: I must be below N (I is 0-based: the shards of {count} are 0/{count} .. {}/{count})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

/// The key inputs are sorted and deduplicated by: the string as written, with `.`
/// components of a path dropped.
pub fn sort_key(input: &str) -> String {
    if input.contains("://") {
        return input.to_owned();
    }
    let p = Path::new(input);
    let normal: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if normal.as_os_str().is_empty() {
        input.to_owned()
    } else {
        normal.to_string_lossy().into_owned()
    }
}

/// Sort `items` by [`sort_key`] of `key` (stable), and remove duplicate keys (the first
/// kept): the whole list the shards are cut from.
pub fn sorted_unique<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut keyed: Vec<(String, T)> = items.into_iter().map(|t| (sort_key(&key(&t)), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// This shard's part of `items`: sorted by `key`, deduplicated, every N-th from the I-th.
pub fn split<T>(items: Vec<T>, key: impl Fn(&T) -> String, shard: Shard) -> Vec<T> {
    sorted_unique(items, key)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| shard.takes(*k))
        .map(|(_, t)| t)
        .collect()
}

/// The per-shard summary (`--summary`): what this worker took and how each input went.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    /// `null` for a run without `--shard`.
    pub shard: Option<Shard>,
    /// Inputs of the whole (sorted, deduplicated) list, all shards together.
    pub inputs_total: usize,
    pub inputs: Vec<InputSummary>,
    pub totals: Totals,
    /// An error that stopped the run before every input was tried (e.g. the model would
    /// not open); `null` otherwise.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub input: String,
    /// `ok`, `failed`, `interrupted` or `not started`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub frames: u64,
    pub seconds: f64,
    pub outputs: Vec<PathBuf>,
    /// `--publish`: what each broker got (absent without `--publish`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<crate::app::pipeline::PublishReport>,
    /// `--backend triton`: frames that met an unreachable server (absent when none did).
    #[serde(skip_serializing_if = "is_zero")]
    pub unavailable: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub inputs: usize,
    pub ok: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub not_started: usize,
    pub frames: u64,
    pub seconds: f64,
}

pub const SUMMARY_SCHEMA: &str = "segstream.shard/1";

impl Summary {
    pub fn new(
        shard: Option<Shard>,
        inputs_total: usize,
        inputs: Vec<InputSummary>,
        error: Option<String>,
    ) -> Self {
        let mut t = Totals {
            inputs: inputs.len(),
            ..Totals::default()
        };
        for i in &inputs {
            match i.status.as_str() {
                "ok" => t.ok += 1,
                "failed" => t.failed += 1,
                "interrupted" => t.interrupted += 1,
                _ => t.not_started += 1,
            }
            t.frames += i.frames;
            t.seconds += i.seconds;
        }
        t.seconds = (t.seconds * 1000.0).round() / 1000.0;
        Summary {
            schema: SUMMARY_SCHEMA,
            shard,
            inputs_total,
            inputs,
            totals: t,
            error,
        }
    }

    /// Write it as pretty JSON, through a temporary file renamed into place (a reader
    /// never sees half a summary). Creates the folder.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("videos/clip-{:03}.mp4", (i * 7919) % 1000))
            .collect()
    }

    #[test]
    fn parses_and_validates() {
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!("3/4".parse::<Shard>(), Ok(Shard { index: 3, count: 4 }));
        for bad in [
            "4/4", "0/0", "-1/4", "1", "a/b", "1/", "/4", "1/4/2", "", "1.5/4",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} accepted");
        }
        assert!("4/4".parse::<Shard>().unwrap_err().contains("0-based"));
        assert!("0/0".parse::<Shard>().unwrap_err().contains("at least 1"));
        assert_eq!(
            Shard { index: 2, count: 5 }.file_name(),
            "shard-2-of-5.json"
        );
    }

    #[test]
    fn every_input_exactly_once_for_1_to_7_shards() {
        for len in [0, 1, 2, 5, 6, 7, 13, 50] {
            let inputs = names(len);
            for n in 1..=7 {
                let mut seen: Vec<String> = Vec::new();
                let mut sizes = Vec::new();
                for i in 0..n {
                    let part = split(inputs.clone(), |s| s.clone(), Shard { index: i, count: n });
                    sizes.push(part.len());
                    seen.extend(part);
                }
                let mut want = inputs.clone();
                want.sort();
                want.dedup();
                seen.sort();
                assert_eq!(seen, want, "len {len}, N {n}");
                // Round-robin: sizes differ by at most one.
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "len {len}, N {n}: {sizes:?}");
            }
        }
    }

    #[test]
    fn stable_sorted_order_within_a_shard() {
        let inputs = names(20);
        for n in 1..=7 {
            for i in 0..n {
                let part = split(inputs.clone(), |s| s.clone(), Shard { index: i, count: n });
                let mut sorted = part.clone();
                sorted.sort();
                assert_eq!(part, sorted);
            }
        }
        // Position k of the sorted list goes to shard k mod N.
        let part = split(
            vec!["c", "a", "d", "b", "e"],
            |s| s.to_string(),
            Shard { index: 1, count: 2 },
        );
        assert_eq!(part, vec!["b", "d"]);
    }

    #[test]
    fn independent_of_input_order() {
        let inputs = names(23);
        let mut reversed = inputs.clone();
        reversed.reverse();
        let mut shuffled = inputs.clone();
        // A fixed permutation (no RNG crate needed).
        shuffled.sort_by_key(|s| {
            s.bytes()
                .map(|b| b as u64)
                .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b))
        });
        for n in 1..=7 {
            for i in 0..n {
                let s = Shard { index: i, count: n };
                let a = split(inputs.clone(), |x| x.clone(), s);
                assert_eq!(a, split(reversed.clone(), |x| x.clone(), s));
                assert_eq!(a, split(shuffled.clone(), |x| x.clone(), s));
            }
        }
    }

    #[test]
    fn duplicates_removed() {
        let inputs = vec![
            "b.mp4",
            "a.mp4",
            "./b.mp4",
            "b.mp4",
            "dir/./c.mp4",
            "dir/c.mp4",
            "rtsp://h/1",
            "rtsp://h/1",
        ];
        let all = split(
            inputs.clone(),
            |s| s.to_string(),
            Shard { index: 0, count: 1 },
        );
        assert_eq!(all, vec!["a.mp4", "b.mp4", "dir/./c.mp4", "rtsp://h/1"]);
        for n in 1..=7 {
            let total: usize = (0..n)
                .map(|i| {
                    split(
                        inputs.clone(),
                        |s| s.to_string(),
                        Shard { index: i, count: n },
                    )
                    .len()
                })
                .sum();
            assert_eq!(total, 4);
        }
    }

    #[test]
    fn summary_totals_and_json() {
        let inp = |status: &str, frames| InputSummary {
            publish: Vec::new(),
            unavailable: 0,
            input: "x.mp4".into(),
            status: status.into(),
            error: None,
            frames,
            seconds: 1.5,
            outputs: vec![],
        };
        let s = Summary::new(
            Some(Shard { index: 1, count: 3 }),
            7,
            vec![inp("ok", 10), inp("failed", 2), inp("not started", 0)],
            None,
        );
        assert_eq!(
            s.totals,
            Totals {
                inputs: 3,
                ok: 1,
                failed: 1,
                interrupted: 0,
                not_started: 1,
                frames: 12,
                seconds: 4.5
            }
        );
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["schema"], "segstream.shard/1");
        assert_eq!(v["shard"]["index"], 1);
        assert_eq!(v["shard"]["count"], 3);
        assert_eq!(v["inputs_total"], 7);
    }
}
