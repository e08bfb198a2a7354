// Shared by the kernels: zoneout's keep factors as per-step rows, torch.lerp's formula, a tanh RNN
// step's tail and its backward, the VC cells' state-lerp weight, the multiplicative cells' factor
// and its backward step and loop, a weight gradient's GEMM, and the dispatch of run-time flags to
// compile-time ones.
#pragma once

#include <ATen/ATen.h>

#include <type_traits>

#include "gemm.h"
#include "rows.h"

namespace {

using at::Tensor;

// zoneout's keep factors as rows of B x H values, one row per step (step stride `step`): a
// per-step mask (step = B H), a locked mask or the evaluation expectation (step = 0). M, the
// element type: uint8_t for a training mask of 0/1 bytes (keep_masks draws them: a quarter of a
// float mask's memory traffic, which a long sequence streams three times), else the scalar type T
// (the evaluation's z, or a float mask); the loops read T(k[i])
template <typename M>
struct Keep {
  using type = M;
  Tensor hold;  // keeps a materialized copy alive
  const M* p = nullptr;
  int64_t step = 0;
  const M* row(int64_t t) const { return p + t * step; }
};

template <typename M>
Keep<M> keep(const Tensor& k, int64_t T_, int64_t B, int64_t H) {
  Keep<M> v;
  if (k.numel() == 1) {
    v.hold = at::full({B, H}, k.item(), k.options());  // the expectation z at evaluation
  } else {
    const Tensor e = k.expand({T_, B, H});
    const bool rows = e.stride(2) == 1 && e.stride(1) == H;  // [T, B, H] slices, locked [B, H]
    v.hold = rows ? e : e.contiguous();
    v.step = v.hold.stride(0);
  }
  v.p = v.hold.template data_ptr<M>();
  return v;
}

// f(std::bool_constant<a>{})
template <typename F>
void with_flag(bool a, F&& f) {
  if (a) f(std::true_type{});
  else f(std::false_type{});
}

inline bool is_mask(const Tensor& k) { return k.scalar_type() == at::kByte; }
inline bool is_mask(const c10::optional<Tensor>& k) { return k.has_value() && is_mask(*k); }

// f(KT, k): KT = std::bool_constant<zoneout given>, k its Keep<M> (M: uint8_t for a byte mask,
// else T; empty without zoneout); a kernel's loops take KT and M as compile-time parameters
template <typename T, typename F>
void with_keep(const c10::optional<Tensor>& k, int64_t T_, int64_t B, int64_t H, F&& f) {
  if (!k.has_value()) f(std::false_type{}, Keep<T>{});
  else if (is_mask(k)) f(std::true_type{}, keep<uint8_t>(*k, T_, B, H));
  else f(std::true_type{}, keep<T>(*k, T_, B, H));
}

// with_keep and one more run-time flag (grad, dy given): f(KT, FT, k)
template <typename T, typename F>
void with_keep_flag(const c10::optional<Tensor>& k, int64_t T_, int64_t B, int64_t H, bool flag, F&& f) {
  with_keep<T>(k, T_, B, H, [&](auto KT, const auto& kk) { with_flag(flag, [&](auto FT) { f(KT, FT, kk); }); });
}

// row t of zoneout's factors as the VC kernels take them, a [T or 1, B, H] tensor (one row: a locked
// mask or the expectation)
template <typename M>
const M* keep_row(const Tensor& a, int64_t t) {
  return a.data_ptr<M>() + (a.size(0) == 1 ? 0 : t * a.stride(0));
}

// a type as a value, for a generic lambda's parameter: decltype(tag)::type
template <typename M>
struct Tag {
  using type = M;
};

// for the kernels that take zoneout's factors as [T or 1, B, H] tensors (the VC cells): f(FT, ZT, m)
// with a run-time flag FT, ZT whether k is defined, and m a Tag of the element type M
template <typename T, typename F>
void with_flag_keep_type(bool flag, const Tensor& k, F&& f) {
  with_flag(flag, [&](auto FT) {
    if (!k.defined()) f(FT, std::false_type{}, Tag<T>{});
    else if (is_mask(k)) f(FT, std::true_type{}, Tag<uint8_t>{});
    else f(FT, std::true_type{}, Tag<T>{});
  });
}

// the same for the two slots (h, c) of a two-state cell: f(KH, KC, kh, kc), both Keep<M> with one M
// (uint8_t where every given factor is a byte mask; a byte mask beside a float factor is read as T)
template <typename T, typename F>
void with_keeps(const c10::optional<Tensor>& kh, const c10::optional<Tensor>& kc, int64_t T_, int64_t B, int64_t H,
                F&& f) {
  const bool h = kh.has_value(), c = kc.has_value();
  if (!h && !c) return f(std::false_type{}, std::false_type{}, Keep<T>{}, Keep<T>{});
  const auto call = [&](const auto& a, const auto& b) {
    if (h && c) f(std::true_type{}, std::true_type{}, a, b);
    else if (h) f(std::true_type{}, std::false_type{}, a, b);
    else f(std::false_type{}, std::true_type{}, a, b);
  };
  if ((!h || is_mask(kh)) && (!c || is_mask(kc))) {
    const auto as_m = [&](const c10::optional<Tensor>& k) { return k ? keep<uint8_t>(*k, T_, B, H) : Keep<uint8_t>{}; };
    return call(as_m(kh), as_m(kc));
  }
  const auto as_t = [&](const c10::optional<Tensor>& k) {
    if (!k) return Keep<T>{};
    return keep<T>(is_mask(*k) ? k->to(c10::CppTypeToScalarType<T>::value) : *k, T_, B, H);
  };
  call(as_t(kh), as_t(kc));
}

// torch.lerp's formula (exact at weight 0 and 1, the values of a training mask). Both arms are
// computed and one selected, which -fno-trapping-math (native/__init__.py) lets GCC vectorize as a
// blend: a branch on a random mask or a GRU gate mispredicts about half the time
template <typename T>
inline T lerp(T start, T end, T w) {
  const T d = end - start;
  const T lo = start + w * d, hi = end - d * (T(1) - w);
  return w < T(0.5) ? lo : hi;
}

// the tail of a tanh RNN step (RNN, mRNN), after ĥ = tanh(pre): h_t = lerp(ĥ, h_{t−1}, k), and
// with GRAD the backward's factor a = (1 − k)(1 − ĥ²)
template <typename T, bool K, bool GRAD, typename M>
void tanh_step(const T* __restrict__ hn, const T* __restrict__ h, T* __restrict__ h_out, T* __restrict__ a,
               const M* __restrict__ k, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (GRAD) a[i] = K ? (T(1) - hn[i] * hn[i]) * (T(1) - T(k[i])) : T(1) - hn[i] * hn[i];
    if (K) h_out[i] = lerp(hn[i], h[i], T(k[i]));
  }
}

// and its backward step: d = D + dy_t; dpre = a_t d into `out` (B rows of `ld` values, the
// first H written); kD = k_t d (D_{t−1} = dpre W_hh + kD follows in ATen)
template <typename T, bool K, bool DY, typename M>
void tanh_back(const T* __restrict__ D, const T* __restrict__ dy, const T* __restrict__ a, T* __restrict__ out,
               int64_t ld, T* __restrict__ kD, const M* __restrict__ k, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      const T d = DY ? D[i] + dy[i] : D[i];
      out[b * ld + j] = d * a[i];
      if (K) kD[i] = T(k[i]) * d;
    }
}

// the VC cells' state-lerp weight: e, or with zoneout e' = (1 − k) ⊙ e (k: zoneout's keep factor), kept in *ez
template <bool Z, typename T, typename M>
inline T vc_weight(T e, const M* k, T* ez) {
  if (!Z) return e;
  const T w = e * (T(1) - T(*k));
  *ez = w;
  return w;
}

// the multiplicative cells' factor m = xp_m ⊙ mh (xp rows of P values, xp_m its first H)
template <typename T>
void factor_m(const T* __restrict__ xp, const T* __restrict__ mh, T* __restrict__ m, int64_t B, int64_t H,
              int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) m[b * H + j] = xp[b * P + j] * mh[b * H + j];
}

// and its backward: d(xp_m) = dm ⊙ mh (dxp's first H columns), d(W_mh h) = dm ⊙ xp_m
template <typename T>
void factor_dm(const T* __restrict__ dm, const T* __restrict__ mh, const T* __restrict__ xp, T* __restrict__ dxp,
               T* __restrict__ dmh, int64_t B, int64_t H, int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      dxp[b * P + j] = dm[k] * mh[k];
      dmh[k] = dm[k] * xp[b * P + j];
    }
}

// one backward step of the multiplicative cells after the step's own pass has filled dx (rows
// [x_m, pre]): dm = ∂pre · W (W: the weight m multiplies), then d(xp_m) and d(W_mh h) (factor_dm),
// and ∂h_{t−1} = kD + d(W_mh h) · W_mh into D (KEEP: zoneout's kept share kD; else 0)
template <typename T, bool KEEP>
void factor_back(const Tensor& dx, Tensor& dm, const Tensor& dmh, Tensor& D, const Tensor& kD,
                 const Tensor& w, const Tensor& w_mh, const T* mh, const T* xp, int64_t H, int64_t P) {
  gemm::mm_out(dm, dx.narrow(1, H, P - H), w);
  factor_dm<T>(dm.data_ptr<T>(), mh, xp, dx.data_ptr<T>(), dmh.data_ptr<T>(), dx.size(0), H, P);
  if (KEEP) gemm::addmm_out(D, kD, dmh, w_mh);
  else gemm::mm_out(D, dmh, w_mh);
}

// the multiplicative cells' backward loop over each thread's rows (for_batch), t = T − 1 … 0:
// step(t, r, n, D, dx, kD) — row offset r = b0·H, n rows — writes the step's own part of dx's
// rows (the cell's pre-activations) and, with KEEP, kD; factor_back then completes the step. xp
// [T, B, P] with x_m its first H columns, w the weight m multiplies; fills dxp and dmh, and D
// ends as dL/dh_0
template <typename T, bool KEEP, typename Step>
void factor_loop(const Tensor& xp, const Tensor& mh, const Tensor& w, const Tensor& w_mh, const Tensor& dxp,
                 const Tensor& dmh, Tensor& D, int64_t H, const Step& step) {
  const int64_t T_ = xp.size(0), B = xp.size(1), P = xp.size(2), BH = B * H;
  Tensor dm = at::empty({B, H}, xp.options()), kD = at::empty({B, H}, xp.options());
  const auto dxp_ = dxp.unbind(0), dmh_ = dmh.unbind(0);
  for_batch(B, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0, r = b0 * H;
    Tensor D_r = D.narrow(0, b0, n), dm_r = dm.narrow(0, b0, n);
    const Tensor kD_r = kD.narrow(0, b0, n);
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const Tensor dx_r = dxp_[t].narrow(0, b0, n), dmh_r = dmh_[t].narrow(0, b0, n);
      step(t, r, n, D_r.data_ptr<T>(), dx_r.data_ptr<T>(), kD_r.data_ptr<T>());
      factor_back<T, KEEP>(dx_r, dm_r, dmh_r, D_r, kD_r, w, w_mh, mh.data_ptr<T>() + t * BH + r,
                           xp.data_ptr<T>() + (t * B + b0) * P, H, P);
    }
  });
}

// a weight's gradient dY^T X ([N, K] from dY [M, N], X [M, K] over M = T·B rows), formed as
// (X^T dY)^T: MKL runs that layout 15–30 % faster here (the VC kernels' Python side does the same)
inline Tensor wgrad(const Tensor& dY, const Tensor& X) { return gemm::mm(X.t(), dY).t().contiguous(); }

// f(std::bool_constant<a>{}, std::bool_constant<b>{}): the loops take zoneout's presence, grad or
// dy as template parameters, so the compiler drops their branches
template <typename F>
void with_flags(bool a, bool b, F&& f) {
  if (a && b) f(std::true_type{}, std::true_type{});
  else if (a) f(std::true_type{}, std::false_type{});
  else if (b) f(std::false_type{}, std::true_type{});
  else f(std::false_type{}, std::false_type{});
}

}  // namespace
