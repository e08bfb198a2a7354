// The VC-LSTM and VC-GRU whole-sequence loops in C++ (Jernite et al. 2017; article 000): the
// algorithm of rnnbench/cells/kernels/vc.py step for step, on the buffers its Python wrapper
// allocates (U = [x, 1, h(, c)] rows, the masks, the backward's factors), which these fill. Per
// step the scheduler, the GEMM and σ/tanh stay in ATen (BLAS; the same vectorized kernels as the
// Python loop); the masks in z-space, the masking, the lerps and the factors are plain fused loops.
// Zoneout's keep factors arrive as k itself, one [T or 1, B, H] tensor per state (1 − k formed here:
// forming it in Python was a pass over the masks, for the VC-LSTM a strided one over both, ≈ 40 ms of
// a 784-step batch). The state lerp weight is e' = (1 − k) ⊙ e (h̄ = e ⊙ h keeps e) and 1 − k is
// folded into h̃ − h.
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

namespace {

constexpr double kSnap = 1e30;  // kernels/vc.py's _SNAP: z + 10³⁰·z outside the band, σ of it exactly 0 or 1

// step t's mask over U's K columns from m [B], in z-space z = m·zs + zo: hard, e = 1[z > κ];
// soft, z + 10³⁰·hardshrink(z, κ), whose σ (ATen, on the row after) is Thres_ε(σ(z))
template <typename T, bool HARD>
void mask_z(const T* __restrict__ m, const T* __restrict__ zs, const T* __restrict__ zo, T* __restrict__ e,
            int64_t B, int64_t K, T kappa) {
  const T snap = T(kSnap);
  for (int64_t b = 0; b < B; ++b) {
    const T mb = m[b];
    T* __restrict__ eb = e + b * K;
    for (int64_t j = 0; j < K; ++j) {
      const T z = zo[j] + mb * zs[j];
      if (HARD) eb[j] = z > kappa ? T(1) : T(0);
      else eb[j] = z + snap * ((z >= -kappa && z <= kappa) ? T(0) : z);  // aten::hardshrink's band
    }
  }
}

// the scheduler's m_t = σ(w_mx·x + b_m + h·w_mh) and the masks e_t (σ in ATen, as the Python loop),
// on B rows (a thread's slice)
template <typename T, bool HARD>
void scheduler_and_mask(const Tensor& a, const Tensor& h, const Tensor& w_mh, Tensor& m, const Tensor& e,
                        const T* zs, const T* zo, int64_t B, int64_t K, T kappa) {
  gemm::addmm_out(m, a, h, w_mh);
  m.sigmoid_();
  mask_z<T, HARD>(m.data_ptr<T>(), zs, zo, e.data_ptr<T>(), B, K, kappa);
  if (!HARD) e.sigmoid_();
}

// ∂L/∂a of the scheduler from the row's ∂L/∂z accumulated in `dz` (soft), plus dM: σ'(a) (dz + dM);
// the hard threshold passes only dM (none: 0). Returns it; the caller adds it times w_mh to ∂h.
template <typename T, bool HARD, bool DM>
inline T scheduler_grad(T dz, const T* dM, const T* m, int64_t b) {
  T da = HARD ? T(0) : dz;
  if (DM) da = HARD ? dM[b] : da + dM[b];
  return da * (T(1) - m[b]) * m[b];
}

// ---------------------------------------------------------------------------------- VC-LSTM

// [x̄, 1, h̄] = e ⊙ U[t]'s [x, 1, h] into xb, c̄ = e ⊙ c into cb
template <typename T>
void lstm_mask_inputs(const T* __restrict__ u, const T* __restrict__ e, T* __restrict__ xb, T* __restrict__ cb,
                      int64_t B, int64_t JH, int64_t H, int64_t K) {
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ ub = u + b * K;
    const T* __restrict__ eb = e + b * K;
    T* __restrict__ x = xb + b * JH;
    for (int64_t j = 0; j < JH; ++j) x[j] = ub[j] * eb[j];
    T* __restrict__ c = cb + b * 3 * H;  // c̄'s slot in the scratch row [tanh(c̃), g, c̄]
    for (int64_t j = 0; j < H; ++j) c[j] = ub[JH + j] * eb[JH + j];
  }
}

// tanh through σ, tanh(x) = 2σ(2x) − 1 (ATen's float tanh costs ≈ 5× its sigmoid; the g columns
// of the weight are doubled, exactly, so one σ covers the four gates):
// g = 2σ − 1 into P's g slot, c̃ = f ⊙ c̄ + i ⊙ g into ht's c half and 2c̃ into P's tanh slot
template <typename T>
void lstm_c(const T* __restrict__ g, T* __restrict__ P, T* __restrict__ ht, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ i = g + b * 4 * H + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ s = f + H;  // σ(2 pre_g)
    T* __restrict__ t2 = P + b * 3 * H;
    T* __restrict__ gg = t2 + H;
    const T* __restrict__ cb = gg + H;
    T* __restrict__ c = ht + b * 2 * H + H;
    for (int64_t j = 0; j < H; ++j) {
      const T gj = T(2) * s[j] - T(1);
      gg[j] = gj;
      const T cj = f[j] * cb[j] + i[j] * gj;
      c[j] = cj;
      t2[j] = T(2) * cj;
    }
  }
}

// P's tanh slot from σ(2c̃) to tanh(c̃) = 2σ − 1
template <typename T>
void lstm_tanh_c(T* __restrict__ P, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict__ t = P + b * 3 * H;
    for (int64_t j = 0; j < H; ++j) t[j] = T(2) * t[j] - T(1);
  }
}

// h̃ = o ⊙ tanh(c̃), [h_t, c_t] = lerp([h, c], [h̃, c̃], e') into U[t + 1] (Z: e' = (1 − [k_h, k_c]) ⊙ e,
// kept in ez); with GRAD the backward's factors: F = [tanh(c̃) σ'(o), g σ'(i),
// c̄ σ'(f), i (1 − g²)], q = o (1 − tanh²c̃), σ(f) and (soft threshold only: ∂e has no use under
// the hard one) dd = (1 − [k_h, k_c]) ⊙ ([h̃, c̃] − [h, c])
template <typename T, bool Z, bool GRAD, bool HARD, typename M>
void lstm_tail(const T* __restrict__ g, const T* __restrict__ P, T* __restrict__ ht, const T* __restrict__ u,
               T* __restrict__ un, const T* __restrict__ e, const M* __restrict__ kh, const M* __restrict__ kc,
               T* __restrict__ ez,
               T* __restrict__ F, T* __restrict__ q, T* __restrict__ dd, T* __restrict__ fs, int64_t B, int64_t H,
               int64_t J, int64_t K) {
  const int64_t H2 = 2 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ o = g + b * 4 * H;
    const T* __restrict__ i = o + H;
    const T* __restrict__ f = i + H;
    const T* __restrict__ p = P + b * 3 * H;  // [tanh(c̃), g, c̄]
    const T* __restrict__ tc = p;
    const T* __restrict__ gg = p + H;
    T* __restrict__ hc = ht + b * H2;
    const T* __restrict__ s = u + b * K + J;
    T* __restrict__ sn = un + b * K + J;
    const T* __restrict__ eh = e + b * K + J;
    const M* __restrict__ khb = Z ? kh + b * H : nullptr;
    const M* __restrict__ kcb = Z ? kc + b * H : nullptr;
    T* __restrict__ ezb = Z ? ez + b * H2 : nullptr;
    for (int64_t j = 0; j < H; ++j) hc[j] = o[j] * tc[j];
    if (Z) {  // e' = (1 − k) ⊙ e per state half, kept in ez
      for (int64_t j = 0; j < H; ++j) {
        ezb[j] = eh[j] * (T(1) - T(khb[j]));
        sn[j] = lerp(s[j], hc[j], ezb[j]);
      }
      for (int64_t j = 0; j < H; ++j) {
        ezb[H + j] = eh[H + j] * (T(1) - T(kcb[j]));
        sn[H + j] = lerp(s[H + j], hc[H + j], ezb[H + j]);
      }
    } else {
      for (int64_t j = 0; j < H2; ++j) sn[j] = lerp(s[j], hc[j], eh[j]);
    }
    if (GRAD) {
      T* __restrict__ Fb = F + b * 4 * H;
      for (int64_t j = 0; j < 3 * H; ++j) Fb[j] = p[j] * (T(1) - o[j]) * o[j];  // aten::sigmoid_backward
      for (int64_t j = 0; j < H; ++j) {
        Fb[3 * H + j] = i[j] * (T(1) - gg[j] * gg[j]);  // aten::tanh_backward
        q[b * H + j] = o[j] * (T(1) - tc[j] * tc[j]);
        fs[b * H + j] = f[j];
      }
      if (!HARD) {
        T* __restrict__ ddb = dd + b * H2;
        for (int64_t j = 0; j < H2; ++j) ddb[j] = hc[j] - s[j];
        if (Z)
          for (int64_t j = 0; j < H; ++j) {
            ddb[j] *= T(1) - T(khb[j]);
            ddb[H + j] *= T(1) - T(kcb[j]);
          }
      }
    }
  }
}

// backward, first pass: ∂h (+ dy), [∂h̃, ∂c̃] = e' ⊙ ∂[h, c], ∂c̃ += ∂h̃ ⊙ q, the gates' gradients
// dg = [∂h̃ F_o, F_{i,f,g} ∂c̃] and ∂c̄ = ∂c̃ ⊙ σ(f) into dX's c columns
template <typename T, bool DY>
void lstm_bwd_gates(T* __restrict__ dS, const T* __restrict__ dy, const T* __restrict__ w, int64_t ws,
                    const T* __restrict__ F, const T* __restrict__ q, const T* __restrict__ f, T* __restrict__ dg,
                    T* __restrict__ dX, int64_t B, int64_t H, int64_t JH, int64_t K) {
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict__ d = dS + b * 2 * H;
    const T* __restrict__ wb = w + b * ws;
    const T* __restrict__ Fb = F + b * 4 * H;
    T* __restrict__ o = dg + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      if (DY) d[j] += dy[k];
      const T dht = d[j] * wb[j];
      const T dct = d[H + j] * wb[H + j] + dht * q[k];
      o[j] = dht * Fb[j];
      o[H + j] = Fb[H + j] * dct;
      o[2 * H + j] = Fb[2 * H + j] * dct;
      o[3 * H + j] = Fb[3 * H + j] * dct;
      dX[b * K + JH + j] = dct * f[k];
    }
  }
}

// backward, second pass (dX = ∂[x̄, 1, h̄, c̄]): ∂x = e ⊙ ∂x̄ (soft; the hard threshold's dX holds
// only ∂[h̄, c̄], its ∂x comes from one GEMM after the loop); the carried ∂[h, c] =
// (1 − e') ⊙ ∂[h, c] + e ⊙ ∂[h̄, c̄] (no zoneout: one lerp); the soft threshold's
// ∂z = σ'(z) (U ⊙ dX + [0, dd ⊙ ∂[h, c]]) and ∂a = σ'(a) (∂z·zs + dM), whose share of ∂h is ∂a w_mh
template <typename T, bool HARD, bool Z, bool DM>
void lstm_bwd_carry(const T* __restrict__ dS, T* __restrict__ dS2, const T* __restrict__ dX,
                    const T* __restrict__ u, const T* __restrict__ e, const T* __restrict__ ez,
                    const T* __restrict__ dd, const T* __restrict__ zs, const T* __restrict__ m,
                    const T* __restrict__ dM, const T* __restrict__ wmh, T* __restrict__ dxp, int64_t B, int64_t I,
                    int64_t H, int64_t K) {
  const int64_t J = I + 1, H2 = 2 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ xb = dX + b * K;
    const T* __restrict__ eb = e + b * K;
    const T* __restrict__ ub = u + b * K;
    const T* __restrict__ d = dS + b * H2;
    T* __restrict__ d2 = dS2 + b * H2;
    T* __restrict__ dx = dxp + b * J;
    if (!HARD)
      for (int64_t j = 0; j < I; ++j) dx[j] = xb[j] * eb[j];
    for (int64_t j = 0; j < H2; ++j)
      d2[j] = Z ? d[j] * (T(1) - ez[b * H2 + j]) + eb[J + j] * xb[J + j] : lerp(d[j], xb[J + j], eb[J + j]);
    T dz = T(0);
    if (!HARD) {
      for (int64_t j = 0; j < J; ++j) dz += xb[j] * ub[j] * (T(1) - eb[j]) * eb[j] * zs[j];
      for (int64_t j = 0; j < H2; ++j) {
        const T de = xb[J + j] * ub[J + j] + d[j] * dd[b * H2 + j];
        dz += de * (T(1) - eb[J + j]) * eb[J + j] * zs[J + j];
      }
    }
    if (HARD && !DM) {
      dx[I] = T(0);
      continue;
    }
    const T da = scheduler_grad<T, HARD, DM>(dz, dM, m, b);
    dx[I] = da;
    for (int64_t j = 0; j < H; ++j) d2[j] += da * wmh[j];
  }
}

template <typename T, bool HARD, bool Z, typename M>
void lstm_forward_loop(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                       const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& fs,
                       const Tensor& F, const Tensor& q, const Tensor& dd, const Tensor& ez, const Tensor& kh,
                       const Tensor& kc, int64_t I, double kappa, bool grad) {
  const int64_t T_ = xp.size(0), B = xp.size(1), K = U.size(2), H = fs.size(2), J = I + 1, JH = J + H;
  const auto a_ = xp.narrow(2, I, 1).unbind(0), h_ = U.narrow(2, J, H).unbind(0), m_ = ms.unbind(0),
             e_ = es.unbind(0), xb_ = xb.unbind(0);
  Tensor g = at::empty({B, 4 * H}, U.options());  // σ(o), σ(i), σ(f), g's pre-activation
  Tensor P = at::empty({B, 3 * H}, U.options());  // [tanh(c̃), g, c̄]
  Tensor ht = at::empty({B, 2 * H}, U.options());  // [h̃, c̃]
  Tensor tc = P.narrow(1, 0, H);
  Tensor wf2 = wf.clone();  // the g columns doubled (exact): σ of them gives tanh (lstm_c)
  wf2.narrow(1, 3 * H, H).mul_(2);
  const T* zs = zs2.data_ptr<T>();
  const T* zo = zo2.data_ptr<T>();
  T* Up = U.data_ptr<T>();
  const int64_t BK = B * K, BH = B * H;
  auto tail = grad ? &lstm_tail<T, Z, true, HARD, M> : &lstm_tail<T, Z, false, HARD, M>;
  T* gp = g.data_ptr<T>();
  T* Pp = P.data_ptr<T>();
  T* htp = ht.data_ptr<T>();
  for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
    const int64_t n = b1 - b0, r = b0 * H;
    Tensor g_r = g.narrow(0, b0, n);
    const Tensor tc_r = tc.narrow(0, b0, n);
    for (int64_t t = 0; t < T_; ++t) {
      Tensor m = m_[t].narrow(0, b0, n);
      const Tensor e = e_[t].narrow(0, b0, n);
      scheduler_and_mask<T, HARD>(a_[t].narrow(0, b0, n), h_[t].narrow(0, b0, n), w_mh, m, e, zs, zo, n, K,
                                  T(kappa));
      const T* ep = e.data_ptr<T>();
      T* u = Up + t * BK + b0 * K;
      lstm_mask_inputs<T>(u, ep, xb_[t].data_ptr<T>() + b0 * JH, Pp + 3 * r + 2 * H, n, JH, H, K);
      gemm::mm_out(g_r, xb_[t].narrow(0, b0, n), wf2);
      g_r.sigmoid_();
      lstm_c<T>(gp + 4 * r, Pp + 3 * r, htp + 2 * r, n, H);
      tc_r.sigmoid_();
      lstm_tanh_c<T>(Pp + 3 * r, n, H);
      tail(gp + 4 * r, Pp + 3 * r, htp + 2 * r, u, u + BK, ep, Z ? keep_row<M>(kh, t) + r : nullptr,
           Z ? keep_row<M>(kc, t) + r : nullptr, Z ? ez.data_ptr<T>() + t * 2 * BH + 2 * r : nullptr,
           F.data_ptr<T>() + t * 4 * BH + 4 * r,
           q.data_ptr<T>() + t * BH + r, HARD ? nullptr : dd.data_ptr<T>() + t * 2 * BH + 2 * r,
           fs.data_ptr<T>() + t * BH + r, n, H, J, K);
    }
  });
}

template <typename T, bool HARD, bool Z, bool DM>
Tensor lstm_backward_loop(Tensor dS, const Tensor& dgates, const Tensor& dxp, const Tensor& U, const Tensor& es,
                          const Tensor& ez, const Tensor& F, const Tensor& q, const Tensor& dd, const Tensor& fs,
                          const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh, const Tensor& dy,
                          const Tensor& dM, int64_t I) {
  const int64_t T_ = es.size(0), B = es.size(1), K = es.size(2), H = fs.size(2), J = I + 1, JH = J + H;
  const int64_t BK = B * K, BH = B * H;
  Tensor dS2 = at::empty_like(dS);
  Tensor dX = at::empty({B, K}, U.options());
  const auto dg_ = dgates.unbind(0);
  const T* zs = zs2.data_ptr<T>();
  const T* wmh = w_mh.data_ptr<T>();
  for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
    const int64_t n = b1 - b0, r = b0 * H;
    Tensor d = dS.narrow(0, b0, n), d2 = dS2.narrow(0, b0, n);  // ∂[h, c] carried, and the next one
    // ∂[x̄, 1, h̄] through the gates; the hard threshold needs only ∂h̄ in the loop (its ∂x̄ feeds
    // nothing recurrent, so it is one GEMM after the loop), 128 of 157 columns at H = 128, I = 28
    Tensor dXg = HARD ? dX.narrow(0, b0, n).narrow(1, J, H) : dX.narrow(0, b0, n).narrow(1, 0, JH);
    // the h̄ columns as their own matrix, once: oneDNN would copy a column slice at every step
    const Tensor wtg = HARD ? wt.narrow(1, J, H).contiguous() : wt;
    T* dXp = dX.data_ptr<T>() + b0 * K;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const T* e = es.data_ptr<T>() + t * BK + b0 * K;
      // the state lerp's weight e': zoneout's ez rows, else the h, c columns of e
      const int64_t ws = Z ? 2 * H : K;
      const T* w = Z ? ez.data_ptr<T>() + t * 2 * BH + 2 * r : e + J;
      T* dSp = d.data_ptr<T>();
      const T* Ft = F.data_ptr<T>() + t * 4 * BH + 4 * r;
      const T* qt = q.data_ptr<T>() + t * BH + r;
      const T* ft = fs.data_ptr<T>() + t * BH + r;
      T* dg = dgates.data_ptr<T>() + t * 4 * BH + 4 * r;
      if (dy.defined())
        lstm_bwd_gates<T, true>(dSp, dy.data_ptr<T>() + t * BH + r, w, ws, Ft, qt, ft, dg, dXp, n, H, JH, K);
      else
        lstm_bwd_gates<T, false>(dSp, nullptr, w, ws, Ft, qt, ft, dg, dXp, n, H, JH, K);
      gemm::mm_out(dXg, dg_[t].narrow(0, b0, n), wtg);
      lstm_bwd_carry<T, HARD, Z, DM>(dSp, d2.data_ptr<T>(), dXp, U.data_ptr<T>() + t * BK + b0 * K, e,
                                     Z ? ez.data_ptr<T>() + t * 2 * BH + 2 * r : nullptr,
                                     HARD ? nullptr : dd.data_ptr<T>() + t * 2 * BH + 2 * r, zs,
                                     ms.data_ptr<T>() + t * B + b0,
                                     DM ? dM.data_ptr<T>() + t * B + b0 : nullptr, wmh,
                                     dxp.data_ptr<T>() + (t * B + b0) * J, n, I, H, K);
      std::swap(d, d2);
    }
  });
  return T_ % 2 == 0 ? dS : dS2;  // each step swaps the two, on every thread alike
}

// ---------------------------------------------------------------------------------- VC-GRU

// [x̄, 1, h̄] = e ⊙ U[t]
template <typename T>
void mask_row(const T* __restrict__ u, const T* __restrict__ e, T* __restrict__ xb, int64_t n) {
  for (int64_t j = 0; j < n; ++j) xb[j] = u[j] * e[j];
}

// n's pre-activation n_x + σ(r) n_h (g = [σ(r), σ(z), n_x, n_h])
template <typename T>
void gru_pre_n(const T* __restrict__ g, T* __restrict__ n, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ r = g + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) n[b * H + j] = T(2) * (r[2 * H + j] + r[j] * r[3 * H + j]);  // σ(2x) next
  }
}

// h̃ = lerp(n, h̄, z), h_t = lerp(h, h̃, e') into U[t + 1] (Z: e' = (1 − k) ⊙ e, kept in ez)
template <typename T, bool Z, typename M>
void gru_tail(const T* __restrict__ g, T* __restrict__ n, const T* __restrict__ xb, T* __restrict__ ht,
              const T* __restrict__ u, T* __restrict__ un, const T* __restrict__ e, const M* __restrict__ keep,
              T* __restrict__ ez, int64_t B, int64_t H, int64_t J, int64_t K) {
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ z = g + b * 4 * H + H;
    const T* __restrict__ hb = xb + b * K + J;
    const T* __restrict__ h = u + b * K + J;
    T* __restrict__ hn = un + b * K + J;
    const T* __restrict__ eh = e + b * K + J;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T nv = T(2) * n[k] - T(1);  // tanh = 2σ(2x) − 1, written back for the backward
      n[k] = nv;
      const T hv = lerp(nv, hb[j], z[j]);
      ht[k] = hv;
      const T w = vc_weight<Z>(eh[j], Z ? keep + k : nullptr, Z ? ez + k : nullptr);
      hn[j] = lerp(h[j], hv, w);
    }
  }
}

// backward, first pass: ∂h (+ dy), ∂h̃ = e' ⊙ ∂h (kept in dht), the carried (1 − e') ∂h as
// ∂h − ∂h̃ into dh2, and the four gates' gradients F ⊙ ∂h̃
template <typename T, bool DY>
void gru_bwd_gates(T* __restrict__ dh, const T* __restrict__ dy, const T* __restrict__ w, int64_t ws,
                   T* __restrict__ dht, T* __restrict__ dh2, const T* __restrict__ F, T* __restrict__ dg, int64_t B,
                   int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* __restrict__ wb = w + b * ws;
    const T* __restrict__ Fb = F + b * 4 * H;
    T* __restrict__ o = dg + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      if (DY) dh[k] += dy[k];
      const T d = dh[k] * wb[j];
      dht[k] = d;
      dh2[k] = dh[k] - d;
      o[j] = Fb[j] * d;
      o[H + j] = Fb[H + j] * d;
      o[2 * H + j] = Fb[2 * H + j] * d;
      o[3 * H + j] = Fb[3 * H + j] * d;
    }
  }
}

// backward, second pass (dX = ∂[x̄, 1, h̄] through the gates): h̄ also enters h̃ (+ ∂h̃ ⊙ z);
// ∂U = e ⊙ dX (its h columns join the carried ∂h; the hard threshold's dX holds only ∂h̄, its
// ∂x comes from one GEMM after the loop); the scheduler as for the VC-LSTM
template <typename T, bool HARD, bool DM>
void gru_bwd_carry(const T* __restrict__ dh, T* __restrict__ dh2, const T* __restrict__ dht, T* __restrict__ dX,
                   const T* __restrict__ g, const T* __restrict__ u, const T* __restrict__ e,
                   const T* __restrict__ dd, const T* __restrict__ zs, const T* __restrict__ m,
                   const T* __restrict__ dM, const T* __restrict__ wmh, T* __restrict__ du, T* __restrict__ da,
                   int64_t B, int64_t J, int64_t H, int64_t K) {
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict__ xb = dX + b * K;
    const T* __restrict__ eb = e + b * K;
    const T* __restrict__ ub = u + b * K;
    const T* __restrict__ z = g + b * 4 * H + H;
    T* __restrict__ dub = du + b * K;
    T* __restrict__ d2 = dh2 + b * H;
    for (int64_t j = 0; j < H; ++j) xb[J + j] += dht[b * H + j] * z[j];
    for (int64_t j = HARD ? J : 0; j < K; ++j) dub[j] = xb[j] * eb[j];  // hard: ∂x after the loop
    T dz = T(0);
    if (!HARD) {
      for (int64_t j = 0; j < J; ++j) dz += xb[j] * ub[j] * (T(1) - eb[j]) * eb[j] * zs[j];
      for (int64_t j = 0; j < H; ++j) {
        const T de = xb[J + j] * ub[J + j] + dh[b * H + j] * dd[b * H + j];
        dz += de * (T(1) - eb[J + j]) * eb[J + j] * zs[J + j];
      }
    }
    for (int64_t j = 0; j < H; ++j) d2[j] += dub[J + j];
    if (HARD && !DM) {
      da[b] = T(0);
      continue;
    }
    const T a = scheduler_grad<T, HARD, DM>(dz, dM, m, b);
    da[b] = a;
    for (int64_t j = 0; j < H; ++j) d2[j] += a * wmh[j];
  }
}

template <typename T, bool HARD, bool Z, typename M>
void gru_forward_loop(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                      const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& gs,
                      const Tensor& ns, const Tensor& hts, const Tensor& ez, const Tensor& keep, int64_t I,
                      double kappa) {
  const int64_t T_ = xp.size(0), B = xp.size(1), K = U.size(2), H = ns.size(2), J = I + 1;
  const auto a_ = xp.narrow(2, I, 1).unbind(0), h_ = U.narrow(2, J, H).unbind(0), m_ = ms.unbind(0),
             e_ = es.unbind(0), xb_ = xb.unbind(0), g_ = gs.unbind(0), n_ = ns.unbind(0);
  const T* zs = zs2.data_ptr<T>();
  const T* zo = zo2.data_ptr<T>();
  T* Up = U.data_ptr<T>();
  const int64_t BK = B * K, BH = B * H;
  for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
    const int64_t nr = b1 - b0, r = b0 * H;
    for (int64_t t = 0; t < T_; ++t) {
      Tensor m = m_[t].narrow(0, b0, nr), g = g_[t].narrow(0, b0, nr);
      const Tensor e = e_[t].narrow(0, b0, nr);
      scheduler_and_mask<T, HARD>(a_[t].narrow(0, b0, nr), h_[t].narrow(0, b0, nr), w_mh, m, e, zs, zo, nr, K,
                                  T(kappa));
      const T* ep = e.data_ptr<T>();
      T* xbp = xb_[t].data_ptr<T>() + b0 * K;
      T* u = Up + t * BK + b0 * K;
      mask_row<T>(u, ep, xbp, nr * K);
      gemm::mm_out(g, xb_[t].narrow(0, b0, nr), wf);
      T* gp = g.data_ptr<T>();
      T* np = n_[t].data_ptr<T>() + r;
      g.narrow(1, 0, 2 * H).sigmoid_();
      gru_pre_n<T>(gp, np, nr, H);
      n_[t].narrow(0, b0, nr).sigmoid_();
      gru_tail<T, Z, M>(gp, np, xbp, hts.data_ptr<T>() + t * BH + r, u, u + BK, ep,
                        Z ? keep_row<M>(keep, t) + r : nullptr, Z ? ez.data_ptr<T>() + t * BH + r : nullptr, nr, H,
                        J, K);
    }
  });
}

template <typename T, bool HARD, bool Z, bool DM>
Tensor gru_backward_loop(Tensor dh, const Tensor& dgs, const Tensor& dU, const Tensor& das, const Tensor& U,
                         const Tensor& es, const Tensor& ez, const Tensor& F, const Tensor& dd, const Tensor& gs,
                         const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh, const Tensor& dy,
                         const Tensor& dM, int64_t I) {
  const int64_t T_ = es.size(0), B = es.size(1), K = es.size(2), H = dh.size(1), J = I + 1;
  const int64_t BK = B * K, BH = B * H;
  Tensor dh2 = at::empty_like(dh);
  Tensor dht = at::empty_like(dh);
  Tensor dX = at::empty({B, K}, U.options());
  const auto dg_ = dgs.unbind(0);
  const T* zs = zs2.data_ptr<T>();
  const T* wmh = w_mh.data_ptr<T>();
  for_batch(B, [&](int64_t b0, int64_t b1) {  // a thread owns its rows for all T steps (rows.h)
    const int64_t nr = b1 - b0, r = b0 * H;
    Tensor d = dh.narrow(0, b0, nr), d2 = dh2.narrow(0, b0, nr);  // ∂h carried, and the next one
    Tensor dX_r = dX.narrow(0, b0, nr);
    T* dXp = dX_r.data_ptr<T>();
    // hard: only ∂h̄ in the loop (as the VC-LSTM's)
    Tensor dXg = HARD ? dX_r.narrow(1, J, H) : dX_r;
    // the h̄ columns as their own matrix, once: oneDNN would copy a column slice at every step
    const Tensor wtg = HARD ? wt.narrow(1, J, H).contiguous() : wt;
    T* dhtp = dht.data_ptr<T>() + r;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const T* e = es.data_ptr<T>() + t * BK + b0 * K;
      const int64_t ws = Z ? H : K;
      const T* w = Z ? ez.data_ptr<T>() + t * BH + r : e + J;
      T* dg = dgs.data_ptr<T>() + t * 4 * BH + 4 * r;
      const T* Ft = F.data_ptr<T>() + t * 4 * BH + 4 * r;
      T* dhp = d.data_ptr<T>();
      T* dh2p = d2.data_ptr<T>();
      if (dy.defined())
        gru_bwd_gates<T, true>(dhp, dy.data_ptr<T>() + t * BH + r, w, ws, dhtp, dh2p, Ft, dg, nr, H);
      else
        gru_bwd_gates<T, false>(dhp, nullptr, w, ws, dhtp, dh2p, Ft, dg, nr, H);
      gemm::mm_out(dXg, dg_[t].narrow(0, b0, nr), wtg);
      gru_bwd_carry<T, HARD, DM>(dhp, dh2p, dhtp, dXp, gs.data_ptr<T>() + t * 4 * BH + 4 * r,
                                 U.data_ptr<T>() + t * BK + b0 * K, e,
                                 HARD ? nullptr : dd.data_ptr<T>() + t * BH + r, zs,
                                 ms.data_ptr<T>() + t * B + b0, DM ? dM.data_ptr<T>() + t * B + b0 : nullptr, wmh,
                                 dU.data_ptr<T>() + t * BK + b0 * K, das.data_ptr<T>() + t * B + b0, nr, J, H, K);
      std::swap(d, d2);
    }
  });
  return T_ % 2 == 0 ? dh : dh2;  // each step swaps the two, on every thread alike
}

void check_contiguous(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) TORCH_CHECK(!t->defined() || t->is_contiguous(), "vc kernels: a buffer is not contiguous");
}

Tensor opt(const c10::optional<Tensor>& t) { return t.has_value() ? t->contiguous() : Tensor(); }

}  // namespace

// Fills U[1:], ms, es, xb and (grad) fs, F, q, dd, and ez (zoneout: the keep factors kh, kc given,
// each [T or 1, B, H]) — the buffers of VCLSTMSequenceFn.forward, U[0] and U's x and bias columns
// already set.
void vclstm_forward(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                    const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& fs,
                    const Tensor& F, const Tensor& q, const Tensor& dd, const c10::optional<Tensor>& ez_,
                    const c10::optional<Tensor>& kh_, const c10::optional<Tensor>& kc_, int64_t I, bool hard,
                    double kappa, bool grad) {
  const Tensor ez = opt(ez_), kh = opt(kh_), kc = opt(kc_);
  TORCH_CHECK(ez.defined() == kh.defined() && kh.defined() == kc.defined(),
              "vclstm_forward: ez, kh, kc come together");
  TORCH_CHECK(!kh.defined() || kh.scalar_type() == kc.scalar_type(), "vclstm_forward: kh, kc of one dtype");
  check_contiguous({&wf, &w_mh, &zs2, &zo2, &U, &ms, &es, &xb, &fs, &F, &q, &dd, &ez});
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "vclstm_forward", [&] {
    with_flag_keep_type<scalar_t>(hard, kh, [&](auto HT, auto ZT, auto m) {
      lstm_forward_loop<scalar_t, decltype(HT)::value, decltype(ZT)::value, typename decltype(m)::type>(
          xp, wf, w_mh, zs2, zo2, U, ms, es, xb, fs, F, q, dd, ez, kh, kc, I, kappa, grad);
    });
  });
}

// Runs the VC-LSTM BPTT loop: fills dgates [T, B, 4H] and dxp [T, B, I + 1] ([∂x, ∂a]) from the
// carried ∂[h_T, c_T] in dS (used as a buffer); returns ∂[h_0, c_0].
Tensor vclstm_backward(const Tensor& dS, const Tensor& dgates, const Tensor& dxp, const Tensor& U, const Tensor& es,
                       const c10::optional<Tensor>& ez_, const Tensor& F, const Tensor& q, const Tensor& dd,
                       const Tensor& fs, const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh,
                       const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dM_, int64_t I, bool hard) {
  const Tensor ez = opt(ez_), dy = opt(dy_), dM = opt(dM_);
  check_contiguous({&dS, &dgates, &dxp, &U, &es, &F, &q, &dd, &fs, &ms, &wt, &zs2, &w_mh});
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "vclstm_backward", [&] {
    with_flags(hard, dM.defined(), [&](auto HT, auto DT) {
      constexpr bool HH = decltype(HT)::value, DD = decltype(DT)::value;
      out = ez.defined()
                ? lstm_backward_loop<scalar_t, HH, true, DD>(dS, dgates, dxp, U, es, ez, F, q, dd, fs, ms, wt, zs2,
                                                              w_mh, dy, dM, I)
                : lstm_backward_loop<scalar_t, HH, false, DD>(dS, dgates, dxp, U, es, ez, F, q, dd, fs, ms, wt, zs2,
                                                               w_mh, dy, dM, I);
    });
  });
  return out;
}

// Fills U[1:], ms, es, xb, gs, ns, hts and ez (zoneout) — the buffers of VCGRUSequenceFn.forward.
void vcgru_forward(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                   const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& gs,
                   const Tensor& ns, const Tensor& hts, const c10::optional<Tensor>& ez_,
                   const c10::optional<Tensor>& k_, int64_t I, bool hard, double kappa) {
  const Tensor ez = opt(ez_), k = opt(k_);
  check_contiguous({&wf, &w_mh, &zs2, &zo2, &U, &ms, &es, &xb, &gs, &ns, &hts, &ez, &k});
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "vcgru_forward", [&] {
    with_flag_keep_type<scalar_t>(hard, k, [&](auto HT, auto ZT, auto m) {
      gru_forward_loop<scalar_t, decltype(HT)::value, decltype(ZT)::value, typename decltype(m)::type>(
          xp, wf, w_mh, zs2, zo2, U, ms, es, xb, gs, ns, hts, ez, k, I, kappa);
    });
  });
}

// Runs the VC-GRU BPTT loop: fills dgs [T, B, 4H], dU [T, B, K] and das [T, B, 1] from the carried
// ∂h_T in dh (used as a buffer); returns ∂h_0.
Tensor vcgru_backward(const Tensor& dh, const Tensor& dgs, const Tensor& dU, const Tensor& das, const Tensor& U,
                      const Tensor& es, const c10::optional<Tensor>& ez_, const Tensor& F, const Tensor& dd,
                      const Tensor& gs, const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh,
                      const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dM_, int64_t I, bool hard) {
  const Tensor ez = opt(ez_), dy = opt(dy_), dM = opt(dM_);
  check_contiguous({&dh, &dgs, &dU, &das, &U, &es, &F, &dd, &gs, &ms, &wt, &zs2, &w_mh});
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "vcgru_backward", [&] {
    with_flags(hard, dM.defined(), [&](auto HT, auto DT) {
      constexpr bool HH = decltype(HT)::value, DD = decltype(DT)::value;
      out = ez.defined()
                ? gru_backward_loop<scalar_t, HH, true, DD>(dh, dgs, dU, das, U, es, ez, F, dd, gs, ms, wt, zs2, w_mh,
                                                             dy, dM, I)
                : gru_backward_loop<scalar_t, HH, false, DD>(dh, dgs, dU, das, U, es, ez, F, dd, gs, ms, wt, zs2,
                                                              w_mh, dy, dM, I);
    });
  });
  return out;
}
