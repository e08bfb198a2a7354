// The Elman RNN's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/rnn.py (zoneout keep factor k), with the time loop here.
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

// Returns {hs [T+1, B, H], a [T, B, H] (empty without grad)}.
std::vector<Tensor> rnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_hh,
                                const c10::optional<Tensor>& k_, bool grad) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2), BH = B * H;
  const Tensor wt = w_hh.t().contiguous();  // the faster GEMM layout per step
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor a = grad ? at::empty({T, B, H}, xp.options()) : at::empty({0}, xp.options());
  Tensor h_hat = at::empty({B, H}, xp.options());
  auto h_ = hs.unbind(0), xp_t = xp.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnn_forward", [&] {
    using S = scalar_t;
    with_keep_flag<S>(k_, T, B, H, grad, [&](auto KT, auto GT, const auto& k) {
      constexpr bool KK = decltype(KT)::value, GG = decltype(GT)::value;
      for_batch(B, [&](int64_t b0, int64_t b1) {
        const int64_t n = b1 - b0, r = b0 * H;
        for (int64_t t = 0; t < T; ++t) {
          Tensor hn = (KK ? h_hat : h_[t + 1]).narrow(0, b0, n);
          gemm::addmm_out(hn, xp_t[t].narrow(0, b0, n), h_[t].narrow(0, b0, n), wt).tanh_();
          if (KK || GG)
            tanh_step<S, KK, GG>(hn.data_ptr<S>(), h_[t].data_ptr<S>() + r, h_[t + 1].data_ptr<S>() + r,
                                 GG ? a.data_ptr<S>() + t * BH + r : nullptr, KK ? k.row(t) + r : nullptr, n * H);
        }
      });
    });
  });
  return {hs, a};
}

// Returns {dxp, dh0, dw_hh}.
std::vector<Tensor> rnn_backward(const Tensor& a, const Tensor& hs, const Tensor& w_hh,
                                 const c10::optional<Tensor>& k_, const c10::optional<Tensor>& dy_,
                                 const c10::optional<Tensor>& dhT_) {
  const int64_t T = a.size(0), B = a.size(1), H = a.size(2), BH = B * H;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dpre = at::empty_like(a);
  Tensor D = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, a.options());  // dL/dh_t
  Tensor kD = at::empty({B, H}, a.options());
  auto dpre_ = dpre.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnn_backward", [&] {
    using S = scalar_t;
    with_keep_flag<S>(k_, T, B, H, dy.defined(), [&](auto KT, auto DT, const auto& k) {
      constexpr bool KK = decltype(KT)::value, DD = decltype(DT)::value;
      for_batch(B, [&](int64_t b0, int64_t b1) {
        const int64_t n = b1 - b0, r = b0 * H;
        Tensor D_r = D.narrow(0, b0, n);
        const Tensor kD_r = kD.narrow(0, b0, n);
        for (int64_t t = T - 1; t >= 0; --t) {
          const Tensor dpre_r = dpre_[t].narrow(0, b0, n);
          tanh_back<S, KK, DD>(D_r.data_ptr<S>(), DD ? dy.data_ptr<S>() + t * BH + r : nullptr,
                               a.data_ptr<S>() + t * BH + r, dpre_r.data_ptr<S>(), H, kD_r.data_ptr<S>(),
                               KK ? k.row(t) + r : nullptr, n, H);
          if (KK) gemm::addmm_out(D_r, kD_r, dpre_r, w_hh);
          else gemm::mm_out(D_r, dpre_r, w_hh);
        }
      });
    });
  });
  Tensor dw = wgrad(dpre.view({T * B, H}), hs.narrow(0, 0, T).reshape({T * B, H}));
  return {dpre, D, dw};
}
