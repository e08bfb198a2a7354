"""The GRU's whole-sequence kernel (:class:`~rnnbench.cells.gru.GRUCell`, ``fused=false``)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views


class GRUSequenceFn(torch.autograd.Function):
    """Whole-sequence GRU with a hand-written BPTT; the same loop runs compiled
    (native/gru.cpp) where :func:`native.get` gives the module, else in Python below.

    Inputs: ``xp [T, B, 3H]`` (``W_ih x + b_ih``), ``h0 [B, H]``, ``w_hh [3H, H]``,
    ``b_hh [3H]``. Output ``(y [T, B, H], h_T)``. Per step: ``hp = b_hh + h W_hh^T``,
    ``[r, z] = σ(x_rz + hp_rz)``, ``n = tanh(x_n + r ⊙ hp_n)``, ``h = lerp(n, h, z)``
    (= ``n + z ⊙ (h − n)``). With zoneout (``k [T, B, H]`` or broadcastable, 1 = keep the
    previous value), ``h_t = lerp(ĥ_t, h_{t−1}, k_t)``: a GRU step whose update gate is
    ``z' = z + k (1 − z)``, so the backward scales the factors of ``n`` and ``z`` by ``1 − k`` and
    carries ``z'`` to ``h_{t−1}``.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor,  # type: ignore[override]
                k: Optional[Tensor] = None):
        T, B, G = xp.shape
        H = G // 3
        grad = any(ctx.needs_input_grad)
        ctx.ext = ext = native.get(xp)
        if ext is not None:
            hs, rz, coef, a = ext.gru_forward(xp, h0, w_hh, b_hh, k, grad)
            ctx.save_for_backward(coef, a, rz, hs, w_hh)
            return hs[1:], hs[T].clone()
        k_, ak_ = step_views(k, T, B, H, xp)
        wt = w_hh.t()
        hp = xp.new_empty(T, B, G)  # W_hh h + b_hh
        rz = xp.new_empty(T, B, 2 * H)  # activated r, z
        n = xp.new_empty(T, B, H)
        hs = xp.new_empty(T + 1, B, H)  # h_0 .. h_T
        # backward factors, made per step while the step is in cache (vectorized over [T, B, H]
        # afterwards they cost several memory-bound passes at T=784): from dh_t (after adding
        # dy_t) to [pre_r, pre_z, hp_n] (``coef``) and to pre_n (``a``)
        coef = xp.new_empty(T, B, 3, H) if grad else None
        a = xp.new_empty(T, B, H) if grad else None
        tmp = xp.new_empty(B, H)
        hs[0] = h0
        hp_, rz_, n_, h_ = hp.unbind(0), rz.unbind(0), n.unbind(0), hs.unbind(0)
        xrz_, xn_ = xp[..., :2 * H].unbind(0), xp[..., 2 * H:].unbind(0)
        hrz_, hn_ = hp[..., :2 * H].unbind(0), hp[..., 2 * H:].unbind(0)
        r_, z_ = rz[..., :H].unbind(0), rz[..., H:].unbind(0)
        if grad:
            crz_, cr_, cz_, cn_ = (coef[:, :, :2].unbind(0), coef[:, :, 0].unbind(0), coef[:, :, 1].unbind(0),
                                   coef[:, :, 2].unbind(0))
            a_ = a.unbind(0)
        for t in range(T):
            torch.addmm(b_hh, h_[t], wt, out=hp_[t])
            torch.add(xrz_[t], hrz_[t], out=rz_[t]).sigmoid_()
            torch.addcmul(xn_[t], r_[t], hn_[t], out=n_[t]).tanh_()
            torch.lerp(n_[t], h_[t], z_[t], out=h_[t + 1])
            if k_ is not None:
                h_[t + 1].lerp_(h_[t], k_[t])
            if grad:
                s = rz_[t].view(B, 2, H)
                torch.addcmul(s, s, s, value=-1, out=crz_[t])  # σ' = s − s² for r, z
                torch.mul(n_[t], n_[t], out=tmp)
                torch.addcmul(tmp, z_[t], tmp, value=-1, out=a_[t]).neg_().sub_(z_[t]).add_(1)  # (1 − z)(1 − n²)
                if k_ is not None:
                    a_[t].mul_(ak_[t])  # (1 − k)(1 − z)(1 − n²)
                cr_[t].mul_(a_[t]).mul_(hn_[t])  # dL/d(pre_r) = dh a hp_n σ'(r)
                torch.sub(h_[t], n_[t], out=tmp)
                cz_[t].mul_(tmp)  # dL/d(pre_z) = dh (h_{t-1} − n) σ'(z)
                if k_ is not None:
                    cz_[t].mul_(ak_[t])
                    z_[t].mul_(ak_[t]).add_(k_[t])  # z' = z (1 − k) + k: dh_{t−1} = dh z'
                torch.mul(a_[t], r_[t], out=cn_[t])  # dL/d(hp_n) = dh a r
        ctx.save_for_backward(coef, a, rz, hs, w_hh)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        coef, a, rz, hs, w_hh = ctx.saved_tensors
        if ctx.ext is not None:
            dxp, dh0, dw, db = ctx.ext.gru_backward(coef, a, rz, hs, w_hh, dy, dhT)
            return dxp, dh0, dw, db, None
        T, B, _, H = coef.shape
        G = 3 * H
        dhp = coef.new_empty(T, B, G)  # dL/d(W_hh h + b_hh)
        D = torch.empty_like(a)  # dL/dh_t (total)
        dh = dhT.clone() if dhT is not None else a.new_zeros(B, H)
        tmp = a.new_empty(B, H)
        D_, coef_, z_ = D.unbind(0), coef.unbind(0), rz[..., H:].unbind(0)
        dhp_, dhp3_ = dhp.unbind(0), dhp.view(T, B, 3, H).unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if dy_ is not None:
                torch.add(dh, dy_[t], out=D_[t])
            else:
                D_[t].copy_(dh)
            torch.mul(D_[t].unsqueeze(1), coef_[t], out=dhp3_[t])
            torch.mul(D_[t], z_[t], out=tmp)
            dh = torch.addmm(tmp, dhp_[t], w_hh)
        dxp = torch.cat([dhp[..., :2 * H], D.mul_(a)], -1)
        dw = torch.mm(dhp.view(T * B, G).t(), hs[:-1].reshape(T * B, H))
        return dxp, dh, dw, dhp.view(T * B, G).sum(0), None
