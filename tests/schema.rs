//! Frame records: built from real post-processing results, round-tripped through serde
//! and validated against `docs/frame.schema.json`.

use std::path::Path;

use segstream::backend::Logits;
use segstream::model::Label;
use segstream::postprocess::{self, Geometry, Params, Semantics};
use segstream::schema::{FrameInfo, FrameRecord, FRAME_SCHEMA};
use segstream::segmentation::{Segmentation, Task};
use segstream::segmenter::Timings;
use serde_json::{json, Value};

fn schema() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/frame.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::new(&s).expect("docs/frame.schema.json is a valid draft 2020-12 schema")
}

fn errors(v: &jsonschema::Validator, x: &Value) -> Vec<String> {
    v.iter_errors(x).map(|e| format!("{} at {}", e, e.instance_path)).collect()
}

fn labels() -> Vec<Label> {
    ["person", "car", "sky", "road", "tree"]
        .iter()
        .enumerate()
        .map(|(i, n)| Label { id: i as u32, name: n.to_string(), isthing: i < 2, color: [10, 20, 30] })
        .collect()
}

/// Six queries with blob masks and confident classes.
fn logits() -> Logits {
    let (q, k, h, w) = (6usize, 5usize, 12usize, 16usize);
    let mut cls = vec![-6.0f32; q * (k + 1)];
    let mut masks = vec![0.0f32; q * h * w];
    for i in 0..q {
        cls[i * (k + 1) + i % k] = 6.0;
        let (cy, cx) = ((3 + (i / 3) * 6) as f32, (3 + (i % 3) * 5) as f32);
        for y in 0..h {
            for x in 0..w {
                let d = ((y as f32 - cy) / 2.0).powi(2) + ((x as f32 - cx) / 2.5).powi(2);
                masks[i * h * w + y * w + x] = 8.0 * (-d).exp() - 2.0;
            }
        }
    }
    Logits { batch: 1, num_queries: q, num_classes_plus_one: k + 1, mask_height: h, mask_width: w, class_logits: cls, mask_logits: masks }
}

fn segment(task: Task) -> Segmentation {
    let g = Geometry { input_height: 48, input_width: 64, valid_height: 40, valid_width: 64, frame_height: 90, frame_width: 144, semantics: Semantics::Detectron2 };
    let p = Params { task, score_threshold: 0.5, ..Params::default() };
    postprocess::run(&logits().image(0).unwrap(), &labels(), &g, &p).unwrap()
}

fn info() -> FrameInfo {
    FrameInfo {
        stream: "cam0".into(),
        frame: 41,
        pts: Some(1_366_666_666),
        model: "m2f-test".into(),
        timings: Timings { preprocess_ms: 1.25, inference_ms: 20.5, postprocess_ms: 3.0 },
        stale: false,
    }
}

#[test]
fn records_round_trip_and_validate() {
    let v = validator();
    for task in [Task::Panoptic, Task::Instance, Task::Semantic] {
        let seg = segment(task);
        assert!(!seg.segments.is_empty(), "{task:?}: test data should give segments");
        let rec = FrameRecord::new(&seg, &info());
        assert_eq!(rec.schema, FRAME_SCHEMA);
        assert_eq!((rec.width, rec.height, rec.task), (144, 90, task));
        let line = rec.to_json_line();
        assert!(!line.contains('\n'));
        // serde round trip
        let back = FrameRecord::from_json_line(&line).unwrap();
        assert_eq!(back, rec);
        // schema
        let value: Value = serde_json::from_str(&line).unwrap();
        let errs = errors(&v, &value);
        assert!(errs.is_empty(), "{task:?}: {errs:?}\n{line}");
        // masks decode to the id map's pixels
        for (s, r) in seg.segments.iter().zip(&rec.segments) {
            let rle = r.mask.to_rle().unwrap();
            assert_eq!(rle.to_mask().unwrap(), seg.mask(s.id), "{task:?} segment {}", s.id);
            if task != Task::Instance {
                assert_eq!(rle.area(), s.area);
                assert_eq!(rle.bbox(), s.bbox);
            } else {
                assert!(rle.area() <= s.area);
            }
        }
    }
}

#[test]
fn optional_fields() {
    let v = validator();
    let mut seg = segment(Task::Panoptic);
    seg.segments[0].track_id = Some(7);
    let mut i = info();
    i.pts = None;
    i.stale = true;
    let rec = FrameRecord::new(&seg, &i);
    let value: Value = serde_json::from_str(&rec.to_json_line()).unwrap();
    assert_eq!(value["pts"], Value::Null);
    assert_eq!(value["segments"][0]["track_id"], 7);
    assert!(value["segments"][1].get("track_id").is_none());
    assert!(errors(&v, &value).is_empty(), "{:?}", errors(&v, &value));
    // `stale` may be left out: it defaults to false.
    let mut obj = value.clone();
    obj.as_object_mut().unwrap().remove("stale");
    assert!(errors(&v, &obj).is_empty());
    let back = FrameRecord::from_json_line(&obj.to_string()).unwrap();
    assert!(!back.stale);
    // An empty frame is a valid record.
    let empty = Segmentation { width: 4, height: 3, task: Task::Semantic, ids: vec![0; 12], segments: vec![] };
    let value: Value = serde_json::from_str(&FrameRecord::new(&empty, &info()).to_json_line()).unwrap();
    assert!(errors(&v, &value).is_empty());
}

#[test]
fn schema_rejects_bad_records() {
    let v = validator();
    let good: Value = serde_json::from_str(&FrameRecord::new(&segment(Task::Panoptic), &info()).to_json_line()).unwrap();
    assert!(errors(&v, &good).is_empty());
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut x = good.clone();
        f(&mut x);
        x
    };
    let cases: Vec<(&str, Value)> = vec![
        ("wrong schema tag", bad(&|x| x["schema"] = json!("segstream.frame/2"))),
        ("negative frame", bad(&|x| x["frame"] = json!(-1))),
        ("unknown task", bad(&|x| x["task"] = json!("depth"))),
        ("missing timings", bad(&|x| { x.as_object_mut().unwrap().remove("timings"); })),
        ("extra field", bad(&|x| x["colour"] = json!("red"))),
        ("bad counts char", bad(&|x| x["segments"][0]["mask"]["counts"] = json!("ab~"))),
        ("bbox of 3", bad(&|x| x["segments"][0]["bbox"] = json!([1, 2, 3]))),
        ("score above 1", bad(&|x| x["segments"][0]["score"] = json!(1.5))),
        ("id 0", bad(&|x| x["segments"][0]["id"] = json!(0))),
        ("mask without size", bad(&|x| { x["segments"][0]["mask"].as_object_mut().unwrap().remove("size"); })),
    ];
    for (what, x) in cases {
        assert!(!errors(&v, &x).is_empty(), "schema accepted a record with {what}");
    }
    // The parser checks the tag too.
    let wrong = bad(&|x| x["schema"] = json!("other/1"));
    assert!(FrameRecord::from_json_line(&wrong.to_string()).is_err());
}

#[test]
fn schema_documents_every_field() {
    // Every property the Rust types serialize is described in the schema.
    let s = schema();
    let rec = FrameRecord::new(&segment(Task::Panoptic), &FrameInfo { pts: Some(1), ..info() });
    let mut value: Value = serde_json::from_str(&rec.to_json_line()).unwrap();
    value["segments"][0]["track_id"] = json!(1);
    for k in value.as_object().unwrap().keys() {
        assert!(s["properties"][k]["description"].is_string() || k == "schema", "top-level field {k} is not documented");
    }
    for k in value["segments"][0].as_object().unwrap().keys() {
        let p = &s["$defs"]["segment"]["properties"][k];
        assert!(p["description"].is_string() || p["$ref"].is_string(), "segment field {k} is not documented");
    }
}
