//! `mode=async`: a worker thread that owns the [`Inference`], runs the jobs in arrival
//! order and pushes every frame downstream itself, so upstream never waits on the network
//! (unless `overload=wait`). [`Worker::start`] / [`Handle::submit`] / [`Handle::drain`] /
//! [`Worker::stop`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstreamer as gst;
use gst_base::prelude::*;
use gstreamer_base as gst_base;

use super::imp::CAT;
use super::inference::{Failure, Inference, Outcome, StreamInfo, Video, attach};
use super::stats::Counters;
use crate::settings::{Overload, Settings};
use crate::util::lock;

/// Frames that may wait behind the one being inferred (in `drop`/`skip` mode they are
/// pushed as soon as that inference ends). When full, upstream blocks.
pub(super) const QUEUE: usize = 64;

/// What the worker is asked to do, in arrival order.
enum Job {
    /// Segment the frame, attach the result, push it.
    Infer { buf: gst::Buffer, frame_no: u64, settings: Box<Settings>, video: Video },
    /// Push the frame with the last result marked stale (`with_last`) or without a result.
    Pass { buf: gst::Buffer, frame_no: u64, post_messages: bool, size: (u32, u32), with_last: bool },
    /// Forget the last result and the tracks (flush).
    Reset,
    /// Answer when every earlier job is done.
    Drain(crossbeam_channel::Sender<()>),
}

/// State shared by the streaming thread and the worker.
struct Shared {
    /// An `Infer` job is queued or running.
    busy: Mutex<bool>,
    idle: Condvar,
    /// First failed push (or inference error) of the worker, returned upstream.
    flow: Mutex<Option<gst::FlowError>>,
}

/// The running worker; [`Worker::stop`] gives the inference state back.
pub(super) struct Worker {
    handle: Handle,
    thread: JoinHandle<Inference>,
}

/// What the streaming thread needs to talk to the worker (cheap to clone, so that the
/// element's state lock is not held while waiting on the worker).
#[derive(Clone)]
pub(super) struct Handle {
    tx: crossbeam_channel::Sender<Job>,
    shared: Arc<Shared>,
}

impl Worker {
    pub fn start(
        element: &super::Mask2Former,
        inference: Inference,
        counters: Arc<Counters>,
        stream: Arc<StreamInfo>,
    ) -> Result<Worker, gst::ErrorMessage> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let shared = Arc::new(Shared { busy: Mutex::new(false), idle: Condvar::new(), flow: Mutex::new(None) });
        let (weak, sh) = (element.downgrade(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("mask2former-worker".into())
            .spawn(move || run(weak, inference, rx, sh, counters, stream))
            .map_err(|e| gst::error_msg!(gst::ResourceError::Failed, ("cannot start the inference thread: {e}")))?;
        Ok(Worker { handle: Handle { tx, shared }, thread })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Close the queue and wait for the worker to end (its pushes fail fast once the pads
    /// flush); `None` if it panicked.
    pub fn stop(self) -> Result<Inference, String> {
        let Worker { handle, thread } = self;
        let Handle { tx, shared } = handle;
        drop(tx);
        *lock(&shared.busy) = false;
        shared.idle.notify_all();
        thread.join().map_err(|p| crate::util::panic_message(&p))
    }
}

impl Handle {
    /// Wait until the worker has done every job sent so far.
    pub fn drain(&self) {
        let (reply, done) = crossbeam_channel::bounded(1);
        if self.tx.send(Job::Drain(reply)).is_ok() {
            let _ = done.recv();
        }
    }

    /// After a flush: finish what is queued, forget the last result and the tracks, and
    /// clear a failed push.
    pub fn reset(&self) {
        self.drain();
        let _ = self.tx.send(Job::Reset);
        *lock(&self.shared.flow) = None;
    }

    /// Hand a copy of the frame (its memory is shared, not copied) to the worker, which
    /// pushes it; the base class drops the original. `due`: the interval asks for
    /// inference on this frame.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        element: &super::imp::Mask2Former,
        buf: &gst::BufferRef,
        frame_no: u64,
        due: bool,
        settings: Settings,
        video: Video,
        running: &AtomicBool,
        counters: &Counters,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if let Some(e) = *lock(&self.shared.flow) {
            return Err(e);
        }
        let owned = buf.copy();
        let size = (video.info.width(), video.info.height());
        let pass = |buf, with_last| Job::Pass { buf, frame_no, post_messages: settings.post_messages, size, with_last };
        let job = if !due {
            pass(owned, true)
        } else {
            let mut busy = lock(&self.shared.busy);
            if settings.overload == Overload::Wait {
                while *busy && running.load(Ordering::SeqCst) {
                    busy = self
                        .shared
                        .idle
                        .wait_timeout(busy, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            if !*busy {
                *busy = true;
                Job::Infer { buf: owned, frame_no, settings: Box::new(settings.clone()), video }
            } else {
                Counters::add(&counters.dropped);
                gst::log!(CAT, imp = element, "frame {frame_no}: worker busy, {:?}", settings.overload);
                pass(owned, settings.overload != Overload::Skip)
            }
        };
        if self.tx.send(job).is_err() {
            gst::element_imp_error!(element, gst::CoreError::Failed, ("the inference thread is gone"));
            return Err(gst::FlowError::Error);
        }
        Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED)
    }
}

/// The worker thread: runs the jobs in order, pushes every frame, and gives the inference
/// state back when the queue closes (on stop).
fn run(
    weak: glib::WeakRef<super::Mask2Former>,
    mut inference: Inference,
    rx: crossbeam_channel::Receiver<Job>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    stream: Arc<StreamInfo>,
) -> Inference {
    let fail = |e: gst::FlowError| {
        lock(&shared.flow).get_or_insert(e);
    };
    for job in rx.iter() {
        let buf = match job {
            Job::Drain(reply) => {
                let _ = reply.send(());
                continue;
            }
            Job::Reset => {
                inference.reset();
                continue;
            }
            Job::Infer { mut buf, frame_no, settings, video } => {
                let Some(element) = weak.upgrade() else {
                    *lock(&shared.busy) = false;
                    shared.idle.notify_all();
                    continue;
                };
                let imp = element.imp();
                let result = inference.segment_or_wait(
                    &settings,
                    &buf,
                    &video,
                    frame_no,
                    || imp.keep_waiting(),
                    |line| imp.say_outage(line),
                );
                *lock(&shared.busy) = false;
                shared.idle.notify_all();
                let out = match result {
                    Ok(done) => {
                        Counters::add(&counters.inferred);
                        imp.observe_latency(&done.timings);
                        Some(Outcome { done, frame_no, stale: false })
                    }
                    Err(Failure::Error(msg)) => {
                        imp.post_error_message(msg);
                        fail(gst::FlowError::Error);
                        continue;
                    }
                    // Waited until a stop or a flush: the frame goes nowhere.
                    Err(Failure::Unavailable(_)) if settings.overload == Overload::Wait => continue,
                    // The server is unreachable: as a frame that found the worker busy.
                    Err(Failure::Unavailable(_)) => {
                        let size = (video.info.width(), video.info.height());
                        inference.stand_in(settings.overload == Overload::Drop, size).map(|done| Outcome { done, frame_no, stale: true })
                    }
                };
                if let Some(out) = out
                    && let Err(msg) = attach(&element, buf.make_mut(), &stream, out, settings.post_messages)
                {
                    imp.post_error_message(msg);
                    fail(gst::FlowError::Error);
                    continue;
                }
                buf
            }
            Job::Pass { mut buf, frame_no, post_messages, size, with_last } => {
                let Some(element) = weak.upgrade() else { continue };
                if let Some(done) = inference.stand_in(with_last, size) {
                    let out = Outcome { done, frame_no, stale: true };
                    if let Err(msg) = attach(&element, buf.make_mut(), &stream, out, post_messages) {
                        element.imp().post_error_message(msg);
                        fail(gst::FlowError::Error);
                        continue;
                    }
                }
                buf
            }
        };
        let Some(element) = weak.upgrade() else { continue };
        if let Err(e) = element.src_pad().push(buf) {
            gst::debug!(CAT, obj = &element, "worker push: {e:?}");
            fail(e);
        }
    }
    inference
}
