"""The VC-RNN whole-sequence kernel (:class:`~rnnbench.cells.vc.VCRNNCell`, no per-step hook),
built on the masks and scheduler backward of :mod:`rnnbench.cells.kernels.vc`."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native
from .vc import (_gemm_weights, _keep_cols, _keep_rows, _mask_, _mask_consts, _scheduler_backward_, _stacked_grad,
                 _steps, _times_one_minus_k_, _u_buffer)

_tanh_bwd = torch.ops.aten.tanh_backward


class VCRNNForwardStep(NamedTuple):
    """Step t's views of the VC-RNN forward's buffers (``U[t] = [x_t, 1, h_{t-1}]``)."""
    a: Tensor  #: the scheduler's input part w_mx·x_t + b_m
    m: Tensor  #: m_t, written
    e: Tensor  #: the mask over U's columns, written
    xb: Tensor  #: [x̄, 1, h̄], written (kept for the weight gradient)
    ht: Tensor  #: h̃ = tanh([x̄, 1, h̄] W), written
    u: Tensor  #: U[t]
    h: Tensor  #: U[t]'s h
    eh: Tensor  #: the mask over h
    h_next: Tensor  #: U[t + 1]'s h, written
    ak: Optional[Tensor]  #: zoneout's 1 − k (None: no zoneout)
    ez: Optional[Tensor]  #: the state lerp's weight e' = ak ⊙ e, written (zoneout)


class VCRNNBackwardStep(NamedTuple):
    """Step t's views of the VC-RNN backward's saved tensors and gradient buffers."""
    F: Tensor  #: e' (1 − h̃²): ∂ pre-activation = ∂h_t ⊙ F
    ce: Tensor  #: 1 − e' over h: the carried share of ∂h_t
    dd: Tensor  #: h̃ − h (zoneout: ⊙ (1 − k))
    e: Tensor
    eh: Tensor
    m: Tensor
    u: Tensor
    dg: Tensor  #: ∂ pre-activation, written
    du: Tensor  #: ∂L/∂U[t] (its x columns are ∂L/∂x_t), written
    duh: Tensor
    da: Tensor  #: ∂L/∂a_t, written
    dy: Optional[Tensor]  #: ∂L/∂y_t (None: no gradient on the outputs)
    dM: Optional[Tensor]  #: ∂L/∂m_t from the penalty (None: none)


class VCRNNSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-RNN with a hand-written BPTT (the no-hook path of :class:`VCRNNCell`);
    the same loop runs compiled (native/vcrnn.cpp) where :func:`native.get` gives the module, else in Python.

    Same conventions as :class:`~rnnbench.cells.kernels.vc.VCGRUSequenceFn`: inputs ``xp [T, B, I +
    1]`` (``[x, w_mx·x + b_m]``), ``h0``, the stacked weight ``wt [H, I + 1 + H]`` (the bias its
    column I), ``w_mh [H, 1]``, the mask constants ``zs, zo`` and ``(I, hard, eps, kappa)`` (a fifth
    entry is ignored); outputs ``y [T, B, H], h_T, M [T, B, 1]``. Per step ``m = σ(a + h w_mh)``,
    ``e`` = the mask of ``U[t] = [x_t, 1, h_{t-1}]``, ``h̃ = tanh((U ⊙ e) [w_x; b; w_h])``, ``h_t =
    lerp(h, h̃, e)``. In the backward ``∂pre = ∂h_t ⊙ e (1 − h̃²)`` (one op with the factor formed
    once, vectorized over time), ``∂h_{t−1} = (1 − e) ∂h_t + e ⊙ ∂[h̄]`` plus the scheduler's share.
    Zoneout (``k``, broadcastable to ``[T, B, H]``) as in
    :class:`~rnnbench.cells.kernels.vc.VCGRUSequenceFn`: the state lerp's weight ``e' = (1 − k) ⊙
    e`` (the masking h̄ = e ⊙ h keeps e), so ``F = e' (1 − h̃²)``, ``1 − k`` is folded into ``h̃ −
    h`` and the carried gradient is ``(1 − e') ∂h_t + e ⊙ ∂[h̄]``.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, wt: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple, k: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta[:4]
        T, B, _ = xp.shape
        H = h0.shape[1]
        J = I + 1
        K = J + H
        zs2, zo2, _ = _mask_consts(zs, zo, I, False)
        wf, wt = _gemm_weights(wt)  # [(I + 1 + H), H] and [H, I + 1 + H], row-major
        ez = xp.new_empty(T, B, H) if k is not None else None  # e' = (1 − k) ⊙ e
        ctx.ext = ext = native.get(xp)
        if ext is not None:
            keep = (_keep_rows((k,), B, H, xp) or [None])[0]  # k itself: the compiled loop forms 1 − k
            U, ms, es, xb, hts = ext.vcrnn_forward(xp, h0, wf, w_mh, zs2, zo2, ez, keep, I, hard, kappa)
        else:
            keep = _keep_cols((k,), T, B, H, xp)  # zoneout: 1 − k
            U = _u_buffer(xp, I, h0)  # [x_t, 1, h_{t-1}]
            ms = xp.new_empty(T, B, 1)
            es = xp.new_empty(T, B, K)
            xb = xp.new_empty(T, B, K)  # [x̄, 1, h̄]
            hts = xp.new_empty(T, B, H)  # h̃
            tmp = xp.new_empty(B, K)
            views = VCRNNForwardStep(a=xp[..., I:], m=ms, e=es, xb=xb, ht=hts, u=U[:T], h=U[:T, :, J:],
                                     eh=es[..., J:], h_next=U[1:, :, J:],
                                     ak=keep.expand(T, B, H) if keep is not None else None, ez=ez)
            for v in _steps(views, VCRNNForwardStep):
                torch.addmm(v.a, v.h, w_mh, out=v.m).sigmoid_()
                _mask_(v.e, v.m, zo2, zs2, hard, kappa, tmp)
                torch.mul(v.u, v.e, out=v.xb)
                torch.mm(v.xb, wf, out=v.ht).tanh_()
                ew = v.eh if v.ez is None else torch.mul(v.eh, v.ak, out=v.ez)
                torch.lerp(v.h, v.ht, ew, out=v.h_next)
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xp, ms, es, xb, hts, U, wt, w_mh, zs, zo, ez, keep)
        return U[1:, :, J:], U[T, :, J:].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dM: Optional[Tensor]):  # type: ignore[override]
        xp, ms, es, xb, hts, U, wt, w_mh, zs, zo, ez, keep = ctx.saved_tensors  # keep: k or 1 − k
        I, hard, eps, kappa = ctx.meta[:4]
        T, B, _ = xp.shape
        H = hts.shape[2]
        J = I + 1
        K = J + H
        _, _, zs_col = _mask_consts(zs, zo, I, False)
        eh, hs = es[..., J:], U[:T, :, J:]
        ew = eh if ez is None else ez  # the state lerp's weight e'
        F = _tanh_bwd(ew, hts)  # e' (1 − h̃²), vectorized over time
        dd = None if hard else hts - hs  # h̃ − h: ∂e through the lerp
        if dd is not None:
            _times_one_minus_k_(dd, keep, ctx.ext is not None)  # ∂e = (1 − k) ⊙ ∂e'
        if ctx.ext is not None:
            dxp, dh, dgs = ctx.ext.vcrnn_backward(F, dd, es, ez, ms, U, wt, w_mh, zs_col, dy, dhT, dM, I, hard)
        else:
            dgs = xp.new_empty(T, B, H)
            ce = 1.0 - ew
            wmh_t = w_mh.t()
            dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
            dh2 = xp.new_empty(B, H)
            dU = xp.new_empty(T, B, K)  # ∂L/∂U (the x columns are ∂L/∂x)
            das = xp.new_empty(T, B, 1)
            dX, de = xp.new_empty(B, K), xp.new_empty(B, K)
            deh = de[:, J:]
            views = VCRNNBackwardStep(F=F, ce=ce, dd=dd, e=es, eh=eh, m=ms, u=U[:T], dg=dgs, du=dU, duh=dU[..., J:],
                                      da=das, dy=dy, dM=dM)
            for v in _steps(views, VCRNNBackwardStep, reverse=True):
                if v.dy is not None:
                    dh.add_(v.dy)
                torch.mul(dh, v.F, out=v.dg)
                torch.mm(v.dg, wt, out=dX)  # ∂[x̄, 1, h̄]
                torch.mul(dX, v.e, out=v.du)  # through [x̄, 1, h̄] = U ⊙ e
                if not hard:
                    torch.mul(dX, v.u, out=de)  # ∂/∂e
                    deh.addcmul_(dh, v.dd)
                torch.addcmul(v.duh, dh, v.ce, out=dh2)  # (1 − e) ∂h_t + e ∂h̄
                _scheduler_backward_(de, v.e, v.m, zs_col, v.dM, v.da, dh2, wmh_t, hard)
                dh, dh2 = dh2, dh
            dxp = torch.cat([dU[..., :I], das], 2)
        dw_mh = torch.mm(hs.reshape(T * B, H).t(), dxp[..., I:].reshape(T * B, 1))
        return dxp, dh, _stacked_grad(xb, dgs), dw_mh, None, None, None, None
