//! The properties of `mask2former`: each one a field of [`Settings`] (the library's one
//! settings type, which the command also builds), documented here so that
//! `gst-inspect-1.0 mask2former` is the reference.

use std::sync::LazyLock;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;

use crate::model::Defaults;
use crate::settings::{DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TIMEOUT_NS, DEFAULT_INTERVAL, MAX_BATCH_TIMEOUT_NS, Settings};
use crate::tracking::TrackerConfig;

pub(super) fn specs() -> &'static [glib::ParamSpec] {
    static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let d = Settings::default();
        let card = Defaults::default();
        let track = TrackerConfig::default();
        vec![
            glib::ParamSpecString::builder("model")
                .nick("Model")
                .blurb("Path of the Mask2Former ONNX model (or, with backend=tensorrt, a .engine built by `segstream build-engine`); its model card (same name, .json) must sit beside it. Read when the element starts.")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("backend", d.backend)
                .nick("Backend")
                .blurb("Inference backend: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt (ONNX Runtime's providers, where the loaded ONNX Runtime build has them), tensorrt (native TensorRT, builds with the tensorrt feature) or openvino (OpenVINO's C library, loaded at start from OPENVINO_LIB_PATH, .openvino/lib or the system path; see precision, performance-hint, openvino-device)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("device", d.device)
                .nick("Device")
                .blurb("Device to run the network on; auto falls back from the backend's GPU provider (or from OpenVINO) towards ONNX Runtime's CPU provider, cpu and cuda never fall back. backend=openvino takes auto or cpu; its own device is openvino-device")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("task", card.task)
                .nick("Task")
                .blurb("Segmentation task (default: the model card's task, panoptic unless the card says otherwise). Can change while playing.")
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("semantics", d.post.semantics)
                .nick("Semantics")
                .blurb("Post-processing semantics: detectron2 (crop the padding, then resize; the default) or transformers (reproduce post_process_*_segmentation exactly). Can change while playing.")
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("score-threshold")
                .nick("Score threshold")
                .blurb("Panoptic/instance: minimum class score of a kept segment (default: the model card's value, 0.8 unless the card says otherwise)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(card.score_threshold)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("overlap-threshold")
                .nick("Overlap threshold")
                .blurb("Panoptic: minimum fraction of a segment's own mask that must remain visible (default: the model card's value, 0.8 unless the card says otherwise)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(card.overlap_threshold)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("mask-threshold")
                .nick("Mask threshold")
                .blurb("Binarization threshold of mask probabilities (default: the model card's value, 0.5 unless the card says otherwise)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(card.mask_threshold)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("interval")
                .nick("Interval")
                .blurb("Run the network on every Nth frame; frames in between get the last result, marked stale")
                .minimum(1)
                .maximum(u32::MAX)
                .default_value(DEFAULT_INTERVAL)
                .mutable_playing()
                .build(),
            glib::ParamSpecBoolean::builder("post-messages")
                .nick("Post messages")
                .blurb("Post a `segstream-frame` element message per frame (frame, pts, width, height, model, task, stale, segments, labels, preprocess-ms, inference-ms, postprocess-ms)")
                .default_value(d.post_messages)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("threads")
                .nick("Threads")
                .blurb("Inference threads: ONNX Runtime's intra-op threads, OpenVINO's INFERENCE_NUM_THREADS (0 = the runtime's default, one per core)")
                .minimum(0)
                .maximum(1024)
                .default_value(d.threads)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("precision", d.precision)
                .nick("Precision")
                .blurb("backend=openvino: the precision the network computes in. auto = bf16 where the device supports it (CPU: with AMX; AVX-512-bf16 alone is slower, so f32) and the model card does not say \"bf16\": false, f32 otherwise; bf16 where the device lacks it is an error. What runs is read back from OpenVINO and reported (the inference property, the backend name openvino-cpu-bf16 / -f32)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("performance-hint", d.performance_hint)
                .nick("Performance hint")
                .blurb("backend=openvino: OpenVINO's PERFORMANCE_HINT. latency: one execution stream, each frame as fast as possible; throughput: several streams, for many inferences in flight (each one slower)")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("openvino-device")
                .nick("OpenVINO device")
                .blurb("backend=openvino: OpenVINO's device name: CPU (tested), GPU, GPU.1, NPU, AUTO:GPU,CPU (passed as given, untested). The compiled model is cached beside the model file (MODEL.openvino-cache/) so the next start is fast")
                .default_value(Some(d.openvino_device.as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("triton-url")
                .nick("Triton URL")
                .blurb("backend=triton: host:port of the Triton Inference Server's gRPC endpoint (KServe v2)")
                .default_value(Some(d.triton_url.as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("triton-model")
                .nick("Triton model")
                .blurb("backend=triton: the served model, NAME or NAME:VERSION. Its card: the model property (CARD.json, or the .onnx with its card beside it) when set, else the card served in the model's configuration (parameter segstream_card). Names, shapes and types are checked against the server's model metadata at start")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("triton-timeout")
                .nick("Triton timeout")
                .blurb("backend=triton: deadline in milliseconds of the connection at start and of every request. A server that is down or misses it leaves the frame to the overload policy (drop: last result, stale; skip: none; wait: retry until it is back), counted as unavailable in stats; the backend then waits 0.5 s doubling to 8 s before trying again")
                .minimum(1)
                .default_value(d.triton_timeout.as_millis() as u32)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("inference")
                .nick("Inference")
                .blurb("Where and how the network runs since start: the backend in use (e.g. onnxruntime-cpu, openvino-cpu-bf16) and, for OpenVINO, the library, the precision and why it was picked, the cache; empty before start")
                .read_only()
                .build(),
            glib::ParamSpecEnum::builder_with_default("mode", d.mode)
                .nick("Mode")
                .blurb("sync: infer on the streaming thread; async: infer on a worker thread that pushes the frames downstream in order, so upstream never waits on the network (see `overload`). A frame waits at most one inference time.")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("overload", d.overload)
                .nick("Overload policy")
                .blurb("mode=async: a frame that arrives while the worker is busy is passed on with the last result marked stale (drop), passed on without a result (skip), or waits for the worker (wait). backend=triton, any mode: what a frame gets while the server is unreachable (wait: retry until it is back)")
                .mutable_playing()
                .build(),
            glib::ParamSpecBoolean::builder("track")
                .nick("Track")
                .blurb("Give segments a persistent track_id: things by mask IoU with the previous frames (a class change continues a track when the masks overlap strongly; a tracked thing then reports its track's majority class of the last 15 frames as label/label_id; a thing mask in pieces farther apart than 8% of the frame diagonal is split into one segment per group of pieces; a second segment inside a tracked object shares its id; the colours of segments are compared with their tracks', so one that looks like a lost track continues it across a class change, a longer way or after it left the picture, and one that looks different does not), stuff one id per class")
                .default_value(d.track)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("track-max-age")
                .nick("Track max age")
                .blurb("track=true: frames a thing track survives unmatched (e.g. hidden) before it is forgotten")
                .minimum(0)
                .maximum(100_000)
                .default_value(track.max_age)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("track-iou-threshold")
                .nick("Track IoU threshold")
                .blurb("track=true: minimum mask IoU (after motion prediction) for a thing to continue a track")
                .minimum(0.01)
                .maximum(1.0)
                .default_value(track.iou_threshold)
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("batch-group")
                .nick("Batch group")
                .blurb("Share one batched inference with every mask2former of this process that has the same batch-group (and the same model, backend, batch-size and batch-timeout; a mismatch is an error at start). Frames of all these streams are inferred in batches of up to batch-size; each stream keeps its own preprocess, thresholds, postprocess and tracking. Empty: this element runs its own model.")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("engine-name")
                .nick("Engine name (deprecated)")
                .blurb("Deprecated: the former name of batch-group (same setting)")
                .flags(glib::ParamFlags::READWRITE | glib::ParamFlags::DEPRECATED)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("batch-size")
                .nick("Batch size")
                .blurb("With batch-group: most frames (from all the group's streams) inferred in one network call")
                .minimum(1)
                .maximum(256)
                .default_value(DEFAULT_BATCH_SIZE)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("batch-timeout")
                .nick("Batch timeout")
                .blurb("With batch-group: nanoseconds the first frame of a batch waits for frames of other streams before the batch runs incomplete (0: run what is already waiting)")
                .minimum(0)
                .maximum(MAX_BATCH_TIMEOUT_NS)
                .default_value(DEFAULT_BATCH_TIMEOUT_NS)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("batch-stats")
                .nick("Batch group statistics")
                .blurb("Counters of the batching group (batch-group) since it was created: requests, images, batches, backend-calls, multi-image-batches, max-batch, members; empty when there is none")
                .read_only()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb("Counters since start, as the `segstream-summary` message posted at end of stream: frames, inferred, stale (an earlier result reused), dropped (inference dropped, worker busy), skipped (passed on without a result), cuda-frames (CUDA frames processed on the device), cuda-copied (CUDA frames read through system memory: another CUDA context, or no GPU stages)")
                .read_only()
                .build(),
            glib::ParamSpecInt::builder("cuda-device-id")
                .nick("CUDA device id")
                .blurb("CUDA device for the GPU stages and the CUDA context shared with neighbouring CUDA elements (nvh264dec, nvh264enc, cudaupload); -1 = device 0, or the device of a neighbour's context")
                .minimum(-1)
                .maximum(i32::MAX)
                .default_value(d.cuda_device_id)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("processing")
                .nick("Processing")
                .blurb("Where pre/post-processing runs since start: cuda:N (the GPU stages; frames in CUDA memory stay on the device) or cpu, with the reason when device=auto stays on the CPU")
                .read_only()
                .build(),
        ]
    });
    PROPS.as_ref()
}

/// Write property `name` into `s`; `false` for a name that is not a writable setting.
pub(super) fn set(s: &mut Settings, name: &str, value: &glib::Value) -> bool {
    let d = Settings::default();
    let nonempty = |v: &glib::Value| v.get::<Option<String>>().ok().flatten().filter(|p| !p.is_empty());
    match name {
        "model" => s.model = nonempty(value).map(Into::into),
        "backend" => s.backend = value.get().unwrap_or(d.backend),
        "device" => s.device = value.get().unwrap_or(d.device),
        "task" => s.post.task = value.get().ok(),
        "semantics" => s.post.semantics = value.get().unwrap_or(d.post.semantics),
        "score-threshold" => s.post.score_threshold = value.get().ok(),
        "overlap-threshold" => s.post.overlap_threshold = value.get().ok(),
        "mask-threshold" => s.post.mask_threshold = value.get().ok(),
        "interval" => s.interval = value.get::<u32>().unwrap_or(DEFAULT_INTERVAL).max(1),
        "post-messages" => s.post_messages = value.get().unwrap_or(d.post_messages),
        "threads" => s.threads = value.get().unwrap_or(d.threads),
        "precision" => s.precision = value.get().unwrap_or(d.precision),
        "performance-hint" => s.performance_hint = value.get().unwrap_or(d.performance_hint),
        "openvino-device" => s.openvino_device = nonempty(value).unwrap_or(d.openvino_device),
        "triton-url" => s.triton_url = nonempty(value).unwrap_or(d.triton_url),
        "triton-model" => s.triton_model = nonempty(value).unwrap_or_default(),
        "triton-timeout" => {
            s.triton_timeout = value.get::<u32>().map_or(d.triton_timeout, |ms| Duration::from_millis(ms.max(1).into()));
        }
        "cuda-device-id" => s.cuda_device_id = value.get().unwrap_or(d.cuda_device_id),
        "mode" => s.mode = value.get().unwrap_or(d.mode),
        "overload" => s.overload = value.get().unwrap_or(d.overload),
        "track" => s.track = value.get().unwrap_or(d.track),
        "track-max-age" => s.tracker.max_age = value.get().unwrap_or(d.tracker.max_age),
        "track-iou-threshold" => s.tracker.iou_threshold = value.get().unwrap_or(d.tracker.iou_threshold),
        "batch-group" | "engine-name" => s.batch_group = nonempty(value),
        "batch-size" => s.batch.batch_size = value.get::<u32>().unwrap_or(DEFAULT_BATCH_SIZE).max(1) as usize,
        "batch-timeout" => {
            s.batch.timeout = Duration::from_nanos(value.get().unwrap_or(DEFAULT_BATCH_TIMEOUT_NS));
        }
        _ => return false,
    }
    true
}

/// Read property `name` from `s`; unset post-processing fields read as the model card's
/// value (`card`: the card of the model in use, if one is known yet).
pub(super) fn get(s: &Settings, card: Option<&Defaults>, name: &str) -> Option<glib::Value> {
    let post = s.post.resolve(card.unwrap_or(&Defaults::default()));
    Some(match name {
        "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
        "backend" => s.backend.to_value(),
        "device" => s.device.to_value(),
        "task" => post.task.to_value(),
        "semantics" => s.post.semantics.to_value(),
        "score-threshold" => post.score_threshold.to_value(),
        "overlap-threshold" => post.overlap_threshold.to_value(),
        "mask-threshold" => post.mask_threshold.to_value(),
        "interval" => s.interval.to_value(),
        "post-messages" => s.post_messages.to_value(),
        "threads" => s.threads.to_value(),
        "precision" => s.precision.to_value(),
        "performance-hint" => s.performance_hint.to_value(),
        "openvino-device" => s.openvino_device.to_value(),
        "triton-url" => s.triton_url.to_value(),
        "triton-model" => s.triton_model.to_value(),
        "triton-timeout" => (s.triton_timeout.as_millis().min(u32::MAX as u128) as u32).to_value(),
        "cuda-device-id" => s.cuda_device_id.to_value(),
        "mode" => s.mode.to_value(),
        "overload" => s.overload.to_value(),
        "track" => s.track.to_value(),
        "track-max-age" => s.tracker.max_age.to_value(),
        "track-iou-threshold" => s.tracker.iou_threshold.to_value(),
        "batch-group" | "engine-name" => s.batch_group.to_value(),
        "batch-size" => (s.batch.batch_size as u32).to_value(),
        "batch-timeout" => (s.batch.timeout.as_nanos().min(u128::from(u64::MAX)) as u64).to_value(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::openvino::{PerformanceHint, Precision};
    use crate::backend::select::{BackendKind, Device};
    use crate::postprocess::Semantics;
    use crate::segmentation::Task;
    use crate::settings::{Mode, Overload};

    /// Every enum property's nicks are the names the command and the library parse, to the
    /// same value (one type each: no mirror to drift).
    #[test]
    fn enum_nicks_are_the_library_names() {
        fn check<T>(all: &[T])
        where
            T: StaticType + Copy + PartialEq + std::fmt::Debug + std::str::FromStr,
            T: glib::translate::IntoGlib<GlibType = i32>,
            <T as std::str::FromStr>::Err: std::fmt::Debug,
        {
            let class = glib::EnumClass::with_type(T::static_type()).unwrap();
            assert_eq!(class.values().len(), all.len());
            for &v in all {
                let nick = class.value(v.into_glib()).unwrap().nick();
                assert_eq!(nick.parse::<T>().unwrap(), v, "{nick}");
            }
        }
        check(&BackendKind::ALL);
        check(&[Device::Auto, Device::Cpu, Device::Cuda]);
        check(&[Task::Panoptic, Task::Instance, Task::Semantic]);
        check(&[Semantics::Detectron2, Semantics::Transformers]);
        check(&Overload::ALL);
        check(&Precision::ALL);
        check(&PerformanceHint::ALL);
    }

    /// Every writable property is a setting: set to a non-default value, it reads back.
    #[test]
    fn every_writable_property_round_trips_through_settings() {
        gst::init().unwrap();
        for spec in specs() {
            if !spec.flags().contains(glib::ParamFlags::WRITABLE) {
                assert!(get(&Settings::default(), None, spec.name()).is_none(), "{}", spec.name());
                continue;
            }
            let mut s = Settings::default();
            let v = get(&s, None, spec.name()).unwrap_or_else(|| panic!("{} reads", spec.name()));
            assert_eq!(v.type_(), spec.value_type(), "{}", spec.name());
            assert!(set(&mut s, spec.name(), &v), "{}", spec.name());
        }
        let mut s = Settings::default();
        for (name, value) in [
            ("task", Task::Semantic.to_value()),
            ("semantics", Semantics::Transformers.to_value()),
            ("score-threshold", 0.25f32.to_value()),
            ("mode", Mode::Async.to_value()),
            ("batch-timeout", 5u64.to_value()),
            ("engine-name", Some("g").to_value()),
            ("backend", BackendKind::OpenVino.to_value()),
            ("precision", Precision::Bf16.to_value()),
            ("performance-hint", PerformanceHint::Throughput.to_value()),
            ("openvino-device", Some("GPU.1").to_value()),
        ] {
            assert!(set(&mut s, name, &value));
            assert_eq!(get(&s, None, name).unwrap().serialize().unwrap(), value.serialize().unwrap(), "{name}");
        }
        assert_eq!(s.batch_group.as_deref(), Some("g"));
        assert_eq!(get(&s, None, "batch-group").unwrap().get::<Option<String>>().unwrap().as_deref(), Some("g"));
    }
}
