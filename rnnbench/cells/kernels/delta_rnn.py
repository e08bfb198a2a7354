"""The Delta-RNN's whole-sequence kernel (:class:`~rnnbench.cells.delta_rnn.DeltaRNNCell`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native, step_views


_OUTER = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v}


class DeltaRNNSequenceFn(torch.autograd.Function):
    """Whole-sequence Delta-RNN with a hand-written BPTT; the same loop runs compiled
    (native/delta_rnn.cpp) where :func:`native.get` gives the module, else in Python below.

    Inputs: ``xp [T, B, 3H] = [a, b, r]`` (:meth:`DeltaRNNCell.project_input`), ``h0 [B, H]``,
    ``v [H, H]``, the outer activation's name. Per step: ``vh = h V^T``,
    ``z = tanh(b + vh ⊙ a)``, ``h = Φ(lerp(z, h, r))``. Output ``(y [T, B, H], h_T)``.
    The backward's recursion-independent factors are made in the forward step while its
    data is in cache; a backward step is one GEMM and three element-wise ops. With zoneout
    (``k``, 1 = keep the previous value), ``h_t = lerp(ĥ_t, h_{t−1}, k_t)``: every factor from
    dL/dĥ carries ``1 − k`` (folded into Φ'), and the direct one to ``h_{t−1}`` gains ``k``.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, v: Tensor, outer: str,  # type: ignore[override]
                k: Optional[Tensor] = None):
        T, B, G = xp.shape
        H = G // 3
        grad = any(ctx.needs_input_grad)
        ctx.outer = outer
        ctx.ext = ext = native.get(xp)
        if ext is not None:
            hs, vh, F = ext.delta_rnn_forward(xp, h0, v, outer, k, grad)
            ctx.save_for_backward(F, vh, hs, v)
            return hs[1:], hs[T].clone()
        k_, ak_ = step_views(k, T, B, H, xp)
        vt = v.t()
        vh = xp.new_empty(T, B, H)
        z = xp.new_empty(T, B, H)
        hs = xp.new_empty(T + 1, B, H)
        hs[0] = h0
        # factors from dL/dh_t: to pre_z (pz), to vh (qa), to h_{t-1} directly (rr), to r (w)
        F = xp.new_empty(4, T, B, H) if grad else None
        one = xp.new_ones(()).expand(B, H)
        dphi = xp.new_empty(B, H)
        a_, b_, r_ = xp[..., :H].unbind(0), xp[..., H:2 * H].unbind(0), xp[..., 2 * H:].unbind(0)
        vh_, z_, h_ = vh.unbind(0), z.unbind(0), hs.unbind(0)
        if grad:
            pz_, qa_, rr_, w_ = (F[k].unbind(0) for k in range(4))
        for t in range(T):
            torch.mm(h_[t], vt, out=vh_[t])
            torch.addcmul(b_[t], vh_[t], a_[t], out=z_[t]).tanh_()
            hn = torch.lerp(z_[t], h_[t], r_[t], out=h_[t + 1])
            if outer == "tanh":
                hn.tanh_()
            elif outer == "relu":
                hn.relu_()
            if grad:
                if outer == "tanh":
                    torch.addcmul(one, hn, hn, value=-1, out=dphi)  # Φ' = 1 − h²
                elif outer == "relu":
                    torch.gt(hn, 0, out=dphi)  # Φ' = 1[h > 0] (as torch.relu's backward)
                else:
                    dphi.fill_(1)
                if k_ is not None:
                    dphi.mul_(ak_[t])  # dL/dĥ = (1 − k) dL/dh
                pz = torch.addcmul(one, z_[t], z_[t], value=-1, out=pz_[t]).mul_(dphi)  # Φ' (1 − z²)
                pz.addcmul_(pz, r_[t], value=-1)  # · (1 − r)
                torch.mul(pz, a_[t], out=qa_[t])
                torch.mul(dphi, r_[t], out=rr_[t])
                if k_ is not None:
                    rr_[t].add_(k_[t])
                torch.sub(h_[t], z_[t], out=w_[t]).mul_(dphi)  # Φ' (h_{t-1} − z)
            if k_ is not None:
                hn.lerp_(h_[t], k_[t])
        ctx.save_for_backward(F, vh, hs, v)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        F, vh, hs, v = ctx.saved_tensors
        if ctx.ext is not None:
            dxp, dh0, dv = ctx.ext.delta_rnn_backward(F, vh, hs, v, dy, dhT)
            return dxp, dh0, dv, None, None
        pz, qa, rr, w = F.unbind(0)
        T, B, H = vh.shape
        D = torch.empty_like(vh)  # dL/dh_t (total)
        dvh = torch.empty_like(vh)
        dh = dhT.clone() if dhT is not None else vh.new_zeros(B, H)
        tmp = vh.new_empty(B, H)
        D_, dvh_, qa_, rr_ = D.unbind(0), dvh.unbind(0), qa.unbind(0), rr.unbind(0)
        dy_ = dy.unbind(0) if dy is not None else None
        for t in range(T - 1, -1, -1):
            if dy_ is not None:
                torch.add(dh, dy_[t], out=D_[t])
            else:
                D_[t].copy_(dh)
            torch.mul(D_[t], qa_[t], out=dvh_[t])
            torch.mul(D_[t], rr_[t], out=tmp)
            dh = torch.addmm(tmp, dvh_[t], v)
        db = D * pz
        dxp = torch.cat([db * vh, db, D.mul_(w)], -1)
        dv = torch.mm(dvh.view(T * B, H).t(), hs[:-1].reshape(T * B, H))
        return dxp, dh, dv, None, None
