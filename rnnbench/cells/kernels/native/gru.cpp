// The GRU's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/gru.py (gate order r, z, n; zoneout keep factor k), with the time loop
// here and each step's element-wise work in a few passes over B x H. GEMMs and the
// transcendental functions stay in ATen (BLAS; vectorized sigmoid/tanh).
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

// x_rz + hp_rz into rz (then σ in ATen)
template <typename T>
void gru_pre_rz(const T* __restrict__ xp, const T* __restrict__ hp, T* __restrict__ rz, int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < 2 * H; ++j) rz[b * 2 * H + j] = xp[b * G + j] + hp[b * G + j];
}

// 2 (x_n + r hp_n) into n: tanh = 2σ(2x) − 1 (σ in ATen next; its float tanh costs ≈ 5× σ)
template <typename T>
void gru_pre_n(const T* __restrict__ xp, const T* __restrict__ hp, const T* __restrict__ rz, T* __restrict__ n,
               int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) n[b * H + j] = T(2) * (xp[b * G + 2 * H + j] + rz[b * 2 * H + j] * hp[b * G + 2 * H + j]);
}

// n = 2σ − 1 (written back), h_t = lerp(n, h_{t−1}, z), then zoneout's lerp toward h_{t−1}; with GRAD the backward factors
// from dh_t to [pre_r, pre_z, hp_n] (coef) and to pre_n (a), and z' = z (1 − k) + k in place
template <typename T, bool K, bool GRAD, typename M>
void gru_step(const T* __restrict__ hp, T* __restrict__ rz, T* __restrict__ n, const T* __restrict__ h,
              T* __restrict__ h_out, T* __restrict__ coef, T* __restrict__ a, const M* __restrict__ k_, int64_t B,
              int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict__ r = rz + b * 2 * H;
    T* __restrict__ z = r + H;
    const T* __restrict__ hn = hp + b * G + 2 * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      const T nv = T(2) * n[i] - T(1);
      n[i] = nv;
      const T hnew = lerp(nv, h[i], z[j]);
      const T k = K ? T(k_[i]) : T(0);
      h_out[i] = K ? lerp(hnew, h[i], k) : hnew;
      if (GRAD) {
        const T ak = T(1) - k;
        const T n2 = nv * nv;
        T ai = T(1) - z[j] - (n2 - z[j] * n2);  // (1 − z)(1 − n²)
        if (K) ai *= ak;
        a[i] = ai;
        T* __restrict__ c = coef + b * G;
        c[j] = (r[j] - r[j] * r[j]) * ai * hn[j];  // dL/d(pre_r) = dh a hp_n σ'(r)
        T cz = (z[j] - z[j] * z[j]) * (h[i] - nv);  // dL/d(pre_z) = dh (h_{t−1} − n) σ'(z)
        if (K) {
          cz *= ak;
          z[j] = z[j] * ak + k;  // z': dh_{t−1} = dh z'
        }
        c[H + j] = cz;
        c[2 * H + j] = ai * r[j];  // dL/d(hp_n) = dh a r
      }
    }
  }
}

// D_t = dh + dy_t; dhp_t = D_t coef_t; tmp = D_t z'_t (dh_{t−1} = tmp + dhp_t W_hh follows in ATen)
template <typename T, bool DY>
void gru_back(const T* __restrict__ dh, const T* __restrict__ dy, T* __restrict__ D, const T* __restrict__ coef,
              T* __restrict__ dhp, const T* __restrict__ rz, T* __restrict__ tmp, int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ c = coef + b * G;
    T* __restrict__ o = dhp + b * G;
    const T* __restrict__ z = rz + b * 2 * H + H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      const T d = DY ? dh[i] + dy[i] : dh[i];
      D[i] = d;
      o[j] = d * c[j];
      o[H + j] = d * c[H + j];
      o[2 * H + j] = d * c[2 * H + j];
      tmp[i] = d * z[j];
    }
  }
}

}  // namespace

// Returns {hs [T+1, B, H], rz (r, z' activated) [T, B, 2H], coef [T, B, 3H], a [T, B, H]};
// coef and a are empty without grad.
std::vector<Tensor> gru_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_hh, const Tensor& b_hh,
                                const c10::optional<Tensor>& k_, bool grad) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), H = G / 3;
  const Tensor wt = w_hh.t().contiguous();  // the faster GEMM layout per step
  Tensor hp = at::empty({T, B, G}, xp.options());
  Tensor rz = at::empty({T, B, 2 * H}, xp.options());
  Tensor n = at::empty({T, B, H}, xp.options());
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor coef = grad ? at::empty({T, B, G}, xp.options()) : at::empty({0}, xp.options());
  Tensor a = grad ? at::empty({T, B, H}, xp.options()) : at::empty({0}, xp.options());
  auto hp_ = hp.unbind(0), rz_ = rz.unbind(0), n_ = n.unbind(0), h_ = hs.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
    using S = scalar_t;
    const int64_t BH = B * H, BG = B * G;
    with_keep_flag<S>(k_, T, B, H, grad, [&](auto KT, auto GT, const auto& k) {
      constexpr bool KK = decltype(KT)::value, GG = decltype(GT)::value;
      for_batch(B, [&](int64_t b0, int64_t b1) {
        const int64_t m = b1 - b0, r = b0 * H, rg = b0 * G;
        for (int64_t t = 0; t < T; ++t) {
          Tensor hp_r = hp_[t].narrow(0, b0, m);
          gemm::addmm_out(hp_r, b_hh, h_[t].narrow(0, b0, m), wt);
          const S* x = xp.data_ptr<S>() + t * BG + rg;
          const S* hpt = hp_[t].data_ptr<S>() + rg;
          S* rzt = rz_[t].data_ptr<S>() + 2 * r;
          S* nt = n_[t].data_ptr<S>() + r;
          gru_pre_rz<S>(x, hpt, rzt, m, H);
          rz_[t].narrow(0, b0, m).sigmoid_();
          gru_pre_n<S>(x, hpt, rzt, nt, m, H);
          n_[t].narrow(0, b0, m).sigmoid_();
          gru_step<S, KK, GG>(hpt, rzt, nt, h_[t].data_ptr<S>() + r, h_[t + 1].data_ptr<S>() + r,
                              GG ? coef.data_ptr<S>() + t * BG + rg : nullptr, GG ? a.data_ptr<S>() + t * BH + r : nullptr,
                              KK ? k.row(t) + r : nullptr, m, H);
        }
      });
    });
  });
  return {hs, rz, coef, a};
}

// Returns {dxp, dh0, dw_hh, db_hh}.
std::vector<Tensor> gru_backward(const Tensor& coef, const Tensor& a, const Tensor& rz, const Tensor& hs,
                                 const Tensor& w_hh, const c10::optional<Tensor>& dy_,
                                 const c10::optional<Tensor>& dhT_) {
  const int64_t T = a.size(0), B = a.size(1), H = a.size(2), G = 3 * H;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dhp = at::empty({T, B, G}, a.options());  // dL/d(W_hh h + b_hh)
  Tensor D = at::empty_like(a);                     // dL/dh_t (total)
  Tensor dh = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, a.options());
  Tensor tmp = at::empty({B, H}, a.options());
  auto dhp_ = dhp.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gru_backward", [&] {
    using S = scalar_t;
    const int64_t BH = B * H, BG = B * G;
    for_batch(B, [&](int64_t b0, int64_t b1) {
      const int64_t m = b1 - b0, r = b0 * H, rg = b0 * G;
      Tensor dh_r = dh.narrow(0, b0, m);
      const Tensor tmp_r = tmp.narrow(0, b0, m);
      S* dht = dh.data_ptr<S>() + r;
      S* tmpp = tmp.data_ptr<S>() + r;
      for (int64_t t = T - 1; t >= 0; --t) {
        const S* c = coef.data_ptr<S>() + t * BG + rg;
        const S* z = rz.data_ptr<S>() + t * 2 * BH + 2 * r;
        S* Dt = D.data_ptr<S>() + t * BH + r;
        S* dhpt = dhp_[t].data_ptr<S>() + rg;
        if (dy.defined())
          gru_back<S, true>(dht, dy.data_ptr<S>() + t * BH + r, Dt, c, dhpt, z, tmpp, m, H);
        else
          gru_back<S, false>(dht, nullptr, Dt, c, dhpt, z, tmpp, m, H);
        gemm::addmm_out(dh_r, tmp_r, dhp_[t].narrow(0, b0, m), w_hh);
      }
    });
  });
  Tensor dxp = at::cat({dhp.narrow(2, 0, 2 * H), D.mul_(a)}, -1);
  const Tensor dhp2 = dhp.view({T * B, G});
  Tensor dw = wgrad(dhp2, hs.narrow(0, 0, T).reshape({T * B, H}));
  return {dxp, dh, dw, dhp2.sum(0)};
}
