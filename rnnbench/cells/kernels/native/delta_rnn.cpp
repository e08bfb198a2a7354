// The Delta-RNN's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/delta_rnn.py (xp = [a, b, r], outer activation Φ, zoneout keep factor k),
// with the time loop here. The GEMMs and the tanh stay in ATen (BLAS; vectorized tanh).
#include <ATen/ATen.h>

#include <string>
#include <type_traits>
#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

enum Outer { TANH = 0, RELU = 1, IDENTITY = 2 };

Outer outer_of(const std::string& s) {
  if (s == "tanh") return TANH;
  if (s == "relu") return RELU;
  TORCH_CHECK(s == "identity", "outer activation must be tanh, relu or identity, not ", s);
  return IDENTITY;
}

// b + vh a into z (then tanh in ATen); a, b are rows of xp [B, 3H]
template <typename T>
void delta_pre_z(const T* __restrict__ xp, const T* __restrict__ vh, T* __restrict__ z, int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      z[i] = xp[b * G + H + j] + vh[i] * xp[b * G + j];
    }
}

// lerp(z, h_{t−1}, r) into h_out (Φ = tanh follows in ATen)
template <typename T>
void delta_lerp(const T* __restrict__ xp, const T* __restrict__ z, const T* __restrict__ h, T* __restrict__ h_out,
                int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      h_out[i] = lerp(z[i], h[i], xp[b * G + 2 * H + j]);
    }
}

// h_t = Φ(lerp(z, h_{t−1}, r)) (already in h_out for tanh), then zoneout's lerp toward h_{t−1};
// with GRAD the factors from dL/dh_t to pre_z (pz), vh (qa), h_{t−1} directly (rr) and r (w)
template <typename T, int OUT, bool K, bool GRAD, typename M>
void delta_step(const T* __restrict__ xp, const T* __restrict__ z, const T* __restrict__ h, T* __restrict__ h_out,
                T* __restrict__ pz, T* __restrict__ qa, T* __restrict__ rr, T* __restrict__ w,
                const M* __restrict__ k_, int64_t B, int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      const T r = xp[b * G + 2 * H + j];
      const T k = K ? T(k_[i]) : T(0);
      T hn;
      if (OUT == TANH) hn = h_out[i];
      else if (OUT == RELU) { const T u = lerp(z[i], h[i], r); hn = u < T(0) ? T(0) : u; }  // NaN passes, as torch.relu
      else hn = lerp(z[i], h[i], r);
      if (GRAD) {
        // Φ' = 1 − h² (tanh), 1[h > 0] (as torch.relu's backward), 1; times 1 − k under zoneout
        T dphi = OUT == TANH ? T(1) - hn * hn : OUT == RELU ? T(hn > T(0)) : T(1);
        if (K) dphi *= T(1) - k;
        T p = (T(1) - z[i] * z[i]) * dphi;
        p = p - p * r;  // · (1 − r)
        pz[i] = p;
        qa[i] = p * xp[b * G + j];
        rr[i] = K ? dphi * r + k : dphi * r;
        w[i] = (h[i] - z[i]) * dphi;
      }
      h_out[i] = K ? lerp(hn, h[i], k) : hn;
    }
}

// D_t = dh + dy_t; dvh_t = D_t qa_t; tmp = D_t rr_t (dh_{t−1} = tmp + dvh_t V follows in ATen);
// dxp_t = [D pz vh, D pz, D w]
template <typename T, bool DY>
void delta_back(const T* __restrict__ dh, const T* __restrict__ dy, const T* __restrict__ pz,
                const T* __restrict__ qa, const T* __restrict__ rr, const T* __restrict__ w,
                const T* __restrict__ vh, T* __restrict__ dvh, T* __restrict__ tmp, T* __restrict__ dxp, int64_t B,
                int64_t H) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict__ o = dxp + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t i = b * H + j;
      const T d = DY ? dh[i] + dy[i] : dh[i];
      dvh[i] = d * qa[i];
      tmp[i] = d * rr[i];
      const T db = d * pz[i];
      o[j] = db * vh[i];
      o[H + j] = db;
      o[2 * H + j] = d * w[i];
    }
  }
}

// f(std::integral_constant<int, Φ>{}): Φ as a template parameter, switched once outside the loop
template <typename F>
void with_outer(Outer o, F&& f) {
  if (o == TANH) f(std::integral_constant<int, TANH>{});
  else if (o == RELU) f(std::integral_constant<int, RELU>{});
  else f(std::integral_constant<int, IDENTITY>{});
}

}  // namespace

// Returns {hs [T+1, B, H], vh [T, B, H], F [4, T, B, H] = (pz, qa, rr, w)}; vh and F are empty
// without grad.
std::vector<Tensor> delta_rnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& v, const std::string& outer,
                                      const c10::optional<Tensor>& k_, bool grad) {
  const Tensor xp = xp_.contiguous();
  const Outer o = outer_of(outer);
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), H = G / 3, BH = B * H, BG = B * G;
  const Tensor vt = v.t().contiguous();  // the faster GEMM layout per step
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor vh = grad ? at::empty({T, B, H}, xp.options()) : at::empty({0}, xp.options());
  Tensor vh1 = at::empty({B, H}, xp.options());  // the step's vh without grad
  Tensor z = at::empty({B, H}, xp.options());
  Tensor F = grad ? at::empty({4, T, B, H}, xp.options()) : at::empty({0}, xp.options());
  auto h_ = hs.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "delta_rnn_forward", [&] {
    using S = scalar_t;
    S* Fp = grad ? F.data_ptr<S>() : nullptr;
    const int64_t TBH = T * BH;
    with_outer(o, [&](auto OT) {
      constexpr int OO = decltype(OT)::value;
      with_keep_flag<S>(k_, T, B, H, grad, [&](auto KT, auto GT, const auto& k) {
        constexpr bool KK = decltype(KT)::value, GG = decltype(GT)::value;
        for_batch(B, [&](int64_t b0, int64_t b1) {
          const int64_t n = b1 - b0, r = b0 * H;
          const Tensor z_r = z.narrow(0, b0, n);
          S* zp = z_r.data_ptr<S>();
          for (int64_t t = 0; t < T; ++t) {
            Tensor vht = (GG ? vh[t] : vh1).narrow(0, b0, n);
            gemm::mm_out(vht, h_[t].narrow(0, b0, n), vt);
            const S* x = xp.data_ptr<S>() + t * BG + 3 * r;
            const S* hp = h_[t].data_ptr<S>() + r;
            S* hn = h_[t + 1].data_ptr<S>() + r;
            delta_pre_z<S>(x, vht.data_ptr<S>(), zp, n, H);
            z_r.tanh_();
            if (OO == TANH) {
              delta_lerp<S>(x, zp, hp, hn, n, H);
              h_[t + 1].narrow(0, b0, n).tanh_();
            }
            S* f = GG ? Fp + t * BH + r : nullptr;
            delta_step<S, OO, KK, GG>(x, zp, hp, hn, f, GG ? f + TBH : nullptr, GG ? f + 2 * TBH : nullptr,
                                      GG ? f + 3 * TBH : nullptr, KK ? k.row(t) + r : nullptr, n, H);
          }
        });
      });
    });
  });
  return {hs, vh, F};
}

// Returns {dxp [T, B, 3H], dh0, dv}.
std::vector<Tensor> delta_rnn_backward(const Tensor& F, const Tensor& vh, const Tensor& hs, const Tensor& v,
                                       const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_) {
  const int64_t T = vh.size(0), B = vh.size(1), H = vh.size(2), BH = B * H, G = 3 * H;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dxp = at::empty({T, B, G}, vh.options());
  Tensor dvh = at::empty_like(vh);
  Tensor dh = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, vh.options());
  Tensor tmp = at::empty({B, H}, vh.options());
  auto dvh_ = dvh.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(vh.scalar_type(), "delta_rnn_backward", [&] {
    using S = scalar_t;
    const S* Fp = F.data_ptr<S>();
    const int64_t TBH = T * BH;
    for_batch(B, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0, r = b0 * H;
      Tensor dh_r = dh.narrow(0, b0, n);
      const Tensor tmp_r = tmp.narrow(0, b0, n);
      for (int64_t t = T - 1; t >= 0; --t) {
        const S* f = Fp + t * BH + r;
        const Tensor dvh_r = dvh_[t].narrow(0, b0, n);
        auto step = [&](auto DT) {
          delta_back<S, decltype(DT)::value>(dh_r.data_ptr<S>(),
                                             decltype(DT)::value ? dy.data_ptr<S>() + t * BH + r : nullptr, f,
                                             f + TBH, f + 2 * TBH, f + 3 * TBH, vh.data_ptr<S>() + t * BH + r,
                                             dvh_r.data_ptr<S>(), tmp_r.data_ptr<S>(),
                                             dxp.data_ptr<S>() + t * B * G + 3 * r, n, H);
        };
        if (dy.defined()) step(std::true_type{});
        else step(std::false_type{});
        gemm::addmm_out(dh_r, tmp_r, dvh_r, v);
      }
    });
  });
  Tensor dv = wgrad(dvh.view({T * B, H}), hs.narrow(0, 0, T).reshape({T * B, H}));
  return {dxp, dh, dv};
}
