// Zoneout's keep masks for a whole sequence in one pass: the numbers torch.rand([steps, k, B, H])
// draws from the default CPU generator, in memory order, each compared with its slot's z straight
// into a mask of 0/1 bytes (the kernels read them: keep.h Keep<uint8_t>). Python's form
// (regularizers/zoneout.py) writes the uniforms, then reads them back in a compare pass per slot;
// ATen's uniform_ calls the engine once per number (≈ 12 ns here).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "kernels.h"

using at::Tensor;

namespace {

// the draw's loops compiled for AVX-512 and AVX2 beside the baseline, the loader picking one per CPU
// (an ifunc: GCC ≥ 11 on glibc), as the build has no -march=native (native/__init__.py): 0.78 ns a
// number → 0.27 here (Xeon, AVX-512)
#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) && defined(__GLIBC__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CLONES
#endif

// Mersenne Twister's output tempering (MT19937RNGEngine.h's operator(), after the state read)
inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680;
  y ^= (y << 15) & 0xefc60000;
  y ^= (y >> 18);
  return y;
}

// the engine's next_state() (MT19937RNGEngine.h): the same recurrence over the 624 words, written
// over indices so GCC vectorizes it (the reads ahead, k + 1 and k + M, precede the writes; the
// second loop's k + M − N was written 227 words back)
inline uint32_t mt_twist(uint32_t u, uint32_t v) {
  return (((u & at::UMASK) | (v & at::LMASK)) >> 1) ^ ((v & 1u) ? at::MATRIX_A : 0u);
}

CLONES void twist_state(uint32_t* __restrict__ s) {
  constexpr int N = at::MERSENNE_STATE_N, M = at::MERSENNE_STATE_M;
  for (int k = 0; k < N - M; ++k) s[k] = s[k + M] ^ mt_twist(s[k], s[k + 1]);
  for (int k = N - M; k < N - 1; ++k) s[k] = s[k + M - N] ^ mt_twist(s[k], s[k + 1]);
  s[N - 1] = s[M - 1] ^ mt_twist(s[N - 1], s[0]);
}

// the block of tempered words compared into masks
CLONES void fill_block(const uint32_t* __restrict__ s, uint8_t* __restrict__ out, int64_t m, uint32_t zt) {
  for (int64_t k = 0; k < m; ++k) out[k] = (temper(s[k]) & 0xFFFFFFu) < zt;
}

// u < z for torch.rand's float u = uniform_real<float>(y, 0, 1) = (y mod 2^24) · 2^-24, exact in
// float (a 24-bit integer times a power of two): u < z ⇔ y mod 2^24 < ⌈z · 2^24⌉, an integer compare
// (z · 2^24 is exact in double; z ≥ 1 keeps every unit, z ≤ 0 or NaN none)
inline uint32_t float_threshold(float z) {
  const double s = std::ceil(static_cast<double>(z) * 16777216.0);
  return !(s > 0) ? 0u : s >= 16777216.0 ? 16777216u : static_cast<uint32_t>(s);
}

// n masks o[i] = 1[u_i < z] from the engine's next n numbers, u as torch.rand makes them. The
// engine's operator() twists its 624 words when `left_` runs down to 1 and returns word `next_`
// tempered; here the same state moves (twist_state, then word 0 read with left_ = N, next_ = 1, as
// operator() leaves them), and the words before the next twist are read as a block (temper, mask,
// compare: a loop of 32-bit integer operations that vectorizes)
void fill_float(at::mt19937& e, uint8_t* o, int64_t n, float z) {
  const uint32_t zt = float_threshold(z);
  auto d = e.data();
  int64_t i = 0;
  while (i < n) {
    if (d.left_ == 1) {
      twist_state(d.state_.data());
      d.left_ = at::MERSENNE_STATE_N;
      d.next_ = 1;
      o[i++] = (temper(d.state_[0]) & 0xFFFFFFu) < zt;
      continue;
    }
    const int64_t m = std::min<int64_t>(d.left_ - 1, n - i);
    fill_block(d.state_.data() + d.next_, o + i, m, zt);
    d.left_ -= static_cast<int>(m);
    d.next_ += static_cast<uint32_t>(m);
    i += m;
  }
  e.set_data(d);
}

// float64: uniform_real<double> of the generator's random64() (two engine calls), its own code
void fill_double(at::CPUGeneratorImpl* gen, uint8_t* o, int64_t n, double z) {
  const at::uniform_real_distribution<double> uniform(0, 1);
  for (int64_t i = 0; i < n; ++i) o[i] = uniform(gen) < z;
}

}  // namespace

std::vector<Tensor> keep_masks(int64_t steps, int64_t B, int64_t H, const std::vector<double>& zs, bool locked,
                               at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "keep_masks: float32 or float64 draws");
  std::vector<Tensor> out;
  const auto opt = at::TensorOptions().dtype(at::kByte);
  for (size_t j = 0; j < zs.size(); ++j)
    out.push_back(locked ? at::empty({B, H}, opt) : at::empty({steps, B, H}, opt));
  if (locked) steps = 1;
  const int64_t n = B * H;
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(c10::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);  // as ATen's uniform_ holds it
  at::mt19937 e = gen->engine();
  for (int64_t t = 0; t < steps; ++t)  // torch.rand([steps, k, B, H])'s order: step, slot, row
    for (size_t j = 0; j < zs.size(); ++j) {
      if (dtype == at::kFloat)  // torch.lt(float tensor, python float) compares in float32
        fill_float(e, out[j].data_ptr<uint8_t>() + t * n, n, static_cast<float>(zs[j]));
      else
        fill_double(gen, out[j].data_ptr<uint8_t>() + t * n, n, zs[j]);
    }
  if (dtype == at::kFloat) gen->set_engine(e);
  return out;
}
