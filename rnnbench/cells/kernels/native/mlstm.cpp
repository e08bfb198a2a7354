// The multiplicative LSTM's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/mlstm.py (xp = [W_mx x, ĥ, i, f, o] columns; zoneout keep factors kh,
// kc), with the time loop here and each step's element-wise work in a few passes over B x H.
// GEMMs and the transcendental functions stay in ATen (BLAS; vectorized sigmoid/tanh).
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

// ĉ = f c_{t−1} + i ĥ and 2 ĉ ⊙ o (σ in ATen next), given pre = [ĥ, σ(i), σ(f), σ(o)]
template <typename T>
void mlstm_c(const T* __restrict__ pre, const T* __restrict__ cp, T* __restrict__ ch, T* __restrict__ u,
             int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ hh = pre + b * G;
    const T* __restrict__ i = hh + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ o = f + H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T c = f[j] * cp[k] + i[j] * hh[j];
      ch[k] = c;
      u[k] = T(2) * (c * o[j]);  // tanh = 2σ(2x) − 1 (mlstm_fwd): ATen's float tanh costs ≈ 5× σ
    }
  }
}

// the rest of a forward step, given u = σ(2 ĉ ⊙ o) (made tanh(ĉ ⊙ o) here): zoneout's lerps toward the previous state
// and with GRAD the backward factors that do not depend on the recursion, a = (1 − kh)(1 − u²):
// P = [σ'(i) ĥ, σ'(f) c_{t−1}, σ'(o) a ĉ], q = a o
template <typename T, bool KH, bool KC, bool GRAD, typename M>
void mlstm_fwd(const T* __restrict__ pre, const T* __restrict__ cp, const T* __restrict__ hp,
               const T* __restrict__ ch, T* __restrict__ u, T* __restrict__ c_out, T* __restrict__ h_out,
               T* __restrict__ P, T* __restrict__ q, const M* __restrict__ kh, const M* __restrict__ kc, int64_t B,
               int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ hh = pre + b * G;
    const T* __restrict__ i = hh + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ o = f + H;
    T* __restrict__ p = GRAD ? P + b * 3 * H : nullptr;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T uk = T(2) * u[k] - T(1);
      u[k] = uk;  // h_t itself without zoneout
      if (KC) c_out[k] = lerp(ch[k], cp[k], T(kc[k]));
      if (KH) h_out[k] = lerp(uk, hp[k], T(kh[k]));
      if (GRAD) {
        T a = T(1) - uk * uk;
        if (KH) a *= T(1) - T(kh[k]);
        p[j] = (i[j] - i[j] * i[j]) * hh[j];
        p[H + j] = (f[j] - f[j] * f[j]) * cp[k];
        p[2 * H + j] = (o[j] - o[j] * o[j]) * a * ch[k];
        q[k] = a * o[j];
      }
    }
  }
}

// a backward step up to d m: Dh += dy_t; dĉ = (1 − kc) Dc + q Dh; dp = [dĉ i, dĉ p_i, dĉ p_f,
// Dh p_o] (dxp rows of 5H, columns H:); Dc_{t−1} = kc Dc + f dĉ; with KH kD = kh Dh
template <typename T, bool KH, bool KC, bool DY, typename M>
void mlstm_back(T* __restrict__ D, const T* __restrict__ dy, T* __restrict__ dc, const T* __restrict__ pre,
                const T* __restrict__ P, const T* __restrict__ q, T* __restrict__ dxp, T* __restrict__ kD,
                const M* __restrict__ kh, const M* __restrict__ kc, int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ i = pre + b * G + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ p = P + b * 3 * H;
    T* __restrict__ o = dxp + b * 5 * H + H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T d = DY ? D[k] + dy[k] : D[k];
      if (DY) D[k] = d;
      const T dch = (KC ? dc[k] * (T(1) - T(kc[k])) : dc[k]) + q[k] * d;
      o[j] = dch * i[j];
      o[H + j] = dch * p[j];
      o[2 * H + j] = dch * p[H + j];
      o[3 * H + j] = d * p[2 * H + j];
      dc[k] = KC ? dc[k] * T(kc[k]) + f[j] * dch : dch * f[j];
      if (KH) kD[k] = T(kh[k]) * d;
    }
  }
}

}  // namespace

// Returns {hs [T+1, B, H], cs [T+1, B, H], mh, ms [T, B, H], pre [T, B, 4H], P [T, B, 3H], q [T, B, H]};
// P and q are empty without grad.
std::vector<Tensor> mlstm_forward(const Tensor& xp_, const Tensor& h0, const Tensor& c0, const Tensor& w_mh,
                                  const Tensor& w_m, const c10::optional<Tensor>& kh_,
                                  const c10::optional<Tensor>& kc_, bool grad) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 5, BH = B * H;
  const Tensor wmh_t = w_mh.t().contiguous(), wm_t = w_m.t().contiguous();  // the faster GEMM layout
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  Tensor cs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  Tensor mh = at::empty({T, B, H}, xp.options());
  Tensor ms = at::empty({T, B, H}, xp.options());
  Tensor pre = at::empty({T, B, 4 * H}, xp.options());
  Tensor P = grad ? at::empty({T, B, 3 * H}, xp.options()) : at::empty({0}, xp.options());
  Tensor q = grad ? at::empty({T, B, H}, xp.options()) : at::empty({0}, xp.options());
  Tensor c_hat = at::empty({B, H}, xp.options()), u = at::empty({B, H}, xp.options());
  auto h_ = hs.unbind(0), c_ = cs.unbind(0), mh_ = mh.unbind(0), ms_ = ms.unbind(0), pre_ = pre.unbind(0),
             xp_t = xp.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "mlstm_forward", [&] {
    using S = scalar_t;
    with_keeps<S>(kh_, kc_, T, B, H, [&](auto KHT, auto KCT, const auto& kh, const auto& kc) {
      using M = typename std::decay_t<decltype(kh)>::type;
      constexpr bool KH = decltype(KHT)::value, KC = decltype(KCT)::value;
      auto fwd = grad ? &mlstm_fwd<S, KH, KC, true, M> : &mlstm_fwd<S, KH, KC, false, M>;
      for_batch(B, [&](int64_t b0, int64_t b1) {
        const int64_t n = b1 - b0, r = b0 * H;
        for (int64_t t = 0; t < T; ++t) {
          Tensor mh_r = mh_[t].narrow(0, b0, n), pre_r = pre_[t].narrow(0, b0, n);
          const Tensor ms_r = ms_[t].narrow(0, b0, n), x_r = xp_t[t].narrow(0, b0, n);
          gemm::mm_out(mh_r, h_[t].narrow(0, b0, n), wmh_t);
          factor_m<S>(x_r.data_ptr<S>(), mh_r.data_ptr<S>(), ms_r.data_ptr<S>(), n, H, 5 * H);
          gemm::addmm_out(pre_r, x_r.narrow(1, H, 4 * H), ms_r, wm_t);
          const Tensor& un = KH ? u : h_[t + 1];
          const S* pr = pre_r.data_ptr<S>();
          S* chp = (KC ? c_hat : c_[t + 1]).data_ptr<S>() + r;
          S* unp = un.data_ptr<S>() + r;
          pre_r.narrow(1, H, 3 * H).sigmoid_();
          mlstm_c<S>(pr, c_[t].data_ptr<S>() + r, chp, unp, n, H);
          un.narrow(0, b0, n).sigmoid_();
          fwd(pr, c_[t].data_ptr<S>() + r, h_[t].data_ptr<S>() + r, chp, unp, c_[t + 1].data_ptr<S>() + r,
              h_[t + 1].data_ptr<S>() + r, grad ? P.data_ptr<S>() + t * 3 * BH + 3 * r : nullptr,
              grad ? q.data_ptr<S>() + t * BH + r : nullptr, KH ? kh.row(t) + r : nullptr,
              KC ? kc.row(t) + r : nullptr, n, H);
        }
      });
    });
  });
  return {hs, cs, mh, ms, pre, P, q};
}

// Returns {dxp, dh0, dc0, dw_mh, dw_m}.
std::vector<Tensor> mlstm_backward(const Tensor& xp_, const Tensor& mh, const Tensor& ms, const Tensor& pre,
                                   const Tensor& P, const Tensor& q, const Tensor& hs, const Tensor& w_mh,
                                   const Tensor& w_m, const c10::optional<Tensor>& kh_,
                                   const c10::optional<Tensor>& kc_, const c10::optional<Tensor>& dy_,
                                   const c10::optional<Tensor>& dhT_, const c10::optional<Tensor>& dcT_) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 5, BH = B * H;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dxp = at::empty_like(xp);
  Tensor dmh = at::empty({T, B, H}, xp.options());
  Tensor D = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, xp.options());  // dL/dh_t
  Tensor dc = dcT_.has_value() ? dcT_->contiguous().clone() : at::zeros({B, H}, xp.options());  // dL/dc_t
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "mlstm_backward", [&] {
    using S = scalar_t;
    with_keeps<S>(kh_, kc_, T, B, H, [&](auto KHT, auto KCT, const auto& kh, const auto& kc) {
      using M = typename std::decay_t<decltype(kh)>::type;
      constexpr bool KH = decltype(KHT)::value, KC = decltype(KCT)::value;
      auto back = dy.defined() ? &mlstm_back<S, KH, KC, true, M> : &mlstm_back<S, KH, KC, false, M>;
      factor_loop<S, KH>(xp, mh, w_m, w_mh, dxp, dmh, D, H, [&](int64_t t, int64_t r, int64_t n, S* D_r, S* dx,
                                                                 S* kD) {
        back(D_r, dy.defined() ? dy.data_ptr<S>() + t * BH + r : nullptr, dc.data_ptr<S>() + r,
             pre.data_ptr<S>() + t * 4 * BH + 4 * r, P.data_ptr<S>() + t * 3 * BH + 3 * r,
             q.data_ptr<S>() + t * BH + r, dx, kD, KH ? kh.row(t) + r : nullptr, KC ? kc.row(t) + r : nullptr, n, H);
      });
    });
  });
  Tensor dw_m = wgrad(dxp.narrow(2, H, 4 * H).reshape({T * B, 4 * H}), ms.view({T * B, H}));
  Tensor dw_mh = wgrad(dmh.view({T * B, H}), hs.narrow(0, 0, T).reshape({T * B, H}));
  return {dxp, D, dc, dw_mh, dw_m};
}
