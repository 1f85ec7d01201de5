//! GStreamer elements: `mask2former`, `segoverlay`, `segmetaenc`, `segpublish`, and the
//! [`SegmentationMeta`] that carries results between them.
//!
//! - [`register`] registers the elements in a plugin (the cdylib in `plugins/gst-segstream`
//!   calls it from `plugin_define!`);
//! - [`register_static`] registers them as a static plugin named `segstream`, for
//!   programs linking the library (the `segstream` command, the tests), so that no
//!   `GST_PLUGIN_PATH` is needed.

pub mod mask2former;
pub mod meta;
pub mod segmetaenc;
pub mod segoverlay;
pub mod segpublish;

use std::sync::OnceLock;

use gst::glib;
use gstreamer as gst;
use gstreamer_video as gst_video;

pub use mask2former::Mask2Former;
pub use meta::{SegmentationInfo, SegmentationMeta};
pub use segmetaenc::SegMetaEnc;
pub use segoverlay::SegOverlay;
pub use segpublish::SegPublish;

/// Name of the plugin (both the cdylib and the static registration).
pub const PLUGIN_NAME: &str = "segstream";

/// Name of the element message `mask2former` posts per frame with `post-messages=true`.
pub const FRAME_MESSAGE: &str = "segstream-frame";

/// Register every element of the plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    register_elements(Some(plugin))
}

fn register_elements(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    // Register the meta API up front so that it exists before the first buffer.
    let _ = <SegmentationMeta as gst::MetaAPI>::meta_api();
    mask2former::register(plugin)?;
    segoverlay::register(plugin)?;
    segmetaenc::register(plugin)?;
    segpublish::register(plugin)?;
    Ok(())
}

/// Register the elements in the running process as the static plugin `segstream`.
/// Needs `gst::init()` first; calling it again is a no-op.
pub fn register_static() -> Result<(), glib::BoolError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: all strings are NUL-terminated statics; `static_plugin_init` has the
        // `GstPluginInitFunc` signature and is safe to call with any plugin pointer
        // GStreamer hands it. GStreamer must be initialized (documented requirement;
        // `gst_plugin_register_static` fails cleanly otherwise).
        let ok = unsafe {
            gst::ffi::gst_plugin_register_static(
                gst::subclass::MAJOR_VERSION,
                gst::subclass::MINOR_VERSION,
                c"segstream".as_ptr(),
                c"Real-time Mask2Former segmentation: mask2former, segoverlay, segmetaenc, segpublish".as_ptr(),
                Some(static_plugin_init),
                concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const _,
                c"MIT/X11".as_ptr(),
                c"segstream".as_ptr(),
                c"segstream".as_ptr(),
                c"https://example.invalid/segstream".as_ptr(),
            )
        };
        if ok == glib::ffi::GFALSE {
            Err("gst_plugin_register_static(segstream) failed (is GStreamer initialized?)".to_string())
        } else {
            Ok(())
        }
    })
    .clone()
    .map_err(|e| glib::bool_error!("{}", e))
}

unsafe extern "C" fn static_plugin_init(plugin: *mut gst::ffi::GstPlugin) -> glib::ffi::gboolean {
    use glib::translate::from_glib_borrow;
    let r = std::panic::catch_unwind(|| {
        // SAFETY: GStreamer passes a valid plugin that outlives this call.
        let plugin: glib::translate::Borrowed<gst::Plugin> = unsafe { from_glib_borrow(plugin) };
        register_elements(Some(&plugin))
    });
    match r {
        Ok(Ok(())) => glib::ffi::GTRUE,
        _ => glib::ffi::GFALSE,
    }
}

/// After CUDA memory caps were negotiated: the element's CUDA context (found or made, see
/// [`crate::cuda::memory::ElementContext::ensure`]), logged in `cat`.
pub(crate) fn ensure_cuda_context(
    element: &gst::Element,
    ctx: &crate::cuda::memory::ElementContext,
    device_id: i32,
    cat: gst::DebugCategory,
) -> Result<(), gst::LoggableError> {
    let c = ctx.ensure(element, device_id).map_err(|e| gst::loggable_error!(cat, "CUDA memory negotiated, but: {e}"))?;
    gst::info!(cat, obj = element, "CUDA memory in context {c:?}");
    Ok(())
}

/// Raw video in any memory (system, CUDA, ...): what the meta consumers (`segmetaenc`,
/// `segpublish`) take; they read the `SegmentationMeta`, never the pixels.
pub(crate) fn any_video_caps() -> gst::Caps {
    gst::Caps::builder_full().structure_with_any_features(gst::Structure::new_empty("video/x-raw")).build()
}

/// Pad templates of the in-place video filters (`mask2former`, `segoverlay`): the same
/// caps on `src` and `sink`.
pub(crate) fn video_filter_templates() -> Vec<gst::PadTemplate> {
    let caps = video_caps();
    [("src", gst::PadDirection::Src), ("sink", gst::PadDirection::Sink)]
        .map(|(name, dir)| gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).expect("valid pad template"))
        .to_vec()
}

/// Caps of the video filters: CUDA memory first (offered at negotiation only where it can
/// be used: libgstcuda and a driver, and for `mask2former` GPU stages), then system-memory
/// raw video in the formats the library reads.
fn video_caps() -> gst::Caps {
    let mut caps = crate::cuda::memory::cuda_caps();
    caps.make_mut().append(system_video_caps());
    caps
}

fn system_video_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list([
            gst_video::VideoFormat::Rgb,
            gst_video::VideoFormat::Rgba,
            gst_video::VideoFormat::Bgrx,
            gst_video::VideoFormat::Nv12,
            gst_video::VideoFormat::I420,
        ])
        .build()
}
