/* segstream TensorRT shim: a small C ABI over TensorRT's C++ API (10.x and 11.x).
 *
 * Every function catches all C++ exceptions and reports failures through its return value
 * and an error buffer (`err`, `err_len`: a NUL-terminated message is written when the call
 * fails). Nothing here throws or aborts across the boundary. The Rust side is
 * src/backend/tensorrt/ffi.rs (declarations) and engine.rs (safe wrapper).
 *
 * Execution takes raw device pointers and a cudaStream_t (passed as void*): the zero-copy
 * path that the GPU path (src/cuda/) feeds. The host runner is a convenience for frames in
 * system memory: it owns a stream and device buffers, copies in, enqueues, copies out.
 */
#ifndef SEGSTREAM_TRT_H
#define SEGSTREAM_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSTRT_MAX_DIMS 8

/* Return codes. */
#define SSTRT_OK 0
#define SSTRT_ERR 1          /* a TensorRT / CUDA call failed; see err */
#define SSTRT_UNSUPPORTED 2  /* not supported by the TensorRT version compiled against */
#define SSTRT_CANCELLED 3    /* the progress callback asked to stop */

/* Precision (SegstreamTrtBuildOptions.precision). */
#define SSTRT_PRECISION_FP32 0
#define SSTRT_PRECISION_FP16 1

/* Log severities, TensorRT's ILogger::Severity values. */
#define SSTRT_LOG_INTERNAL_ERROR 0
#define SSTRT_LOG_ERROR 1
#define SSTRT_LOG_WARNING 2
#define SSTRT_LOG_INFO 3
#define SSTRT_LOG_VERBOSE 4

/* Progress events. */
#define SSTRT_PHASE_START 0
#define SSTRT_PHASE_STEP 1
#define SSTRT_PHASE_FINISH 2

typedef void (*sstrt_log_fn)(void* user, int32_t severity, const char* msg);
/* Returns non-zero to cancel the build. */
typedef int32_t (*sstrt_progress_fn)(void* user, int32_t event, const char* phase, const char* parent,
                                     int32_t step, int32_t nb_steps);

typedef struct SegstreamTrtBuildOptions {
    const char* onnx_path;
    int32_t precision;           /* SSTRT_PRECISION_*; fp32 also clears TF32 */
    uint64_t workspace_bytes;    /* 0 = TensorRT's default */
    const char* input_name;      /* the batch profile is set on this input */
    int32_t batch_min, batch_opt, batch_max;
    /* Timing cache: 0 = none. Otherwise the build starts from `timing_cache` (NULL / 0
     * bytes = a fresh one; a cache TensorRT refuses, e.g. from another GPU, is replaced by a
     * fresh one with a warning) and returns the updated cache through `cache_out`. Reading
     * and writing the file (under a lock) is the caller's. */
    int32_t use_timing_cache;
    const void* timing_cache;
    size_t timing_cache_len;
} SegstreamTrtBuildOptions;

typedef struct SegstreamTrtEngine SegstreamTrtEngine;
typedef struct SegstreamTrtContext SegstreamTrtContext;
typedef struct SegstreamTrtHostRunner SegstreamTrtHostRunner;

/* The TensorRT version the shim was compiled against (NV_TENSORRT_*) and the one of the
 * library loaded at run time (getInferLibVersion), and that library's build number
 * (getInferLibBuildVersion). */
void sstrt_compiled_version(int32_t* major, int32_t* minor, int32_t* patch);
void sstrt_linked_version(int32_t* major, int32_t* minor, int32_t* patch);
int32_t sstrt_linked_build_version(void);

/* Route TensorRT's log to `fn` (NULL restores a silent logger). */
void sstrt_set_logger(sstrt_log_fn fn, void* user);

/* Name and compute capability of CUDA device `device`. */
int32_t sstrt_device_info(int32_t device, char* name, size_t name_len, int32_t* cc_major, int32_t* cc_minor,
                          char* err, size_t err_len);

/* Make `device` the calling thread's current CUDA device (builds, loads and runners use
 * the current device; a host runner remembers its device and sets it again in infer). */
int32_t sstrt_set_device(int32_t device, char* err, size_t err_len);

/* Load TensorRT's plugin library (NULL = libnvinfer_plugin.so.<major>) into the registry.
 * A library loaded before (same string) is not loaded again. */
int32_t sstrt_load_plugins(const char* library, char* err, size_t err_len);

/* Build a serialized engine (plan) from an ONNX file. On success *plan / *plan_len hold a
 * buffer to release with sstrt_free(), and, with use_timing_cache, *cache_out /
 * *cache_out_len the serialized timing cache (also for sstrt_free; NULL when none).
 * `progress` may be called from several TensorRT threads; the shim serializes the calls. */
int32_t sstrt_build(const SegstreamTrtBuildOptions* opts, sstrt_progress_fn progress, void* progress_user,
                    uint8_t** plan, size_t* plan_len, uint8_t** cache_out, size_t* cache_out_len, char* err,
                    size_t err_len);
/* Merge two serialized timing caches (`ours` updated by a build, `theirs` written to the
 * file meanwhile) into *out (for sstrt_free). SSTRT_ERR when they cannot be combined
 * (another GPU or TensorRT version, damaged): the caller then keeps `ours`. */
int32_t sstrt_timing_cache_combine(const void* ours, size_t ours_len, const void* theirs, size_t theirs_len,
                                   uint8_t** out, size_t* out_len, char* err, size_t err_len);
void sstrt_free(void* p);

/* Deserialize a plan (without segstream's header). */
SegstreamTrtEngine* sstrt_engine_load(const void* plan, size_t plan_len, char* err, size_t err_len);
void sstrt_engine_free(SegstreamTrtEngine* engine);
int32_t sstrt_engine_nb_io(const SegstreamTrtEngine* engine);
/* I/O tensor `index`: name, is_input (1/0), dtype (TensorRT DataType value), dims (-1 = dynamic). */
int32_t sstrt_engine_io(const SegstreamTrtEngine* engine, int32_t index, char* name, size_t name_len,
                        int32_t* is_input, int32_t* dtype, int32_t* nb_dims, int64_t* dims);
/* Shapes of input `name` in optimization profile 0 (min, opt, max). */
int32_t sstrt_engine_profile(const SegstreamTrtEngine* engine, const char* name, int32_t* nb_dims, int64_t* min,
                             int64_t* opt, int64_t* max);

/* Execution context over an engine (the engine must outlive it). */
SegstreamTrtContext* sstrt_context_create(SegstreamTrtEngine* engine, char* err, size_t err_len);
void sstrt_context_free(SegstreamTrtContext* ctx);
/* Set the shape of input `name` (before sstrt_context_tensor and sstrt_context_enqueue). */
int32_t sstrt_context_set_input_shape(SegstreamTrtContext* ctx, const char* name, int32_t nb_dims,
                                      const int64_t* dims, char* err, size_t err_len);
/* Data type and shape of tensor `name` as the context resolves it after the input shape
 * is set (outputs: the real size, unlike the engine's -1 batch). */
int32_t sstrt_context_tensor(const SegstreamTrtContext* ctx, const char* name, int32_t* dtype, int32_t* nb_dims,
                             int64_t* dims);
/* Zero-copy execution, after sstrt_context_set_input_shape: bind every I/O tensor to the
 * device pointer of the same index in `names`/`ptrs`, whose buffer holds `sizes[i]` bytes,
 * and enqueueV3 on `stream` (a cudaStream_t). Refused (nothing enqueued) when a tensor is
 * not bound, a buffer is smaller than its tensor at the context's shape, or an address is
 * not 256-byte aligned (TensorRT's requirement). Returns once the work is enqueued; the
 * caller synchronizes. */
int32_t sstrt_context_enqueue(SegstreamTrtContext* ctx, int32_t nb_tensors, const char* const* names,
                              void* const* ptrs, const size_t* sizes, void* stream, char* err, size_t err_len);

/* Wait for everything enqueued on `stream` (a cudaStream_t / CUstream; NULL = the legacy
 * default stream). */
int32_t sstrt_stream_synchronize(void* stream, char* err, size_t err_len);

/* Host convenience path: a stream, device buffers for `max_batch` images, copy in,
 * enqueueV3, copy out, synchronize. Buffer sizes are in float elements per image. */
SegstreamTrtHostRunner* sstrt_host_runner_create(SegstreamTrtEngine* engine, const char* input_name,
                                                 const char* class_name, const char* mask_name, int32_t max_batch,
                                                 size_t input_per_image, size_t class_per_image,
                                                 size_t mask_per_image, char* err, size_t err_len);
void sstrt_host_runner_free(SegstreamTrtHostRunner* runner);
/* The runner's execution context, borrowed (valid while the runner lives; never passed to
 * sstrt_context_free): device calls through sstrt_context_* share its activation memory
 * instead of a second context's. Calls on it must not overlap sstrt_host_runner_infer,
 * and work enqueued on it must be finished before the runner's next infer or free. */
SegstreamTrtContext* sstrt_host_runner_context(SegstreamTrtHostRunner* runner);
int32_t sstrt_host_runner_infer(SegstreamTrtHostRunner* runner, const float* input, int32_t batch,
                                int32_t channels, int32_t height, int32_t width, float* class_out,
                                float* mask_out, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
