"""The Elman RNN's whole-sequence kernel (:class:`~rnnbench.cells.rnn.RNNCell`, ``fused=false`` or zoneout)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views, tanh_step_tail


class RNNSequenceFn(torch.autograd.Function):
    """Whole-sequence tanh RNN with a hand-written BPTT; the same loop runs compiled
    (native/rnn.cpp) where :func:`native.get` gives the module, else in Python below.

    Inputs: ``xp [T, B, H]`` (``W_ih x + b_ih + b_hh``), ``h0 [B, H]``, ``w_hh [H, H]``, and
    optionally zoneout's ``k`` (broadcastable to ``[T, B, H]``, 1 = keep the previous value).
    Per step ``ĥ = tanh(xp_t + h W_hh^T)``, ``h_t = lerp(ĥ, h_{t−1}, k_t)`` (= ĥ without zoneout).
    Output ``(y [T, B, H], h_T)``. The forward stores ``a = (1 − k)(1 − ĥ²)``, so a backward step
    is one GEMM and two element-wise ops: ``dpre_t = a_t ⊙ Dh_t``, ``Dh_{t−1} = dpre_t W_hh + k_t ⊙ Dh_t``.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w_hh: Tensor,  # type: ignore[override]
                k: Optional[Tensor] = None):
        T, B, H = xp.shape
        grad = any(ctx.needs_input_grad)
        ctx.ext = ext = native.get(xp)
        if ext is not None:
            hs, a = ext.rnn_forward(xp, h0, w_hh, k, grad)
            ctx.save_for_backward(a, hs, w_hh, k)
            return hs[1:], hs[T].clone()
        k_, ak_ = step_views(k, T, B, H, xp)
        wt = w_hh.t()
        hs = xp.new_empty(T + 1, B, H)  # h_0 .. h_T
        hs[0] = h0
        a = xp.new_empty(T, B, H) if grad else None
        h_hat = xp.new_empty(B, H)
        one = xp.new_ones(()).expand(B, H)
        h_, xp_ = hs.unbind(0), xp.unbind(0)
        a_ = a.unbind(0) if grad else None
        for t in range(T):
            hn = h_hat if k_ is not None else h_[t + 1]
            torch.addmm(xp_[t], h_[t], wt, out=hn).tanh_()
            tanh_step_tail(hn, h_[t], h_[t + 1], a_[t] if grad else None, k_[t] if k_ is not None else None,
                           ak_[t] if k_ is not None else None, one)
        ctx.save_for_backward(a, hs, w_hh, k)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        a, hs, w_hh, k = ctx.saved_tensors
        if ctx.ext is not None:
            dpre, dh0, dw = ctx.ext.rnn_backward(a, hs, w_hh, k, dy, dhT)
            return dpre, dh0, dw, None
        T, B, H = a.shape
        k_ = step_views(k, T, B, H, a)[0]
        dpre = torch.empty_like(a)
        D = dhT.clone() if dhT is not None else a.new_zeros(B, H)  # dL/dh_t (total)
        dpre_, a_ = dpre.unbind(0), a.unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if dy_ is not None:
                D.add_(dy_[t])
            torch.mul(D, a_[t], out=dpre_[t])
            D = torch.addcmul(torch.mm(dpre_[t], w_hh), k_[t], D) if k_ is not None else torch.mm(dpre_[t], w_hh)
        dw = torch.mm(dpre.view(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dpre, D, dw, None
