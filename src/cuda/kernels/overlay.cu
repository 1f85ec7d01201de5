// segstream CUDA overlay: alpha-blend each segment's colour over its pixels in place, with
// optional 1-pixel contours at full opacity; the same integer arithmetic as
// src/render/mod.rs (blend = (dst*(256-a) + src*a + 128) >> 8), so results are equal.
//
// lut[id] = c0 | c1 << 8 | c2 << 16 | 1 << 24 (drawn); ids beyond n_lut or without the
// flag are left alone. Packed formats: fmt 0 RGB, 1 RGBA, 2 BGRx (colour in RGB order in
// the table); NV12: luma from lut_yuv byte 0, chroma bytes 1, 2 at even (x, y).

__device__ __forceinline__ unsigned char blend8(unsigned int d, unsigned int s, unsigned int a) {
    return (unsigned char)((d * (256u - a) + s * a + 128u) >> 8);
}

__device__ __forceinline__ bool is_edge(const unsigned int* ids, int w, int h, int x, int y) {
    unsigned int id = ids[(size_t)y * w + x];
    return (x > 0 && ids[(size_t)y * w + x - 1] != id) || (x + 1 < w && ids[(size_t)y * w + x + 1] != id)
        || (y > 0 && ids[(size_t)(y - 1) * w + x] != id) || (y + 1 < h && ids[(size_t)(y + 1) * w + x] != id);
}

__device__ __forceinline__ bool lookup(const unsigned int* lut, int n_lut, unsigned int id, unsigned int* c) {
    if (id >= (unsigned int)n_lut) return false;
    *c = lut[id];
    return (*c >> 24) != 0;
}

extern "C" __global__ void overlay_packed(
    unsigned char* frame, int stride, int fmt, int w, int h,
    const unsigned int* ids, const unsigned int* lut, int n_lut, unsigned int alpha, int contours)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    unsigned int c;
    if (!lookup(lut, n_lut, ids[(size_t)y * w + x], &c)) return;
    unsigned int a = (contours && is_edge(ids, w, h, x, y)) ? 256u : alpha;
    int bpp = fmt == 0 ? 3 : 4;
    unsigned char* px = frame + (size_t)y * stride + (size_t)x * bpp;
    int ch[3] = {0, 1, 2};
    if (fmt == 2) { ch[0] = 2; ch[2] = 0; }
    for (int k = 0; k < 3; ++k) px[ch[k]] = blend8(px[ch[k]], (c >> (8 * k)) & 255u, a);
}

extern "C" __global__ void overlay_nv12(
    unsigned char* yp, int ys, unsigned char* uvp, int uvs, int w, int h,
    const unsigned int* ids, const unsigned int* lut_yuv, int n_lut, unsigned int alpha, int contours)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    unsigned int c;
    if (!lookup(lut_yuv, n_lut, ids[(size_t)y * w + x], &c)) return;
    unsigned int a = (contours && is_edge(ids, w, h, x, y)) ? 256u : alpha;
    unsigned char* py = yp + (size_t)y * ys + x;
    *py = blend8(*py, c & 255u, a);
    if ((x & 1) == 0 && (y & 1) == 0 && x / 2 < w / 2 && y / 2 < h / 2) {
        unsigned char* q = uvp + (size_t)(y / 2) * uvs + x;
        q[0] = blend8(q[0], (c >> 8) & 255u, a);
        q[1] = blend8(q[1], (c >> 16) & 255u, a);
    }
}
