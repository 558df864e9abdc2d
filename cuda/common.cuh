// Definitions shared by the rasterization kernels (gscodec/render_cuda.py drives them).
// Must stay NVRTC-compatible: no system headers.
#ifndef GSCODEC_COMMON_CUH
#define GSCODEC_COMMON_CUH

#define TILE 16               // tiles are TILE x TILE pixels
#define BLOCK (TILE * TILE)   // one thread per pixel of a tile
#ifndef CHANNELS
#define CHANNELS 3            // colour channels C; the loader passes -DCHANNELS=C
#endif

// q = a dx^2 + 2 b dx dy + c dy^2, rounded operation by operation in the order of the CPU
// kernels (no FMA contraction), so the q <= Q_CUT decision matches gscodec.render bit for bit.
__device__ __forceinline__ float quad_form(float a, float b, float c, float dx, float dy) {
    float q = __fmul_rn(__fmul_rn(a, dx), dx);
    q = __fadd_rn(q, __fmul_rn(__fmul_rn(__fmul_rn(2.0f, b), dx), dy));
    return __fadd_rn(q, __fmul_rn(__fmul_rn(c, dy), dy));
}

// Whether pixel (px, py) lies in the box (x0, y0, nx, ny) of render.footprint_sizes.
__device__ __forceinline__ bool in_box(const int* box, int px, int py) {
    return px >= box[0] && px < box[0] + box[2] && py >= box[1] && py < box[1] + box[3];
}

// Copies splat k (centre and conic into geo[5], box into box[4], colour into col[CHANNELS]):
// how the rasterizers stage a batch of a tile's splats in shared memory.
__device__ __forceinline__ void stage_splat(const float* means, const float* conic, const float* colors,
                                            const int* boxes, int k, float* geo, int* box, float* col) {
    geo[0] = means[2 * k];
    geo[1] = means[2 * k + 1];
    for (int i = 0; i < 3; ++i) geo[2 + i] = conic[3 * k + i];
    for (int i = 0; i < 4; ++i) box[i] = boxes[4 * k + i];
    for (int ch = 0; ch < CHANNELS; ++ch) col[ch] = colors[(long long)k * CHANNELS + ch];
}

#endif  // GSCODEC_COMMON_CUH
