//! Batching across streams, as a backend decorator: a process-wide registry of batching
//! groups, keyed by name. A backend that [`join`]s a group is replaced by a member of it
//! (itself a [`Backend`]); the member sends each input to the group and waits for its
//! part of the answer. The caller above (one [`crate::segmenter::Segmenter`] per stream,
//! e.g. one per `mask2former` element with the same `batch-group`) keeps its own
//! preprocess, thresholds, postprocess and tracking; only the network call is shared.
//!
//! A group's worker thread owns one backend (that of the member that created the group).
//! It takes the first waiting request, then collects more until it holds `batch_size`
//! images or `timeout` has passed since the first, stacks them into one `[N,3,H,W]`
//! tensor, runs the backend once, splits the [`Logits`] by image and answers each request
//! with its own part. Frames of different sizes batch together: preprocess always gives the
//! model's fixed `H×W`, and each stream postprocesses with its own frame geometry.
//!
//! A backend whose [`Backend::max_batch`] is smaller than the batch (ONNX models exported
//! with a fixed batch, the native TensorRT backend) runs the batch in chunks of that size,
//! image by image for a fixed batch of 1: streams still share one model instance.
//!
//! The group lives while a member holds it: the registry keeps only a weak reference.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::backend::{Backend, InputTensor, Logits};
use crate::util::{lock, panic_message};
use crate::{Error, Result};

/// How a group forms batches. Fixed by the member that creates the group; a member that
/// asks for other values is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most images in one network call (≥ 1).
    pub batch_size: usize,
    /// How long the first request of a batch waits for others.
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { batch_size: 4, timeout: Duration::from_millis(10) }
    }
}

/// Counters of one group since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Requests answered (one per frame from the elements).
    pub requests: u64,
    /// Images inferred.
    pub images: u64,
    /// Batches formed (each one or more backend calls, see `backend_calls`).
    pub batches: u64,
    /// Backend calls (more than `batches` when the backend's max batch is smaller).
    pub backend_calls: u64,
    /// Batches of more than one image.
    pub multi_image_batches: u64,
    /// The largest batch formed.
    pub max_batch: usize,
    /// Streams that are members now.
    pub members: usize,
}

/// What members of one group must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupKey {
    model: String,
    backend: String,
    input: (usize, usize),
    output: (usize, usize),
}

struct Request {
    input: InputTensor,
    reply: Sender<Result<Logits>>,
}

struct Group {
    name: String,
    key: GroupKey,
    cfg: BatchConfig,
    tx: Sender<Request>,
    stats: Arc<Mutex<GroupStats>>,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<Group>>>> = LazyLock::new(Default::default);

/// Route `backend`'s inference through the group `name`: `*backend` becomes a member of
/// the group. `model` names what the backend runs (members must run the same model).
///
/// When a live group has that name, the backend joins it and is returned (put it back in
/// place of the member to leave); when none has, the backend moves into a new group and
/// `None` is returned. Refused with [`Error::InvalidArgument`], `*backend` untouched, when
/// the group runs another model or backend, or batches with other settings.
pub fn join(name: &str, model: &str, backend: &mut Box<dyn Backend>, cfg: BatchConfig) -> Result<Option<Box<dyn Backend>>> {
    if cfg.batch_size == 0 {
        return Err(Error::InvalidArgument("batch size must be at least 1".into()));
    }
    let key = GroupKey {
        model: model.to_string(),
        backend: backend.name().to_string(),
        input: backend.input_size(),
        output: backend.output_dims(),
    };
    let mut registry = lock(&REGISTRY);
    registry.retain(|_, g| g.strong_count() > 0);
    if let Some(group) = registry.get(name).and_then(Weak::upgrade) {
        if group.key != key {
            return Err(Error::InvalidArgument(format!(
                "batch group {name:?} runs model {} on {} with input {:?}, this stream asks for {} on {} with input {:?}: \
                 streams sharing a batch group must use the same model and backend",
                group.key.model, group.key.backend, group.key.input, key.model, key.backend, key.input
            )));
        }
        if group.cfg != cfg {
            return Err(Error::InvalidArgument(format!(
                "batch group {name:?} batches with batch-size {} and batch-timeout {:?}, this stream asks for {} and {:?}",
                group.cfg.batch_size, group.cfg.timeout, cfg.batch_size, cfg.timeout
            )));
        }
        return Ok(Some(std::mem::replace(backend, Box::new(Member::new(group)))));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let stats = Arc::new(Mutex::new(GroupStats::default()));
    let group = Arc::new(Group { name: name.to_string(), key, cfg, tx, stats: stats.clone() });
    let thread = std::thread::Builder::new().name(format!("segstream-batch-{name}"));
    // The thread takes the backend only once it has started: spawn it with a slot that
    // receives the backend, so that a failed spawn leaves `*backend` in place.
    let (give, take) = crossbeam_channel::bounded::<Box<dyn Backend>>(1);
    let spawned = thread.spawn({
        let name = name.to_string();
        move || {
            if let Ok(backend) = take.recv() {
                worker(name, backend, cfg, rx, stats)
            }
        }
    });
    if let Err(e) = spawned {
        return Err(Error::Inference(format!("cannot start the thread of batch group {name:?}: {e}")));
    }
    let own = std::mem::replace(backend, Box::new(Member::new(group.clone())));
    // The thread waits on `take` until it gets the backend; it cannot have gone.
    let _ = give.send(own);
    registry.insert(name.to_string(), Arc::downgrade(&group));
    Ok(None)
}

/// Counters of the live group `name`.
pub fn stats(name: &str) -> Option<GroupStats> {
    let group = lock(&REGISTRY).get(name).and_then(Weak::upgrade)?;
    let mut s = *lock(&group.stats);
    s.members = Arc::strong_count(&group) - 1;
    Some(s)
}

/// A member's view of the group: a [`Backend`] that sends its input to the group's worker
/// and waits for its part of the batch.
struct Member {
    group: Arc<Group>,
    backend_name: String,
}

impl Member {
    fn new(group: Arc<Group>) -> Self {
        let backend_name = group.key.backend.clone();
        Member { group, backend_name }
    }
}

impl Backend for Member {
    /// The name of the group's backend, so that a member (held by the stream that created
    /// the group) joins the same group again.
    fn name(&self) -> &str {
        &self.backend_name
    }
    fn input_size(&self) -> (usize, usize) {
        self.group.key.input
    }
    fn output_dims(&self) -> (usize, usize) {
        self.group.key.output
    }
    fn max_batch(&self) -> usize {
        usize::MAX
    }
    fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        let [n, c, h, w] = input.shape;
        let (ih, iw) = self.group.key.input;
        if n == 0 || c != 3 || (h, w) != (ih, iw) || input.data.len() != n * c * h * w {
            return Err(Error::InvalidArgument(format!(
                "input tensor {:?} with {} values does not fit [N,3,{ih},{iw}]",
                input.shape,
                input.data.len()
            )));
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        let gone = || Error::Inference(format!("batch group {:?} has stopped", self.group.name));
        self.group.tx.send(Request { input: input.clone(), reply }).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// The group's thread: form batches, run them, answer. Ends when every member has gone
/// (the channel closes), after answering what was queued.
fn worker(name: String, mut backend: Box<dyn Backend>, cfg: BatchConfig, rx: Receiver<Request>, stats: Arc<Mutex<GroupStats>>) {
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + cfg.timeout;
        let mut images = first.input.shape[0];
        let mut batch = vec![first];
        while images < cfg.batch_size {
            match rx.recv_deadline(deadline) {
                Ok(r) => {
                    images += r.input.shape[0];
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let (result, calls) = match std::panic::catch_unwind(AssertUnwindSafe(|| run_batch(backend.as_mut(), &batch))) {
            Ok(r) => r,
            Err(p) => (Err(Error::Inference(format!("backend panicked: {}", panic_message(&p)))), 1),
        };
        {
            let mut s = lock(&stats);
            s.requests += batch.len() as u64;
            s.images += images as u64;
            s.batches += 1;
            s.backend_calls += calls;
            s.multi_image_batches += u64::from(images > 1);
            s.max_batch = s.max_batch.max(images);
        }
        match result {
            Ok(logits) => {
                let mut start = 0;
                for r in batch {
                    let n = r.input.shape[0];
                    let _ = r.reply.send(logits.slice(start, n));
                    start += n;
                }
            }
            Err(e) => {
                // An unreachable server stays that (the members' overload policy applies).
                let unavailable = matches!(e, Error::Unavailable(_));
                let msg = format!("batch group {name:?}, batch of {images}: {e}");
                for r in batch {
                    let e = if unavailable { Error::Unavailable(msg.clone()) } else { Error::Inference(msg.clone()) };
                    let _ = r.reply.send(Err(e));
                }
            }
        }
    }
}

/// Stack the requests into one tensor and run it in chunks of the backend's max batch.
/// Returns the logits of every image in request order and the number of backend calls.
fn run_batch(backend: &mut dyn Backend, batch: &[Request]) -> (Result<Logits>, u64) {
    let per_image = |r: &Request| r.input.shape[1] * r.input.shape[2] * r.input.shape[3];
    let shape = batch[0].input.shape;
    let total: usize = batch.iter().map(|r| r.input.shape[0]).sum();
    let stacked = if batch.len() == 1 {
        None
    } else {
        let mut data = Vec::with_capacity(total * per_image(&batch[0]));
        for r in batch {
            data.extend_from_slice(&r.input.data);
        }
        Some(InputTensor { shape: [total, shape[1], shape[2], shape[3]], data })
    };
    let input = stacked.as_ref().unwrap_or(&batch[0].input);
    let chunk = backend.max_batch().max(1);
    if total <= chunk {
        return (backend.infer(input).and_then(|l| check_batch(l, total)), 1);
    }
    let per = per_image(&batch[0]);
    let mut out: Option<Logits> = None;
    let mut calls = 0;
    let mut start = 0;
    while start < total {
        let n = chunk.min(total - start);
        let part = InputTensor { shape: [n, shape[1], shape[2], shape[3]], data: input.data[start * per..(start + n) * per].to_vec() };
        calls += 1;
        let logits = match backend.infer(&part).and_then(|l| check_batch(l, n)) {
            Ok(l) => l,
            Err(e) => return (Err(e), calls),
        };
        match out.as_mut() {
            None => out = Some(logits),
            Some(o) => {
                if let Err(e) = o.append(logits) {
                    return (Err(e), calls);
                }
            }
        }
        start += n;
    }
    (out.ok_or_else(|| Error::Inference("empty batch".into())), calls)
}

fn check_batch(l: Logits, n: usize) -> Result<Logits> {
    if l.batch != n {
        return Err(Error::ModelContract(format!("backend returned a batch of {} for {n} images", l.batch)));
    }
    Ok(l)
}
