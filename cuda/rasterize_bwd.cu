// Backward rasterization: gradients of sum(grad_out * rasterize_fwd) for means, conic and colors,
// with the CPU kernels' formulas. Per pixel with w = exp(-q/2) > 0 (q <= qcut, inside the box):
//   d/dcolor[ch] = w g[ch];  gq = -w/2 * sum_ch g[ch] color[ch]  (dL/dq)
//   d/d(a, b, c) = gq (dx^2, 2 dx dy, dy^2);  d/dmean = -2 gq (a dx + b dy, b dx + c dy)
//
// Deterministic, without atomics, in two steps:
// rasterize_bwd: one block per tile; for each (tile, splat) entry i of the sorted binning, the
//   block's sum of the NV = 5 + CHANNELS values (warp shuffles, then the 8 warps in order) goes
//   to partial[slot[i]], where slot = the sort permutation: a splat's entries are then
//   contiguous, at offsets[k] .. offsets[k + 1] (the binning's scan).
// rasterize_bwd_reduce: one thread per splat sums its partial rows in order.
//
// means [N, 2], conic [N, 3], colors [N, C], boxes [N, 4] int32, tile_start [T + 1] int32,
// tile_splats [M] int32, slot [M] int64, grad_out [H * W, C]; partial [M, NV];
// g_means [N, 2], g_conic [N, 3], g_colors [N, C] (all float32 unless said).
#include "common.cuh"

#define NV (5 + CHANNELS)  // per splat: d/dmean x, y; d/dconic a, b, c; d/dcolor
#define BATCH 32           // splats staged per round
#define WARPS (BLOCK / 32)

extern "C" __global__ void rasterize_bwd(const float* means, const float* conic, const float* colors,
                                         const int* boxes, const int* tile_start, const int* tile_splats,
                                         const long long* slot, int height, int width, int tiles_x, float qcut,
                                         const float* grad_out, float* partial) {
    __shared__ float s_geo[BATCH][5];
    __shared__ int s_box[BATCH][4];
    __shared__ float s_col[BATCH][CHANNELS];
    __shared__ float s_warp[WARPS][BATCH][NV];

    const int tile = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int px = (tile % tiles_x) * TILE + t % TILE, py = (tile / tiles_x) * TILE + t / TILE;
    const bool inside = px < width && py < height;
    const float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
    float g[CHANNELS];
    for (int ch = 0; ch < CHANNELS; ++ch)
        g[ch] = inside ? grad_out[((long long)py * width + px) * CHANNELS + ch] : 0.0f;

    const int start = tile_start[tile], end = tile_start[tile + 1];
    for (int base = start; base < end; base += BATCH) {
        const int n = min(BATCH, end - base);
        __syncthreads();  // the previous round's shared data is no longer read
        if (t < n) {
            stage_splat(means, conic, colors, boxes, tile_splats[base + t], s_geo[t], s_box[t], s_col[t]);
        }
        __syncthreads();
        for (int j = 0; j < n; ++j) {
            float v[NV];
            for (int i = 0; i < NV; ++i) v[i] = 0.0f;
            bool hit = false;
            if (inside && in_box(s_box[j], px, py)) {
                const float a = s_geo[j][2], b = s_geo[j][3], c = s_geo[j][4];
                const float dx = fx - s_geo[j][0], dy = fy - s_geo[j][1];
                const float q = quad_form(a, b, c, dx, dy);
                if (q <= qcut) {
                    hit = true;
                    const float w = expf(-0.5f * q);
                    float dot = 0.0f;
                    for (int ch = 0; ch < CHANNELS; ++ch) {
                        v[5 + ch] = w * g[ch];
                        dot += g[ch] * s_col[j][ch];
                    }
                    const float gq = -0.5f * w * dot;
                    v[0] = -2.0f * gq * (a * dx + b * dy);
                    v[1] = -2.0f * gq * (b * dx + c * dy);
                    v[2] = gq * dx * dx;
                    v[3] = 2.0f * gq * dx * dy;
                    v[4] = gq * dy * dy;
                }
            }
            if (__any_sync(0xffffffffu, hit)) {
                for (int i = 0; i < NV; ++i)
                    for (int d = 16; d > 0; d >>= 1) v[i] += __shfl_down_sync(0xffffffffu, v[i], d);
            }
            if (lane == 0)
                for (int i = 0; i < NV; ++i) s_warp[warp][j][i] = v[i];
        }
        __syncthreads();
        for (int e = t; e < n * NV; e += BLOCK) {
            const int j = e / NV, i = e % NV;
            float s = 0.0f;
            for (int w = 0; w < WARPS; ++w) s += s_warp[w][j][i];
            partial[slot[base + j] * NV + i] = s;
        }
    }
}

extern "C" __global__ void rasterize_bwd_reduce(const long long* offsets, const float* partial, int n,
                                                float* g_means, float* g_conic, float* g_colors) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    float s[NV];
    for (int i = 0; i < NV; ++i) s[i] = 0.0f;
    for (long long e = offsets[k]; e < offsets[k + 1]; ++e)
        for (int i = 0; i < NV; ++i) s[i] += partial[e * NV + i];
    g_means[2 * k] = s[0];
    g_means[2 * k + 1] = s[1];
    for (int i = 0; i < 3; ++i) g_conic[3 * k + i] = s[2 + i];
    for (int ch = 0; ch < CHANNELS; ++ch) g_colors[(long long)k * CHANNELS + ch] = s[5 + ch];
}
