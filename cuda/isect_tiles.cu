// Tile binning: which splats touch which TILE x TILE tile. Every pair is kept (no per-tile cap).
//
// isect_count: per splat k, counts[k] = number of tiles its box meets where q <= Q_CUT is possible.
// (host: offsets = exclusive scan of counts, [N + 1])
// isect_fill:  per splat k, keys[offsets[k] + i] = tile << 32 | k for those tiles, in row-major order.
// (host: sort the keys; a tile's splats are then contiguous and in ascending splat order, which
//  fixes the summation order of rasterize_fwd: results are reproducible run to run.)
//
// Inputs: means [N, 2], conic [N, 3] (a, b, c of the inverse covariance), boxes [N, 4] int32
// (x0, y0, nx, ny), all row-major; qcut = the float32 threshold of q.
#include "common.cuh"

// Whether q <= qcut can hold at a pixel centre of pixels [xa, xb] x [ya, yb] (inclusive).
// Conservative: the minimum of q over the continuous rectangle of centres, in double, with a
// slack that covers the float32 rounding of q in the rasterizers.
__device__ bool rect_reaches(double mx, double my, double a, double b, double c,
                             int xa, int xb, int ya, int yb, double qcut) {
    if (!(a > 0.0 && c > 0.0 && a * c - b * b > 0.0)) return true;  // degenerate: keep the box
    double xl = xa + 0.5 - mx, xh = xb + 0.5 - mx, yl = ya + 0.5 - my, yh = yb + 0.5 - my;
    if (xl <= 0.0 && xh >= 0.0 && yl <= 0.0 && yh >= 0.0) return true;  // contains the centre
    // q is convex with its minimum (0) outside the rectangle: the minimum lies on an edge.
    for (int i = 0; i < 4; ++i) {
        double dx, dy;
        if (i < 2) {  // edge x = const: minimise over y
            dx = i ? xh : xl;
            dy = fmin(fmax(-b * dx / c, yl), yh);
        } else {      // edge y = const: minimise over x
            dy = (i & 1) ? yh : yl;
            dx = fmin(fmax(-b * dy / a, xl), xh);
        }
        double q = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy;
        double mag = a * dx * dx + 2.0 * fabs(b * dx * dy) + c * dy * dy;
        if (q <= qcut + 1e-5 * mag + 1e-6) return true;
    }
    return false;
}

// Visits the tiles of splat k; writes their keys when keys != nullptr; returns their number.
// Not inlined, so that both kernels run the very same code and agree on every count.
__device__ __noinline__ int visit_tiles(const float* means, const float* conic, const int* boxes,
                                        int k, double qcut, int tiles_x, long long* keys) {
    const int x0 = boxes[4 * k], y0 = boxes[4 * k + 1], nx = boxes[4 * k + 2], ny = boxes[4 * k + 3];
    if (nx <= 0 || ny <= 0) return 0;
    const double mx = means[2 * k], my = means[2 * k + 1];
    const double a = conic[3 * k], b = conic[3 * k + 1], c = conic[3 * k + 2];
    int count = 0;
    for (int ty = y0 / TILE; ty <= (y0 + ny - 1) / TILE; ++ty) {
        const int ya = max(y0, ty * TILE), yb = min(y0 + ny, (ty + 1) * TILE) - 1;
        for (int tx = x0 / TILE; tx <= (x0 + nx - 1) / TILE; ++tx) {
            const int xa = max(x0, tx * TILE), xb = min(x0 + nx, (tx + 1) * TILE) - 1;
            if (!rect_reaches(mx, my, a, b, c, xa, xb, ya, yb, qcut)) continue;
            if (keys) keys[count] = ((long long)(ty * tiles_x + tx) << 32) | (long long)k;
            ++count;
        }
    }
    return count;
}

extern "C" __global__ void isect_count(const float* means, const float* conic, const int* boxes,
                                       int n, float qcut, int* counts) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) counts[k] = visit_tiles(means, conic, boxes, k, qcut, 0, nullptr);
}

extern "C" __global__ void isect_fill(const float* means, const float* conic, const int* boxes,
                                      int n, float qcut, int tiles_x, const long long* offsets,
                                      long long* keys) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) visit_tiles(means, conic, boxes, k, qcut, tiles_x, keys + offsets[k]);
}
