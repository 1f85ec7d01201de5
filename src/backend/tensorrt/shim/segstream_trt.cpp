// segstream TensorRT shim: see segstream_trt.h for the contract.
//
// TensorRT 10.x and 11.x differ where it matters to us:
// - 11 removed the weakly typed precision flags (BuilderFlag::kFP16 and friends) and makes
//   every network strongly typed: the precision is the one written in the ONNX graph.
//   With 11, `precision = fp16` therefore needs an FP16 ONNX (or one with explicit casts);
//   the shim checks that the parsed network holds half tensors and refuses otherwise.
// - 10 builds a weakly typed network (flags 0) and sets BuilderFlag::kFP16 for fp16.
// Everything else used here (createNetworkV2, the ONNX parser, timing caches, memory pool
// limits, IProgressMonitor, enqueueV3 with named tensor addresses) is common to both.

#include "segstream_trt.h"

#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#if NV_TENSORRT_MAJOR < 10
#error "segstream's TensorRT backend needs TensorRT 10 or newer"
#endif

// The layout ffi.rs asserts too (LP64): the two declarations of the struct cannot drift.
#include <cstddef>
static_assert(offsetof(SegstreamTrtBuildOptions, precision) == 8, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, workspace_bytes) == 16, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, input_name) == 24, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, batch_max) == 40, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, use_timing_cache) == 44, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, timing_cache) == 48, "ffi.rs BuildOptions");
static_assert(offsetof(SegstreamTrtBuildOptions, timing_cache_len) == 56, "ffi.rs BuildOptions");
static_assert(sizeof(SegstreamTrtBuildOptions) == 64, "ffi.rs BuildOptions");

namespace {

void set_err(char* err, size_t err_len, const std::string& msg) {
    if (err == nullptr || err_len == 0) return;
    size_t n = msg.size() < err_len - 1 ? msg.size() : err_len - 1;
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

void copy_str(char* dst, size_t dst_len, const char* src) {
    if (dst == nullptr || dst_len == 0) return;
    set_err(dst, dst_len, src ? std::string(src) : std::string());
}

// TensorRT's log, forwarded to the Rust callback.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        sstrt_log_fn fn;
        void* user;
        {
            std::lock_guard<std::mutex> g(mutex_);
            fn = fn_;
            user = user_;
        }
        if (fn != nullptr) fn(user, static_cast<int32_t>(severity), msg ? msg : "");
    }
    void set(sstrt_log_fn fn, void* user) {
        std::lock_guard<std::mutex> g(mutex_);
        fn_ = fn;
        user_ = user;
    }

private:
    std::mutex mutex_;
    sstrt_log_fn fn_ = nullptr;
    void* user_ = nullptr;
};

// Immortal: TensorRT and its plugin library (initLibNvInferPlugins keeps the pointer) may
// log from their own static destructors, after this file's statics are gone.
Logger& logger() {
    static Logger* l = new Logger();
    return *l;
}

// TensorRT calls the monitor from several internal threads: calls into the Rust callback
// are serialized by `mutex_`, and the cancel flag is atomic. It must outlive the builder
// config that points to it (declared before it in sstrt_build).
class Progress final : public nvinfer1::IProgressMonitor {
public:
    Progress(sstrt_progress_fn fn, void* user) : fn_(fn), user_(user) {}
    void phaseStart(char const* phase, char const* parent, int32_t nb_steps) noexcept override {
        call(SSTRT_PHASE_START, phase, parent, 0, nb_steps);
    }
    bool stepComplete(char const* phase, int32_t step) noexcept override {
        if (cancelled_.load(std::memory_order_acquire)) return false;
        if (call(SSTRT_PHASE_STEP, phase, "", step, 0) != 0) {
            cancelled_.store(true, std::memory_order_release);
            return false;
        }
        return true;
    }
    void phaseFinish(char const* phase) noexcept override { call(SSTRT_PHASE_FINISH, phase, "", 0, 0); }
    bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

private:
    int32_t call(int32_t event, char const* phase, char const* parent, int32_t step, int32_t nb_steps) noexcept {
        if (fn_ == nullptr) return 0;
        try {
            std::lock_guard<std::mutex> g(mutex_);
            return fn_(user_, event, phase ? phase : "", parent ? parent : "", step, nb_steps);
        } catch (...) {
            return 1;  // std::system_error from the mutex: cancel rather than throw into TensorRT
        }
    }
    sstrt_progress_fn fn_;
    void* user_;
    std::mutex mutex_;
    std::atomic<bool> cancelled_{false};
};

// Bytes per element of a DataType (by value, stable across 10.x and 11.x); 0 = sub-byte
// or unknown.
size_t dtype_size(nvinfer1::DataType t) {
    switch (static_cast<int32_t>(t)) {
        case 0: case 3: return 4;          // kFLOAT, kINT32
        case 1: case 7: return 2;          // kHALF, kBF16
        case 2: case 4: case 5: case 6: return 1;  // kINT8, kBOOL, kUINT8, kFP8
        case 8: return 8;                  // kINT64
        default: return 0;
    }
}

constexpr uintptr_t kIoAlignment = 256;  // setTensorAddress: "at least 256-byte alignment"

// Check every binding against the context's resolved shapes, then bind and enqueue.
int32_t enqueue_checked(nvinfer1::IExecutionContext& ctx, int32_t nb_tensors, const char* const* names,
                        void* const* ptrs, const size_t* sizes, cudaStream_t stream, std::string& err) {
    const nvinfer1::ICudaEngine& engine = ctx.getEngine();
    if (nb_tensors != engine.getNbIOTensors()) {
        err = "the engine has " + std::to_string(engine.getNbIOTensors()) + " I/O tensors, " +
              std::to_string(nb_tensors) + " are bound";
        return SSTRT_ERR;
    }
    for (int32_t i = 0; i < nb_tensors; ++i) {
        const char* name = names[i];
        if (engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kNONE) {
            err = std::string("the engine has no I/O tensor named ") + name;
            return SSTRT_ERR;
        }
        if (ptrs[i] == nullptr || reinterpret_cast<uintptr_t>(ptrs[i]) % kIoAlignment != 0) {
            err = std::string("the address bound to ") + name + " is null or not aligned to 256 bytes";
            return SSTRT_ERR;
        }
        nvinfer1::Dims d = ctx.getTensorShape(name);
        size_t bytes = dtype_size(engine.getTensorDataType(name));
        if (bytes == 0 || d.nbDims < 0) {
            err = std::string("cannot size tensor ") + name;
            return SSTRT_ERR;
        }
        for (int32_t k = 0; k < d.nbDims; ++k) {
            if (d.d[k] < 0) {
                err = std::string("the shape of ") + name + " is not resolved (input shape not set?)";
                return SSTRT_ERR;
            }
            bytes *= static_cast<size_t>(d.d[k]);
        }
        if (sizes[i] < bytes) {
            err = std::string("the buffer of ") + name + " holds " + std::to_string(sizes[i]) + " bytes, its shape needs " +
                  std::to_string(bytes);
            return SSTRT_ERR;
        }
    }
    for (int32_t i = 0; i < nb_tensors; ++i) {
        if (!ctx.setTensorAddress(names[i], ptrs[i])) {
            err = std::string("setTensorAddress failed for ") + names[i];
            return SSTRT_ERR;
        }
    }
    if (!ctx.enqueueV3(stream)) {
        err = "enqueueV3 failed (see the TensorRT log above)";
        return SSTRT_ERR;
    }
    return SSTRT_OK;
}

uint8_t* copy_out(const nvinfer1::IHostMemory& mem, size_t* len) {
    auto* out = static_cast<uint8_t*>(std::malloc(mem.size() > 0 ? mem.size() : 1));
    if (out == nullptr) return nullptr;
    std::memcpy(out, mem.data(), mem.size());
    *len = mem.size();
    return out;
}

std::string cuda_error(const char* what, cudaError_t e) {
    return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

nvinfer1::Dims to_dims(int32_t nb, const int64_t* d) {
    nvinfer1::Dims dims{};
    dims.nbDims = nb;
    for (int32_t i = 0; i < nb && i < nvinfer1::Dims::MAX_DIMS; ++i) dims.d[i] = d[i];
    return dims;
}

void from_dims(const nvinfer1::Dims& dims, int32_t* nb, int64_t* out) {
    *nb = dims.nbDims;
    for (int32_t i = 0; i < dims.nbDims && i < SSTRT_MAX_DIMS; ++i) out[i] = dims.d[i];
}

[[maybe_unused]] bool network_has_half(nvinfer1::INetworkDefinition& net) {
    for (int32_t i = 0; i < net.getNbInputs(); ++i)
        if (net.getInput(i)->getType() == nvinfer1::DataType::kHALF) return true;
    for (int32_t i = 0; i < net.getNbLayers(); ++i) {
        nvinfer1::ILayer* layer = net.getLayer(i);
        for (int32_t j = 0; j < layer->getNbOutputs(); ++j)
            if (layer->getOutput(j)->getType() == nvinfer1::DataType::kHALF) return true;
    }
    return false;
}

int32_t load_plugins_impl(const char* library, std::string& err) {
    // Every library loaded once: loadLibrary fails for plugins registered already.
    static std::mutex m;
    static std::set<std::string>* loaded = new std::set<std::string>();  // immortal, as the logger
    std::lock_guard<std::mutex> g(m);
    std::string name;
    if (library != nullptr && library[0] != '\0') {
        name = library;
    } else {
        name = "libnvinfer_plugin.so." + std::to_string(NV_TENSORRT_MAJOR);
    }
    if (loaded->count(name) != 0) return SSTRT_OK;
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (handle == nullptr) {
        const char* e = dlerror();
        err = "cannot load the TensorRT plugin library " + name + ": " + (e ? e : "unknown error");
        return SSTRT_ERR;
    }
    using InitFn = bool (*)(void*, const char*);
    auto init = reinterpret_cast<InitFn>(dlsym(handle, "initLibNvInferPlugins"));
    if (init != nullptr) {
        if (!init(&logger(), "")) {
            err = "initLibNvInferPlugins failed in " + name;
            return SSTRT_ERR;
        }
    } else {
        // A plugin library of its own (getCreators entry points): let the registry load it.
        nvinfer1::IPluginRegistry* reg = getPluginRegistry();
        if (reg == nullptr || reg->loadLibrary(name.c_str()) == nullptr) {
            err = "TensorRT's plugin registry cannot load " + name;
            return SSTRT_ERR;
        }
    }
    loaded->insert(name);
    return SSTRT_OK;
}

}  // namespace

struct SegstreamTrtEngine {
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    ~SegstreamTrtEngine() {
        engine.reset();  // before the runtime that made it
        runtime.reset();
    }
};

struct SegstreamTrtContext {
    std::unique_ptr<nvinfer1::IExecutionContext> ctx;
};

struct SegstreamTrtHostRunner {
    SegstreamTrtContext context;
    cudaStream_t stream = nullptr;
    int device = 0;
    std::string input_name, class_name, mask_name;
    int32_t max_batch = 0;
    size_t input_per_image = 0, class_per_image = 0, mask_per_image = 0;
    float* d_input = nullptr;
    float* d_class = nullptr;
    float* d_mask = nullptr;
    ~SegstreamTrtHostRunner() {
        if (stream) cudaStreamSynchronize(stream);
        if (d_input) cudaFree(d_input);
        if (d_class) cudaFree(d_class);
        if (d_mask) cudaFree(d_mask);
        context.ctx.reset();
        if (stream) cudaStreamDestroy(stream);
    }
};

extern "C" {

void sstrt_compiled_version(int32_t* major, int32_t* minor, int32_t* patch) {
    *major = NV_TENSORRT_MAJOR;
    *minor = NV_TENSORRT_MINOR;
    *patch = NV_TENSORRT_PATCH;
}

void sstrt_linked_version(int32_t* major, int32_t* minor, int32_t* patch) {
    // One function per part (10.x and 11.x): no decoding of getInferLibVersion's packing.
    *major = getInferLibMajorVersion();
    *minor = getInferLibMinorVersion();
    *patch = getInferLibPatchVersion();
}

int32_t sstrt_linked_build_version(void) { return getInferLibBuildVersion(); }

void sstrt_set_logger(sstrt_log_fn fn, void* user) {
    try {
        logger().set(fn, user);
    } catch (...) {
    }
}

int32_t sstrt_device_info(int32_t device, char* name, size_t name_len, int32_t* cc_major, int32_t* cc_minor,
                          char* err, size_t err_len) {
    try {
        cudaDeviceProp prop{};
        cudaError_t e = cudaGetDeviceProperties(&prop, device);
        if (e != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaGetDeviceProperties", e));
            return SSTRT_ERR;
        }
        copy_str(name, name_len, prop.name);
        *cc_major = prop.major;
        *cc_minor = prop.minor;
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

int32_t sstrt_set_device(int32_t device, char* err, size_t err_len) {
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        set_err(err, err_len, cuda_error("cudaSetDevice", e));
        return SSTRT_ERR;
    }
    return SSTRT_OK;
}

int32_t sstrt_load_plugins(const char* library, char* err, size_t err_len) {
    try {
        std::string msg;
        int32_t rc = load_plugins_impl(library, msg);
        if (rc != SSTRT_OK) set_err(err, err_len, msg);
        return rc;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

int32_t sstrt_build(const SegstreamTrtBuildOptions* o, sstrt_progress_fn progress, void* progress_user,
                    uint8_t** plan, size_t* plan_len, uint8_t** cache_out, size_t* cache_out_len, char* err,
                    size_t err_len) {
    try {
        *plan = nullptr;
        *plan_len = 0;
        *cache_out = nullptr;
        *cache_out_len = 0;
        // Declared first, destroyed last: the config keeps a pointer to it.
        Progress monitor(progress, progress_user);
        std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
        if (!builder) {
            set_err(err, err_len, "createInferBuilder failed (is a CUDA device visible?)");
            return SSTRT_ERR;
        }
        // Flags 0: weakly typed on 10.x; on 11.x every network is strongly typed.
        std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0));
        if (!network) {
            set_err(err, err_len, "createNetworkV2 failed");
            return SSTRT_ERR;
        }
        std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
        if (!parser) {
            set_err(err, err_len, "cannot create the ONNX parser");
            return SSTRT_ERR;
        }
        if (!parser->parseFromFile(o->onnx_path, static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
            std::string msg = std::string("TensorRT's ONNX parser rejected ") + o->onnx_path;
            for (int32_t i = 0; i < parser->getNbErrors() && i < 5; ++i) {
                const nvonnxparser::IParserError* pe = parser->getError(i);
                msg += "; ";
                if (pe->nodeName() != nullptr && pe->nodeName()[0] != '\0') {
                    msg += std::string("node ") + pe->nodeName() + ": ";
                }
                msg += pe->desc();
            }
            set_err(err, err_len, msg);
            return SSTRT_ERR;
        }
        std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        if (o->workspace_bytes > 0) {
            config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<size_t>(o->workspace_bytes));
        }
        if (o->precision == SSTRT_PRECISION_FP32) {
            // TF32 is on by default (Ampere and newer) and rounds FP32 inner products to
            // 10-bit mantissas: an "fp32" engine then misses ONNX Runtime's results by more
            // than the parity tolerance. FP32 means FP32.
            config->clearFlag(nvinfer1::BuilderFlag::kTF32);
        }
        if (o->precision == SSTRT_PRECISION_FP16) {
#if NV_TENSORRT_MAJOR >= 11
            if (!network_has_half(*network)) {
                set_err(err, err_len,
                        "TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
                            " builds strongly typed networks only (no FP16 builder flag): export an FP16 ONNX "
                            "(or one with explicit casts) for --precision fp16, or build with --precision fp32");
                return SSTRT_UNSUPPORTED;
            }
#else
// kFP16 and platformHasFastFp16 are deprecated in late 10.x (removed in 11): they are what
// 10.x has for a weakly typed FP16 build.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            if (!builder->platformHasFastFp16()) {
                logger().log(nvinfer1::ILogger::Severity::kWARNING,
                             "this GPU has no fast FP16; building FP16 anyway");
            }
            config->setFlag(nvinfer1::BuilderFlag::kFP16);
#pragma GCC diagnostic pop
#endif
        }
        // Optimization profile over the batch dimension of the input.
        nvinfer1::ITensor* input = nullptr;
        for (int32_t i = 0; i < network->getNbInputs(); ++i) {
            if (std::strcmp(network->getInput(i)->getName(), o->input_name) == 0) input = network->getInput(i);
        }
        if (input == nullptr) {
            set_err(err, err_len, std::string("the network has no input named ") + o->input_name);
            return SSTRT_ERR;
        }
        nvinfer1::Dims in = input->getDimensions();
        bool dynamic = false;
        for (int32_t i = 0; i < in.nbDims; ++i) dynamic = dynamic || in.d[i] < 0;
        if (dynamic) {
            if (in.nbDims != 4) {
                set_err(err, err_len, "the input must be [N,3,H,W]");
                return SSTRT_ERR;
            }
            for (int32_t i = 1; i < in.nbDims; ++i) {
                if (in.d[i] < 0) {
                    set_err(err, err_len, "only the batch dimension of the input may be dynamic");
                    return SSTRT_ERR;
                }
            }
            nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
            nvinfer1::Dims d = in;
            d.d[0] = o->batch_min;
            profile->setDimensions(o->input_name, nvinfer1::OptProfileSelector::kMIN, d);
            d.d[0] = o->batch_opt;
            profile->setDimensions(o->input_name, nvinfer1::OptProfileSelector::kOPT, d);
            d.d[0] = o->batch_max;
            profile->setDimensions(o->input_name, nvinfer1::OptProfileSelector::kMAX, d);
            if (config->addOptimizationProfile(profile) < 0) {
                set_err(err, err_len, "invalid optimization profile for the batch dimension");
                return SSTRT_ERR;
            }
        }
        // Timing cache reused across builds. One that TensorRT refuses (built on another
        // GPU or TensorRT version, or damaged) is replaced by a fresh one, which the caller
        // then writes over the file: otherwise every build would be refused it again.
        std::unique_ptr<nvinfer1::ITimingCache> cache;
        if (o->use_timing_cache) {
            const bool given = o->timing_cache != nullptr && o->timing_cache_len > 0;
            if (given) cache.reset(config->createTimingCache(o->timing_cache, o->timing_cache_len));
            bool set = cache && config->setTimingCache(*cache, false);
            if (!set) {
                if (given) {
                    logger().log(nvinfer1::ILogger::Severity::kWARNING,
                                 "the timing cache was made for another GPU or TensorRT version, or is damaged: "
                                 "starting a fresh one, which replaces it after this build");
                }
                cache.reset(config->createTimingCache(nullptr, 0));
                set = cache && config->setTimingCache(*cache, false);
                if (!set) {
                    logger().log(nvinfer1::ILogger::Severity::kWARNING,
                                 "cannot set a timing cache: building without one");
                    cache.reset();
                }
            }
        }
        if (progress != nullptr) config->setProgressMonitor(&monitor);

        std::unique_ptr<nvinfer1::IHostMemory> serialized(builder->buildSerializedNetwork(*network, *config));
        if (!serialized || serialized->size() == 0) {
            if (monitor.cancelled()) {
                set_err(err, err_len, "engine build cancelled");
                return SSTRT_CANCELLED;
            }
            set_err(err, err_len, "buildSerializedNetwork failed (see the TensorRT log above)");
            return SSTRT_ERR;
        }
        uint8_t* out = copy_out(*serialized, plan_len);
        if (out == nullptr) {
            set_err(err, err_len, "out of host memory for the plan");
            return SSTRT_ERR;
        }
        *plan = out;
        if (cache) {
            const nvinfer1::ITimingCache* updated = config->getTimingCache();
            std::unique_ptr<nvinfer1::IHostMemory> blob(updated ? updated->serialize() : nullptr);
            if (blob) *cache_out = copy_out(*blob, cache_out_len);
        }
        config->setProgressMonitor(nullptr);
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

int32_t sstrt_timing_cache_combine(const void* ours, size_t ours_len, const void* theirs, size_t theirs_len,
                                   uint8_t** out, size_t* out_len, char* err, size_t err_len) {
    try {
        *out = nullptr;
        *out_len = 0;
        std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
        if (!builder) {
            set_err(err, err_len, "createInferBuilder failed");
            return SSTRT_ERR;
        }
        std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        std::unique_ptr<nvinfer1::ITimingCache> a(config ? config->createTimingCache(ours, ours_len) : nullptr);
        std::unique_ptr<nvinfer1::ITimingCache> b(config ? config->createTimingCache(theirs, theirs_len) : nullptr);
        if (!a || !b || !a->combine(*b, false)) {
            set_err(err, err_len, "the timing caches cannot be combined (another GPU or TensorRT version, or damaged)");
            return SSTRT_ERR;
        }
        std::unique_ptr<nvinfer1::IHostMemory> blob(a->serialize());
        if (!blob || (*out = copy_out(*blob, out_len)) == nullptr) {
            set_err(err, err_len, "cannot serialize the combined timing cache");
            return SSTRT_ERR;
        }
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

void sstrt_free(void* p) { std::free(p); }

SegstreamTrtEngine* sstrt_engine_load(const void* plan, size_t plan_len, char* err, size_t err_len) {
    try {
        auto e = std::make_unique<SegstreamTrtEngine>();
        e->runtime.reset(nvinfer1::createInferRuntime(logger()));
        if (!e->runtime) {
            set_err(err, err_len, "createInferRuntime failed");
            return nullptr;
        }
        e->engine.reset(e->runtime->deserializeCudaEngine(plan, plan_len));
        if (!e->engine) {
            set_err(err, err_len, "deserializeCudaEngine failed (see the TensorRT log above)");
            return nullptr;
        }
        return e.release();
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return nullptr;
}

void sstrt_engine_free(SegstreamTrtEngine* engine) {
    try {
        delete engine;
    } catch (...) {
    }
}

int32_t sstrt_engine_nb_io(const SegstreamTrtEngine* e) { return e->engine->getNbIOTensors(); }

int32_t sstrt_engine_io(const SegstreamTrtEngine* e, int32_t index, char* name, size_t name_len, int32_t* is_input,
                        int32_t* dtype, int32_t* nb_dims, int64_t* dims) {
    try {
        if (index < 0 || index >= e->engine->getNbIOTensors()) return SSTRT_ERR;
        const char* n = e->engine->getIOTensorName(index);
        copy_str(name, name_len, n);
        *is_input = e->engine->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT ? 1 : 0;
        *dtype = static_cast<int32_t>(e->engine->getTensorDataType(n));
        from_dims(e->engine->getTensorShape(n), nb_dims, dims);
        return SSTRT_OK;
    } catch (...) {
        return SSTRT_ERR;
    }
}

int32_t sstrt_engine_profile(const SegstreamTrtEngine* e, const char* name, int32_t* nb_dims, int64_t* min,
                             int64_t* opt, int64_t* max) {
    try {
        if (e->engine->getNbOptimizationProfiles() < 1) return SSTRT_ERR;
        int32_t n = 0;
        from_dims(e->engine->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMIN), &n, min);
        from_dims(e->engine->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kOPT), &n, opt);
        from_dims(e->engine->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMAX), &n, max);
        *nb_dims = n;
        return n < 0 ? SSTRT_ERR : SSTRT_OK;
    } catch (...) {
        return SSTRT_ERR;
    }
}

SegstreamTrtContext* sstrt_context_create(SegstreamTrtEngine* e, char* err, size_t err_len) {
    try {
        auto c = std::make_unique<SegstreamTrtContext>();
        c->ctx.reset(e->engine->createExecutionContext());
        if (!c->ctx) {
            set_err(err, err_len, "createExecutionContext failed (out of device memory?)");
            return nullptr;
        }
        return c.release();
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return nullptr;
}

void sstrt_context_free(SegstreamTrtContext* ctx) {
    try {
        delete ctx;
    } catch (...) {
    }
}

int32_t sstrt_context_set_input_shape(SegstreamTrtContext* c, const char* name, int32_t nb_dims,
                                      const int64_t* dims, char* err, size_t err_len) {
    try {
        if (nb_dims < 0 || nb_dims > nvinfer1::Dims::MAX_DIMS) {
            set_err(err, err_len, "too many dimensions");
            return SSTRT_ERR;
        }
        if (!c->ctx->setInputShape(name, to_dims(nb_dims, dims))) {
            set_err(err, err_len, std::string("setInputShape rejected the shape of ") + name +
                                      " (outside the engine's optimization profile?)");
            return SSTRT_ERR;
        }
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

int32_t sstrt_context_tensor(const SegstreamTrtContext* c, const char* name, int32_t* dtype, int32_t* nb_dims,
                             int64_t* dims) {
    try {
        const nvinfer1::ICudaEngine& engine = c->ctx->getEngine();
        if (engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kNONE) return SSTRT_ERR;
        *dtype = static_cast<int32_t>(engine.getTensorDataType(name));
        nvinfer1::Dims d = c->ctx->getTensorShape(name);
        if (d.nbDims < 0 || d.nbDims > SSTRT_MAX_DIMS) return SSTRT_ERR;
        from_dims(d, nb_dims, dims);
        return SSTRT_OK;
    } catch (...) {
        return SSTRT_ERR;
    }
}

int32_t sstrt_context_enqueue(SegstreamTrtContext* c, int32_t nb_tensors, const char* const* names,
                              void* const* ptrs, const size_t* sizes, void* stream, char* err, size_t err_len) {
    try {
        std::string msg;
        int32_t rc = enqueue_checked(*c->ctx, nb_tensors, names, ptrs, sizes, static_cast<cudaStream_t>(stream), msg);
        if (rc != SSTRT_OK) set_err(err, err_len, msg);
        return rc;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

int32_t sstrt_stream_synchronize(void* stream, char* err, size_t err_len) {
    try {
        cudaError_t ce = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaStreamSynchronize", ce));
            return SSTRT_ERR;
        }
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

SegstreamTrtHostRunner* sstrt_host_runner_create(SegstreamTrtEngine* e, const char* input_name,
                                                 const char* class_name, const char* mask_name, int32_t max_batch,
                                                 size_t input_per_image, size_t class_per_image,
                                                 size_t mask_per_image, char* err, size_t err_len) {
    try {
        auto r = std::make_unique<SegstreamTrtHostRunner>();
        r->context.ctx.reset(e->engine->createExecutionContext());
        if (!r->context.ctx) {
            set_err(err, err_len, "createExecutionContext failed (out of device memory?)");
            return nullptr;
        }
        r->input_name = input_name;
        r->class_name = class_name;
        r->mask_name = mask_name;
        r->max_batch = max_batch;
        r->input_per_image = input_per_image;
        r->class_per_image = class_per_image;
        r->mask_per_image = mask_per_image;
        cudaError_t ce = cudaGetDevice(&r->device);
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaGetDevice", ce));
            return nullptr;
        }
        ce = cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking);
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaStreamCreate", ce));
            return nullptr;
        }
        const size_t b = static_cast<size_t>(max_batch);
        struct {
            float** p;
            size_t n;
        } allocs[] = {{&r->d_input, input_per_image}, {&r->d_class, class_per_image}, {&r->d_mask, mask_per_image}};
        for (auto& a : allocs) {
            ce = cudaMalloc(reinterpret_cast<void**>(a.p), b * a.n * sizeof(float));
            if (ce != cudaSuccess) {
                set_err(err, err_len, cuda_error("cudaMalloc", ce));
                return nullptr;
            }
        }
        return r.release();
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return nullptr;
}

void sstrt_host_runner_free(SegstreamTrtHostRunner* r) {
    try {
        delete r;
    } catch (...) {
    }
}

SegstreamTrtContext* sstrt_host_runner_context(SegstreamTrtHostRunner* r) {
    return r != nullptr ? &r->context : nullptr;
}

int32_t sstrt_host_runner_infer(SegstreamTrtHostRunner* r, const float* input, int32_t batch, int32_t channels,
                                int32_t height, int32_t width, float* class_out, float* mask_out, char* err,
                                size_t err_len) {
    try {
        if (batch < 1 || batch > r->max_batch) {
            set_err(err, err_len, "batch " + std::to_string(batch) + " outside 1.." + std::to_string(r->max_batch));
            return SSTRT_ERR;
        }
        const size_t b = static_cast<size_t>(batch);
        // The streaming thread calling this may not be the one that created the runner.
        cudaError_t ce = cudaSetDevice(r->device);
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaSetDevice", ce));
            return SSTRT_ERR;
        }
        ce = cudaMemcpyAsync(r->d_input, input, b * r->input_per_image * sizeof(float),
                                         cudaMemcpyHostToDevice, r->stream);
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("cudaMemcpyAsync (input)", ce));
            return SSTRT_ERR;
        }
        const int64_t dims[4] = {batch, channels, height, width};
        int32_t rc = sstrt_context_set_input_shape(&r->context, r->input_name.c_str(), 4, dims, err, err_len);
        if (rc != SSTRT_OK) return rc;
        const char* names[3] = {r->input_name.c_str(), r->class_name.c_str(), r->mask_name.c_str()};
        void* ptrs[3] = {r->d_input, r->d_class, r->d_mask};
        // What the buffers hold (allocated for max_batch images); enqueue_checked compares
        // them with the output shapes the context resolved for this batch.
        const size_t mb = static_cast<size_t>(r->max_batch);
        const size_t sizes[3] = {mb * r->input_per_image * sizeof(float), mb * r->class_per_image * sizeof(float),
                                 mb * r->mask_per_image * sizeof(float)};
        std::string msg;
        rc = enqueue_checked(*r->context.ctx, 3, names, ptrs, sizes, r->stream, msg);
        if (rc != SSTRT_OK) {
            set_err(err, err_len, msg);
            return rc;
        }
        ce = cudaMemcpyAsync(class_out, r->d_class, b * r->class_per_image * sizeof(float), cudaMemcpyDeviceToHost,
                             r->stream);
        if (ce == cudaSuccess)
            ce = cudaMemcpyAsync(mask_out, r->d_mask, b * r->mask_per_image * sizeof(float),
                                 cudaMemcpyDeviceToHost, r->stream);
        if (ce == cudaSuccess) ce = cudaStreamSynchronize(r->stream);
        if (ce != cudaSuccess) {
            set_err(err, err_len, cuda_error("copying the outputs", ce));
            return SSTRT_ERR;
        }
        return SSTRT_OK;
    } catch (const std::exception& ex) {
        set_err(err, err_len, ex.what());
    } catch (...) {
        set_err(err, err_len, "unknown C++ exception");
    }
    return SSTRT_ERR;
}

}  // extern "C"
