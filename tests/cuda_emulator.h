// Runs the CUDA C kernels of cuda/ on the CPU, for tests on machines without a GPU
// (tests/cuda_emulator.py builds and drives it). Each CUDA thread is a fiber
// (ucontext) with its own stack; the blocks run one after another, the fibers of a
// block take turns on one OS thread. A barrier (__syncthreads, or a warp's for the
// warp intrinsics, which exchange values through per-warp buffers) makes a fiber yield
// until all the threads it waits for have arrived; __shared__ arrays are statics,
// shared by the block that runs. Checks the kernels' indexing, binning, shared-memory
// batching and reductions; not timing, not the memory model, not the GPU's own expf.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

struct dim3 {
    unsigned x = 0, y = 0, z = 0;
};
inline dim3 blockIdx, blockDim, gridDim, threadIdx;  // threadIdx: the fiber that runs

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static

namespace emu {
constexpr int kMaxWarps = 32;
constexpr size_t kStack = 256 * 1024;

struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    bool done = false;
};

inline ucontext_t scheduler;
inline std::vector<Fiber> fibers;
inline int running = 0;
inline const std::function<void()>* body = nullptr;

struct Barrier {
    int arrived = 0;
    long generation = 0;
};
inline Barrier block_barrier, warp_barriers[kMaxWarps];
inline float warp_values[kMaxWarps][32];
inline bool warp_flags[kMaxWarps][32];

inline void yield() { swapcontext(&fibers[running].context, &scheduler); }

inline void wait(Barrier& barrier, int count) {
    const long generation = barrier.generation;
    if (++barrier.arrived == count) {  // the last to arrive releases the others
        barrier.arrived = 0;
        ++barrier.generation;
        return;
    }
    while (barrier.generation == generation) yield();
}

inline void start_fiber() {
    (*body)();
    fibers[running].done = true;
    swapcontext(&fibers[running].context, &scheduler);
}

inline void run_grid(int grid, int block, const std::function<void()>& kernel) {
    gridDim = {unsigned(grid), 1, 1};
    blockDim = {unsigned(block), 1, 1};
    body = &kernel;
    fibers.assign(block, Fiber{});
    for (auto& fiber : fibers) fiber.stack.resize(kStack);
    for (int b = 0; b < grid; ++b) {
        blockIdx = {unsigned(b), 0, 0};
        block_barrier = Barrier{};
        for (auto& warp : warp_barriers) warp = Barrier{};
        for (auto& fiber : fibers) {
            fiber.done = false;
            getcontext(&fiber.context);
            fiber.context.uc_stack.ss_sp = fiber.stack.data();
            fiber.context.uc_stack.ss_size = kStack;
            fiber.context.uc_link = nullptr;
            makecontext(&fiber.context, start_fiber, 0);
        }
        for (int live = block; live > 0;) {  // round robin until every fiber has finished
            live = 0;
            for (running = 0; running < block; ++running) {
                if (fibers[running].done) continue;
                threadIdx = {unsigned(running), 0, 0};
                swapcontext(&scheduler, &fibers[running].context);
                live += !fibers[running].done;
            }
        }
    }
}

inline int warp_size(int warp) { return std::min(32, int(blockDim.x) - 32 * warp); }
}  // namespace emu

inline void __syncthreads() { emu::wait(emu::block_barrier, int(blockDim.x)); }

inline bool __any_sync(unsigned, bool predicate) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    emu::warp_flags[warp][lane] = predicate;
    emu::wait(emu::warp_barriers[warp], emu::warp_size(warp));
    bool any = false;
    for (int l = 0; l < emu::warp_size(warp); ++l) any = any || emu::warp_flags[warp][l];
    emu::wait(emu::warp_barriers[warp], emu::warp_size(warp));  // all have read before the next write
    return any;
}

inline float __shfl_down_sync(unsigned, float value, unsigned delta) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    emu::warp_values[warp][lane] = value;
    emu::wait(emu::warp_barriers[warp], emu::warp_size(warp));
    const int source = lane + int(delta);
    const float out = source < emu::warp_size(warp) ? emu::warp_values[warp][source] : value;
    emu::wait(emu::warp_barriers[warp], emu::warp_size(warp));
    return out;
}

// correctly rounded single operations (the build passes -ffp-contract=off: no fused multiply-add)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
