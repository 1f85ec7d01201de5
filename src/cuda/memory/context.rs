//! The one CUDA context a chain of elements shares, and the context dance of each element
//! (CONTEXT queries, `set_context`, NEED/HAVE_CONTEXT messages).
//!
//! segstream offers the device's *primary* context (the one its kernels run in, through
//! cudarc) wrapped with `gst_cuda_context_new_wrapped`, so that nvcodec's decoder and
//! encoder adopt it and hand over device memory without a copy. GStreamer's own
//! `gst_cuda_context_new` would create a second, non-primary context, and nvcodec uses
//! another element's memory directly only within one context.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use gst::glib;
use gst::glib::translate::{FromGlibPtrFull, IntoGlibPtr, ToGlibPtr};
use gst::prelude::*;
use gstreamer as gst;

use super::ffi::GstCuda;
use crate::util::lock;
use crate::{Error, Result};

/// The context type name of `GstContext`s carrying a `GstCudaContext`.
pub const CONTEXT_TYPE: &str = "gst.cuda.context";

/// A `GstCudaContext` (a `GstObject`): the CUDA context elements share. Equality is object
/// identity.
#[derive(Clone, PartialEq, Eq)]
pub struct CudaCtx(gst::Object);

impl std::fmt::Debug for CudaCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaCtx({:?}, CUcontext {:#x})", self.0.as_ptr(), self.handle())
    }
}

impl CudaCtx {
    /// # Safety
    /// `ptr` must be a `GstCudaContext*` whose reference is transferred to the result.
    unsafe fn from_full(ptr: *mut gst::ffi::GstObject) -> Option<CudaCtx> {
        // SAFETY: per the contract, a full reference to a GstObject (or NULL).
        (!ptr.is_null()).then(|| CudaCtx(unsafe { gst::Object::from_glib_full(ptr) }))
    }

    /// The wrapped object, when it is a `GstCudaContext`.
    pub fn from_object(obj: gst::Object) -> Option<CudaCtx> {
        let lib = GstCuda::get().ok()?;
        // SAFETY: no arguments; returns the registered GType.
        let ty: glib::Type = unsafe { glib::translate::from_glib((lib.context_get_type)()) };
        obj.type_().is_a(ty).then_some(CudaCtx(obj))
    }

    /// The device's primary context, wrapped once per process and device: every element
    /// asking for device `device_id` (-1: device 0) gets the same object.
    pub fn primary(device_id: i32) -> Result<CudaCtx> {
        static PRIMARY: OnceLock<Mutex<HashMap<i32, CudaCtx>>> = OnceLock::new();
        let lib = GstCuda::get()?;
        let id = device_id.max(0);
        let mut map = lock(PRIMARY.get_or_init(Default::default));
        if let Some(c) = map.get(&id) {
            return Ok(c.clone());
        }
        let mut dev = 0;
        // SAFETY: `dev` is a valid out pointer; cuInit ran when the library was loaded.
        let rc = unsafe { (lib.driver.device_get)(&mut dev, id) };
        if rc != 0 {
            return Err(Error::CudaUnavailable(format!("CUDA device {id}: cuDeviceGet failed with error {rc}")));
        }
        let mut cu: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid out pointer and device. The retained primary context is never
        // released: it lives as long as the process, like the wrapper kept in PRIMARY.
        let rc = unsafe { (lib.driver.primary_ctx_retain)(&mut cu, dev) };
        if rc != 0 || cu.is_null() {
            return Err(Error::Cuda(format!("CUDA device {id}: cuDevicePrimaryCtxRetain failed with error {rc}")));
        }
        // SAFETY: a live CUcontext and its device; the wrapper does not own (destroy) it.
        // Returns a full reference (or NULL).
        let ctx = unsafe { CudaCtx::from_full((lib.context_new_wrapped)(cu, dev)) }
            .ok_or_else(|| Error::Cuda(format!("gst_cuda_context_new_wrapped failed for device {id}")))?;
        map.insert(id, ctx.clone());
        Ok(ctx)
    }

    /// The `CUcontext` handle, as an address (to compare contexts).
    pub fn handle(&self) -> usize {
        match GstCuda::get() {
            // SAFETY: `self.0` is a live GstCudaContext (checked at construction).
            Ok(lib) => unsafe { (lib.context_get_handle)(self.0.as_ptr()) as usize },
            Err(_) => 0,
        }
    }

    /// The device ordinal (the object's `cuda-device-id` property).
    pub fn device_id(&self) -> Option<u32> {
        self.0.find_property("cuda-device-id").map(|_| self.0.property::<u32>("cuda-device-id"))
    }

    pub fn as_object(&self) -> &gst::Object {
        &self.0
    }

    /// A `GstContext` of type [`CONTEXT_TYPE`] carrying this context (persistent).
    pub fn to_context(&self) -> Option<gst::Context> {
        let lib = GstCuda::get().ok()?;
        // SAFETY: a live GstCudaContext; returns a full reference to a new GstContext.
        let c = unsafe { (lib.context_new_cuda_context)(self.0.as_ptr()) };
        // SAFETY: full reference or NULL.
        (!c.is_null()).then(|| unsafe { gst::Context::from_glib_full(c) })
    }

    /// A `GstCudaBufferPool` allocating in this context (configure it like any video
    /// pool; applications and tests feed `appsrc` with it).
    pub fn buffer_pool(&self) -> Result<gst::BufferPool> {
        let lib = GstCuda::get()?;
        // SAFETY: a live GstCudaContext; returns a full, non-floating reference (the
        // function sinks it) to a new pool, or NULL.
        let p = unsafe { (lib.buffer_pool_new)(self.0.as_ptr()) };
        if p.is_null() {
            return Err(Error::Cuda("gst_cuda_buffer_pool_new failed".into()));
        }
        // SAFETY: the full reference above, transferred.
        let pool: gst::BufferPool = unsafe { gst::BufferPool::from_glib_full(p) };
        Ok(pool)
    }
}

/// An element's CUDA context slot: what it answers to CONTEXT queries, takes from
/// `set_context`, and finds or creates with [`ElementContext::ensure`]. Works in every
/// state, NULL included (nvcodec elements query while their neighbours are still in NULL).
#[derive(Debug, Default)]
pub struct ElementContext {
    slot: Mutex<Option<CudaCtx>>,
}

impl ElementContext {
    pub fn get(&self) -> Option<CudaCtx> {
        lock(&self.slot).clone()
    }

    pub fn clear(&self) {
        *lock(&self.slot) = None;
    }

    /// `set_context`: adopt a CUDA context for `device_id` (-1: any device). Other context
    /// types are ignored.
    pub fn set_context(&self, element: &gst::Element, context: &gst::Context, device_id: i32) {
        if context.context_type() != CONTEXT_TYPE {
            return;
        }
        let Ok(lib) = GstCuda::get() else { return };
        let mut slot = lock(&self.slot);
        let mut raw: *mut gst::ffi::GstObject = slot.take().map_or(std::ptr::null_mut(), |c| c.0.into_glib_ptr());
        // SAFETY: valid element and context; `raw` is NULL or a full reference that the
        // function may unref and replace with a full reference to the adopted context.
        unsafe { (lib.handle_set_context)(element.to_glib_none().0, context.to_glib_none().0, device_id, &mut raw) };
        // SAFETY: `raw` holds a full reference to a GstCudaContext, or NULL.
        *slot = unsafe { CudaCtx::from_full(raw) };
    }

    /// A CONTEXT query for a CUDA context: answer it with ours. With `offer` and no
    /// context yet, ours is the device's primary one, created now.
    pub fn query(&self, element: &gst::Element, query: &mut gst::QueryRef, device_id: i32, offer: bool) -> bool {
        let gst::QueryViewMut::Context(q) = query.view_mut() else { return false };
        if q.context_type() != CONTEXT_TYPE {
            return false;
        }
        let Ok(lib) = GstCuda::get() else { return false };
        let ctx = {
            let mut slot = lock(&self.slot);
            if slot.is_none() && offer {
                *slot = CudaCtx::primary(device_id).ok();
            }
            match slot.clone() {
                Some(c) => c,
                None => return false,
            }
        };
        // SAFETY: valid element, query and context.
        unsafe { (lib.handle_context_query)(element.to_glib_none().0, query.as_mut_ptr(), ctx.0.as_ptr()) != glib::ffi::GFALSE }
    }

    /// The context to work in: ours, else a neighbour's (peer queries downstream then
    /// upstream), else the application's (NEED_CONTEXT), else the device's primary context,
    /// announced with HAVE_CONTEXT.
    pub fn ensure(&self, element: &gst::Element, device_id: i32) -> Result<CudaCtx> {
        GstCuda::get()?;
        if let Some(c) = self.get() {
            return Ok(c);
        }
        for pad in element.src_pads().into_iter().chain(element.sink_pads()) {
            let mut q = gst::query::Context::new(CONTEXT_TYPE);
            if pad.peer_query(&mut q)
                && let Some(c) = q.context_owned()
            {
                self.set_context(element, &c, device_id);
                if let Some(c) = self.get() {
                    return Ok(c);
                }
            }
        }
        let _ = element.post_message(gst::message::NeedContext::builder(CONTEXT_TYPE).src(element).build());
        if let Some(c) = self.get() {
            return Ok(c);
        }
        let ctx = CudaCtx::primary(device_id)?;
        *lock(&self.slot) = Some(ctx.clone());
        if let Some(c) = ctx.to_context() {
            let _ = element.post_message(gst::message::HaveContext::builder(c).src(element).build());
        }
        Ok(ctx)
    }
}
