//! The `segstream` GStreamer plugin: a thin cdylib over `segstream::elements`.

fn plugin_init(plugin: &gstreamer::Plugin) -> Result<(), gstreamer::glib::BoolError> {
    segstream::elements::register(plugin)
}

gstreamer::plugin_define!(
    segstream,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "https://example.invalid/segstream",
    env!("BUILD_REL_DATE")
);
