"""The multiplicative RNN's whole-sequence kernel (:class:`~rnnbench.cells.multiplicative.MRNNCell`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views, tanh_step_tail


class MRNNSequenceFn(torch.autograd.Function):
    """Whole-sequence mRNN with a hand-written BPTT; the same loop runs compiled
    (native/mrnn.cpp) where :func:`native.get` gives the module, else in Python below.

    Inputs: ``xp [T, B, 2H]`` = ``[W_mx x + b_m, W_hx x + b]``, ``h0 [B, H]``, ``w_mh [H, H]``,
    ``w_hm [H, H]``, and optionally zoneout's ``k`` (broadcastable to ``[T, B, H]``, 1 = keep the
    previous value). Per step ``m = xp_m ⊙ (h W_mh^T)``, ``ĥ = tanh(xp_h + m W_hm^T)``,
    ``h_t = lerp(ĥ, h_{t−1}, k_t)``. Output ``(y [T, B, H], h_T)``. The forward stores
    ``a = (1 − k)(1 − ĥ²)``, so a backward step is two GEMMs and two element-wise passes; the
    weight gradients are one GEMM each over all steps.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w_mh: Tensor, w_hm: Tensor,  # type: ignore[override]
                k: Optional[Tensor] = None):
        T, B, H2 = xp.shape
        H = H2 // 2
        grad = any(ctx.needs_input_grad)
        ctx.ext = ext = native.get(xp)
        if ext is not None:  # the same loop in C++ (native/mrnn.cpp)
            xp = xp.contiguous()
            hs, mh, ms, a = ext.mrnn_forward(xp, h0, w_mh, w_hm, k, grad)
            ctx.save_for_backward(xp, mh, ms, a, hs, w_mh, w_hm, k)
            return hs[1:], hs[T].clone()
        k_, ak_ = step_views(k, T, B, H, xp)
        wmh_t, whm_t = w_mh.t(), w_hm.t()
        hs = xp.new_empty(T + 1, B, H)  # h_0 .. h_T
        hs[0] = h0
        mh = xp.new_empty(T, B, H)  # W_mh h_{t−1}
        ms = xp.new_empty(T, B, H)  # m_t
        a = xp.new_empty(T, B, H) if grad else None
        h_hat = xp.new_empty(B, H)
        one = xp.new_ones(()).expand(B, H)
        h_, mh_, ms_ = hs.unbind(0), mh.unbind(0), ms.unbind(0)
        xm_, xh_ = xp[..., :H].unbind(0), xp[..., H:].unbind(0)
        a_ = a.unbind(0) if grad else None
        for t in range(T):
            torch.mm(h_[t], wmh_t, out=mh_[t])
            torch.mul(xm_[t], mh_[t], out=ms_[t])
            hn = h_hat if k_ is not None else h_[t + 1]
            torch.addmm(xh_[t], ms_[t], whm_t, out=hn).tanh_()
            tanh_step_tail(hn, h_[t], h_[t + 1], a_[t] if grad else None, k_[t] if k_ is not None else None,
                           ak_[t] if k_ is not None else None, one)
        ctx.save_for_backward(xp, mh, ms, a, hs, w_mh, w_hm, k)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        """BPTT, ``D`` the total dL/dh_t: ``D += dy_t``; ``d(xp_h) = a_t D``;
        ``dm = d(xp_h) W_hm``; ``d(xp_m) = dm ⊙ (W_mh h)``, ``d(W_mh h) = dm ⊙ xp_m``;
        ``D_{t−1} = d(W_mh h) W_mh + k_t D``."""
        xp, mh, ms, a, hs, w_mh, w_hm, k = ctx.saved_tensors
        if ctx.ext is not None:
            dxp, dh0, dw_mh, dw_hm = ctx.ext.mrnn_backward(xp, mh, ms, a, hs, w_mh, w_hm, k, dy, dhT)
            return dxp, dh0, dw_mh, dw_hm, None
        T, B, H = a.shape
        k_ = step_views(k, T, B, H, a)[0]
        dxp = torch.empty_like(xp)  # [d(W_mx x + b_m), d(W_hx x + b)]
        dmh = xp.new_empty(T, B, H)  # d(W_mh h_{t−1})
        dm = xp.new_empty(B, H)
        D = dhT.clone() if dhT is not None else a.new_zeros(B, H)  # dL/dh_t (total)
        xm_, mh_, dmh_, a_ = xp[..., :H].unbind(0), mh.unbind(0), dmh.unbind(0), a.unbind(0)
        dxm_, dxh_ = dxp[..., :H].unbind(0), dxp[..., H:].unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if dy_ is not None:
                D.add_(dy_[t])
            torch.mul(D, a_[t], out=dxh_[t])
            torch.mm(dxh_[t], w_hm, out=dm)  # d m_t
            torch.mul(dm, mh_[t], out=dxm_[t])
            torch.mul(dm, xm_[t], out=dmh_[t])
            D = torch.addcmul(torch.mm(dmh_[t], w_mh), k_[t], D) if k_ is not None else torch.mm(dmh_[t], w_mh)
        dw_hm = torch.mm(dxp[..., H:].reshape(T * B, H).t(), ms.view(T * B, H))
        dw_mh = torch.mm(dmh.view(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dxp, D, dw_mh, dw_hm, None
