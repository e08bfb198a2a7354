// The LSTM's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/lstm.py (gate order o, i, f, g; zoneout keep factors kh, kc), with the
// time loop here instead of in Python and each step's element-wise work in one pass over B x H.
// GEMMs and the transcendental functions stay in ATen (BLAS; vectorized sigmoid/tanh). One
// difference of layout: the backward's factors P, q are formed in the backward step from the saved
// gates, tanh(ĉ) and c_{t−1} (the Python loop stores them in the forward: there, a pass of its own).
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

// tanh through σ, tanh(x) = 2σ(2x) − 1: ATen's float tanh costs ≈ 5× its sigmoid. The g rows of
// the weights are doubled (exact), so one σ covers all four gates; g = 2σ − 1 is written back.
// ĉ_t = f c_{t−1} + i g over one step, and t2 = 2ĉ for the σ that gives tanh(ĉ)
template <typename T>
void cell_c(T* __restrict__ gates, const T* __restrict__ cp, T* __restrict__ cn, T* __restrict__ t2, int64_t B,
            int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ i = gates + b * G + H;
    const T* __restrict__ f = i + H;
    T* __restrict__ g = gates + b * G + 3 * H;
    const T* __restrict__ c = cp + b * H;
    T* __restrict__ o = cn + b * H;
    T* __restrict__ u = t2 + b * H;
    for (int64_t j = 0; j < H; ++j) {
      const T gj = T(2) * g[j] - T(1);
      g[j] = gj;
      const T cj = f[j] * c[j] + i[j] * gj;
      o[j] = cj;
      u[j] = T(2) * cj;
    }
  }
}

// the rest of one forward step, given tc = σ(2ĉ) (made tanh(ĉ) here, and with GRAD written back
// for the backward): c_t and h_t (zoneout: lerp toward the previous values). The backward forms its
// factors from the gates, tanh(ĉ) and c_{t−1} (cell_bwd): storing them here instead wrote five
// floats per unit and step, a 128 MB stream at long, that the backward then read back
template <typename T, bool KH, bool KC, bool GRAD, typename M>
void cell_fwd(const T* __restrict__ gates, const T* __restrict__ cp, const T* __restrict__ hp,
              T* __restrict__ tc2, const T* __restrict__ cn, T* __restrict__ c_out, T* __restrict__ h_out,
              const M* __restrict__ kh, const M* __restrict__ kc, int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = b * H;
    const T* __restrict__ o = gates + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = r + j;
      const T tc = T(2) * tc2[k] - T(1);
      if (GRAD) tc2[k] = tc;
      const T hn = o[j] * tc;
      h_out[k] = KH ? lerp(hn, hp[k], T(kh[k])) : hn;
      if (KC) c_out[k] = lerp(cn[k], cp[k], T(kc[k]));
    }
  }
}

// one backward step, after dh_t = dy_t + dgates_{t+1} W_hh (LAST: t = T − 1, no step after):
//   Dh_t += kh_{t+1} Dh_{t+1};  Dc_t = kc_{t+1} Dc_{t+1} + f_{t+1} dĉ_{t+1}
//   dĉ_t = (1 − kc_t) Dc_t + q_t Dh_t;  dgates_t = [Dh_t p_o, dĉ_t p_i, dĉ_t p_f, dĉ_t p_g]
// with the factors formed from step t's gates, tc = tanh(ĉ_t) and c_{t−1} (1 − kh folded into p_o, q):
//   p_o = σ'(o) tc (1 − kh), p_i = σ'(i) g, p_f = σ'(f) c_{t−1}, p_g = i (1 − g²),
//   q = o (1 − tc²) (1 − kh)
template <typename T, bool KH, bool KC, bool LAST, typename M>
void cell_bwd(T* __restrict__ dh, const T* __restrict__ dh_next, T* __restrict__ Dc, T* __restrict__ dc,
              const T* __restrict__ g_next, const T* __restrict__ gates, const T* __restrict__ tcp,
              const T* __restrict__ cp, T* __restrict__ dg, const M* __restrict__ kh, const M* __restrict__ kh_next,
              const M* __restrict__ kc_next, const M* __restrict__ kc, int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = b * H;
    const T* __restrict__ o = gates + b * G;
    const T* __restrict__ i = o + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ g = f + H;
    const T* __restrict__ fn = LAST ? nullptr : g_next + b * G + 2 * H;
    T* __restrict__ out = dg + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = r + j;
      T Dk = Dc[k];
      if (!LAST) {
        if (KH) dh[k] += T(kh_next[k]) * dh_next[k];
        Dk = KC ? Dk * T(kc_next[k]) + fn[j] * dc[k] : fn[j] * dc[k];  // dc holds dĉ_{t+1}
        Dc[k] = Dk;
      }
      const T akh = KH ? T(1) - T(kh[k]) : T(1);
      const T tc = tcp[k];
      const T q = (o[j] - o[j] * (tc * tc)) * akh;
      const T d = (KC ? Dk * (T(1) - T(kc[k])) : Dk) + dh[k] * q;
      dc[k] = d;
      out[j] = dh[k] * ((o[j] - o[j] * o[j]) * tc * akh);
      out[H + j] = d * ((i[j] - i[j] * i[j]) * g[j]);
      out[2 * H + j] = d * ((f[j] - f[j] * f[j]) * cp[k]);
      out[3 * H + j] = d * (i[j] - i[j] * (g[j] * g[j]));
    }
  }
}

// the gate pre-activations b + x W_ih^T for a few input features (pixel MNIST: I = 1) in one pass
// over the [T B, 4H] slab: through BLAS a rank-I update is a copy of the broadcast bias, then a
// GER over it (with the g columns' doubling then done after, ≈ 25 ms of a 784-step forward)
constexpr int64_t kSmallInput = 8;

template <typename T>
void small_projection(const T* __restrict__ x, const T* __restrict__ wt, const T* __restrict__ b,
                      T* __restrict__ out, int64_t R, int64_t I, int64_t G) {
  at::parallel_for(0, R, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* __restrict__ o = out + r * G;
      const T* __restrict__ xr = x + r * I;
      for (int64_t j = 0; j < G; ++j) o[j] = b[j] + xr[0] * wt[j];
      for (int64_t k = 1; k < I; ++k)
        for (int64_t j = 0; j < G; ++j) o[j] += xr[k] * wt[k * G + j];
    }
  });
}

// tc: per-step scratch [B, H] without grad; with grad [T, B, H], each step's row left holding tanh(ĉ_t)
template <typename T, bool KH, bool KC, typename M>
void forward_loop(const std::vector<Tensor>& g_, const std::vector<Tensor>& h_, const std::vector<Tensor>& c_,
                  const Tensor& wt, const Tensor& c_hat, const Tensor& tc, const Keep<M>& kh, const Keep<M>& kc,
                  bool grad, int64_t T_, int64_t B, int64_t H) {
  const int64_t BH = B * H, G = 4 * H;
  auto fwd = grad ? &cell_fwd<T, KH, KC, true, M> : &cell_fwd<T, KH, KC, false, M>;
  T* tcp = tc.data_ptr<T>();
  for_batch(B, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0, r = b0 * H, rg = b0 * G;
    for (int64_t t = 0; t < T_; ++t) {
      const Tensor gr = g_[t].narrow(0, b0, n);
      gemm::addmm_out(gr, gr, h_[t].narrow(0, b0, n), wt);
      gr.sigmoid_();  // σ(o), σ(i), σ(f), σ(2 pre_g)
      T* g = g_[t].data_ptr<T>() + rg;
      const T* cp = c_[t].data_ptr<T>() + r;
      const T* hp = h_[t].data_ptr<T>() + r;
      T* cn = (KC ? c_hat : c_[t + 1]).data_ptr<T>() + r;
      T* c_out = c_[t + 1].data_ptr<T>() + r;
      T* h_out = h_[t + 1].data_ptr<T>() + r;
      const int64_t tr = (grad ? t * BH : 0) + r;  // this step's tc rows
      cell_c<T>(g, cp, cn, tcp + tr, n, H);
      at::from_blob(tcp + tr, {n * H}, tc.options()).sigmoid_();  // σ(2ĉ)
      fwd(g, cp, hp, tcp + tr, cn, c_out, h_out, KH ? kh.row(t) + r : nullptr, KC ? kc.row(t) + r : nullptr, n, H);
    }
  });
}

// cs: the c states [T + 1, B, H]; tc: tanh(ĉ_t) [T, B, H]
template <typename T, bool KH, bool KC, typename M>
void backward_loop(const Tensor& gates, const Tensor& cs, const Tensor& tc, const Tensor& w_hh, const Tensor& dy,
                   std::vector<Tensor>& dg_, std::vector<Tensor>& dh_, const Tensor& Dc, const Tensor& dc,
                   const Keep<M>& kh, const Keep<M>& kc) {
  const int64_t T_ = gates.size(0), B = gates.size(1), H = gates.size(2) / 4, BH = B * H, G = 4 * H, BG = 4 * BH;
  std::vector<Tensor> dy_t;
  if (dy.defined()) dy_t = dy.unbind(0);
  const T* gp = gates.data_ptr<T>();
  const T* csp = cs.data_ptr<T>();
  const T* tcp = tc.data_ptr<T>();
  T* Dcp = Dc.data_ptr<T>();
  T* dcp = dc.data_ptr<T>();
  for_batch(B, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0, r = b0 * H, rg = b0 * G;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      T* dh = dh_[t].data_ptr<T>() + r;
      T* dg = dg_[t].data_ptr<T>() + rg;
      const M* kh_t = KH ? kh.row(t) + r : nullptr;
      const M* kc_t = KC ? kc.row(t) + r : nullptr;
      const T* g_t = gp + t * BG + rg;
      const T* tc_t = tcp + t * BH + r;
      const T* c_prev = csp + t * BH + r;  // c_{t−1}: cs[t]
      if (t == T_ - 1) {
        cell_bwd<T, KH, KC, true, M>(dh, nullptr, Dcp + r, dcp + r, nullptr, g_t, tc_t, c_prev, dg, kh_t, nullptr,
                                     nullptr, kc_t, n, H);
        continue;
      }
      Tensor dh_r = dh_[t].narrow(0, b0, n);
      const Tensor dg_r = dg_[t + 1].narrow(0, b0, n);
      if (dy.defined()) gemm::addmm_out(dh_r, dy_t[t].narrow(0, b0, n), dg_r, w_hh);
      else gemm::mm_out(dh_r, dg_r, w_hh);
      cell_bwd<T, KH, KC, false, M>(dh, dh_[t + 1].data_ptr<T>() + r, Dcp + r, dcp + r, gp + (t + 1) * BG + rg, g_t,
                                    tc_t, c_prev, dg, kh_t, KH ? kh.row(t + 1) + r : nullptr,
                                    KC ? kc.row(t + 1) + r : nullptr, kc_t, n, H);
    }
  });
}

}  // namespace

// Returns {hs [T+1, B, H], cs [T+1, B, H], gates (activated), tc = tanh(ĉ) [T, B, H] (empty without grad)}.
std::vector<Tensor> lstm_forward(const Tensor& x, const Tensor& w_ih, const Tensor& b, const Tensor& h0,
                                 const Tensor& c0, const Tensor& w_hh, const c10::optional<Tensor>& kh_,
                                 const c10::optional<Tensor>& kc_, bool grad) {
  const int64_t T = x.size(0), B = x.size(1), G = w_hh.size(0), H = G / 4;
  const int64_t I = x.size(2);
  // 2 pre_g, for tanh = 2σ(2x) − 1 (cell_c), from g's rows doubled in the weights and the bias: × 2
  // is exact, so the product's bits are the doubled ones, with no pass over the gate slab
  const Tensor wx = w_ih.t().contiguous(), b2 = b.clone();
  wx.narrow(1, 3 * H, H).mul_(2);
  b2.narrow(0, 3 * H, H).mul_(2);
  Tensor gates;
  if (I <= kSmallInput) {
    const Tensor xc = x.contiguous(), bc = b2.contiguous();
    gates = at::empty({T, B, G}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_projection", [&] {
      small_projection<scalar_t>(xc.data_ptr<scalar_t>(), wx.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(),
                                 gates.data_ptr<scalar_t>(), T * B, I, G);
    });
  } else {
    gates = gemm::addmm(b2, x.reshape({T * B, -1}), wx).view({T, B, G});
  }
  const Tensor wt = w_hh.t().contiguous();  // transposed once: the faster GEMM layout per step
  wt.narrow(1, 3 * H, H).mul_(2);
  Tensor hs = at::empty({T + 1, B, H}, x.options());
  Tensor cs = at::empty({T + 1, B, H}, x.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  Tensor tc = grad ? at::empty({T, B, H}, x.options()) : at::empty({B, H}, x.options());
  Tensor c_hat = at::empty({B, H}, x.options());
  const auto g_ = gates.unbind(0), h_ = hs.unbind(0), c_ = cs.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    using S = scalar_t;
    with_keeps<S>(kh_, kc_, T, B, H, [&](auto KH, auto KC, const auto& kh, const auto& kc) {
      forward_loop<S, decltype(KH)::value, decltype(KC)::value>(g_, h_, c_, wt, c_hat, tc, kh, kc, grad, T, B, H);
    });
  });
  return {hs, cs, gates, grad ? tc : at::empty({0}, x.options())};
}

// Returns {dx (empty unless need_dx), dw_ih, db, dh0, dc0, dw_hh}.
std::vector<Tensor> lstm_backward(const Tensor& x, const Tensor& w_ih, const Tensor& gates, const Tensor& hs,
                                  const Tensor& cs, const Tensor& tc, const Tensor& w_hh,
                                  const c10::optional<Tensor>& kh_, const c10::optional<Tensor>& kc_,
                                  const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_,
                                  const c10::optional<Tensor>& dcT_, bool need_dx) {
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / 4;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dgates = at::empty_like(gates);
  Tensor dh = at::empty({T, B, H}, hs.options());
  if (dy.defined()) dh[T - 1].copy_(dy[T - 1]); else dh[T - 1].zero_();
  if (dhT_.has_value()) dh[T - 1].add_(*dhT_);
  Tensor Dc = dcT_.has_value() ? dcT_->contiguous().clone() : at::zeros({B, H}, hs.options());
  Tensor dc = at::empty({B, H}, hs.options());  // dL/dĉ of the step just done
  auto dg_ = dgates.unbind(0), dh_ = dh.unbind(0);
  Tensor kh0, kc0;  // step 0's factors, for dL/dh_0 and dL/dc_0
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward", [&] {
    using S = scalar_t;
    with_keeps<S>(kh_, kc_, T, B, H, [&](auto KH, auto KC, const auto& kh, const auto& kc) {
      const auto first = [&](const Tensor& k) { return (k.dim() == 3 ? k[0] : k).to(gates.scalar_type()); };
      if (kh.p) kh0 = first(kh.hold);
      if (kc.p) kc0 = first(kc.hold);
      backward_loop<S, decltype(KH)::value, decltype(KC)::value>(gates, cs, tc, w_hh, dy, dg_, dh_, Dc, dc, kh, kc);
    });
  });
  Tensor dh0 = gemm::mm(dg_[0], w_hh);
  if (kh0.defined()) dh0.addcmul_(kh0, dh_[0]);
  const Tensor f0 = gates[0].narrow(1, 2 * H, H);
  Tensor dc0 = kc0.defined() ? Dc.mul_(kc0).addcmul_(f0, dc) : dc.mul_(f0);
  const Tensor dg2 = dgates.view({T * B, G});
  Tensor dw_hh = wgrad(dg2, hs.narrow(0, 0, T).reshape({T * B, H}));
  Tensor dx = need_dx ? gemm::mm(dg2, w_ih).view(x.sizes()) : at::empty({0}, x.options());
  Tensor dw_ih = wgrad(dg2, x.reshape({T * B, -1}));
  return {dx, dw_ih, dg2.sum(0), dh0, dc0, dw_hh};
}
