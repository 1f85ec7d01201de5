//! `SegmentationMeta`: the result of `mask2former` for one frame, attached to the buffer.
//!
//! A custom `GstMeta` registered through the raw `gst_meta_api_type_register` /
//! `gst_meta_register` API (the way gst-plugins-rs defines its own metas). It holds an
//! `Arc<Segmentation>` (so copies are cheap), the label set of the model (colours for the
//! overlay) and the identity/timing of the frame ([`SegmentationInfo`]).
//!
//! The API is tagged `video` and `size`:
//! - copies (`gst_buffer_copy`, making a `tee`'d buffer writable, `videoconvert`) share the
//!   same `Arc`;
//! - a size change (`videoscale`, `videoconvertscale`) calls the transform function with
//!   the `gst-video-scale` transform, which resizes the id map (nearest neighbour) and
//!   recomputes every segment's area and box from it (segments that vanish at the new size
//!   are dropped); instance results, whose areas and boxes cover hidden parts too, have
//!   them scaled instead.
//!
//! A result the GPU stages made also carries its id map on the device
//! ([`SegmentationMeta::device_ids`]), shared by copies and dropped by a resize.
//!
//! One buffer carries at most one `SegmentationMeta`: [`SegmentationMeta::replace`] removes
//! an existing one first, and the copy transform does not add a second one.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::{Arc, OnceLock};
use std::{fmt, mem, ptr};

use gst::glib;
use gst::glib::translate::{IntoGlib, from_glib};
use gst::meta::MetaAPIExt;
use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::cuda::stages::DeviceIds;
use crate::model::Label;
use crate::schema::FrameInfo;
use crate::segmentation::{Segment, Segmentation, Task};
use crate::segmenter::Timings;

/// Identity and timing of the frame a [`Segmentation`] belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentationInfo {
    /// Frame number in the stream, counted by `mask2former` from 0 (reset on flush).
    pub frame: u64,
    /// Model name (from the model card).
    pub model: String,
    /// Time spent in each stage. For a stale result, the timings of the frame the result
    /// was computed for.
    pub timings: Timings,
    /// True when the result was computed for an earlier frame (`interval` > 1).
    pub stale: bool,
}

impl SegmentationInfo {
    /// The [`FrameInfo`] of a frame record for this result.
    pub fn frame_info(&self, stream: &str, pts: Option<u64>) -> FrameInfo {
        FrameInfo {
            stream: stream.to_owned(),
            frame: self.frame,
            pts,
            model: self.model.clone(),
            timings: self.timings,
            stale: self.stale,
        }
    }
}

/// The Rust payload of the meta.
#[derive(Clone)]
struct Data {
    segmentation: Arc<Segmentation>,
    labels: Arc<[Label]>,
    info: SegmentationInfo,
    /// The id map on the device, when the GPU stages made the result.
    device: Option<Arc<dyn DeviceIds>>,
}

/// Segmentation result attached to a video buffer. Read it with
/// `buffer.meta::<SegmentationMeta>()`.
#[repr(transparent)]
pub struct SegmentationMeta(imp::SegmentationMetaRaw);

// SAFETY: the payload (`Arc`s, `String`, plain numbers) is `Send + Sync`; the `GstMeta`
// header is only read, and GStreamer owns it with the buffer.
unsafe impl Send for SegmentationMeta {}
// SAFETY: see above; shared access never mutates the payload.
unsafe impl Sync for SegmentationMeta {}

impl SegmentationMeta {
    /// Attach a result to `buffer` (which may then hold more than one; prefer
    /// [`SegmentationMeta::replace`]).
    pub fn add(
        buffer: &mut gst::BufferRef,
        segmentation: Arc<Segmentation>,
        labels: Arc<[Label]>,
        info: SegmentationInfo,
    ) -> Result<gst::MetaRefMut<'_, Self, gst::meta::Standalone>, glib::BoolError> {
        Self::add_with_device(buffer, segmentation, labels, info, None)
    }

    /// [`SegmentationMeta::add`], with the id map kept on the device by the GPU stages
    /// (for `segoverlay` to composite without a host round trip).
    pub fn add_with_device(
        buffer: &mut gst::BufferRef,
        segmentation: Arc<Segmentation>,
        labels: Arc<[Label]>,
        info: SegmentationInfo,
        device: Option<Arc<dyn DeviceIds>>,
    ) -> Result<gst::MetaRefMut<'_, Self, gst::meta::Standalone>, glib::BoolError> {
        let meta_info = imp::meta_info()?;
        let mut params = mem::ManuallyDrop::new(imp::Params {
            data: Data {
                segmentation,
                labels,
                info,
                device,
            },
        });
        // SAFETY: `buffer` is writable (we hold `&mut BufferRef`), `meta_info` is our
        // registered info, and `params` points to a valid `Params` that `init` moves out of
        // with `ptr::read`; it is not used again afterwards unless `init` did not run.
        let meta = unsafe {
            gst::ffi::gst_buffer_add_meta(
                buffer.as_mut_ptr(),
                meta_info,
                &mut *params as *mut imp::Params as glib::ffi::gpointer,
            ) as *mut imp::SegmentationMetaRaw
        };
        if meta.is_null() {
            // `init` did not take the payload: drop it here.
            drop(mem::ManuallyDrop::into_inner(params));
            return Err(glib::bool_error!("failed to add SegmentationMeta to the buffer"));
        }
        // SAFETY: `meta` is a non-null meta of our API that lives as long as `buffer`.
        Ok(unsafe { Self::from_mut_ptr(buffer, meta) })
    }

    /// Remove every `SegmentationMeta` of `buffer`, then attach this result.
    pub fn replace(
        buffer: &mut gst::BufferRef,
        segmentation: Arc<Segmentation>,
        labels: Arc<[Label]>,
        info: SegmentationInfo,
    ) -> Result<gst::MetaRefMut<'_, Self, gst::meta::Standalone>, glib::BoolError> {
        Self::replace_with_device(buffer, segmentation, labels, info, None)
    }

    /// [`SegmentationMeta::replace`] with a device id map (see
    /// [`SegmentationMeta::add_with_device`]).
    pub fn replace_with_device(
        buffer: &mut gst::BufferRef,
        segmentation: Arc<Segmentation>,
        labels: Arc<[Label]>,
        info: SegmentationInfo,
        device: Option<Arc<dyn DeviceIds>>,
    ) -> Result<gst::MetaRefMut<'_, Self, gst::meta::Standalone>, glib::BoolError> {
        while let Some(m) = buffer.meta_mut::<SegmentationMeta>() {
            if m.remove().is_err() {
                break;
            }
        }
        Self::add_with_device(buffer, segmentation, labels, info, device)
    }

    pub fn segmentation(&self) -> &Arc<Segmentation> {
        &self.data().segmentation
    }

    /// The model's labels (index = label id), for colours and names.
    pub fn labels(&self) -> &Arc<[Label]> {
        &self.data().labels
    }

    pub fn info(&self) -> &SegmentationInfo {
        &self.data().info
    }

    /// The id map on the device, when the GPU stages made this result (same size as
    /// [`SegmentationMeta::segmentation`]; dropped when a scaler resizes the frame).
    pub fn device_ids(&self) -> Option<&Arc<dyn DeviceIds>> {
        self.data().device.as_ref()
    }

    fn data(&self) -> &Data {
        // SAFETY: `init` wrote `data` before the meta became reachable; `free` drops it only
        // when the meta goes away, after every `MetaRef` borrowing it.
        unsafe { self.0.data.assume_init_ref() }
    }
}

// SAFETY: `GstType` is the `#[repr(C)]` struct that starts with `GstMeta` and that
// `gst_meta_register` was told the size of; `meta_api` returns the registered API type.
unsafe impl gst::MetaAPI for SegmentationMeta {
    type GstType = imp::SegmentationMetaRaw;

    fn meta_api() -> glib::Type {
        imp::meta_api_get_type()
    }
}

impl fmt::Debug for SegmentationMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.segmentation();
        f.debug_struct("SegmentationMeta")
            .field("width", &s.width)
            .field("height", &s.height)
            .field("task", &s.task)
            .field("segments", &s.segments.len())
            .field("info", self.info())
            .finish()
    }
}

/// Resize a segmentation to `width`×`height`: the id map by nearest neighbour (pixel
/// centres), then every segment's area and box recomputed from the new map; segments
/// that no longer cover any pixel are dropped. Instance results keep every segment, with
/// area and box scaled by the size ratio (they describe each instance's whole mask).
pub fn scale_segmentation(seg: &Segmentation, width: u32, height: u32) -> Segmentation {
    let (sw, sh) = (seg.width as usize, seg.height as usize);
    let (dw, dh) = (width as usize, height as usize);
    let mut ids = vec![0u32; dw * dh];
    if sw > 0 && sh > 0 && dw > 0 && dh > 0 && seg.ids.len() == sw * sh {
        let xs: Vec<usize> = (0..dw).map(|x| ((2 * x + 1) * sw / (2 * dw)).min(sw - 1)).collect();
        for (y, row) in ids.chunks_exact_mut(dw).enumerate() {
            let sy = ((2 * y + 1) * sh / (2 * dh)).min(sh - 1);
            let src = &seg.ids[sy * sw..(sy + 1) * sw];
            for (d, &sx) in row.iter_mut().zip(&xs) {
                *d = src[sx];
            }
        }
    }
    let segments = if seg.task == Task::Instance {
        // Instance areas and boxes describe each instance's own mask, hidden parts
        // included, which the id map does not hold: scale them.
        scale_instance_segments(&seg.segments, (sw, sh), (dw, dh))
    } else {
        recompute_segments(&seg.segments, &ids, dw)
    };
    Segmentation {
        width,
        height,
        task: seg.task,
        ids,
        segments,
    }
}

/// Scale areas and boxes by the size ratio (boxes rounded outwards, clamped to the frame).
fn scale_instance_segments(segments: &[Segment], (sw, sh): (usize, usize), (dw, dh): (usize, usize)) -> Vec<Segment> {
    if sw == 0 || sh == 0 {
        return Vec::new();
    }
    let (fx, fy) = (dw as f64 / sw as f64, dh as f64 / sh as f64);
    segments
        .iter()
        .map(|s| {
            let [x, y, w, h] = s.bbox.map(f64::from);
            let x0 = ((x * fx).floor() as u32).min(dw as u32);
            let y0 = ((y * fy).floor() as u32).min(dh as u32);
            let x1 = (((x + w) * fx).ceil() as u32).min(dw as u32);
            let y1 = (((y + h) * fy).ceil() as u32).min(dh as u32);
            Segment {
                area: (s.area as f64 * fx * fy).round() as u64,
                bbox: [x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0)],
                ..s.clone()
            }
        })
        .collect()
}

/// Area and box of each segment from an id map `width` pixels wide; empty ones dropped.
fn recompute_segments(segments: &[Segment], ids: &[u32], width: usize) -> Vec<Segment> {
    if width == 0 {
        return Vec::new();
    }
    let index: HashMap<u32, usize> = segments.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    // (area, min x, min y, max x, max y)
    let mut stats = vec![(0u64, u32::MAX, u32::MAX, 0u32, 0u32); segments.len()];
    let mut last: Option<(u32, usize)> = None;
    for (y, row) in ids.chunks_exact(width).enumerate() {
        for (x, &id) in row.iter().enumerate() {
            if id == 0 {
                continue;
            }
            let i = match last {
                Some((lid, li)) if lid == id => li,
                _ => match index.get(&id) {
                    Some(&i) => {
                        last = Some((id, i));
                        i
                    }
                    None => continue,
                },
            };
            let st = &mut stats[i];
            let (x, y) = (x as u32, y as u32);
            st.0 += 1;
            st.1 = st.1.min(x);
            st.2 = st.2.min(y);
            st.3 = st.3.max(x);
            st.4 = st.4.max(y);
        }
    }
    segments
        .iter()
        .zip(stats)
        .filter(|(_, st)| st.0 > 0)
        .map(|(s, (area, x0, y0, x1, y1))| Segment {
            area,
            bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
            ..s.clone()
        })
        .collect()
}

mod imp {
    use super::*;

    pub(super) struct Params {
        pub(super) data: Data,
    }

    /// The C layout GStreamer allocates: the `GstMeta` header, then our payload.
    #[repr(C)]
    pub struct SegmentationMetaRaw {
        parent: gst::ffi::GstMeta,
        pub(super) data: mem::MaybeUninit<Data>,
    }

    const API_NAME: &std::ffi::CStr = c"SegstreamSegmentationMetaAPI";
    const IMPL_NAME: &std::ffi::CStr = c"SegstreamSegmentationMeta";

    pub(super) fn meta_api_get_type() -> glib::Type {
        static TYPE: OnceLock<glib::Type> = OnceLock::new();
        *TYPE.get_or_init(|| {
            let mut tags: [*const c_char; 3] = [
                gst_video::ffi::GST_META_TAG_VIDEO_STR.as_ptr() as *const c_char,
                gst_video::ffi::GST_META_TAG_VIDEO_SIZE_STR.as_ptr() as *const c_char,
                ptr::null(),
            ];
            // SAFETY: both strings are NUL-terminated statics and `tags` is a
            // NULL-terminated array; GStreamer copies the tags.
            let t: glib::Type = unsafe {
                from_glib(gst::ffi::gst_meta_api_type_register(
                    API_NAME.as_ptr(),
                    tags.as_mut_ptr(),
                ))
            };
            if t == glib::Type::INVALID {
                // Already registered in this process (e.g. by another copy of the
                // library): reuse it.
                glib::Type::from_name(API_NAME.to_str().unwrap_or_default()).unwrap_or(glib::Type::INVALID)
            } else {
                t
            }
        })
    }

    struct MetaInfo(ptr::NonNull<gst::ffi::GstMetaInfo>);
    // SAFETY: a registered GstMetaInfo is immutable and lives for the whole process.
    unsafe impl Send for MetaInfo {}
    // SAFETY: see above.
    unsafe impl Sync for MetaInfo {}

    pub(super) fn meta_info() -> Result<*const gst::ffi::GstMetaInfo, glib::BoolError> {
        static INFO: OnceLock<Option<MetaInfo>> = OnceLock::new();
        INFO.get_or_init(|| {
            let api = meta_api_get_type();
            if api == glib::Type::INVALID {
                return None;
            }
            // SAFETY: `api` is a registered meta API, the name is a NUL-terminated static,
            // the size is that of the struct the callbacks cast to.
            let info = unsafe {
                gst::ffi::gst_meta_register(
                    api.into_glib(),
                    IMPL_NAME.as_ptr(),
                    mem::size_of::<SegmentationMetaRaw>(),
                    Some(meta_init),
                    Some(meta_free),
                    Some(meta_transform),
                )
            };
            ptr::NonNull::new(info as *mut gst::ffi::GstMetaInfo).map(MetaInfo)
        })
        .as_ref()
        .map(|i| i.0.as_ptr() as *const _)
        .ok_or_else(|| glib::bool_error!("failed to register SegmentationMeta"))
    }

    unsafe extern "C" fn meta_init(
        meta: *mut gst::ffi::GstMeta,
        params: glib::ffi::gpointer,
        _buffer: *mut gst::ffi::GstBuffer,
    ) -> glib::ffi::gboolean {
        if params.is_null() {
            // Only `SegmentationMeta::add` may create this meta (it always passes params).
            return glib::ffi::GFALSE;
        }
        let meta = meta as *mut SegmentationMetaRaw;
        // SAFETY: `params` is the `Params` passed by `SegmentationMeta::add`, which keeps it
        // in a `ManuallyDrop` and never uses it after `gst_buffer_add_meta` succeeded, so it
        // is moved out exactly once; `meta` points to `size_of::<SegmentationMetaRaw>()`
        // bytes allocated by GStreamer and `data` is written without reading the old value.
        unsafe {
            let params = ptr::read(params as *const Params);
            ptr::addr_of_mut!((*meta).data).write(mem::MaybeUninit::new(params.data));
        }
        glib::ffi::GTRUE
    }

    unsafe extern "C" fn meta_free(meta: *mut gst::ffi::GstMeta, _buffer: *mut gst::ffi::GstBuffer) {
        let meta = meta as *mut SegmentationMetaRaw;
        // SAFETY: `free` is only called for metas whose `init` succeeded, so `data` is
        // initialized; it is dropped exactly once, here.
        unsafe { (*meta).data.assume_init_drop() };
    }

    unsafe extern "C" fn meta_transform(
        dest: *mut gst::ffi::GstBuffer,
        meta: *mut gst::ffi::GstMeta,
        src: *mut gst::ffi::GstBuffer,
        type_: glib::ffi::GQuark,
        data: glib::ffi::gpointer,
    ) -> glib::ffi::gboolean {
        // SAFETY: GStreamer passes our own initialized meta (so `data` is initialized), a
        // writable destination buffer, the source buffer, and for the copy and scale
        // transforms a `GstMetaTransformCopy` / `GstVideoMetaTransform` as `data`.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            let payload = (*(meta as *const SegmentationMetaRaw)).data.assume_init_ref().clone();
            let dest = gst::BufferRef::from_mut_ptr(dest);
            let type_: glib::Quark = from_glib(type_);
            if type_ == <gst::meta::MetaTransformCopy as gst::meta::MetaTransform>::quark() {
                let copy = &*(data as *const gst::ffi::GstMetaTransformCopy);
                let src_size = gst::ffi::gst_buffer_get_size(src);
                let whole = copy.region == glib::ffi::GFALSE || (copy.offset == 0 && copy.size >= src_size);
                if whole && dest.meta::<SegmentationMeta>().is_none() {
                    SegmentationMeta::add_with_device(dest, payload.segmentation, payload.labels, payload.info, payload.device)
                        .is_ok()
                } else {
                    // A sub-region of a frame is not a frame; and never two results.
                    true
                }
            } else if type_ == <gst_video::video_meta::VideoMetaTransformScale as gst::meta::MetaTransform>::quark() {
                let t = &*(data as *const gst_video::ffi::GstVideoMetaTransform);
                if t.out_info.is_null() {
                    return false;
                }
                let (w, h) = ((*t.out_info).width, (*t.out_info).height);
                if w <= 0 || h <= 0 {
                    return false;
                }
                let (w, h) = (w as u32, h as u32);
                let (seg, device) = if (payload.segmentation.width, payload.segmentation.height) == (w, h) {
                    (payload.segmentation, payload.device)
                } else {
                    (Arc::new(scale_segmentation(&payload.segmentation, w, h)), None)
                };
                if dest.meta::<SegmentationMeta>().is_some() {
                    return true;
                }
                SegmentationMeta::add_with_device(dest, seg, payload.labels, payload.info, device).is_ok()
            } else {
                // Transforms we do not know (e.g. a matrix transform): let the caller fall
                // back to one we know.
                false
            }
        }));
        match result {
            Ok(true) => glib::ffi::GTRUE,
            _ => glib::ffi::GFALSE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg() -> Segmentation {
        // 4x2: left half id 1, right half id 2
        Segmentation {
            width: 4,
            height: 2,
            task: Task::Panoptic,
            ids: vec![1, 1, 2, 2, 1, 1, 2, 2],
            segments: vec![
                Segment {
                    id: 1,
                    label_id: 0,
                    label: "a".into(),
                    score: 0.9,
                    is_thing: true,
                    area: 4,
                    bbox: [0, 0, 2, 2],
                    track_id: None,
                },
                Segment {
                    id: 2,
                    label_id: 1,
                    label: "b".into(),
                    score: 0.8,
                    is_thing: false,
                    area: 4,
                    bbox: [2, 0, 2, 2],
                    track_id: None,
                },
            ],
        }
    }

    #[test]
    fn scale_up_recomputes_area_and_box() {
        let s = scale_segmentation(&seg(), 8, 4);
        assert_eq!((s.width, s.height, s.ids.len()), (8, 4, 32));
        assert_eq!(s.segments[0].area, 16);
        assert_eq!(s.segments[0].bbox, [0, 0, 4, 4]);
        assert_eq!(s.segments[1].bbox, [4, 0, 4, 4]);
    }

    #[test]
    fn scale_instance_scales_area_and_box() {
        let mut s0 = seg();
        s0.task = Task::Instance;
        s0.segments[0].area = 6; // partly hidden instance
        s0.segments[0].bbox = [0, 0, 3, 2];
        let s = scale_segmentation(&s0, 8, 4);
        assert_eq!(s.segments.len(), 2);
        assert_eq!(s.segments[0].area, 24);
        assert_eq!(s.segments[0].bbox, [0, 0, 6, 4]);
        let s = scale_segmentation(&s0, 1, 1);
        assert_eq!(s.segments.len(), 2, "instances are kept");
    }

    #[test]
    fn scale_down_drops_vanished_segments() {
        let s = scale_segmentation(&seg(), 1, 1);
        // the centre of the single pixel falls in the right half
        assert_eq!(s.ids, vec![2]);
        assert_eq!(s.segments.len(), 1);
        assert_eq!(s.segments[0].id, 2);
        assert_eq!(s.segments[0].bbox, [0, 0, 1, 1]);
    }
}
