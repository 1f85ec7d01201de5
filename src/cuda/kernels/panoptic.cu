// segstream CUDA panoptic post-process (detectron2 semantics), the GPU twin of
// src/postprocess/panoptic.rs. The host keeps the small steps (class softmax, kept
// queries, the segment decision from the counts); the kernels do the per-pixel work:
//
//   panoptic_pixels: for every frame pixel and every kept query k, the mask logit
//     resized with the composed bilinear taps of src/postprocess/upsample.rs (uploaded:
//     horizontal pass per source row, then vertical, in the CPU's operation order),
//     p_k = sigmoid(v) with the CPU's exp polynomial, value p_k * score_k; the winner is
//     the first maximum; counts: won, passed (p_k >= thr), won_passed. Output per pixel:
//     k | PASS (1 << 31) when the winner passes.
//   panoptic_finish: code -> segment id through the decision's table, area and bbox of
//     every id with run-length accumulation and atomics.
//
// Compiled with --fmad=false and explicit _rn intrinsics: values equal the CPU's bit for
// bit.

#define PASS 0x80000000u
#define MAX_TAPS 4

__device__ __forceinline__ float clampf(float x, float lo, float hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

// Same operations, constants and rounding as postprocess::common::exp.
__device__ __forceinline__ float seg_exp(float x) {
    const float MAGIC = 12582912.0f;
    x = clampf(x, -87.0f, 88.0f);
    float t = __fadd_rn(__fmul_rn(x, 1.4426950408889634f), MAGIC);
    float n = __fsub_rn(t, MAGIC);
    float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, 0.6933594f)), __fmul_rn(n, -2.1219444e-4f));
    float p = __fadd_rn(__fmul_rn(1.9875691e-4f, r), 1.3981999e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.333452e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665796e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 0.5f);
    float e = __fadd_rn(__fadd_rn(__fmul_rn(p, __fmul_rn(r, r)), r), 1.0f);
    unsigned int bits = (__float_as_uint(t) - 0x4B400000u + 127u) << 23;
    return __fmul_rn(e, __uint_as_float(bits));
}

__device__ __forceinline__ float seg_sigmoid(float v) {
    return __fdiv_rn(1.0f, __fadd_rn(1.0f, seg_exp(-v)));
}

// Taps of one axis: len[o], idx[o*4 + j], w[o*4 + j].
__device__ __forceinline__ float resample(const float* g, int mw,
    int rl, const int* ri, const float* rw, int cl, const int* ci, const float* cw)
{
    float out = 0.0f;
    for (int a = 0; a < rl; ++a) {
        const float* row = g + (size_t)ri[a] * mw;
        float h = __fmul_rn(row[ci[0]], cw[0]);
        for (int b = 1; b < cl; ++b) h = __fadd_rn(h, __fmul_rn(row[ci[b]], cw[b]));
        float t = __fmul_rn(h, rw[a]);
        out = a == 0 ? t : __fadd_rn(out, t);
    }
    return out;
}

// counts: [3][nk] = won, passed, won_passed. Dynamic shared memory: 3 * nk uints.
extern "C" __global__ void panoptic_pixels(
    const float* masks, int mh, int mw,
    const int* kept_q, const float* scores, int nk,
    const int* r_len, const int* r_idx, const float* r_w,
    const int* c_len, const int* c_idx, const float* c_w,
    int fh, int fw, float thr,
    unsigned int* codes, unsigned int* counts)
{
    extern __shared__ unsigned int sh[];
    for (int i = threadIdx.x; i < 3 * nk; i += blockDim.x) sh[i] = 0;
    __syncthreads();
    size_t npix = (size_t)fh * fw;
    size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    bool live = p < npix;
    int y = live ? (int)(p / fw) : 0, x = live ? (int)(p % fw) : 0;
    int rl = r_len[y], cl = c_len[x];
    const int* ri = r_idx + (size_t)y * MAX_TAPS;
    const float* rw = r_w + (size_t)y * MAX_TAPS;
    const int* ci = c_idx + (size_t)x * MAX_TAPS;
    const float* cw = c_w + (size_t)x * MAX_TAPS;
    size_t plane = (size_t)mh * mw;
    int win = 0;
    float best = 0.0f, win_p = 0.0f;
    unsigned int lane = threadIdx.x & 31u;
    for (int k = 0; k < nk; ++k) {
        float v = resample(masks + (size_t)kept_q[k] * plane, mw, rl, ri, rw, cl, ci, cw);
        float pk = seg_sigmoid(v);
        float val = __fmul_rn(pk, scores[k]);
        if (k == 0 || val > best) { best = val; win = k; win_p = pk; }
        unsigned int ballot = __ballot_sync(0xFFFFFFFFu, live && pk >= thr);
        if (lane == 0 && ballot) atomicAdd(&sh[nk + k], (unsigned int)__popc(ballot));
    }
    if (live) {
        bool pass = win_p >= thr;
        codes[p] = (unsigned int)win | (pass ? PASS : 0u);
        atomicAdd(&sh[win], 1u);
        if (pass) atomicAdd(&sh[2 * nk + win], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 3 * nk; i += blockDim.x)
        if (sh[i]) atomicAdd(&counts[i], sh[i]);
}

// One thread per run of `span` pixels of a row. lut[k] = segment id of kept query k
// (0 = none); whole_winner: every pixel of the winner counts (transformers), else only
// the passing ones (detectron2). stats: [5][n_ids] = area, x0, y0, x1, y1 (inclusive).
extern "C" __global__ void panoptic_finish(
    const unsigned int* codes, int fh, int fw, int span,
    const unsigned int* lut, int whole_winner, int n_ids,
    unsigned int* ids, unsigned int* stats)
{
    int runs_per_row = (fw + span - 1) / span;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)runs_per_row * fh) return;
    int y = (int)(t / runs_per_row);
    int x0 = (int)(t % runs_per_row) * span;
    int x1 = min(x0 + span, fw);
    const unsigned int* crow = codes + (size_t)y * fw;
    unsigned int* irow = ids + (size_t)y * fw;
    unsigned int cur = 0;
    int start = x0;
    for (int x = x0; x <= x1; ++x) {
        unsigned int id = 0;
        if (x < x1) {
            unsigned int c = crow[x];
            id = (whole_winner || (c & PASS)) ? lut[c & ~PASS] : 0u;
            irow[x] = id;
        }
        if (x == x1 || id != cur) {
            if (x > start && cur != 0 && cur < (unsigned int)n_ids) {
                atomicAdd(&stats[cur], (unsigned int)(x - start));
                atomicMin(&stats[n_ids + cur], (unsigned int)start);
                atomicMin(&stats[2 * n_ids + cur], (unsigned int)y);
                atomicMax(&stats[3 * n_ids + cur], (unsigned int)(x - 1));
                atomicMax(&stats[4 * n_ids + cur], (unsigned int)y);
            }
            cur = id;
            start = x;
        }
    }
}
