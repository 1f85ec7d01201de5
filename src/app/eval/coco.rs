//! COCO formats: frame records → COCO panoptic (one PNG per frame + one JSON) and COCO
//! instance results (a JSON array with compressed-RLE masks), and panoptic ground truth →
//! a COCO instances data set (what mask AP is computed against).
//!
//! Image ids are frame numbers (`FrameRecord::frame`), PNG names `{frame:05}.png`: the
//! convention of `samples/gt/` (written by `engines/make_sample.py`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::model::Label;
use crate::schema::FrameRecord;
use crate::segmentation::Rle;

/// The PNG file name of a frame.
pub fn png_name(frame: u64) -> String {
    format!("{frame:05}.png")
}

/// Read a JSON Lines file of `segstream.frame/1` records.
pub fn read_records(path: &Path) -> Result<Vec<FrameRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| FrameRecord::from_json_line(l).map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Segment-id map of one record, painted from its segments' RLE masks (later segments
/// over earlier ones, as the id map they came from never overlaps).
pub fn record_ids(r: &FrameRecord) -> Result<Vec<u32>> {
    let (h, w) = (r.height as usize, r.width as usize);
    let mut ids = vec![0u32; h * w];
    for s in &r.segments {
        let rle = s.mask.to_rle().map_err(|e| anyhow!("frame {}: segment {}: {e}", r.frame, s.id))?;
        if rle.height() != h || rle.width() != w {
            bail!("frame {}: segment {} mask is {}x{}, the frame {w}x{h}", r.frame, s.id, rle.width(), rle.height());
        }
        // Runs are column-major: walk them without decoding a full mask.
        let mut pos = 0usize;
        for (k, &run) in rle.counts.iter().enumerate() {
            let run = run as usize;
            if k % 2 == 1 {
                for p in pos..pos + run {
                    let (x, y) = (p / h, p % h);
                    ids[y * w + x] = s.id;
                }
            }
            pos += run;
        }
    }
    Ok(ids)
}

/// `id → [R, G, B]` with `id = R + 256 G + 256² B` (COCO panoptic PNG colours).
pub fn id_to_rgb(id: u32) -> [u8; 3] {
    [(id & 255) as u8, ((id >> 8) & 255) as u8, ((id >> 16) & 255) as u8]
}

/// Write an id map as a COCO panoptic PNG (8-bit RGB).
pub fn write_id_png(path: &Path, ids: &[u32], width: u32, height: u32) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    let data: Vec<u8> = ids.iter().flat_map(|&i| id_to_rgb(i)).collect();
    w.write_image_data(&data).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Read a COCO panoptic PNG as an id map: (width, height, ids).
pub fn read_id_png(path: &Path) -> Result<(u32, u32, Vec<u32>)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().with_context(|| format!("{}: not a PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).with_context(|| format!("{}: cannot decode", path.display()))?;
    let ch = info.color_type.samples();
    if ch < 3 {
        bail!("{}: a panoptic PNG is RGB, this one has {ch} channel(s)", path.display());
    }
    let ids = buf[..info.buffer_size()]
        .chunks_exact(ch)
        .map(|p| p[0] as u32 + 256 * p[1] as u32 + 65536 * p[2] as u32)
        .collect();
    Ok((info.width, info.height, ids))
}

/// The categories of a label set, as COCO writes them.
pub fn categories(labels: &[Label]) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|l| {
                json!({"id": l.id, "name": l.name, "isthing": u8::from(l.isthing),
                       "supercategory": if l.isthing { "thing" } else { "stuff" }, "color": l.color})
            })
            .collect(),
    )
}

/// Write records in COCO panoptic format: `DIR/panoptic.json` and `DIR/panoptic/NNNNN.png`
/// (panopticapi's layout: the PNG folder is the JSON's name without `.json`). Segments
/// carry their `score` as an extra field. Returns the JSON path.
pub fn write_panoptic(records: &[FrameRecord], labels: &[Label], dir: &Path) -> Result<PathBuf> {
    let png_dir = dir.join("panoptic");
    std::fs::create_dir_all(&png_dir).with_context(|| format!("cannot create {}", png_dir.display()))?;
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for r in records {
        let ids = record_ids(r)?;
        let name = png_name(r.frame);
        write_id_png(&png_dir.join(&name), &ids, r.width, r.height)?;
        images.push(json!({"id": r.frame, "file_name": name, "width": r.width, "height": r.height}));
        let segs: Vec<Value> = r
            .segments
            .iter()
            .map(|s| {
                json!({"id": s.id, "category_id": s.label_id, "iscrowd": 0, "area": s.area,
                       "bbox": s.bbox, "score": s.score})
            })
            .collect();
        annotations.push(json!({"image_id": r.frame, "file_name": name, "segments_info": segs}));
    }
    let doc = json!({
        "info": {"description": "segstream predictions", "generator": format!("segstream {}", env!("CARGO_PKG_VERSION"))},
        "images": images, "annotations": annotations, "categories": categories(labels),
    });
    let path = dir.join("panoptic.json");
    std::fs::write(&path, serde_json::to_vec(&doc)?).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Records → COCO instance results (thing segments only): `image_id`, `category_id`,
/// `segmentation` (compressed RLE, the segment's pixels in the frame's id map), `bbox`,
/// `area`, `score`.
pub fn instance_results(records: &[FrameRecord]) -> Value {
    let mut out = Vec::new();
    for r in records {
        for s in r.segments.iter().filter(|s| s.is_thing) {
            out.push(json!({
                "image_id": r.frame, "category_id": s.label_id,
                "segmentation": {"size": s.mask.size, "counts": s.mask.counts},
                "bbox": s.bbox, "area": s.area, "score": s.score,
            }));
        }
    }
    Value::Array(out)
}

/// COCO panoptic ground truth (loaded JSON + PNG folder) → a COCO instances data set:
/// one annotation per thing segment with its mask as compressed RLE, `iscrowd` kept.
/// `keep` restricts it to some image ids.
pub fn panoptic_gt_to_instances(gt: &Value, png_dir: &Path, keep: Option<&[u64]>) -> Result<Value> {
    let cats = gt.get("categories").and_then(Value::as_array).ok_or_else(|| anyhow!("ground truth has no categories"))?;
    let thing: std::collections::HashMap<u64, bool> = cats
        .iter()
        .filter_map(|c| Some((c.get("id")?.as_u64()?, c.get("isthing").and_then(|v| v.as_u64().or(v.as_bool().map(u64::from))) == Some(1))))
        .collect();
    let wanted = |id: u64| keep.is_none_or(|k| k.contains(&id));
    let images: Vec<Value> = gt
        .get("images")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter(|i| i.get("id").and_then(Value::as_u64).is_some_and(wanted)).cloned().collect())
        .unwrap_or_default();
    let mut anns = Vec::new();
    let mut next_id = 1u64;
    for a in gt.get("annotations").and_then(Value::as_array).into_iter().flatten() {
        let iid = a.get("image_id").and_then(Value::as_u64).ok_or_else(|| anyhow!("annotation without image_id"))?;
        if !wanted(iid) {
            continue;
        }
        let file = a.get("file_name").and_then(Value::as_str).ok_or_else(|| anyhow!("image {iid}: no file_name"))?;
        let (w, h, ids) = read_id_png(&png_dir.join(file))?;
        // Column-major runs per thing segment.
        for s in a.get("segments_info").and_then(Value::as_array).into_iter().flatten() {
            let (Some(sid), Some(cat)) = (s.get("id").and_then(Value::as_u64), s.get("category_id").and_then(Value::as_u64)) else {
                bail!("image {iid}: segment without id or category_id");
            };
            if !thing.get(&cat).copied().unwrap_or(false) {
                continue;
            }
            let rle = Rle::from_ids(&ids, h as usize, w as usize, sid as u32);
            let crowd = s.get("iscrowd").and_then(Value::as_u64).unwrap_or(0);
            anns.push(json!({
                "id": next_id, "image_id": iid, "category_id": cat, "iscrowd": crowd,
                "area": rle.area(), "bbox": rle.bbox(),
                "segmentation": {"size": [h, w], "counts": rle.to_compressed()},
            }));
            next_id += 1;
        }
    }
    Ok(json!({"images": images, "annotations": anns, "categories": cats}))
}
