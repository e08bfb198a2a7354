"""The LSTM's whole-sequence kernel (:class:`~rnnbench.cells.lstm.LSTMCell`, ``fused=false``)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views


def to_oifg(t: Tensor) -> Tensor:
    """Rows (a weight's or a bias's ``4H``) from nn.LSTM's gate order (i, f, g, o) to (o, i, f, g):
    one sigmoid covers o, i, f (columns ``:3H``) and the three gates scaled by ``dc`` in the
    backward, i, f, g, are the contiguous columns ``H:``. A cat of two blocks, whose backward is two
    views: indexing with a permutation cost ≈ 0.5 ms a batch (index, then index_put for the
    gradient, for three tensors), a tenth of a 28-step batch at 2 threads."""
    H = t.shape[0] // 4
    return torch.cat((t[3 * H:], t[:3 * H]))


class LSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence LSTM with a hand-written BPTT, gate order (o, i, f, g); the same loop runs
    compiled (native/lstm.cpp) where :func:`native.get` gives the module, else in Python below.

    Inputs: ``x [T, B, I]``, ``w_ih [4H, I]``, ``b [4H]`` (all biases), ``h0, c0 [B, H]``,
    ``w_hh [4H, H]`` (rows already in o, i, f, g order). Output ``(y [T, B, H], h_T, c_T)``.

    The input projection for all steps is one GEMM into the gate buffer; each step adds the
    recurrent GEMM in place (``addmm_``) and runs 6 element-wise ops on per-step views made
    once before the loop. When a gradient is needed the forward step also stores the backward
    factors that do not depend on the recursion (8 small ops on data still in cache), so a
    backward step is one GEMM and four element-wise ops; the weight and input gradients are
    single GEMMs over all steps.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w_ih: Tensor, b: Tensor, h0: Tensor, c0: Tensor,  # type: ignore[override]
                w_hh: Tensor, kh: Optional[Tensor] = None, kc: Optional[Tensor] = None):
        T, B, _ = x.shape
        G = w_hh.shape[0]
        H = G // 4
        grad = any(ctx.needs_input_grad)
        ext = native.get(x)
        ctx.ext = ext
        if ext is not None:  # the same loop in C++ (native/lstm.cpp)
            hs, cs, gates, tc = ext.lstm_forward(x.contiguous(), w_ih, b, h0, c0, w_hh, kh, kc, grad)
            ctx.save_for_backward(x, w_ih, gates, hs, cs, tc, w_hh, kh, kc)  # its backward forms P, q from cs, tc
            return hs[1:], hs[T].clone(), cs[T].clone()
        gates = torch.addmm(b, x.reshape(T * B, -1), w_ih.t()).view(T, B, G)  # activated in place
        wt = w_hh.t()
        hs = x.new_empty(T + 1, B, H)  # h_0 .. h_T
        cs = x.new_empty(T + 1, B, H)
        tc = x.new_empty(T, B, H)  # tanh(c_t)
        hs[0] = h0
        cs[0] = c0
        # backward factors, made per step while the step's gates are in cache (vectorized
        # over [T, B, 4H] afterwards they cost several memory-bound passes at T=784):
        # P = [p_o, p_i, p_f, p_g] in the gate layout, dL/d(pre) = [dh, dc, dc, dc] ⊙ P, and
        # q with dc += dh ⊙ q
        P = torch.empty_like(gates) if grad else gates
        q = x.new_empty(T, B, H) if grad else tc
        tmp = x.new_empty(B, H)
        g_all, sig, th = gates.unbind(0), gates[..., :3 * H].unbind(0), gates[..., 3 * H:].unbind(0)
        o_, i_, f_ = gates[..., :H].unbind(0), gates[..., H:2 * H].unbind(0), gates[..., 2 * H:3 * H].unbind(0)
        h_, c_, tc_ = hs.unbind(0), cs.unbind(0), tc.unbind(0)
        psig, po, pi, pf, pg = (P[..., :3 * H].unbind(0), P[..., :H].unbind(0), P[..., H:2 * H].unbind(0),
                                P[..., 2 * H:3 * H].unbind(0), P[..., 3 * H:].unbind(0))
        q_ = q.unbind(0)
        # zoneout (kh, kc: [T, B, H] views, 1 = keep the previous value): the cell's new ĉ, ĥ go
        # to scratch rows and c_t = lerp(ĉ_t, c_{t−1}, kc_t), h_t = lerp(ĥ_t, h_{t−1}, kh_t)
        kh_, akh_ = step_views(kh, T, B, H, x)
        kc_ = step_views(kc, T, B, H, x)[0]
        c_hat, h_hat = x.new_empty(B, H), x.new_empty(B, H)
        for t in range(T):
            g_all[t].addmm_(h_[t], wt)
            sig[t].sigmoid_()
            th[t].tanh_()
            cn = c_hat if kc_ is not None else c_[t + 1]
            torch.mul(f_[t], c_[t], out=cn)
            cn.addcmul_(i_[t], th[t])
            torch.tanh(cn, out=tc_[t])
            if kc_ is not None:
                torch.lerp(cn, c_[t], kc_[t], out=c_[t + 1])
            hn = h_hat if kh_ is not None else h_[t + 1]
            torch.mul(o_[t], tc_[t], out=hn)
            if kh_ is not None:
                torch.lerp(hn, h_[t], kh_[t], out=h_[t + 1])
            if grad:
                torch.addcmul(sig[t], sig[t], sig[t], value=-1, out=psig[t])  # σ' = s − s²
                po[t].mul_(tc_[t])  # p_o = tanh(c) σ'(o)
                pi[t].mul_(th[t])  # p_i = g σ'(i)
                pf[t].mul_(c_[t])  # p_f = c_{t-1} σ'(f)
                torch.mul(th[t], th[t], out=tmp)
                torch.addcmul(i_[t], i_[t], tmp, value=-1, out=pg[t])  # p_g = i (1 − g²)
                torch.mul(tc_[t], tc_[t], out=tmp)
                torch.addcmul(o_[t], o_[t], tmp, value=-1, out=q_[t])  # q = o (1 − tanh²(c))
                if kh_ is not None:  # dL/dĥ = (1 − kh) dL/dh: folded into the factors of ĥ
                    po[t].mul_(akh_[t])
                    q_[t].mul_(akh_[t])
        ctx.save_for_backward(x, w_ih, gates, hs, P, q, w_hh, kh, kc)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor]):  # type: ignore[override]
        """BPTT; with zoneout (``h_t = kh_t h_{t−1} + (1 − kh_t) ĥ_t``, the same for c with kc; the
        forward folded ``1 − kh`` into ``p_o`` and ``q``):

            Dh_t = dy_t + dgates_{t+1} W_hh + kh_{t+1} Dh_{t+1}      (dL/dh_t, all paths)
            Dc_t = kc_{t+1} Dc_{t+1} + f_{t+1} dĉ_{t+1}               (dL/dc_t)
            dĉ_t = (1 − kc_t) Dc_t + q_t Dh_t,   dgates_t = [Dh_t p_o, dĉ_t p_i, dĉ_t p_f, dĉ_t p_g]

        Without zoneout ``dĉ_t = Dc_t + q_t Dh_t`` and one buffer holds both (``dc``)."""
        x, w_ih, gates, hs, P, q, w_hh, kh, kc = ctx.saved_tensors  # compiled: P, q are cs, tanh(ĉ)
        if ctx.ext is not None:
            dx, dw_ih, db, dh0, dc0, dw_hh = ctx.ext.lstm_backward(x, w_ih, gates, hs, P, q, w_hh, kh, kc, dy, dhT,
                                                                  dcT, ctx.needs_input_grad[0])
            return dx if ctx.needs_input_grad[0] else None, dw_ih, db, dh0, dc0, dw_hh, None, None
        T, B, G = gates.shape
        H = G // 4
        kh_ = step_views(kh, T, B, H, hs)[0]
        kc_, akc_ = step_views(kc, T, B, H, hs)
        f = gates[..., 2 * H:3 * H]
        p_o, p_ifg = P[..., :H], P[..., H:].view(T, B, 3, H)
        dgates = torch.empty_like(gates)
        dh = hs.new_empty(T, B, H)  # dL/dh_t
        dh[T - 1] = dy[T - 1] if dy is not None else 0
        if dhT is not None:
            dh[T - 1] += dhT
        Dc = dcT.clone() if dcT is not None else gates.new_zeros(B, H)  # dL/dc_t
        dc = gates.new_empty(B, H) if kc_ is not None else Dc  # dL/dĉ_t
        dg_, dh_ = dgates.unbind(0), dh.unbind(0)
        dgo_, dgifg_ = dgates[..., :H].unbind(0), dgates[..., H:].view(T, B, 3, H).unbind(0)
        q_, po_, pifg_, f_ = q.unbind(0), p_o.unbind(0), p_ifg.unbind(0), f.unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                if dy_ is not None:
                    torch.addmm(dy_[t], dg_[t + 1], w_hh, out=dh_[t])
                else:
                    torch.mm(dg_[t + 1], w_hh, out=dh_[t])
                if kh_ is not None:
                    dh_[t].addcmul_(kh_[t + 1], dh_[t + 1])
                if kc_ is not None:
                    Dc.mul_(kc_[t + 1]).addcmul_(f_[t + 1], dc)
                else:
                    Dc.mul_(f_[t + 1])
            if kc_ is not None:
                torch.mul(Dc, akc_[t], out=dc)
            dc.addcmul_(dh_[t], q_[t])
            torch.mul(dh_[t], po_[t], out=dgo_[t])
            torch.mul(dc.unsqueeze(1), pifg_[t], out=dgifg_[t])
        dh0 = torch.mm(dg_[0], w_hh)
        if kh_ is not None:
            dh0.addcmul_(kh_[0], dh_[0])
        dc0 = Dc.mul_(kc_[0]).addcmul_(f_[0], dc) if kc_ is not None else dc.mul_(f_[0])
        dg2 = dgates.view(T * B, G)
        dw_hh = torch.mm(dg2.t(), hs[:-1].reshape(T * B, H))
        dx = torch.mm(dg2, w_ih).view(x.shape) if ctx.needs_input_grad[0] else None
        dw_ih = torch.mm(dg2.t(), x.reshape(T * B, -1))
        return dx, dw_ih, dg2.sum(0), dh0, dc0, dw_hh, None, None
