"""The multiplicative LSTM's whole-sequence kernel (:class:`~rnnbench.cells.multiplicative.MLSTMCell`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class MLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence mLSTM with a hand-written BPTT (the custom path when no per-step hook
    needs the generic loop). Inputs: ``xp [T, B, 5H]`` = ``[W_mx x, W_hx x + b_h, W_ix x + b_i,
    W_fx x + b_f, W_ox x + b_o]``, ``h0, c0``, ``w_mh [H, H]``, ``w_m [4H, H]``. The weight
    gradients are one GEMM each over all steps."""

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w_mh: Tensor, w_m: Tensor):  # type: ignore[override]
        T, B, P = xp.shape
        H = P // 5
        mh = xp.new_empty(T, B, H)  # W_mh h_{t-1}
        ms = xp.new_empty(T, B, H)  # m_t
        pre = xp.new_empty(T, B, 4 * H)  # ĥ, σ(i), σ(f), σ(o)
        hs = xp.new_empty(T + 1, B, H)
        cs = xp.new_empty(T + 1, B, H)
        hs[0] = h0
        cs[0] = c0
        wmh_t, wm_t = w_mh.t(), w_m.t()
        for t in range(T):
            torch.mm(hs[t], wmh_t, out=mh[t])
            torch.mul(xp[t, :, :H], mh[t], out=ms[t])
            p = pre[t]
            torch.addmm(xp[t, :, H:], ms[t], wm_t, out=p)
            p[:, H:].sigmoid_()
            torch.mul(p[:, 2 * H:3 * H], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(p[:, H:2 * H], p[:, :H])
            torch.mul(cs[t + 1], p[:, 3 * H:], out=hs[t + 1])
            hs[t + 1].tanh_()
        ctx.save_for_backward(xp, mh, ms, pre, hs, cs, w_mh, w_m)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor]):  # type: ignore[override]
        xp, mh, ms, pre, hs, cs, w_mh, w_m = ctx.saved_tensors
        T, B, P = xp.shape
        H = P // 5
        dxp = torch.empty_like(xp)  # [d(W_mx x), d pre]
        dmh = xp.new_empty(T, B, H)
        dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
        dc = dcT.clone() if dcT is not None else xp.new_zeros(B, H)
        ones = xp.new_ones(B, H)
        du = xp.new_empty(B, H)
        dsig = xp.new_empty(B, 3 * H)
        dm = xp.new_empty(B, H)
        for t in range(T - 1, -1, -1):
            p, dp = pre[t], dxp[t, :, H:]
            hhat, i, f, o = p[:, :H], p[:, H:2 * H], p[:, 2 * H:3 * H], p[:, 3 * H:]
            if dy is not None:
                dh.add_(dy[t])
            torch.addcmul(ones, hs[t + 1], hs[t + 1], value=-1.0, out=du).mul_(dh)  # d(c⊙o)
            torch.mul(p[:, H:], p[:, H:], out=dsig)
            torch.sub(p[:, H:], dsig, out=dsig)  # σ' of i, f, o
            dc.addcmul_(du, o)
            torch.mul(du, cs[t + 1], out=dp[:, 3 * H:]).mul_(dsig[:, 2 * H:])  # d pre_o
            torch.mul(dc, i, out=dp[:, :H])  # d ĥ
            torch.mul(dc, hhat, out=dp[:, H:2 * H]).mul_(dsig[:, :H])  # d pre_i
            torch.mul(dc, cs[t], out=dp[:, 2 * H:3 * H]).mul_(dsig[:, H:2 * H])  # d pre_f
            dc.mul_(f)
            torch.mm(dp, w_m, out=dm)  # d m_t
            torch.mul(dm, mh[t], out=dxp[t, :, :H])  # d (W_mx x)
            torch.mul(dm, xp[t, :, :H], out=dmh[t])  # d (W_mh h)
            dh = torch.mm(dmh[t], w_mh)
        dw_m = torch.mm(dxp[:, :, H:].reshape(T * B, 4 * H).t(), ms.reshape(T * B, H))
        dw_mh = torch.mm(dmh.reshape(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dxp, dh, dc, dw_mh, dw_m
