// The VC-RNN's whole-sequence forward and BPTT in C++ (Jernite et al. 2017, arXiv 1611.06188):
// the algorithm of rnnbench/cells/kernels/vcrnn.py (U[t] = [x_t, 1, h_{t-1}], the masks in
// z-space as kernels/vc.py's _mask_), with the time loop here. GEMMs and sigmoid stay in ATen
// (BLAS; vectorized), tanh as 2σ(2x) − 1 (ATen's float tanh costs ≈ 5× its sigmoid; the weight
// is doubled, exactly, once per sequence); the scheduler's two rank-1 products are plain loops.
// Zoneout's keep factors arrive as k itself ([T or 1, B, H]; 1 − k formed here, not in a Python pass):
// the state lerp weight is e' = (1 − k) ⊙ e (h̄ = e ⊙ h keeps e), and the backward carries (1 − e') ∂h.
#include <ATen/ATen.h>

#include <type_traits>
#include <utility>
#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

// z = m zs + zo per column of U; hard: e = 1[z > κ] and xb = U e; soft: e = z + 10³⁰ hardshrink(z, κ)
// (σ of it, in ATen, is Thres_ε(σ(z)): 0 or 1 outside the band)
template <typename T, bool HARD>
void vc_mask(const T* __restrict__ m, const T* __restrict__ zs, const T* __restrict__ zo, const T* __restrict__ u,
             T* __restrict__ e, T* __restrict__ xb, T kappa, int64_t B, int64_t K) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < K; ++c) {
      const int64_t i = b * K + c;
      const T z = zo[c] + m[b] * zs[c];
      if (HARD) {
        e[i] = T(z > kappa);
        xb[i] = u[i] * e[i];
      } else {
        const T s = (z >= -kappa && z <= kappa) ? T(0) : z;  // aten hardshrink
        e[i] = z + T(1e30) * s;
      }
    }
}

template <typename T>
void vc_masked(const T* __restrict__ u, const T* __restrict__ e, T* __restrict__ xb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) xb[i] = u[i] * e[i];
}

// h̃ = 2σ(2 pre) − 1 (tanh; written back for the backward), h_t = lerp(h_{t−1}, h̃, e') into
// U[t + 1]'s h columns (Z: e' = (1 − k) ⊙ e, kept in ez; else e' = e)
template <typename T, bool Z, typename M>
void vc_lerp(const T* __restrict__ u, const T* __restrict__ e, T* __restrict__ ht, T* __restrict__ u_next,
             const M* __restrict__ keep, T* __restrict__ ez, int64_t B, int64_t J, int64_t H) {
  const int64_t K = J + H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t c = b * K + J + j, k = b * H + j;
      const T hv = T(2) * ht[k] - T(1);
      ht[k] = hv;
      const T w = vc_weight<Z>(e[c], Z ? keep + k : nullptr, Z ? ez + k : nullptr);
      u_next[c] = lerp(u[c], hv, w);
    }
}

// dh += dy_t; dg = dh F_t (dL/d pre-activation; dX = dg [w_x; b; w_h]^T follows in ATen)
template <typename T, bool DY>
void vc_back_pre(T* __restrict__ dh, const T* __restrict__ dy, const T* __restrict__ F, T* __restrict__ dg,
                 int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (DY) dh[i] += dy[i];
    dg[i] = dh[i] * F[i];
  }
}

// from dX = ∂[x̄, 1, h̄]: ∂x = dX e; dh_{t−1} = (1 − e') dh + e dX_h (Z: e' from ez, else e); with
// SOFT ∂e = dX U (+ dh (h̃ − h)(1 − k) on h) through σ' = e (1 − e), ∂m = ∂e·zs (+ dM); ∂a = ∂m σ'(m);
// dh_{t−1} += ∂a w_mh^T
template <typename T, bool SOFT, bool Z, bool DM>
void vc_back(const T* __restrict__ dX, const T* __restrict__ e, const T* __restrict__ ez, const T* __restrict__ u,
             const T* __restrict__ dh, const T* __restrict__ dd, const T* __restrict__ zs, const T* __restrict__ m,
             const T* __restrict__ dM, const T* __restrict__ wmh, T* __restrict__ dxp, T* __restrict__ dh2, int64_t B,
             int64_t I, int64_t H) {
  const int64_t J = I + 1, K = J + H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ dXb = dX + b * K;
    const T* __restrict__ eb = e + b * K;
    const T* __restrict__ ub = u + b * K;
    const T* __restrict__ dhb = dh + b * H;
    T* __restrict__ dxb = dxp + b * J;
    T* __restrict__ dh2b = dh2 + b * H;
    T s = T(0);
    for (int64_t c = 0; c < I; ++c) {
      dxb[c] = dXb[c] * eb[c];
      if (SOFT) s += dXb[c] * ub[c] * (T(1) - eb[c]) * eb[c] * zs[c];
    }
    if (SOFT) s += dXb[I] * ub[I] * (T(1) - eb[I]) * eb[I] * zs[I];
    for (int64_t j = 0; j < H; ++j) {
      const int64_t c = J + j;
      dh2b[j] = dXb[c] * eb[c] + dhb[j] * (T(1) - (Z ? ez[b * H + j] : eb[c]));
      if (SOFT) s += (dXb[c] * ub[c] + dhb[j] * dd[b * H + j]) * (T(1) - eb[c]) * eb[c] * zs[c];
    }
    if (!SOFT && !DM) {
      dxb[I] = T(0);
      continue;
    }
    if (DM) s += dM[b];
    const T da = s * (T(1) - m[b]) * m[b];
    dxb[I] = da;
    for (int64_t j = 0; j < H; ++j) dh2b[j] += da * wmh[j];
  }
}

}  // namespace

// Returns {U [T+1, B, K] = [x_t, 1, h_{t-1}], M [T, B, 1], e [T, B, K], xb = U e [T, B, K], h̃ [T, B, H]};
// with zoneout (keep factor k given) fills ez [T, B, H] with e' = (1 − k) ⊙ e.
std::vector<Tensor> vcrnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& wf, const Tensor& w_mh,
                                  const Tensor& zs_, const Tensor& zo_, const c10::optional<Tensor>& ez_,
                                  const c10::optional<Tensor>& keep_, int64_t I, bool hard, double kappa) {
  const Tensor xp = xp_.contiguous(), zs = zs_.contiguous(), zo = zo_.contiguous();
  const Tensor ez = ez_.has_value() ? *ez_ : Tensor(), keep = keep_.has_value() ? keep_->contiguous() : Tensor();
  TORCH_CHECK(!ez.defined() || ez.is_contiguous(), "vcrnn_forward: ez is not contiguous");
  TORCH_CHECK(ez.defined() == keep.defined(), "vcrnn_forward: ez and the keep factor come together");
  const int64_t T = xp.size(0), B = xp.size(1), H = h0.size(1), J = I + 1, K = J + H, BK = B * K, BH = B * H;
  Tensor U = at::empty({T + 1, B, K}, xp.options());
  U.narrow(0, 0, T).narrow(2, 0, I).copy_(xp.narrow(2, 0, I));
  U.select(2, I).fill_(1.0);
  U[0].narrow(1, J, H).copy_(h0);
  Tensor ms = at::empty({T, B, 1}, xp.options());
  Tensor es = at::empty({T, B, K}, xp.options());
  Tensor xb = at::empty({T, B, K}, xp.options());
  Tensor hts = at::empty({T, B, H}, xp.options());
  const Tensor wf2 = wf.mul(2);  // exact: σ(2 pre) gives tanh (vc_lerp)
  auto U_ = U.unbind(0), ms_ = ms.unbind(0), es_ = es.unbind(0), xb_ = xb.unbind(0), ht_ = hts.unbind(0);
  const Tensor a = xp.narrow(2, I, 1);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "vcrnn_forward", [&] {
    using S = scalar_t;
    const S k = static_cast<S>(kappa);
    with_flag_keep_type<S>(hard, keep, [&](auto HT, auto ZT, auto mt) {
      constexpr bool HARD = decltype(HT)::value, Z = decltype(ZT)::value;
      using M = typename decltype(mt)::type;
      for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
        const int64_t n = b1 - b0, r = b0 * H, rk = b0 * K;
        for (int64_t t = 0; t < T; ++t) {
          Tensor m = ms_[t].narrow(0, b0, n), ht = ht_[t].narrow(0, b0, n);
          gemm::addmm_out(m, a[t].narrow(0, b0, n), U_[t].narrow(0, b0, n).narrow(1, J, H), w_mh).sigmoid_();
          const S* u = U_[t].data_ptr<S>() + rk;
          S* e = es_[t].data_ptr<S>() + rk;
          S* x = xb_[t].data_ptr<S>() + rk;
          if (HARD) {
            vc_mask<S, true>(m.data_ptr<S>(), zs.data_ptr<S>(), zo.data_ptr<S>(), u, e, x, k, n, K);
          } else {
            vc_mask<S, false>(m.data_ptr<S>(), zs.data_ptr<S>(), zo.data_ptr<S>(), u, e, nullptr, k, n, K);
            es_[t].narrow(0, b0, n).sigmoid_();
            vc_masked<S>(u, e, x, n * K);
          }
          gemm::mm_out(ht, xb_[t].narrow(0, b0, n), wf2).sigmoid_();
          vc_lerp<S, Z, M>(u, e, ht.data_ptr<S>(), U_[t + 1].data_ptr<S>() + rk,
                           Z ? keep_row<M>(keep, t) + r : nullptr, Z ? ez.data_ptr<S>() + t * BH + r : nullptr, n,
                           J, H);
        }
      });
    });
  });
  return {U, ms, es, xb, hts};
}

// Returns {dxp [T, B, I + 1] = [∂x, ∂a], dh0, dg [T, B, H] (∂ pre-activation, for the weight gradient)};
// F = e' (1 − h̃²) and dd = (h̃ − h) ⊙ (1 − k) come formed; ez (zoneout) gives the carried share 1 − e'.
std::vector<Tensor> vcrnn_backward(const Tensor& F_, const c10::optional<Tensor>& dd_, const Tensor& es,
                                   const c10::optional<Tensor>& ez_, const Tensor& ms, const Tensor& U,
                                   const Tensor& wt, const Tensor& w_mh, const Tensor& zs_,
                                   const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_,
                                   const c10::optional<Tensor>& dM_, int64_t I, bool hard) {
  const Tensor F = F_.contiguous(), zs = zs_.contiguous(), wmh = w_mh.contiguous();
  const int64_t T = F.size(0), B = F.size(1), H = F.size(2), J = I + 1, K = J + H, BH = B * H, BK = B * K;
  const Tensor dd = (!hard && dd_.has_value()) ? dd_->contiguous() : Tensor();
  const Tensor ez = ez_.has_value() ? ez_->contiguous() : Tensor();
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  const Tensor dM = dM_.has_value() ? dM_->contiguous() : Tensor();
  Tensor dxp = at::empty({T, B, J}, F.options());
  Tensor dgs = at::empty({T, B, H}, F.options());
  Tensor dh = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, F.options());
  Tensor dh2 = at::empty({B, H}, F.options());
  Tensor dX = at::empty({B, K}, F.options());
  auto dg_ = dgs.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(F.scalar_type(), "vcrnn_backward", [&] {
    using S = scalar_t;
    with_flags(!hard, ez.defined(), [&](auto ST, auto ZT) {
      constexpr bool SOFT = decltype(ST)::value, Z = decltype(ZT)::value;
      with_flags(dy.defined(), dM.defined(), [&](auto DT, auto MT) {
        constexpr bool DY = decltype(DT)::value, DM = decltype(MT)::value;
        for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
          const int64_t n = b1 - b0, r = b0 * H, rk = b0 * K;
          Tensor d = dh.narrow(0, b0, n), d2 = dh2.narrow(0, b0, n), dX_r = dX.narrow(0, b0, n);
          for (int64_t t = T - 1; t >= 0; --t) {
            const Tensor dg = dg_[t].narrow(0, b0, n);
            vc_back_pre<S, DY>(d.data_ptr<S>(), DY ? dy.data_ptr<S>() + t * BH + r : nullptr,
                               F.data_ptr<S>() + t * BH + r, dg.data_ptr<S>(), n * H);
            gemm::mm_out(dX_r, dg, wt);
            vc_back<S, SOFT, Z, DM>(dX_r.data_ptr<S>(), es.data_ptr<S>() + t * BK + rk,
                                    Z ? ez.data_ptr<S>() + t * BH + r : nullptr, U.data_ptr<S>() + t * BK + rk,
                                    d.data_ptr<S>(), SOFT ? dd.data_ptr<S>() + t * BH + r : nullptr, zs.data_ptr<S>(),
                                    ms.data_ptr<S>() + t * B + b0, DM ? dM.data_ptr<S>() + t * B + b0 : nullptr,
                                    wmh.data_ptr<S>(), dxp.data_ptr<S>() + (t * B + b0) * J, d2.data_ptr<S>(), n, I,
                                    H);
            std::swap(d, d2);
          }
        });
      });
    });
  });
  return {dxp, T % 2 == 0 ? dh : dh2, dgs};  // each step swaps the two, on every thread alike
}
