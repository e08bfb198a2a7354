// Zoneout's keep masks for a whole sequence in one pass: the numbers torch.rand([steps, k, B, H])
// draws from the default CPU generator, in memory order, each compared with its slot's z straight
// into a mask of 0/1 bytes (the kernels read them: keep.h Keep<uint8_t>). Python's form
// (regularizers/zoneout.py) writes the uniforms, then reads them back in a compare pass per slot;
// ATen's uniform_ calls the engine once per number (≈ 12 ns here).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels.h"

using at::Tensor;

namespace {

// Mersenne Twister's output tempering (MT19937RNGEngine.h's operator(), after the state read)
inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680;
  y ^= (y << 15) & 0xefc60000;
  y ^= (y >> 18);
  return y;
}

// n masks o[i] = 1[u_i < z] from the engine's next n numbers, u = uniform_real<float>(y, 0, 1) as
// torch.rand makes them. The engine's operator() twists its 624 words when `left_` runs down to 1
// and returns word `next_` tempered; the words before the next twist are read here as a block
// (a loop that vectorizes), and the twisting call itself stays the engine's
void fill_float(at::mt19937& e, uint8_t* o, int64_t n, float z) {
  int64_t i = 0;
  while (i < n) {
    auto d = e.data();
    if (d.left_ == 1) {
      o[i++] = at::transformation::uniform_real<float>(e(), 0.f, 1.f) < z;  // twists, returns word 0
      continue;
    }
    const int64_t m = std::min<int64_t>(d.left_ - 1, n - i);
    const uint32_t* __restrict__ s = d.state_.data() + d.next_;
    uint8_t* __restrict__ out = o + i;
    for (int64_t k = 0; k < m; ++k) out[k] = at::transformation::uniform_real<float>(temper(s[k]), 0.f, 1.f) < z;
    d.left_ -= static_cast<int>(m);
    d.next_ += static_cast<uint32_t>(m);
    e.set_data(d);
    i += m;
  }
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
