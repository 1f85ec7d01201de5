//! `segstream inspect MODEL`.

use std::path::Path;
use std::process::ExitCode;

use segstream::backend::Backend;
use segstream::backend::onnxruntime::{OrtBackend, OrtOptions};
use segstream::model::ModelCard;

use super::fail;

pub fn inspect(model: &Path) -> ExitCode {
    if !model.is_file() {
        return fail(format!("model not found: {}", model.display()));
    }
    let card_path = segstream::backend::tensorrt::contract::card_path_for(model);
    let card = match ModelCard::load(&card_path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: no usable model card: {e}", model.display())),
    };
    println!("model:        {}", model.display());
    println!("card:         {} ({})", card_path.display(), card.format);
    println!("name:         {}", card.name);
    println!(
        "source:       {}{}",
        card.source.checkpoint,
        card.source
            .revision
            .as_deref()
            .map(|r| format!(" @ {r}"))
            .unwrap_or_default()
    );
    let i = &card.input;
    println!(
        "input:        {}x{} {} mean {:?} std {:?}",
        i.height, i.width, i.channel_order, i.mean, i.std
    );
    println!("queries:      {}", card.num_queries);
    let d = &card.defaults;
    println!(
        "defaults:     task {} score-threshold {} overlap-threshold {} mask-threshold {}",
        d.task.as_str(),
        d.score_threshold,
        d.overlap_threshold,
        d.mask_threshold
    );
    let things = card.labels.iter().filter(|l| l.isthing).count();
    println!(
        "labels:       {} ({things} things, {} stuff)",
        card.labels.len(),
        card.labels.len() - things
    );
    for l in &card.labels {
        let [r, g, b] = l.color;
        println!(
            "  {:>4}  {:<24} {:<6} #{r:02x}{g:02x}{b:02x}",
            l.id,
            l.name,
            if l.isthing { "thing" } else { "stuff" }
        );
    }
    if matches!(model.extension().and_then(|e| e.to_str()), Some("engine" | "plan")) {
        return inspect_engine(model, &card);
    }
    match OrtBackend::open(model, &OrtOptions::default()) {
        Ok(backend) => {
            println!("backend:      {}", backend.name());
            println!("network:");
            for (kind, name, dims) in backend.describe() {
                let dims: Vec<String> = dims
                    .iter()
                    .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
                    .collect();
                println!("  {kind:<7} {name:<24} [{}]", dims.join(", "));
            }
            let (h, w) = backend.input_size();
            let (q, k1) = backend.output_dims();
            let mut ok = true;
            if (h, w) != (i.height as usize, i.width as usize) {
                println!("mismatch:     card input {}x{}, network {h}x{w}", i.height, i.width);
                ok = false;
            }
            if q != card.num_queries as usize || k1 != card.labels.len() + 1 {
                println!(
                    "mismatch:     card {} queries / {} labels, network {q} queries / {} classes",
                    card.num_queries,
                    card.labels.len(),
                    k1.saturating_sub(1)
                );
                ok = false;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                fail("model card and network disagree")
            }
        }
        Err(e) => fail(format!("cannot load the network of {}: {e}", model.display())),
    }
}

/// A TensorRT engine: its segstream header (read without TensorRT) against the card.
fn inspect_engine(model: &Path, card: &ModelCard) -> ExitCode {
    use segstream::backend::tensorrt::{EngineHeader, card_hash};
    let bytes = match std::fs::read(model) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot read {}: {e}", model.display())),
    };
    let h = match EngineHeader::decode(&bytes, model) {
        Ok((h, _)) => h,
        Err(e) => return fail(e.to_string()),
    };
    println!("engine:       TensorRT {}, {}, {}", h.tensorrt, h.gpu, h.precision);
    println!("batch:        {} (min:opt:max)", h.batch);
    println!(
        "built from:   {}{} by segstream {}",
        h.source,
        if h.plugin { " (deformable-attention plugin)" } else { "" },
        h.segstream
    );
    println!("plan:         {:.1} MiB", h.plan_len as f64 / (1 << 20) as f64);
    if h.card_sha256 != card_hash(card) {
        return fail(format!("{} was built from another model card (model {:?})", model.display(), h.model));
    }
    println!("card hash:    {} (matches)", h.card_sha256);
    ExitCode::SUCCESS
}
