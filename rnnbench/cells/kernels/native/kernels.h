// The kernels' entry points, one block per source file: plain ATen functions, so only module.cpp
// (the Python bindings) compiles torch/extension.h, the slow header, and the build stays short.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

using at::Tensor;

// lstm.cpp
std::vector<Tensor> lstm_forward(const Tensor& x, const Tensor& w_ih, const Tensor& b, const Tensor& h0,
                                 const Tensor& c0, const Tensor& w_hh, const c10::optional<Tensor>& kh_,
                                 const c10::optional<Tensor>& kc_, bool grad);
std::vector<Tensor> lstm_backward(const Tensor& x, const Tensor& w_ih, const Tensor& gates, const Tensor& hs,
                                  const Tensor& cs, const Tensor& tc, const Tensor& w_hh,
                                  const c10::optional<Tensor>& kh_, const c10::optional<Tensor>& kc_,
                                  const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_,
                                  const c10::optional<Tensor>& dcT_, bool need_dx);

// gru.cpp
std::vector<Tensor> gru_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_hh, const Tensor& b_hh,
                                const c10::optional<Tensor>& k_, bool grad);
std::vector<Tensor> gru_backward(const Tensor& coef, const Tensor& a, const Tensor& rz, const Tensor& hs,
                                 const Tensor& w_hh, const c10::optional<Tensor>& dy_,
                                 const c10::optional<Tensor>& dhT_);

// rnn.cpp
std::vector<Tensor> rnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_hh,
                                const c10::optional<Tensor>& k_, bool grad);
std::vector<Tensor> rnn_backward(const Tensor& a, const Tensor& hs, const Tensor& w_hh,
                                 const c10::optional<Tensor>& k_, const c10::optional<Tensor>& dy_,
                                 const c10::optional<Tensor>& dhT_);

// mlstm.cpp
std::vector<Tensor> mlstm_forward(const Tensor& xp_, const Tensor& h0, const Tensor& c0, const Tensor& w_mh,
                                  const Tensor& w_m, const c10::optional<Tensor>& kh_,
                                  const c10::optional<Tensor>& kc_, bool grad);
std::vector<Tensor> mlstm_backward(const Tensor& xp_, const Tensor& mh, const Tensor& ms, const Tensor& pre,
                                   const Tensor& P, const Tensor& q, const Tensor& hs, const Tensor& w_mh,
                                   const Tensor& w_m, const c10::optional<Tensor>& kh_,
                                   const c10::optional<Tensor>& kc_, const c10::optional<Tensor>& dy_,
                                   const c10::optional<Tensor>& dhT_, const c10::optional<Tensor>& dcT_);

// mrnn.cpp
std::vector<Tensor> mrnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& w_mh, const Tensor& w_hm,
                                 const c10::optional<Tensor>& k_, bool grad);
std::vector<Tensor> mrnn_backward(const Tensor& xp_, const Tensor& mh, const Tensor& ms, const Tensor& a,
                                  const Tensor& hs, const Tensor& w_mh, const Tensor& w_hm,
                                  const c10::optional<Tensor>& k_, const c10::optional<Tensor>& dy_,
                                  const c10::optional<Tensor>& dhT_);

// vc.cpp
void vclstm_forward(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                    const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& fs,
                    const Tensor& F, const Tensor& q, const Tensor& dd, const c10::optional<Tensor>& ez_,
                    const c10::optional<Tensor>& kh_, const c10::optional<Tensor>& kc_, int64_t I, bool hard,
                    double kappa, bool grad);
Tensor vclstm_backward(const Tensor& dS, const Tensor& dgates, const Tensor& dxp, const Tensor& U, const Tensor& es,
                       const c10::optional<Tensor>& ez_, const Tensor& F, const Tensor& q, const Tensor& dd,
                       const Tensor& fs, const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh,
                       const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dM_, int64_t I, bool hard);
void vcgru_forward(const Tensor& xp, const Tensor& wf, const Tensor& w_mh, const Tensor& zs2, const Tensor& zo2,
                   const Tensor& U, const Tensor& ms, const Tensor& es, const Tensor& xb, const Tensor& gs,
                   const Tensor& ns, const Tensor& hts, const c10::optional<Tensor>& ez_,
                   const c10::optional<Tensor>& k_, int64_t I, bool hard, double kappa);
Tensor vcgru_backward(const Tensor& dh, const Tensor& dgs, const Tensor& dU, const Tensor& das, const Tensor& U,
                      const Tensor& es, const c10::optional<Tensor>& ez_, const Tensor& F, const Tensor& dd,
                      const Tensor& gs, const Tensor& ms, const Tensor& wt, const Tensor& zs2, const Tensor& w_mh,
                      const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dM_, int64_t I, bool hard);

// delta_rnn.cpp
std::vector<Tensor> delta_rnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& v, const std::string& outer,
                                      const c10::optional<Tensor>& k_, bool grad);
std::vector<Tensor> delta_rnn_backward(const Tensor& F, const Tensor& vh, const Tensor& hs, const Tensor& v,
                                       const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_);

// vcrnn.cpp
std::vector<Tensor> vcrnn_forward(const Tensor& xp_, const Tensor& h0, const Tensor& wf, const Tensor& w_mh,
                                  const Tensor& zs_, const Tensor& zo_, const c10::optional<Tensor>& ez_,
                                  const c10::optional<Tensor>& k_, int64_t I, bool hard, double kappa);
std::vector<Tensor> vcrnn_backward(const Tensor& F_, const c10::optional<Tensor>& dd_, const Tensor& es,
                                   const c10::optional<Tensor>& ez_, const Tensor& ms, const Tensor& U,
                                   const Tensor& wt, const Tensor& w_mh, const Tensor& zs_,
                                   const c10::optional<Tensor>& dy_, const c10::optional<Tensor>& dhT_,
                                   const c10::optional<Tensor>& dM_, int64_t I, bool hard);

// masks.cpp
std::vector<Tensor> keep_masks(int64_t steps, int64_t B, int64_t H, const std::vector<double>& zs, bool locked,
                               at::ScalarType dtype);
