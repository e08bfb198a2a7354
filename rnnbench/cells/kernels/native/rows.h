// A step's element-wise work split over batch rows between torch's intra-op threads: ATen does
// not split a [B, H] op below 32,768 elements, so without this only the GEMMs use the 2nd core.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

constexpr int64_t kMinChunk = 4096;  // elements a thread takes at least (a fork/join costs µs)

// f(b0, b1) over rows [b0, b1) of B rows of `row_elems` elements each, in parallel where worth it
template <typename F>
inline void for_rows(int64_t B, int64_t row_elems, const F& f) {
  const int64_t grain = std::max<int64_t>(1, kMinChunk / std::max<int64_t>(1, row_elems));
  at::parallel_for(0, B, grain, f);
}

}  // namespace
