// The kernels' loops split over batch rows between torch's intra-op threads: per step, ATen does
// not split a [B, H] op below 32,768 elements and a [B, H] x [H, 4H] GEMM scales poorly, so
// without this the 2nd core mostly waits.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <cstdint>

namespace {

// f(b0, b1) over batch rows [b0, b1), each chunk running the whole time loop for its rows: a
// recurrence's rows never mix (only dW sums over them, after the loop), so a thread owns its rows
// for all T steps with no fork/join per step, and the small per-step GEMMs run one per thread.
// Nested ATen ops (and MKL's GEMMs) run single-threaded inside the region; the caller's
// thread-local state (grad mode: the out= GEMMs refuse grad-requiring inputs under grad) goes along.
constexpr int64_t kMinRows = 8;  // rows a thread takes at least (fewer starve the GEMM's M)

template <typename F>
inline void for_batch(int64_t B, const F& f) {
  const at::ThreadLocalState state;
  at::parallel_for(0, B, kMinRows, [&](int64_t b0, int64_t b1) {
    const at::ThreadLocalStateGuard guard(state);
    f(b0, b1);
  });
}

}  // namespace
