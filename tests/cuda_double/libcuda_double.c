/*
 * libcuda_double.c - a host-memory test double of the CUDA driver API (libcuda.so.1).
 *
 * THIS IS NOT A DRIVER. It exists so that tests on machines without an NVIDIA GPU can
 * exercise GStreamer CUDA memory plumbing (libgstcuda-1.0: `memory:CUDAMemory` caps, the
 * CUDA buffer pool, GST_MAP_CUDA) and segstream's own driver loader. The test support code
 * (tests/common/cuda_double.rs) builds it as `libcuda.so.1` (SONAME libcuda.so.1) and
 * dlopens it with RTLD_GLOBAL before anything else asks for "libcuda.so.1", so later
 * lookups by that name resolve to this file.
 *
 * Model: one device (ordinal 0); "device pointers" are host pointers from malloc, so a
 * test can read and write them directly; contexts and streams are opaque, unique handles;
 * every call is synchronous. Counters (read with segstream_double_counters) record
 * contexts, allocations and copies by direction so that tests can assert which driver
 * calls a GStreamer operation made. GL interop, textures, modules and kernel launches
 * answer CUDA_ERROR_NOT_SUPPORTED.
 *
 * The CUDA types below are written from the public driver API documentation; cuda.h is
 * neither included nor needed.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_PEER_ACCESS_UNSUPPORTED = 217,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

/* CUmemorytype */
enum { CU_MEMORYTYPE_HOST = 1, CU_MEMORYTYPE_DEVICE = 2, CU_MEMORYTYPE_ARRAY = 3, CU_MEMORYTYPE_UNIFIED = 4 };

/* CUDA_MEMCPY2D (the _v2 layout, which cuMemcpy2D_v2 / cuMemcpy2DAsync_v2 take). */
typedef struct {
    size_t srcXInBytes, srcY;
    int srcMemoryType;
    const void *srcHost;
    CUdeviceptr srcDevice;
    void *srcArray;
    size_t srcPitch;
    size_t dstXInBytes, dstY;
    int dstMemoryType;
    void *dstHost;
    CUdeviceptr dstDevice;
    void *dstArray;
    size_t dstPitch;
    size_t WidthInBytes, Height;
} CUDA_MEMCPY2D;

_Static_assert(sizeof(CUDA_MEMCPY2D) == 128, "CUDA_MEMCPY2D layout");
_Static_assert(offsetof(CUDA_MEMCPY2D, srcHost) == 24, "CUDA_MEMCPY2D layout");
_Static_assert(offsetof(CUDA_MEMCPY2D, dstHost) == 80, "CUDA_MEMCPY2D layout");

/* ---- counters (read by the tests; keep in step with Counters in cuda_double.rs) ---- */

struct segstream_double_counters {
    unsigned long contexts_created;   /* cuCtxCreate_v2 calls that succeeded */
    unsigned long contexts_destroyed; /* cuCtxDestroy_v2 calls */
    unsigned long primary_retains;    /* cuDevicePrimaryCtxRetain calls */
    unsigned long allocs;             /* cuMemAlloc_v2 + cuMemAllocPitch_v2 */
    unsigned long pitched_allocs;     /* cuMemAllocPitch_v2 only */
    unsigned long frees;              /* cuMemFree_v2 */
    unsigned long host_allocs;        /* cuMemAllocHost_v2 (pinned staging memory) */
    unsigned long d2h_copies, h2d_copies, d2d_copies; /* 2D copies + cuMemcpy{DtoH,HtoD} */
    unsigned long d2h_bytes, h2d_bytes, d2d_bytes;
};

static struct segstream_double_counters counters;

#define BUMP(field, n) __atomic_fetch_add(&counters.field, (unsigned long)(n), __ATOMIC_RELAXED)

EXPORT void segstream_double_counters(struct segstream_double_counters *out) {
    unsigned long *src = (unsigned long *)&counters, *dst = (unsigned long *)out;
    for (size_t i = 0; i < sizeof counters / sizeof(unsigned long); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

EXPORT void segstream_double_reset(void) {
    unsigned long *c = (unsigned long *)&counters;
    for (size_t i = 0; i < sizeof counters / sizeof(unsigned long); i++)
        __atomic_store_n(&c[i], 0, __ATOMIC_RELAXED);
}

/* ---- init, device, errors ---- */

EXPORT CUresult cuInit(unsigned int flags) { (void)flags; return CUDA_SUCCESS; }

EXPORT CUresult cuDriverGetVersion(int *version) {
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    *version = 12000;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *count) {
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    static const char NAME[] = "segstream host double";
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    strncpy(name, NAME, (size_t)len - 1);
    name[len - 1] = '\0';
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev) {
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (attrib) {
    case 14: *value = 512; break; /* TEXTURE_ALIGNMENT */
    case 41: *value = 1; break;   /* UNIFIED_ADDRESSING */
    case 51: *value = 32; break;  /* TEXTURE_PITCH_ALIGNMENT */
    case 75: *value = 9; break;   /* COMPUTE_CAPABILITY_MAJOR */
    case 76: *value = 0; break;   /* COMPUTE_CAPABILITY_MINOR */
    default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceCanAccessPeer(int *can, CUdevice dev, CUdevice peer) {
    if (!can) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0 || peer != 0) return CUDA_ERROR_INVALID_DEVICE;
    *can = 0;
    return CUDA_SUCCESS;
}

static const char *error_name(CUresult r) {
    switch (r) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case CUDA_ERROR_PEER_ACCESS_UNSUPPORTED: return "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED";
    case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return "CUDA_ERROR_UNKNOWN";
    }
}

EXPORT CUresult cuGetErrorName(CUresult r, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = error_name(r);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = error_name(r); /* the name doubles as the description */
    return CUDA_SUCCESS;
}

/* ---- contexts: unique handles, a per-thread current-context stack ---- */

struct ctx { int magic; };
static struct ctx primary_ctx = { 0x70726d79 };
static int primary_refs;

#define STACK_MAX 64
static __thread CUcontext ctx_stack[STACK_MAX];
static __thread int ctx_depth;

static CUresult push(CUcontext c) {
    if (ctx_depth == STACK_MAX) return CUDA_ERROR_OUT_OF_MEMORY;
    ctx_stack[ctx_depth++] = c;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) {
    (void)flags;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    struct ctx *c = malloc(sizeof *c);
    if (!c) return CUDA_ERROR_OUT_OF_MEMORY;
    c->magic = 0x63747820;
    CUresult r = push(c); /* like the driver: the new context becomes current */
    if (r != CUDA_SUCCESS) { free(c); return r; }
    BUMP(contexts_created, 1);
    *pctx = c;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxDestroy_v2(CUcontext c) {
    if (!c || c == (CUcontext)&primary_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    if (ctx_depth > 0 && ctx_stack[ctx_depth - 1] == c) ctx_depth--;
    BUMP(contexts_destroyed, 1);
    free(c);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    __atomic_fetch_add(&primary_refs, 1, __ATOMIC_RELAXED);
    BUMP(primary_retains, 1);
    *pctx = &primary_ctx;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (__atomic_sub_fetch(&primary_refs, 1, __ATOMIC_RELAXED) < 0) {
        __atomic_fetch_add(&primary_refs, 1, __ATOMIC_RELAXED);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent_v2(CUcontext c) {
    if (!c) return CUDA_ERROR_INVALID_CONTEXT;
    return push(c);
}

EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *pctx) {
    if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
    CUcontext c = ctx_stack[--ctx_depth];
    if (pctx) *pctx = c;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx) {
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = ctx_depth > 0 ? ctx_stack[ctx_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    if (ctx_depth > 0) {
        if (c) ctx_stack[ctx_depth - 1] = c;
        else ctx_depth--; /* like the driver: NULL unbinds the current context */
        return CUDA_SUCCESS;
    }
    return c ? push(c) : CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetDevice(CUdevice *dev) {
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
    *dev = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }

EXPORT CUresult cuCtxEnablePeerAccess(CUcontext peer, unsigned int flags) {
    (void)peer; (void)flags;
    return CUDA_ERROR_PEER_ACCESS_UNSUPPORTED;
}

EXPORT CUresult cuCtxDisablePeerAccess(CUcontext peer) {
    (void)peer;
    return CUDA_ERROR_PEER_ACCESS_UNSUPPORTED;
}

/* ---- memory: device pointers are host pointers ---- */

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    if (!dptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
    void *p = malloc(size);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    BUMP(allocs, 1);
    *dptr = (CUdeviceptr)(size_t)p;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
                                   unsigned int element_size) {
    (void)element_size;
    if (!dptr || !pitch || width == 0 || height == 0) return CUDA_ERROR_INVALID_VALUE;
    size_t p = (width + 511) & ~(size_t)511; /* unlike system memory: rows padded to 512 */
    void *mem = malloc(p * height);
    if (!mem) return CUDA_ERROR_OUT_OF_MEMORY;
    BUMP(allocs, 1);
    BUMP(pitched_allocs, 1);
    *dptr = (CUdeviceptr)(size_t)mem;
    *pitch = p;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    BUMP(frees, 1);
    free((void *)(size_t)dptr);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t size) {
    if (!pp || size == 0) return CUDA_ERROR_INVALID_VALUE;
    void *p = malloc(size);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    BUMP(host_allocs, 1);
    *pp = p;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemFreeHost(void *p) { free(p); return CUDA_SUCCESS; }

static void count_copy(int src_is_host, int dst_is_host, size_t bytes) {
    if (!src_is_host && dst_is_host) { BUMP(d2h_copies, 1); BUMP(d2h_bytes, bytes); }
    else if (src_is_host && !dst_is_host) { BUMP(h2d_copies, 1); BUMP(h2d_bytes, bytes); }
    else if (!src_is_host && !dst_is_host) { BUMP(d2d_copies, 1); BUMP(d2d_bytes, bytes); }
    /* host to host: not a transfer, not counted */
}

EXPORT CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *c) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    if (c->srcMemoryType == CU_MEMORYTYPE_ARRAY || c->dstMemoryType == CU_MEMORYTYPE_ARRAY)
        return CUDA_ERROR_NOT_SUPPORTED;
    int src_host = c->srcMemoryType == CU_MEMORYTYPE_HOST;
    int dst_host = c->dstMemoryType == CU_MEMORYTYPE_HOST;
    const unsigned char *src = src_host ? c->srcHost : (const void *)(size_t)c->srcDevice;
    unsigned char *dst = dst_host ? c->dstHost : (void *)(size_t)c->dstDevice;
    if ((!src || !dst) && c->WidthInBytes && c->Height) return CUDA_ERROR_INVALID_VALUE;
    if (c->Height > 1 && (c->srcPitch < c->WidthInBytes || c->dstPitch < c->WidthInBytes))
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t y = 0; y < c->Height; y++)
        memcpy(dst + (c->dstY + y) * c->dstPitch + c->dstXInBytes,
               src + (c->srcY + y) * c->srcPitch + c->srcXInBytes, c->WidthInBytes);
    count_copy(src_host, dst_host, c->WidthInBytes * c->Height);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *c, CUstream stream) {
    (void)stream; /* every call is synchronous */
    return cuMemcpy2D_v2(c);
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
    memcpy((void *)(size_t)dst, src, n);
    count_copy(1, 0, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
    memcpy(dst, (const void *)(size_t)src, n);
    count_copy(0, 1, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
    memset((void *)(size_t)dst, value, n);
    return CUDA_SUCCESS;
}

/* ---- streams: unique handles, nothing is ever pending ---- */

EXPORT CUresult cuStreamCreate(CUstream *ps, unsigned int flags) {
    (void)flags;
    if (!ps) return CUDA_ERROR_INVALID_VALUE;
    void *s = malloc(1);
    if (!s) return CUDA_ERROR_OUT_OF_MEMORY;
    *ps = s;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamDestroy(CUstream s) { free(s); return CUDA_SUCCESS; }
EXPORT CUresult cuStreamDestroy_v2(CUstream s) { return cuStreamDestroy(s); }
EXPORT CUresult cuStreamSynchronize(CUstream s) { (void)s; return CUDA_SUCCESS; }

/* ---- GL interop, graphics resources, textures, modules, launches: not supported ----
 * Declared without a prototype: the callers' arguments are ignored, and on the x86-64 and
 * AArch64 C ABIs the caller owns its argument area, so any argument list is safe. */
#define UNSUPPORTED(name) EXPORT CUresult name() { return CUDA_ERROR_NOT_SUPPORTED; }
UNSUPPORTED(cuGLGetDevices_v2)
UNSUPPORTED(cuGraphicsGLRegisterBuffer)
UNSUPPORTED(cuGraphicsGLRegisterImage)
UNSUPPORTED(cuGraphicsMapResources)
UNSUPPORTED(cuGraphicsResourceGetMappedPointer_v2)
UNSUPPORTED(cuGraphicsResourceSetMapFlags_v2)
UNSUPPORTED(cuGraphicsSubResourceGetMappedArray)
UNSUPPORTED(cuGraphicsUnmapResources)
UNSUPPORTED(cuGraphicsUnregisterResource)
UNSUPPORTED(cuTexObjectCreate)
UNSUPPORTED(cuTexObjectDestroy)
UNSUPPORTED(cuModuleLoadData)
UNSUPPORTED(cuModuleGetFunction)
UNSUPPORTED(cuModuleUnload)
UNSUPPORTED(cuLaunchKernel)
