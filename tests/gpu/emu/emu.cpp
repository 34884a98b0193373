/* emu.cpp — the fiber runtime behind cuda_emu.h, and the two runtime calls every kernel
 * file makes (cudaGetLastError, cudaFuncSetAttribute: both succeed). The rest of the
 * runtime is fake_cudart.cpp (whole-backend builds) or emu_stubs.cpp (kernels only).
 *
 * Scheduling: every thread of a block is a ucontext fiber with its own stack. The
 * scheduler resumes the fibers round-robin; a fiber runs until it waits at a barrier
 * that is not yet released (block barrier for __syncthreads, warp barrier for
 * shuffles) or returns. The last arrival releases a barrier (bumps its generation).
 * A full pass without progress while fibers still wait is a deadlock: abort. */
#include <ucontext.h>

#include <cstdint>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "cuda_emu.h"

long emu_launches;
void (*emu_submit_hook)(std::function<void()> f);

namespace {

struct barrier_t {
    unsigned gen = 0, arrived = 0, alive = 0;
};

struct warp_t {
    barrier_t bar;
    uint32_t vals[32];
};

struct fiber_t {
    ucontext_t ctx;
    uint3 tid;
    int linear, done;
};

const size_t STACK = 256 << 10;
ucontext_t sched_ctx;
std::vector<fiber_t> fibers;
std::vector<std::unique_ptr<char[]>> stacks; /* freed at exit (LeakSanitizer) */
std::vector<warp_t> warps;
fiber_t *cur;
uint3 cur_block;
dim3 cur_bdim, cur_gdim;
barrier_t block_bar;
const std::function<void()> *cur_body;
std::vector<char> dyn;
unsigned long progress;

void yield() { swapcontext(&cur->ctx, &sched_ctx); }

void arrive(barrier_t &b) {
    const unsigned g = b.gen;
    progress++;
    if (++b.arrived == b.alive) {
        b.gen++;
        b.arrived = 0;
        return;
    }
    while (b.gen == g) yield();
}

/* A finished thread no longer counts: release a barrier the others are waiting at. */
void leave(barrier_t &b) {
    b.alive--;
    if (b.arrived > 0 && b.arrived == b.alive) {
        b.gen++;
        b.arrived = 0;
    }
}

void fiber_main() {
    (*cur_body)();
    cur->done = 1;
    progress++;
    leave(block_bar);
    leave(warps[cur->linear / 32].bar);
    swapcontext(&cur->ctx, &sched_ctx);
}

uint32_t shfl(uint32_t v, int mask) {
    warp_t &w = warps[cur->linear / 32];
    const int lane = cur->linear % 32;
    w.vals[lane] = v;
    arrive(w.bar);
    const int src = lane ^ mask;
    const uint32_t r = src < 32 ? w.vals[src] : v;
    arrive(w.bar); /* nobody overwrites vals before everyone has read */
    return r;
}

} // namespace

uint3 emu_thread_idx() { return cur->tid; }
uint3 emu_block_idx() { return cur_block; }
dim3 emu_block_dim() { return cur_bdim; }
dim3 emu_grid_dim() { return cur_gdim; }
void __syncthreads() { arrive(block_bar); }
void __syncwarp(unsigned) { arrive(warps[cur->linear / 32].bar); }
int emu_lane() { return cur->linear % 32; }
void emu_wmma_check(const void *p, unsigned ldm, size_t elem_bytes, const char *what) {
    const char *c = (const char *)p, *base = dyn.data();
    if (ldm * elem_bytes % 16) {
        fprintf(stderr, "emu: %s with ldm %u (%zu-byte elements): not a multiple of 16 bytes\n", what, ldm, elem_bytes);
        abort();
    }
    if (c >= base && c < base + dyn.size() && (c - base) % 32) {
        fprintf(stderr, "emu: %s at shared offset %td: not 32-byte aligned\n", what, c - base);
        abort();
    }
}
void *emu_dyn_smem() { return dyn.data(); }

float emu_shfl_xor_f(float v, int m) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = shfl(u, m);
    memcpy(&v, &u, 4);
    return v;
}
int emu_shfl_xor_i(int v, int m) { return (int)shfl((uint32_t)v, m); }

void emu_run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    emu_launches++;
    const int nt = (int)(block.x * block.y * block.z);
    if (nt <= 0 || nt > 1024 || nt % 32) {
        fprintf(stderr, "emu: block of %d threads (want a multiple of 32, at most 1024)\n", nt);
        abort();
    }
    if (smem > (size_t)227 << 10) {
        fprintf(stderr, "emu: %zu bytes of dynamic shared memory is more than any GPU gives a block\n", smem);
        abort();
    }
    while ((int)stacks.size() < nt) stacks.emplace_back(new char[STACK]);
    fibers.resize(nt);
    warps.resize(nt / 32);
    cur_body = &body;
    cur_bdim = block;
    cur_gdim = grid;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                cur_block = make_uint3(bx, by, bz);
                /* poison shared memory: a read of something never written shows up as NaN */
                dyn.assign(smem + 16, (char)0xff);
                block_bar = barrier_t();
                block_bar.alive = nt;
                for (auto &w : warps) w.bar = barrier_t(), w.bar.alive = 32;
                for (int i = 0; i < nt; i++) {
                    fiber_t &f = fibers[i];
                    f.linear = i;
                    f.done = 0;
                    f.tid = make_uint3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = stacks[i].get();
                    f.ctx.uc_stack.ss_size = STACK;
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                int remaining = nt;
                while (remaining) {
                    const unsigned long before = progress;
                    remaining = 0;
                    for (int i = 0; i < nt; i++) {
                        if (fibers[i].done) continue;
                        cur = &fibers[i];
                        swapcontext(&sched_ctx, &fibers[i].ctx);
                        remaining += !fibers[i].done;
                    }
                    if (remaining && progress == before) {
                        fprintf(stderr, "emu: deadlock in block (%u,%u,%u): %d threads wait at a barrier the others "
                                        "never reach\n", bx, by, bz, remaining);
                        abort();
                    }
                }
            }
}

/* ---------------------------------------------------------------- runtime calls the kernels make */
extern "C" {
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void *, enum cudaFuncAttribute, int) { return cudaSuccess; }
}
