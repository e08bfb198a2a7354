// The kernels' GEMMs. float32 runs through oneDNN's matmul (ATen's at::native::mkldnn_matmul:
// the engine of torch.nn.LSTM's fused CPU kernel, and of TensorFlow's matmul) or through at::mm
// (BLAS: MKL in torch's x86 wheels); float64 always through at::mm. MKL picks its code path by CPU
// vendor: on an AMD EPYC (Zen 5) it runs its AVX2 kernels and a step's [64, 157] × [157, 512] GEMM
// took 121 µs against oneDNN's 66; on an Intel Xeon (AVX-512) it runs AVX-512 kernels with no
// per-call setup and takes 52 µs against oneDNN's 73. So "auto" (the default) is MKL on Intel CPUs
// and oneDNN elsewhere; RNNBENCH_GEMM=onednn|blas pins one (native/__init__.py sets the engine once
// per process, so a run and its resume on one machine use the same one). docs/performance.md.
#pragma once

#include <ATen/ATen.h>
#include <dlfcn.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdint>
#include <cstring>

namespace gemm {

// result = beta · result + alpha · a b (the exported symbol; not in torch's installed headers)
using MatmulFn = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, float, float);

// looked up at run time, so a torch without it (or without oneDNN) only loses this path
inline MatmulFn onednn_symbol() {
  static const MatmulFn f = [] {
    void* lib = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    void* sym = lib ? dlsym(lib, "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff") : nullptr;
    return reinterpret_cast<MatmulFn>(sym);
  }();
  return f;
}

// whether this CPU is an Intel one (CPUID's vendor string "GenuineIntel"), where MKL runs its fastest paths
inline bool intel_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  return std::strcmp(vendor, "GenuineIntel") == 0;
#else
  return false;
#endif
}

inline bool& onednn_on() {
  static bool on = false;
  return on;
}

// oneDNN where it wins: float32 and big enough (below ≈ 10⁶ multiply-adds its ≈ 10 µs of setup
// per call outweighs the faster kernel: a [64, 128] × [128, 1] GEMM takes 12 µs against 0.7)
inline bool use_onednn(const at::Tensor& a, const at::Tensor& b) {
  if (!onednn_on() || a.scalar_type() != at::kFloat) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  return M >= 8 && K >= 16 && N >= 16 && M * K * N >= (int64_t(1) << 20);
}

// out = a b (out may be a strided view: a column slice of a wider buffer)
inline const at::Tensor& mm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (use_onednn(a, b)) {
    onednn_symbol()(a, b, out, 0.f, 1.f);
  } else {
    at::Tensor o = out;
    at::mm_out(o, a, b);
  }
  return out;
}

// out = c + a b, c: out itself, a tensor of out's shape or a bias row (broadcast)
inline const at::Tensor& addmm_out(const at::Tensor& out, const at::Tensor& c, const at::Tensor& a,
                                   const at::Tensor& b) {
  if (use_onednn(a, b)) {
    if (!c.is_same(out)) out.copy_(c);
    onednn_symbol()(a, b, out, 1.f, 1.f);
  } else {
    at::Tensor o = out;
    at::addmm_out(o, c, a, b);
  }
  return out;
}

inline at::Tensor mm(const at::Tensor& a, const at::Tensor& b) {
  if (!use_onednn(a, b)) return at::mm(a, b);
  at::Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  onednn_symbol()(a, b, out, 0.f, 1.f);
  return out;
}

inline at::Tensor addmm(const at::Tensor& c, const at::Tensor& a, const at::Tensor& b) {
  if (!use_onednn(a, b)) return at::addmm(c, a, b);
  at::Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  return gemm::addmm_out(out, c, a, b);  // qualified: ADL on at::Tensor would pick at::addmm_out (Tensor& out)
}

}  // namespace gemm
