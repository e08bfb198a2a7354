// The multiplicative RNN's whole-sequence forward and BPTT in C++: the algorithm of
// rnnbench/cells/kernels/mrnn.py (xp = [W_mx x + b_m, W_hx x + b] columns; zoneout keep factor
// k), with the time loop here. GEMMs and tanh stay in ATen (BLAS; vectorized tanh).
#include <ATen/ATen.h>

#include <vector>

#include "keep.h"
#include "kernels.h"
#include "rows.h"

using at::Tensor;

// Returns {hs [T+1, B, H], mh, ms [T, B, H], a [T, B, H] (empty without grad)}.
std::vector<Tensor> mrnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_mh, const Tensor& w_hm,
                                 const c10::optional<Tensor>& k_, bool grad) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 2, BH = B * H;
  const Tensor wmh_t = w_mh.t().contiguous(), whm_t = w_hm.t().contiguous();  // the faster GEMM layout
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor mh = at::empty({T, B, H}, xp.options());
  Tensor ms = at::empty({T, B, H}, xp.options());
  Tensor a = grad ? at::empty({T, B, H}, xp.options()) : at::empty({0}, xp.options());
  Tensor h_hat = at::empty({B, H}, xp.options());
  auto h_ = hs.unbind(0), mh_ = mh.unbind(0), ms_ = ms.unbind(0), xp_t = xp.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "mrnn_forward", [&] {
    using S = scalar_t;
    with_keep_flag<S>(k_, T, B, H, grad, [&](auto KT, auto GT, const auto& k) {
      constexpr bool KK = decltype(KT)::value, GG = decltype(GT)::value;
      for_batch(B, [&](int64_t b0, int64_t b1) {
        const int64_t n = b1 - b0, r = b0 * H;
        for (int64_t t = 0; t < T; ++t) {
          Tensor mh_r = mh_[t].narrow(0, b0, n);
          const Tensor ms_r = ms_[t].narrow(0, b0, n), x_r = xp_t[t].narrow(0, b0, n);
          gemm::mm_out(mh_r, h_[t].narrow(0, b0, n), wmh_t);
          factor_m<S>(x_r.data_ptr<S>(), mh_r.data_ptr<S>(), ms_r.data_ptr<S>(), n, H, 2 * H);
          Tensor hn = (KK ? h_hat : h_[t + 1]).narrow(0, b0, n);
          gemm::addmm_out(hn, x_r.narrow(1, H, H), ms_r, whm_t).tanh_();
          if (KK || GG)
            tanh_step<S, KK, GG>(hn.data_ptr<S>(), h_[t].data_ptr<S>() + r, h_[t + 1].data_ptr<S>() + r,
                                 GG ? a.data_ptr<S>() + t * BH + r : nullptr, KK ? k.row(t) + r : nullptr, n * H);
        }
      });
    });
  });
  return {hs, mh, ms, a};
}

// Returns {dxp, dh0, dw_mh, dw_hm}.
std::vector<Tensor> mrnn_backward(const Tensor& xp_, const Tensor& mh, const Tensor& ms, const Tensor& a,
                                  const Tensor& hs, const Tensor& w_mh, const Tensor& w_hm,
                                  const c10::optional<Tensor>& k_, const c10::optional<Tensor>& dy_,
                                  const c10::optional<Tensor>& dhT_) {
  const Tensor xp = xp_.contiguous();
  const int64_t T = a.size(0), B = a.size(1), H = a.size(2), BH = B * H;
  const Tensor dy = dy_.has_value() ? dy_->contiguous() : Tensor();
  Tensor dxp = at::empty_like(xp);
  Tensor dmh = at::empty({T, B, H}, xp.options());
  Tensor D = dhT_.has_value() ? dhT_->contiguous().clone() : at::zeros({B, H}, xp.options());  // dL/dh_t
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "mrnn_backward", [&] {
    using S = scalar_t;
    with_keep_flag<S>(k_, T, B, H, dy.defined(), [&](auto KT, auto DT, const auto& k) {
      constexpr bool KK = decltype(KT)::value, DD = decltype(DT)::value;
      factor_loop<S, KK>(xp, mh, w_hm, w_mh, dxp, dmh, D, H, [&](int64_t t, int64_t r, int64_t n, S* D_r, S* dx,
                                                                  S* kD) {
        tanh_back<S, KK, DD>(D_r, DD ? dy.data_ptr<S>() + t * BH + r : nullptr, a.data_ptr<S>() + t * BH + r,
                             dx + H, 2 * H, kD, KK ? k.row(t) + r : nullptr, n, H);
      });
    });
  });
  Tensor dw_hm = wgrad(dxp.narrow(2, H, H).reshape({T * B, H}), ms.view({T * B, H}));
  Tensor dw_mh = wgrad(dmh.view({T * B, H}), hs.narrow(0, 0, T).reshape({T * B, H}));
  return {dxp, D, dw_mh, dw_hm};
}
