//! GStreamer CUDA memory without a GPU: libgstcuda-1.0 (loaded at run time, never linked)
//! driven over the host-memory double of the CUDA driver (`tests/cuda_double/`, built and
//! loaded by `common/cuda_double.rs` as `libcuda.so.1`).
//!
//! `double.rs`: smoke tests of the double through libgstcuda itself: the library loads, a
//! context is made, a CUDA buffer pool hands out pitched `memory:CUDAMemory` buffers,
//! `GST_MAP_CUDA` gives the device pointer without a copy and a system-memory map
//! downloads through the driver.
//!
//! `elements.rs`: `mask2former` and `segoverlay` on CUDA memory: negotiation, one shared
//! context, no system-memory map, the same result as the system-memory path; frames of
//! another context read through system memory instead of misread.
//!
//! Linux only (dlopen, a C compiler to build the double); libgstcuda-1.0 must be installed
//! (GStreamer ≥ 1.22, e.g. Debian 12's libgstreamer-plugins-bad1.0-0).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/cuda_double.rs"]
mod cuda_double;
mod double;
mod elements;
