// segstream CUDA preprocess: frame (NV12 / I420 / RGB / RGBA / BGRx, device memory) ->
// resized (Pillow-style antialiased bilinear, fixed-point taps computed on the host by
// src/cuda/taps.rs, identical to fast_image_resize's), normalized, padded NCHW tensor
// (f32 or f16). Two passes, in the order and rounding of the CPU path: vertical first
// into an 8-bit RGB temporary, then horizontal + normalize + pad.
//
// Compiled at run time with NVRTC (--fmad=false, so every float operation rounds as on
// the CPU). Formats: 0 RGB, 1 RGBA, 2 BGRx, 3 NV12, 4 I420.
// f32 -> f16 bits, round to nearest even (no cuda_fp16.h: NVRTC may lack the header).
__device__ __forceinline__ unsigned short f2h(float v) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}

// BT.601 limited range, 13-bit coefficients (yuvutils-rs "Balanced" mode): passed in.
struct Yuv { int y_coef, cr_coef, cb_coef, g1, g2; };

__device__ __forceinline__ int mulhrs(int a, int b) { return (((a * b) >> 14) + 1) >> 1; }
__device__ __forceinline__ int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

__device__ __forceinline__ void load_rgb(
    const unsigned char* p0, const unsigned char* p1, const unsigned char* p2,
    int s0, int s1, int s2, int fmt, int x, int y, Yuv k, int rgb[3])
{
    if (fmt == 0) {
        const unsigned char* q = p0 + (size_t)y * s0 + 3 * x;
        rgb[0] = q[0]; rgb[1] = q[1]; rgb[2] = q[2];
    } else if (fmt == 1) {
        const unsigned char* q = p0 + (size_t)y * s0 + 4 * x;
        rgb[0] = q[0]; rgb[1] = q[1]; rgb[2] = q[2];
    } else if (fmt == 2) {
        const unsigned char* q = p0 + (size_t)y * s0 + 4 * x;
        rgb[0] = q[2]; rgb[1] = q[1]; rgb[2] = q[0];
    } else {
        int yy = p0[(size_t)y * s0 + x];
        int u, v;
        if (fmt == 3) {
            const unsigned char* c = p1 + (size_t)(y >> 1) * s1 + 2 * (x >> 1);
            u = c[0]; v = c[1];
        } else {
            u = p1[(size_t)(y >> 1) * s1 + (x >> 1)];
            v = p2[(size_t)(y >> 1) * s2 + (x >> 1)];
        }
        // yuvutils-rs' SIMD rows (see src/cuda/taps.rs, yuv_to_rgb): 10-bit widening,
        // rounding high multiplies, unsigned saturation.
        int y10 = (max(yy - 16, 0) * 257) >> 6;
        int u10 = ((u * 257) >> 6) - 514, v10 = ((v * 257) >> 6) - 514;
        int yh = mulhrs(y10, k.y_coef);
        rgb[0] = clamp255(yh + mulhrs(v10, k.cr_coef));
        rgb[2] = clamp255(yh + mulhrs(u10, k.cb_coef));
        rgb[1] = clamp255(yh - (mulhrs(v10, k.g1) + mulhrs(u10, k.g2)));
    }
}

__device__ __forceinline__ unsigned char clip8(int v, int prec) {
    int r = v >> prec;
    return (unsigned char)(r < 0 ? 0 : (r > 255 ? 255 : r));
}

// Pass 1: tmp[y][x][c] (valid_h rows x frame_w columns, packed RGB) from the frame rows
// that output row y's taps name.
extern "C" __global__ void pre_vertical(
    const unsigned char* p0, const unsigned char* p1, const unsigned char* p2,
    int s0, int s1, int s2, int fmt, int frame_w,
    Yuv k,
    const int* y_start, const int* y_count, const short* y_coef, int y_window, int y_prec,
    int valid_h, unsigned char* tmp)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= frame_w || y >= valid_h) return;
    int init = 1 << (y_prec - 1);
    int acc[3] = {init, init, init};
    int start = y_start[y], n = y_count[y];
    const short* w = y_coef + (size_t)y * y_window;
    for (int j = 0; j < n; ++j) {
        int rgb[3];
        load_rgb(p0, p1, p2, s0, s1, s2, fmt, x, start + j, k, rgb);
        int c = w[j];
        acc[0] += rgb[0] * c; acc[1] += rgb[1] * c; acc[2] += rgb[2] * c;
    }
    unsigned char* o = tmp + ((size_t)y * frame_w + x) * 3;
    o[0] = clip8(acc[0], y_prec); o[1] = clip8(acc[1], y_prec); o[2] = clip8(acc[2], y_prec);
}

struct Norm { float scale[3]; float bias[3]; int order[3]; };

// Pass 2: horizontal taps on tmp, normalize, pad with zeros; out is [3][in_h][in_w].
extern "C" __global__ void pre_horizontal(
    const unsigned char* tmp, int frame_w, int valid_h, int valid_w,
    const int* x_start, const int* x_count, const short* x_coef, int x_window, int x_prec,
    Norm nm, int in_h, int in_w, int half_out, void* out)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= in_w || y >= in_h) return;
    size_t plane = (size_t)in_h * in_w, o = (size_t)y * in_w + x;
    float v[3] = {0.0f, 0.0f, 0.0f};
    if (y < valid_h && x < valid_w) {
        int init = 1 << (x_prec - 1);
        int acc[3] = {init, init, init};
        int start = x_start[x], n = x_count[x];
        const short* w = x_coef + (size_t)x * x_window;
        const unsigned char* row = tmp + (size_t)y * frame_w * 3;
        for (int j = 0; j < n; ++j) {
            const unsigned char* px = row + (size_t)(start + j) * 3;
            int c = w[j];
            acc[0] += px[0] * c; acc[1] += px[1] * c; acc[2] += px[2] * c;
        }
        int rgb[3] = {clip8(acc[0], x_prec), clip8(acc[1], x_prec), clip8(acc[2], x_prec)};
        for (int c = 0; c < 3; ++c) {
            v[c] = __fadd_rn(__fmul_rn((float)rgb[nm.order[c]], nm.scale[c]), nm.bias[c]);
        }
    }
    if (half_out) {
        unsigned short* h = (unsigned short*)out;
        for (int c = 0; c < 3; ++c) h[c * plane + o] = f2h(v[c]);
    } else {
        float* f = (float*)out;
        for (int c = 0; c < 3; ++c) f[c * plane + o] = v[c];
    }
}
