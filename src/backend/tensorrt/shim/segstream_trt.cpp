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

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10
#error "segstream's TensorRT backend needs TensorRT 10 or newer"
#endif

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

Logger& logger() {
    static Logger l;
    return l;
}

class Progress final : public nvinfer1::IProgressMonitor {
public:
    Progress(sstrt_progress_fn fn, void* user) : fn_(fn), user_(user) {}
    void phaseStart(char const* phase, char const* parent, int32_t nb_steps) noexcept override {
        if (fn_) fn_(user_, SSTRT_PHASE_START, phase ? phase : "", parent ? parent : "", 0, nb_steps);
    }
    bool stepComplete(char const* phase, int32_t step) noexcept override {
        if (!fn_) return true;
        if (fn_(user_, SSTRT_PHASE_STEP, phase ? phase : "", "", step, 0) != 0) {
            cancelled = true;
            return false;
        }
        return true;
    }
    void phaseFinish(char const* phase) noexcept override {
        if (fn_) fn_(user_, SSTRT_PHASE_FINISH, phase ? phase : "", "", 0, 0);
    }
    bool cancelled = false;

private:
    sstrt_progress_fn fn_;
    void* user_;
};

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
    static std::mutex m;
    static bool default_loaded = false;
    std::lock_guard<std::mutex> g(m);
    std::string name;
    if (library != nullptr && library[0] != '\0') {
        name = library;
    } else {
        if (default_loaded) return SSTRT_OK;
        name = "libnvinfer_plugin.so." + std::to_string(NV_TENSORRT_MAJOR);
    }
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
    if (library == nullptr || library[0] == '\0') default_loaded = true;
    return SSTRT_OK;
}

std::vector<char> read_file(const char* path, bool& ok) {
    std::ifstream f(path, std::ios::binary);
    ok = static_cast<bool>(f);
    if (!ok) return {};
    return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
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
    // getInferLibVersion() = major * 10000 + minor * 100 + patch.
    int32_t v = getInferLibVersion();
    *major = v / 10000;
    *minor = (v / 100) % 100;
    *patch = v % 100;
}

void sstrt_set_logger(sstrt_log_fn fn, void* user) { logger().set(fn, user); }

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
                    uint8_t** plan, size_t* plan_len, char* err, size_t err_len) {
    try {
        *plan = nullptr;
        *plan_len = 0;
        if (o->load_plugins) {
            std::string msg;
            if (load_plugins_impl(o->plugin_library, msg) != SSTRT_OK) {
                set_err(err, err_len, msg);
                return SSTRT_ERR;
            }
        }
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
            if (!builder->platformHasFastFp16()) {
                logger().log(nvinfer1::ILogger::Severity::kWARNING,
                             "this GPU has no fast FP16; building FP16 anyway");
            }
            config->setFlag(nvinfer1::BuilderFlag::kFP16);
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
        // Timing cache reused across builds.
        std::unique_ptr<nvinfer1::ITimingCache> cache;
        if (o->timing_cache_path != nullptr && o->timing_cache_path[0] != '\0') {
            bool ok = false;
            std::vector<char> blob = read_file(o->timing_cache_path, ok);
            cache.reset(config->createTimingCache(ok ? blob.data() : nullptr, ok ? blob.size() : 0));
            if (!cache && ok) {  // unreadable or foreign cache: start a fresh one
                cache.reset(config->createTimingCache(nullptr, 0));
            }
            if (cache) config->setTimingCache(*cache, false);
        }
        Progress monitor(progress, progress_user);
        if (progress != nullptr) config->setProgressMonitor(&monitor);

        std::unique_ptr<nvinfer1::IHostMemory> serialized(builder->buildSerializedNetwork(*network, *config));
        if (!serialized || serialized->size() == 0) {
            if (monitor.cancelled) {
                set_err(err, err_len, "engine build cancelled");
                return SSTRT_CANCELLED;
            }
            set_err(err, err_len, "buildSerializedNetwork failed (see the TensorRT log above)");
            return SSTRT_ERR;
        }
        if (cache) {
            const nvinfer1::ITimingCache* updated = config->getTimingCache();
            std::unique_ptr<nvinfer1::IHostMemory> blob(updated ? updated->serialize() : nullptr);
            if (blob) {
                std::ofstream f(o->timing_cache_path, std::ios::binary | std::ios::trunc);
                f.write(static_cast<const char*>(blob->data()), static_cast<std::streamsize>(blob->size()));
                if (!f) {
                    logger().log(nvinfer1::ILogger::Severity::kWARNING, "cannot write the timing cache file");
                }
            }
        }
        auto* out = static_cast<uint8_t*>(std::malloc(serialized->size()));
        if (out == nullptr) {
            set_err(err, err_len, "out of host memory for the plan");
            return SSTRT_ERR;
        }
        std::memcpy(out, serialized->data(), serialized->size());
        *plan = out;
        *plan_len = serialized->size();
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

int32_t sstrt_context_enqueue(SegstreamTrtContext* c, const char* input_name, int32_t nb_dims,
                              const int64_t* input_dims, int32_t nb_tensors, const char* const* names,
                              void* const* ptrs, void* stream, char* err, size_t err_len) {
    try {
        if (!c->ctx->setInputShape(input_name, to_dims(nb_dims, input_dims))) {
            set_err(err, err_len, std::string("setInputShape rejected the shape of ") + input_name +
                                      " (outside the engine's optimization profile?)");
            return SSTRT_ERR;
        }
        for (int32_t i = 0; i < nb_tensors; ++i) {
            if (!c->ctx->setTensorAddress(names[i], ptrs[i])) {
                set_err(err, err_len, std::string("setTensorAddress failed for ") + names[i]);
                return SSTRT_ERR;
            }
        }
        if (!c->ctx->enqueueV3(static_cast<cudaStream_t>(stream))) {
            set_err(err, err_len, "enqueueV3 failed (see the TensorRT log above)");
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
        const char* names[3] = {r->input_name.c_str(), r->class_name.c_str(), r->mask_name.c_str()};
        void* ptrs[3] = {r->d_input, r->d_class, r->d_mask};
        int32_t rc = sstrt_context_enqueue(&r->context, r->input_name.c_str(), 4, dims, 3, names, ptrs, r->stream,
                                           err, err_len);
        if (rc != SSTRT_OK) return rc;
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
