// Forward rasterization: out[p, :] = sum over the splats k binned to p's tile of
// colors[k, :] * exp(-q/2), for q <= qcut and p inside k's box (the CPU kernels' definition).
//
// One block per tile, one thread per pixel. The tile's splats (tile_splats[tile_start[t] :
// tile_start[t + 1]], ascending splat index) are staged through shared memory BLOCK at a time;
// every pixel sums them in that fixed order, so the result is deterministic.
//
// means [N, 2], conic [N, 3], colors [N, CHANNELS], boxes [N, 4] int32, tile_start [T + 1] int32,
// tile_splats [M] int32; out [H * W, CHANNELS] float32, every element written.
#include "common.cuh"

extern "C" __global__ void rasterize_fwd(const float* means, const float* conic, const float* colors,
                                         const int* boxes, const int* tile_start, const int* tile_splats,
                                         int height, int width, int tiles_x, float qcut, float* out) {
    __shared__ float s_geo[BLOCK][5];  // mx, my, a, b, c
    __shared__ int s_box[BLOCK][4];
    __shared__ float s_col[BLOCK][CHANNELS];

    const int tile = blockIdx.x, t = threadIdx.x;
    const int px = (tile % tiles_x) * TILE + t % TILE, py = (tile / tiles_x) * TILE + t / TILE;
    const bool inside = px < width && py < height;
    const float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
    float acc[CHANNELS];
    for (int ch = 0; ch < CHANNELS; ++ch) acc[ch] = 0.0f;

    const int start = tile_start[tile], end = tile_start[tile + 1];
    for (int base = start; base < end; base += BLOCK) {
        const int n = min(BLOCK, end - base);
        __syncthreads();  // the previous batch is no longer read
        if (t < n) {
            stage_splat(means, conic, colors, boxes, tile_splats[base + t], s_geo[t], s_box[t], s_col[t]);
        }
        __syncthreads();
        if (!inside) continue;
        for (int j = 0; j < n; ++j) {
            if (!in_box(s_box[j], px, py)) continue;
            const float dx = fx - s_geo[j][0], dy = fy - s_geo[j][1];
            const float q = quad_form(s_geo[j][2], s_geo[j][3], s_geo[j][4], dx, dy);
            if (q <= qcut) {
                const float w = expf(-0.5f * q);
                for (int ch = 0; ch < CHANNELS; ++ch) acc[ch] += w * s_col[j][ch];
            }
        }
    }
    if (inside) {
        const long long p = (long long)py * width + px;
        for (int ch = 0; ch < CHANNELS; ++ch) out[p * CHANNELS + ch] = acc[ch];
    }
}
