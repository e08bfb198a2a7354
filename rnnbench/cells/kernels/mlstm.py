"""The multiplicative LSTM's whole-sequence kernel (:class:`~rnnbench.cells.multiplicative.MLSTMCell`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views


class MLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence mLSTM with a hand-written BPTT (the custom path when no per-step hook
    needs the generic loop); the same loop runs compiled (native/mlstm.cpp) where
    :func:`native.get` gives the module, else in Python below.

    Inputs: ``xp [T, B, 5H]`` = ``[W_mx x, W_hx x + b_h, W_ix x + b_i, W_fx x + b_f, W_ox x + b_o]``,
    ``h0, c0``, ``w_mh [H, H]``, ``w_m [4H, H]``, and optionally zoneout's ``kh, kc``
    (broadcastable to ``[T, B, H]``, 1 = keep the previous value). Per step ``m = xp_m ⊙ (h W_mh^T)``,
    ``[ĥ, i, f, o] = [xp_h, σ(xp_i), σ(xp_f), σ(xp_o)] + m W_m^T`` (σ after the sum),
    ``ĉ = f c + i ĥ``, ``u = tanh(ĉ ⊙ o)``, ``c_t = lerp(ĉ, c, kc)``, ``h_t = lerp(u, h, kh)``.
    Output ``(y [T, B, H], h_T, c_T)``.

    When a gradient is needed the forward step also stores the backward factors that do not
    depend on the recursion (``P = [σ'(i) ĥ, σ'(f) c_{t−1}, σ'(o) a ĉ]`` and ``q = a o``, with
    ``a = (1 − kh)(1 − u²)``), as the LSTM kernel does; the weight gradients are one GEMM each
    over all steps.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w_mh: Tensor, w_m: Tensor,  # type: ignore[override]
                kh: Optional[Tensor] = None, kc: Optional[Tensor] = None):
        T, B, P5 = xp.shape
        H = P5 // 5
        grad = any(ctx.needs_input_grad)
        ctx.ext = ext = native.get(xp)
        if ext is not None:  # the same loop in C++ (native/mlstm.cpp)
            xp = xp.contiguous()
            hs, cs, mh, ms, pre, P, q = ext.mlstm_forward(xp, h0, c0, w_mh, w_m, kh, kc, grad)
            ctx.save_for_backward(xp, mh, ms, pre, P, q, hs, w_mh, w_m, kh, kc)
            return hs[1:], hs[T].clone(), cs[T].clone()
        mh = xp.new_empty(T, B, H)  # W_mh h_{t-1}
        ms = xp.new_empty(T, B, H)  # m_t
        pre = xp.new_empty(T, B, 4 * H)  # ĥ, σ(i), σ(f), σ(o)
        hs = xp.new_empty(T + 1, B, H)
        cs = xp.new_empty(T + 1, B, H)
        hs[0] = h0
        cs[0] = c0
        P = xp.new_empty(T, B, 3 * H) if grad else None  # [p_i, p_f, p_o]
        q = xp.new_empty(T, B, H) if grad else None
        # zoneout (kh, kc: [T, B, H] views): the cell's new ĉ_t and u_t = tanh(ĉ_t ⊙ o_t) go to
        # scratch rows, c_t = lerp(ĉ_t, c_{t−1}, kc_t), h_t = lerp(u_t, h_{t−1}, kh_t)
        kh_, akh_ = step_views(kh, T, B, H, xp)
        kc_ = step_views(kc, T, B, H, xp)[0]
        c_hat, u, a = xp.new_empty(B, H), xp.new_empty(B, H), xp.new_empty(B, H)
        one = xp.new_ones(()).expand(B, H)
        wmh_t, wm_t = w_mh.t(), w_m.t()
        # per-step views, made once
        h_, c_, mh_, ms_, pre_ = hs.unbind(0), cs.unbind(0), mh.unbind(0), ms.unbind(0), pre.unbind(0)
        xm_, xr_ = xp[..., :H].unbind(0), xp[..., H:].unbind(0)
        hh_, i_, f_, o_, sg_ = (pre[..., :H].unbind(0), pre[..., H:2 * H].unbind(0), pre[..., 2 * H:3 * H].unbind(0),
                                pre[..., 3 * H:].unbind(0), pre[..., H:].unbind(0))
        if grad:
            P_, pi_, pf_, po_, q_ = (P.unbind(0), P[..., :H].unbind(0), P[..., H:2 * H].unbind(0),
                                     P[..., 2 * H:].unbind(0), q.unbind(0))
        for t in range(T):
            torch.mm(h_[t], wmh_t, out=mh_[t])
            torch.mul(xm_[t], mh_[t], out=ms_[t])
            torch.addmm(xr_[t], ms_[t], wm_t, out=pre_[t])
            sg_[t].sigmoid_()
            ch = c_hat if kc_ is not None else c_[t + 1]
            torch.mul(f_[t], c_[t], out=ch)
            ch.addcmul_(i_[t], hh_[t])
            un = u if kh_ is not None else h_[t + 1]
            torch.mul(ch, o_[t], out=un).tanh_()
            if kc_ is not None:
                torch.lerp(ch, c_[t], kc_[t], out=c_[t + 1])
            if kh_ is not None:
                torch.lerp(un, h_[t], kh_[t], out=h_[t + 1])
            if grad:
                torch.addcmul(sg_[t], sg_[t], sg_[t], value=-1, out=P_[t])  # σ' = s − s² of i, f, o
                pi_[t].mul_(hh_[t])  # p_i = σ'(i) ĥ
                pf_[t].mul_(c_[t])  # p_f = σ'(f) c_{t−1}
                torch.addcmul(one, un, un, value=-1, out=a)  # a = 1 − u²: dL/d(ĉ⊙o) = a Dh
                if kh_ is not None:
                    a.mul_(akh_[t])  # dL/du = (1 − kh) Dh
                po_[t].mul_(a).mul_(ch)  # p_o = σ'(o) a ĉ
                torch.mul(a, o_[t], out=q_[t])  # q = a o: dĉ = (1 − kc) Dc + q Dh
        ctx.save_for_backward(xp, mh, ms, pre, P, q, hs, w_mh, w_m, kh, kc)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor]):  # type: ignore[override]
        """BPTT, with ``Dh, Dc`` the total dL/dh_t, dL/dc_t and the factors of the forward::

            Dh_t += dy_t;  dĉ = (1 − kc_t) Dc_t + q_t Dh_t
            d[ĥ, pre_i, pre_f, pre_o] = [dĉ i, dĉ p_i, dĉ p_f, Dh_t p_o];  Dc_{t−1} = kc_t Dc_t + f dĉ
            dm = d[..] W_m;  d(W_mx x) = dm ⊙ (W_mh h);  d(W_mh h) = dm ⊙ W_mx x
            Dh_{t−1} = d(W_mh h) W_mh + kh_t Dh_t

        Without zoneout ``dĉ = Dc + q Dh`` and one buffer holds both."""
        xp, mh, ms, pre, P, q, hs, w_mh, w_m, kh, kc = ctx.saved_tensors
        if ctx.ext is not None:
            dxp, dh0, dc0, dw_mh, dw_m = ctx.ext.mlstm_backward(xp, mh, ms, pre, P, q, hs, w_mh, w_m, kh, kc, dy,
                                                                dhT, dcT)
            return dxp, dh0, dc0, dw_mh, dw_m, None, None
        T, B, P5 = xp.shape
        H = P5 // 5
        kh_ = step_views(kh, T, B, H, xp)[0]
        kc_, akc_ = step_views(kc, T, B, H, xp)
        dxp = torch.empty_like(xp)  # [d(W_mx x), d ĥ, d pre_i, d pre_f, d pre_o]
        dmh = xp.new_empty(T, B, H)  # d(W_mh h_{t−1})
        D = dhT.clone() if dhT is not None else xp.new_zeros(B, H)  # dL/dh_t
        dc = dcT.clone() if dcT is not None else xp.new_zeros(B, H)  # dL/dc_t
        dch = xp.new_empty(B, H) if kc_ is not None else dc  # dL/dĉ_t
        dm = xp.new_empty(B, H)
        xm_, mh_, dmh_, q_, i_, f_ = (xp[..., :H].unbind(0), mh.unbind(0), dmh.unbind(0), q.unbind(0),
                                      pre[..., H:2 * H].unbind(0), pre[..., 2 * H:3 * H].unbind(0))
        pif_, po_ = P[..., :2 * H].view(T, B, 2, H).unbind(0), P[..., 2 * H:].unbind(0)
        dxm_, dp_, dhh_ = dxp[..., :H].unbind(0), dxp[..., H:].unbind(0), dxp[..., H:2 * H].unbind(0)
        dif_, do_ = dxp[..., 2 * H:4 * H].view(T, B, 2, H).unbind(0), dxp[..., 4 * H:].unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if dy_ is not None:
                D.add_(dy_[t])
            if kc_ is not None:
                torch.mul(dc, akc_[t], out=dch)
            dch.addcmul_(q_[t], D)
            torch.mul(dch, i_[t], out=dhh_[t])
            torch.mul(dch.unsqueeze(1), pif_[t], out=dif_[t])
            torch.mul(D, po_[t], out=do_[t])
            if kc_ is not None:
                dc.mul_(kc_[t]).addcmul_(f_[t], dch)
            else:
                dc.mul_(f_[t])
            torch.mm(dp_[t], w_m, out=dm)  # d m_t
            torch.mul(dm, mh_[t], out=dxm_[t])
            torch.mul(dm, xm_[t], out=dmh_[t])
            D = torch.addcmul(torch.mm(dmh_[t], w_mh), kh_[t], D) if kh_ is not None else torch.mm(dmh_[t], w_mh)
        dw_m = torch.mm(dxp[..., H:].reshape(T * B, 4 * H).t(), ms.view(T * B, H))
        dw_mh = torch.mm(dmh.view(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dxp, D, dc, dw_mh, dw_m, None, None
