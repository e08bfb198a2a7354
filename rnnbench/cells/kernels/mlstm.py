"""The multiplicative LSTM's whole-sequence kernel (:class:`~rnnbench.cells.multiplicative.MLSTMCell`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import step_views


class MLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence mLSTM with a hand-written BPTT (the custom path when no per-step hook
    needs the generic loop). Inputs: ``xp [T, B, 5H]`` = ``[W_mx x, W_hx x + b_h, W_ix x + b_i,
    W_fx x + b_f, W_ox x + b_o]``, ``h0, c0``, ``w_mh [H, H]``, ``w_m [4H, H]``. The weight
    gradients are one GEMM each over all steps."""

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w_mh: Tensor, w_m: Tensor,  # type: ignore[override]
                kh: Optional[Tensor] = None, kc: Optional[Tensor] = None):
        T, B, P = xp.shape
        H = P // 5
        mh = xp.new_empty(T, B, H)  # W_mh h_{t-1}
        ms = xp.new_empty(T, B, H)  # m_t
        pre = xp.new_empty(T, B, 4 * H)  # ĥ, σ(i), σ(f), σ(o)
        hs = xp.new_empty(T + 1, B, H)
        cs = xp.new_empty(T + 1, B, H)
        hs[0] = h0
        cs[0] = c0
        # zoneout (kh, kc: 1 = keep the previous value): the cell's new ĉ_t and tanh(ĉ_t ⊙ o_t) kept
        # apart (the backward needs them), c_t = lerp(ĉ_t, c_{t−1}, kc_t), h_t likewise with kh_t
        kh_ = kh.expand(T, B, H) if kh is not None else None
        kc_ = kc.expand(T, B, H) if kc is not None else None
        c_hat = xp.new_empty(T, B, H) if kc is not None else cs[1:]
        u = xp.new_empty(T, B, H) if kh is not None else hs[1:]
        wmh_t, wm_t = w_mh.t(), w_m.t()
        for t in range(T):
            torch.mm(hs[t], wmh_t, out=mh[t])
            torch.mul(xp[t, :, :H], mh[t], out=ms[t])
            p = pre[t]
            torch.addmm(xp[t, :, H:], ms[t], wm_t, out=p)
            p[:, H:].sigmoid_()
            torch.mul(p[:, 2 * H:3 * H], cs[t], out=c_hat[t])
            c_hat[t].addcmul_(p[:, H:2 * H], p[:, :H])
            torch.mul(c_hat[t], p[:, 3 * H:], out=u[t])
            u[t].tanh_()
            if kc_ is not None:
                torch.lerp(c_hat[t], cs[t], kc_[t], out=cs[t + 1])
            if kh_ is not None:
                torch.lerp(u[t], hs[t], kh_[t], out=hs[t + 1])
        ctx.save_for_backward(xp, mh, ms, pre, hs, cs, w_mh, w_m, kh, kc,
                              c_hat if kc is not None else None, u if kh is not None else None)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor]):  # type: ignore[override]
        """With zoneout: ``dL/d(ĉ⊙o) = (1 − kh)(1 − u²) Dh``, ``dĉ = (1 − kc) Dc + o ⊙ dL/d(ĉ⊙o)``,
        ``Dc_{t−1} = kc Dc_t + f dĉ``, ``Dh_{t−1} = W_mh-term + kh Dh_t`` (u = tanh(ĉ ⊙ o))."""
        xp, mh, ms, pre, hs, cs, w_mh, w_m, kh, kc, c_hat, u = ctx.saved_tensors
        T, B, P = xp.shape
        H = P // 5
        kh_, akh_ = step_views(kh, T, B, H)
        kc_, akc_ = step_views(kc, T, B, H)
        c_hat = c_hat if c_hat is not None else cs[1:]
        u = u if u is not None else hs[1:]
        dxp = torch.empty_like(xp)  # [d(W_mx x), d pre]
        dmh = xp.new_empty(T, B, H)
        dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
        dc = dcT.clone() if dcT is not None else xp.new_zeros(B, H)
        ones = xp.new_ones(B, H)
        du = xp.new_empty(B, H)
        dsig = xp.new_empty(B, 3 * H)
        dm = xp.new_empty(B, H)
        dch = xp.new_empty(B, H) if kc is not None else dc  # dL/dĉ_t
        for t in range(T - 1, -1, -1):
            p, dp = pre[t], dxp[t, :, H:]
            hhat, i, f, o = p[:, :H], p[:, H:2 * H], p[:, 2 * H:3 * H], p[:, 3 * H:]
            if dy is not None:
                dh.add_(dy[t])
            torch.addcmul(ones, u[t], u[t], value=-1.0, out=du).mul_(dh)  # d(c⊙o)
            if kh_ is not None:
                du.mul_(akh_[t])
            torch.mul(p[:, H:], p[:, H:], out=dsig)
            torch.sub(p[:, H:], dsig, out=dsig)  # σ' of i, f, o
            if kc_ is not None:
                torch.mul(dc, akc_[t], out=dch)
            dch.addcmul_(du, o)
            torch.mul(du, c_hat[t], out=dp[:, 3 * H:]).mul_(dsig[:, 2 * H:])  # d pre_o
            torch.mul(dch, i, out=dp[:, :H])  # d ĥ
            torch.mul(dch, hhat, out=dp[:, H:2 * H]).mul_(dsig[:, :H])  # d pre_i
            torch.mul(dch, cs[t], out=dp[:, 2 * H:3 * H]).mul_(dsig[:, H:2 * H])  # d pre_f
            if kc_ is not None:
                dc.mul_(kc_[t]).addcmul_(f, dch)
            else:
                dc.mul_(f)
            torch.mm(dp, w_m, out=dm)  # d m_t
            torch.mul(dm, mh[t], out=dxp[t, :, :H])  # d (W_mx x)
            torch.mul(dm, xp[t, :, :H], out=dmh[t])  # d (W_mh h)
            if kh_ is not None:
                dh = torch.addcmul(torch.mm(dmh[t], w_mh), kh_[t], dh)
            else:
                dh = torch.mm(dmh[t], w_mh)
        dw_m = torch.mm(dxp[:, :, H:].reshape(T * B, 4 * H).t(), ms.reshape(T * B, H))
        dw_mh = torch.mm(dmh.reshape(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dxp, dh, dc, dw_mh, dw_m, None, None
