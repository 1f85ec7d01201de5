//! GPU stage timings (feature `cuda`) until `segstream bench --device cuda` is wired to
//! `segstream::cuda::bench::run`:
//!
//! ```text
//! cargo run --release --features cuda --example cuda_bench -- [--runs N] [--warmup N]
//!     [--input HxW] [--kept N] [--cpu-runs N] [--frame WxH]
//! ```
//! Exit status 2 when CUDA is unavailable (the reason is printed), 1 on other errors.

use segstream::cuda::bench::{run, table, BenchOptions};

fn parse_pair(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.split_once('x')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() {
    let mut o = BenchOptions::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).map(String::as_str).unwrap_or("");
        let ok = match args[i].as_str() {
            "--runs" => v.parse().map(|n| o.runs = n).is_ok(),
            "--warmup" => v.parse().map(|n| o.warmup = n).is_ok(),
            "--kept" => v.parse().map(|n| o.kept = n).is_ok(),
            "--cpu-runs" => v.parse().map(|n| o.cpu_runs = n).is_ok(),
            "--input" => parse_pair(v).map(|(h, w)| (o.input_height, o.input_width) = (h, w)).is_some(),
            "--frame" => parse_pair(v).map(|(w, h)| (o.frame_width, o.frame_height) = (w, h)).is_some(),
            _ => false,
        };
        if !ok {
            eprintln!("usage: cuda_bench [--runs N] [--warmup N] [--input HxW] [--frame WxH] [--kept N] [--cpu-runs N] (bad: {} {v})", args[i]);
            std::process::exit(1);
        }
        i += 2;
    }
    match run(&o) {
        Ok((info, t)) => print!("{}", table(&info, &o, &t)),
        Err(e @ segstream::Error::CudaUnavailable(_)) => {
            eprintln!("SKIPPED: {e}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
