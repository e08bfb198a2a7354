"""Variable Computation RNNs: VC-LSTM (article 000), VC-RNN and VC-GRU (Jernite et al. 2017,
"Variable Computation in Recurrent Neural Networks", arXiv 1611.06188).

At every step a scalar scheduler decides how much of the state to update::

    m_t = σ(w_m · [x_t, h_{t-1}] + b_m)                                    (scalar per example)
    (e_t)_i = Thres_ε(σ(λ (m_t D − i)))        i = o, …, D − 1 + o         (hidden dims, D = H)
    (e^x_t)_j = Thres_ε(σ(λ (m_t I − j)))      j = o, …, I − 1 + o         (input dims)
    x̄ = e^x ⊙ x_t,  h̄ = e ⊙ h_{t-1},  c̄ = e ⊙ c_{t-1}
    h̃_t, c̃_t = base cell (LSTM / Elman RNN / GRU) on x̄, h̄ (, c̄)
    h_t = e ⊙ h̃_t + (1 − e) ⊙ h_{t-1}    (same for c; computed as ``lerp``, exact at e ∈ {0, 1})

so only the leading ≈ ⌈m_t D⌉ dims change (a soft edge of a few dims when the threshold is
soft) and the rest are carried over exactly. The index offset ``o`` is 0 as in the article's
code (``range(n_units)``) — then m_t = 1 reaches every dim — or 1 as in the paper's formula.

Two thresholds:

* ``threshold="hard"`` — the article's code: e = 1[σ(λ(mD − i)) > 1 − ε] (``relu(sign(·))``);
  no gradient reaches the scheduler through the mask (only through the penalty).
* ``threshold="soft"`` — the paper's Thres_ε: values below ε snap to 0, above 1 − ε to 1,
  values in between pass unchanged, so the edge dims carry a gradient to m_t.

Paper extras: the sharpness λ can follow a schedule over training (``lam_schedule`` linear or
exp from ``lam`` to ``lam_final``; the trainer calls :meth:`set_training_progress`; the current
λ is a buffer, ``lam_now``, so a checkpoint evaluates with the λ it was saved at), and a
computation penalty ``penalty · mean_b((mean_t m_t − m̄)²)`` pulls the average m_t toward the
target m̄ (``target_m``); it is returned by :meth:`extra_loss` and added to the loss.
:meth:`stats` reports ``mean_m`` and ``compute_fraction`` (the fraction of hidden units updated,
e > 0, per step — the computation the cell actually spends), averaged since the last call.

Execution: every step is one matmul ``[x̄, h̄] @ W`` (input and recurrent weights stacked once
per sequence) and both masks come from one ``m·zs + zo`` op. With no per-step hook, VC-LSTM and
VC-GRU run :class:`VCLSTMSequenceFn` / :class:`VCGRUSequenceFn` (hand-written forward + BPTT, same
function, gradchecked; the state lives in one ``[x, 1, h(, c)]`` buffer so the mask, masking
``[x, 1, h]``, the bias-free GEMM and the state lerp are one op each, and the soft threshold is
applied in z-space, see :func:`_mask_`); VC-RNN and any hooked VC cell use the generic
:meth:`step` under autograd (its soft mask also in z-space: σ(z + 10³⁰·hardshrink(z, κ))).
"""
from __future__ import annotations

from abc import abstractmethod

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import Cell, State


_sig_bwd = torch.ops.aten.sigmoid_backward
_tanh_bwd = torch.ops.aten.tanh_backward
# the out= overloads' bound C++ functions (skip OpOverload.__call__'s Python frame, ~0.7 µs a call)
_sig_bwd_ = getattr(_sig_bwd.grad_input, "_op", _sig_bwd.grad_input)
_tanh_bwd_ = getattr(_tanh_bwd.grad_input, "_op", _tanh_bwd.grad_input)
_hardshrink_ = getattr(torch.ops.aten.hardshrink.out, "_op", torch.ops.aten.hardshrink.out)
_SNAP = 1e30  # z outside the band: z + 1e30·z is ±huge (or ±inf), so σ of it is exactly 0 or 1


def _mask_(e: Tensor, m: Tensor, zo: Tensor, zs: Tensor, hard: bool, kappa: float, tmp: Tensor) -> Tensor:
    """The masks of one step, in place into ``e [B, K]`` from ``m [B, 1]``, in z-space
    (z = m·zs + zo; ``tmp`` is scratch): hard — e = 1[z > κ]; soft — Thres_ε(σ(z)) computed as
    σ(z + 10³⁰·hardshrink(z, κ)), i.e. z ≥ κ sent to +∞-like and z ≤ −κ to −∞-like before σ
    (σ(z) ≷ 1 − ε, ε ⇔ z ≷ ±κ with κ = log((1 − ε)/ε): the same function up to rounding at the
    band's edges), 4 ops instead of sigmoid + 2 × (compare, masked_fill)."""
    torch.addcmul(zo, m, zs, out=e)
    if hard:
        return torch.gt(e, kappa, out=e)
    _hardshrink_(e, kappa, out=tmp)
    return e.add_(tmp, alpha=_SNAP).sigmoid_()


def _mask_consts(zs: Tensor, zo: Tensor, I: int, dup_h: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``zs, zo`` for the columns ``[x, 1, h(, c)]`` of U (the bias column: e = 1, ∂z/∂m = 0; the
    hidden half repeated for c) and ``zs`` as a column for the backward's ∂z/∂m."""
    one_s, one_o = zs.new_zeros(1), zo.new_full((1,), 1e4)
    parts_s, parts_o = [zs[:I], one_s, zs[I:]], [zo[:I], one_o, zo[I:]]
    if dup_h:
        parts_s.append(zs[I:])
        parts_o.append(zo[I:])
    zs2 = torch.cat(parts_s)
    return zs2, torch.cat(parts_o), zs2.unsqueeze(1)


def _keep_lam_if_missing(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """A checkpoint saved before λ was a buffer: keep the cell's current λ."""
    state_dict.setdefault(prefix + "lam_now", module.lam_now.detach().clone())


def _with_bias_row(w: Tensor, b: Tensor, I: int) -> Tensor:
    """``[w_x; b; w_h]`` — the weight read by ``[x̄, 1, h̄]`` (the bias inside the GEMM)."""
    return torch.cat([w[:I], b.unsqueeze(0), w[I:]])


def _scheduler_backward_(de: Tensor, e: Tensor, m: Tensor, zs_col: Tensor, dM: Optional[Tensor], da: Tensor,
                         dh: Tensor, wmh_t: Tensor, hard: bool) -> None:
    """∂L/∂a of the scheduler's pre-activation a = w_m·[x, h] + b_m for one step into ``da``
    and its share of ∂L/∂h (through w_mh) added to ``dh``, from ``de`` = ∂L/∂e (overwritten):
    ∂e/∂z = e (1 − e) inside the soft band (σ'; 0 outside, where e ∈ {0, 1}), ∂z/∂m = zs,
    plus any direct gradient ``dM`` on m (the penalty); the hard threshold passes only dM."""
    if hard:
        if dM is None:
            da.zero_()
            return
        da.copy_(dM)
    else:
        _sig_bwd_(de, e, grad_input=de)
        if dM is None:
            torch.mm(de, zs_col, out=da)
        else:
            torch.addmm(dM, de, zs_col, out=da)
    _sig_bwd_(da, m, grad_input=da)
    dh.addmm_(da, wmh_t)


class VCLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-LSTM with a hand-written BPTT (the no-hook path of :class:`VCLSTMCell`).

    Inputs: ``xp [T, B, I + 1]`` (``[x, w_mx·x + b_m]``), ``h0, c0``, the stacked weight
    ``w [(I + H), 4H]`` (gate order o, i, f, g) and bias ``b [4H]``, ``w_mh [H, 1]``, the mask
    constants ``zs, zo [I + H]`` (z = m·zs + zo) and ``(I, hard, eps, kappa)``. Outputs
    ``y [T, B, H], h_T, c_T, M [T, B, 1]`` (M = m_t, an output so the penalty's gradient flows;
    outputs without a gradient arrive as None). The soft threshold passes ``∂e/∂z = σ'(z)``
    inside the band and 0 outside; the hard one passes nothing.

    Layout (fewer per-step ops — at these sizes the loop is bound by per-op cost, not FLOPs):
    ``U[t] = [x_t, 1, h_{t-1}, c_{t-1}]`` is one row of a ``[T + 1, B, I + 1 + 2H]`` buffer and the
    mask is computed once for all its columns (1 on the bias column, the hidden half repeated
    for c). ``[x̄, 1, h̄]`` (kept for the weight gradient) is one op, one GEMM without a bias add
    reads it (the bias is a row of the weight, so its gradient comes out of the weight-gradient
    GEMM), and ``[h_t, c_t] = lerp([h, c], [h̃, c̃], e)`` is one op writing ``U[t + 1]``; y is a
    view of U. The gates live in a reused scratch row (only σ(f) is kept, for ∂c̄), and
    ``tanh(c̃), g, c̄`` (c̄ = e ⊙ c, one more op) sit side by side in another, so one
    ``sigmoid_backward`` against ``σ(o, i, f)`` forms the backward's factors of o, i and f;
    the loops iterate ``zip`` over the per-step views. In the backward, gate
    order o, i, f, g lets one broadcast op form the three gradients ∂c̃ multiplies, and the
    carried state gradient is one ``lerp`` (``(1 − e) ∂[h, c] + e ∂[h̄, c̄]``); the per-step
    factors (σ', tanh' products, h̃ − h, …) are formed in the forward loop while their inputs
    are in cache (a vectorized pass over time after the loop measured slower: it streams every
    operand from memory again); per-step views come from one ``unbind`` per tensor. Weight
    gradients are one GEMM.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w: Tensor, b: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta
        T, B, _ = xp.shape
        H = h0.shape[1]
        J = I + 1  # first h column of U
        JH = J + H  # first c column of U
        K = JH + H
        zs2, zo2, _ = _mask_consts(zs, zo, I, True)
        wf = _with_bias_row(w, b, I)  # [(I + 1 + H), 4H], contiguous
        U = xp.new_empty(T + 1, B, K)  # [x_t, 1, h_{t-1}, c_{t-1}]
        U[:T, :, :I] = xp[..., :I]
        U[:, :, I] = 1.0
        U[0, :, J:JH], U[0, :, JH:] = h0, c0
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, K)  # e (x dims, bias, h dims, h dims again for c)
        xb = xp.new_empty(T, B, JH)  # [x̄, 1, h̄]
        g = xp.new_empty(B, 4 * H)  # scratch: σ(o), σ(i), σ(f), g's pre-activation
        g_s, g_o, g_i, g_f, g_g = g[:, :3 * H], g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        fs = xp.new_empty(T, B, H)  # σ(f), kept for ∂c̄ = ∂c̃ ⊙ f
        # the backward's per-step factors, formed here while their inputs are in cache:
        # d pre = ∂h̃ ⊙ F[0] (o) and ∂c̃ ⊙ F[1:] (i, f, g); ∂c̃ += ∂h̃ ⊙ q; ∂e += ∂[h, c] ⊙ dd
        F = xp.new_empty(T, B, 4, H)
        q = xp.new_empty(T, B, H)  # o (1 − tanh²c̃)
        dd = xp.new_empty(T, B, 2 * H)  # [h̃ − h, c̃ − c]
        ht, tmp = xp.new_empty(B, 2 * H), xp.new_empty(B, K)  # [h̃, c̃]; scratch
        h_t, c_t = ht[:, :H], ht[:, H:]
        P = xp.new_empty(B, 3 * H)  # [tanh(c̃), g, c̄]: σ' of o, i, f multiplies these
        tc, gg, cb = P[:, :H], P[:, H:2 * H], P[:, 2 * H:]
        V = [tn.unbind(0) for tn in (xp[..., I:], ms, es, es[..., :JH], es[..., JH:], U[..., :JH], U[..., JH:],
                                      xb, fs, F.view(T, B, 4 * H)[..., :3 * H], F[:, :, 3], q, dd,
                                      U[..., J:JH], U[..., J:], es[..., J:])]
        V.append(V[14][1:])  # U[t + 1]'s [h, c]
        for a_t, m, e, ex, ec, ux, c, xbt, ft, F012, F3, qt, ddt, h, s, eh, s_next in zip(*V):
            torch.addmm(a_t, h, w_mh, out=m).sigmoid_()
            _mask_(e, m, zo2, zs2, hard, kappa, tmp)
            torch.mul(ux, ex, out=xbt)
            torch.mul(c, ec, out=cb)
            torch.mm(xbt, wf, out=g)
            g_s.sigmoid_()
            ft.copy_(g_f)
            torch.tanh(g_g, out=gg)
            torch.mul(g_f, cb, out=c_t).addcmul_(g_i, gg)  # c̃ = f ⊙ c̄ + i ⊙ g
            torch.tanh(c_t, out=tc)
            torch.mul(g_o, tc, out=h_t)
            torch.lerp(s, ht, eh, out=s_next)
            _sig_bwd_(P, g_s, grad_input=F012)  # [tanh(c̃) σ'(o), g σ'(i), c̄ σ'(f)]
            _tanh_bwd_(g_i, gg, grad_input=F3)  # i (1 − g²)
            _tanh_bwd_(g_o, tc, grad_input=qt)
            torch.sub(ht, s, out=ddt)
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xp, ms, es, xb, fs, F, q, dd, U, w, b, w_mh, zs, zo)
        return U[1:, :, J:JH], U[T, :, J:JH].clone(), U[T, :, JH:].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor],  # type: ignore[override]
                 dM: Optional[Tensor]):
        xp, ms, es, xb, fs, F, q, dd, U, w, b, w_mh, zs, zo = ctx.saved_tensors
        I, hard, eps, kappa = ctx.meta
        T, B, _ = xp.shape
        H = q.shape[2]
        J = I + 1
        JH = J + H
        K = JH + H
        _, _, zs_col = _mask_consts(zs, zo, I, True)
        wt = _with_bias_row(w, b, I).t().contiguous()  # [4H, I + 1 + H] row-major: the faster GEMM
        wmh_t = w_mh.t()
        dS, dS2 = xp.new_zeros(B, 2 * H), xp.new_empty(B, 2 * H)  # ∂L/∂[h, c], two buffers in turn
        if dhT is not None:
            dS[:, :H] = dhT
        if dcT is not None:
            dS[:, H:] = dcT
        dgates = xp.new_empty(T, B, 4 * H)
        dxp = xp.new_empty(T, B, J)  # [∂L/∂x, ∂L/∂a]
        dhc, dX, de = xp.new_empty(B, 2 * H), xp.new_empty(B, K), xp.new_empty(B, K)
        dht, dct, dct3, dcb, dXg = dhc[:, :H], dhc[:, H:], dhc[:, H:].unsqueeze(1), dX[:, JH:], dX[:, :JH]
        dXx, dXs, deS = dX[:, :I], dX[:, J:], de[:, J:]
        halves = {id(d): d[:, :H] for d in (dS, dS2)}
        L = [tn.unbind(0)[::-1] for tn in (F[:, :, 0], F[:, :, 1:], q, dd, fs, es, es[..., :I],
                                      es[..., J:], ms, U[:T], dgates, dgates[..., :H],
                                      dgates[..., H:].view(T, B, 3, H), dxp[..., :I], dxp[..., I:])]
        L.append(dy.unbind(0)[::-1] if dy is not None else (None,) * T)
        L.append(dM.unbind(0)[::-1] if dM is not None else (None,) * T)
        for Fo, F3, qt, ddt, f, e, ex, eh, m, u, dg, dg_o, dg3, dx, da, dyt, dMt in zip(*L):
            if dyt is not None:
                halves[id(dS)].add_(dyt)
            torch.mul(dS, eh, out=dhc)  # [∂h̃, ∂c̃] direct
            dct.addcmul_(dht, qt)
            torch.mul(dht, Fo, out=dg_o)
            torch.mul(F3, dct3, out=dg3)
            torch.mul(dct, f, out=dcb)  # ∂c̄
            torch.mm(dg, wt, out=dXg)  # ∂[x̄, 1, h̄]
            torch.mul(dXx, ex, out=dx)  # ∂x through x̄ = e ⊙ x
            if not hard:
                torch.mul(dX, u, out=de)  # ∂/∂e of [x̄, 1, h̄, c̄]
                deS.addcmul_(dS, ddt)
            torch.lerp(dS, dXs, eh, out=dS2)  # (1 − e) ∂[h, c] + e ∂[h̄, c̄]
            _scheduler_backward_(de, e, m, zs_col, dMt, da, halves[id(dS2)],
                                 wmh_t, hard)
            dS, dS2 = dS2, dS
        G = dgates.reshape(T * B, 4 * H)
        dwb = torch.mm(xb.reshape(T * B, JH).t(), G)  # [w_x; b; w_h] rows
        dw = torch.cat([dwb[:I], dwb[J:]])
        dw_mh = torch.mm(U[:T, :, J:JH].reshape(T * B, H).t(), dxp[..., I:].reshape(T * B, 1))
        return dxp, dS[:, :H], dS[:, H:], dw, dwb[I], dw_mh, None, None, None


class VCGRUSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-GRU with a hand-written BPTT (the no-hook path of :class:`VCGRUCell`).

    Same conventions as :class:`VCLSTMSequenceFn`; ``w [(I + H), 4H]`` is the block matrix whose
    output is ``[r, z, n_x, n_h]`` pre-activations (see :class:`VCGRUCell`). ``U[t] =
    [x_t, 1, h_{t-1}]`` rows of one buffer (one mask op, one masking op, a bias-free GEMM, the
    lerp writes ``U[t + 1]``; y is a view of U). In the backward all four gate gradients are ∂h̃
    times per-step factors built once, vectorized over time, so they take one broadcast op.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w: Tensor, b: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple) -> tuple[Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta
        T, B, _ = xp.shape
        H = h0.shape[1]
        J = I + 1
        K = J + H
        zs2, zo2, _ = _mask_consts(zs, zo, I, False)
        wf = _with_bias_row(w, b, I)
        U = xp.new_empty(T + 1, B, K)  # [x_t, 1, h_{t-1}]
        U[:T, :, :I] = xp[..., :I]
        U[:, :, I] = 1.0
        U[0, :, J:] = h0
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, K)
        xb = xp.new_empty(T, B, K)  # [x̄, 1, h̄]
        gs = xp.new_empty(T, B, 4 * H)  # σ(r), σ(z), n_x, n_h
        ns = xp.new_empty(T, B, H)  # n
        hts = xp.new_empty(T, B, H)  # h̃
        tmp = xp.new_empty(B, K)
        V = [tn.unbind(0) for tn in (xp[..., I:], ms, es, xb, xb[..., J:], gs, gs[..., :2 * H], gs[..., :H],
                                      gs[..., H:2 * H], gs[..., 2 * H:3 * H], gs[..., 3 * H:], ns, hts, U,
                                      U[..., J:], es[..., J:])]
        for t in range(T):
            a_t, m, e, xbt, hb, g, g_rz, r, zg, nx, nh, n, ht, u, h, eh = (lst[t] for lst in V)
            torch.addmm(a_t, h, w_mh, out=m).sigmoid_()
            _mask_(e, m, zo2, zs2, hard, kappa, tmp)
            torch.mul(u, e, out=xbt)
            torch.mm(xbt, wf, out=g)
            g_rz.sigmoid_()
            torch.addcmul(nx, r, nh, out=n).tanh_()
            torch.lerp(n, hb, zg, out=ht)  # (1 − z) n + z h̄
            torch.lerp(h, ht, eh, out=V[14][t + 1])
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xp, ms, es, xb, gs, ns, hts, U, w, b, w_mh, zs, zo)
        return U[1:, :, J:], U[T, :, J:].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dM: Optional[Tensor]):  # type: ignore[override]
        xp, ms, es, xb, gs, ns, hts, U, w, b, w_mh, zs, zo = ctx.saved_tensors
        I, hard, eps, kappa = ctx.meta
        T, B, _ = xp.shape
        H = ns.shape[2]
        J = I + 1
        K = J + H
        _, _, zs_col = _mask_consts(zs, zo, I, False)
        wt = _with_bias_row(w, b, I).t().contiguous()
        wmh_t = w_mh.t()
        dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
        dh2 = xp.new_empty(B, H)
        dgs = xp.new_empty(T, B, 4 * H)
        dU = xp.new_empty(T, B, K)  # ∂L/∂U (the x columns are ∂L/∂x)
        das = xp.new_empty(T, B, 1)
        dht, dX, de = xp.new_empty(B, H), xp.new_empty(B, K), xp.new_empty(B, K)
        dht4, dXh, deh = dht.unsqueeze(1), dX[:, J:], de[:, J:]
        # d pre = ∂h̃ ⊙ F per gate r, z, n_x, n_h, vectorized over time
        r, zg, nh, hb = gs[..., :H], gs[..., H:2 * H], gs[..., 3 * H:], xb[..., J:]
        F = xp.new_empty(T, B, 4, H)
        _tanh_bwd.grad_input(1.0 - zg, ns, grad_input=F[:, :, 2])  # (1 − z)(1 − n²)
        torch.mul(F[:, :, 2], r, out=F[:, :, 3])  # … ⊙ r
        _sig_bwd.grad_input(F[:, :, 2] * nh, r, grad_input=F[:, :, 0])  # … ⊙ n_h σ'(r)
        _sig_bwd.grad_input(hb - ns, zg, grad_input=F[:, :, 1])  # (h̄ − n) σ'(z)
        dd = hts - U[:T, :, J:]  # h̃ − h
        L = [tn.unbind(0) for tn in (F, dd, zg, es, es[..., J:], ms, U, dgs, dgs.view(T, B, 4, H), dU, dU[..., J:],
                                      das)]
        dyl = dy.unbind(0) if dy is not None else None
        dMl = dM.unbind(0) if dM is not None else None
        for t in range(T - 1, -1, -1):
            Ft, ddt, z, e, eh, m, u, dg, dg4, du, duh, da = (lst[t] for lst in L)
            if dyl is not None:
                dh.add_(dyl[t])
            torch.mul(dh, eh, out=dht)
            torch.sub(dh, dht, out=dh2)  # the carried part
            torch.mul(Ft, dht4, out=dg4)
            torch.mm(dg, wt, out=dX)  # ∂[x̄, 1, h̄] through the gates
            dXh.addcmul_(dht, z)  # h̄ also enters h̃ = (1 − z) n + z h̄
            torch.mul(dX, e, out=du)  # through [x̄, 1, h̄] = U ⊙ e
            if not hard:
                torch.mul(dX, u, out=de)  # ∂/∂e
                deh.addcmul_(dh, ddt)
            dh2.add_(duh)
            _scheduler_backward_(de, e, m, zs_col, dMl[t] if dMl is not None else None, da, dh2, wmh_t, hard)
            dh, dh2 = dh2, dh
        G = dgs.reshape(T * B, 4 * H)
        dwb = torch.mm(xb.reshape(T * B, K).t(), G)  # [w_x; b; w_h] rows
        dw = torch.cat([dwb[:I], dwb[J:]])
        dw_mh = torch.mm(U[:T, :, J:].reshape(T * B, H).t(), das.reshape(T * B, 1))
        dxp = torch.cat([dU[..., :I], das], 2)
        return dxp, dh, dw, dwb[I], dw_mh, None, None, None


class VCCell(Cell):
    """Shared scheduler, masks, λ schedule, penalty and statistics of the VC cells."""

    gates = 1
    num_states = 1
    #: for the regularizers: the base cell's matrices (the scheduler vectors stay plain)
    regularizer_weights = {"input": ("weight_ih",), "recurrent": ("weight_hh",)}

    def __init__(self, input_size: int, hidden_size: int, lam: float = 1.0, eps: float = 0.1,
                 threshold: str = "soft", lam_schedule: str = "constant", lam_final: Optional[float] = None,
                 target_m: float = 0.5, penalty: float = 0.0, index_offset: int = 0, mask_input: bool | str = True,
                 m_bias_init: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        if threshold not in ("soft", "hard"):
            raise ValueError(f"threshold must be soft or hard, not {threshold!r}")
        if lam_schedule not in ("constant", "linear", "exp"):
            raise ValueError(f"lam_schedule must be constant, linear or exp, not {lam_schedule!r}")
        if not 0.0 < eps < 0.5:
            raise ValueError("eps must lie in (0, 0.5)")
        self.lam0 = float(lam)
        self.lam = float(lam)
        self.lam_final = float(lam_final) if lam_final is not None else float(lam)
        self.lam_schedule = lam_schedule
        if lam_schedule != "constant":
            # a scheduled λ is part of the function: it travels with the weights (state_dict), so a
            # checkpoint evaluates with the λ it was saved at; checkpoints without it keep the current λ
            self.register_buffer("lam_now", torch.tensor(self.lam, dtype=torch.float64))
            self.register_load_state_dict_pre_hook(_keep_lam_if_missing)
            self.register_load_state_dict_post_hook(lambda mod, keys: setattr(mod, "lam", float(mod.lam_now)))
        self.eps = float(eps)
        self.threshold = threshold
        self.target_m = float(target_m)
        self.penalty = float(penalty)
        self.index_offset = int(index_offset)
        if mask_input == "auto":  # resolved by cell_factory from the model's input; alone: dense input
            mask_input = True
        if not isinstance(mask_input, bool):
            raise ValueError(f"mask_input must be true, false or auto, not {mask_input!r}")
        self.mask_input = mask_input
        self.m_bias_init = float(m_bias_init)
        H, I, G = hidden_size, input_size, self.gates
        # scheduler m_t = σ(w_mx·x + w_mh·h + b_m), the article's w_m_x, w_m_h, b_m
        self.w_mx = nn.Parameter(torch.empty(I, 1))
        self.w_mh = nn.Parameter(torch.empty(H, 1))
        self.b_m = nn.Parameter(torch.zeros(1))
        # base-cell weights in the torch.nn layout (so weight norm / drop find the same names)
        self.weight_ih = nn.Parameter(torch.empty(G * H, I))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H))
        self.bias_ih = nn.Parameter(torch.empty(G * H))
        self.bias_hh = nn.Parameter(torch.empty(G * H))
        self.register_buffer("idx_h", torch.arange(H, dtype=torch.float32) + self.index_offset, persistent=False)
        self.register_buffer("idx_x", torch.arange(I, dtype=torch.float32) + self.index_offset, persistent=False)
        self._ms: list[Tensor] = []  # m_t of the running forward, [B, 1] each
        self._pen_terms: list[Tensor] = []  # [T, B] blocks of m_t awaiting extra_loss()
        self._sum_m = 0.0
        self._sum_frac = 0.0
        self._n = 0
        self.initialize()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.w_mx, self.w_mh):
            nn.init.uniform_(p, -k, k)
        nn.init.constant_(self.b_m, self.m_bias_init)

    # -- λ schedule --------------------------------------------------------------------------
    def set_training_progress(self, step: int, total_steps: int) -> None:
        """Move λ along its schedule: ``p = step / total_steps`` from ``lam`` to ``lam_final``."""
        p = min(max(step / max(total_steps, 1), 0.0), 1.0)
        if self.lam_schedule == "linear":
            self.lam = self.lam0 + (self.lam_final - self.lam0) * p
        elif self.lam_schedule == "exp":
            self.lam = self.lam0 * (self.lam_final / self.lam0) ** p
        else:
            self.lam = self.lam0
        if self.lam_schedule != "constant":
            self.lam_now.fill_(self.lam)

    # -- masks -------------------------------------------------------------------------------
    def units_updated(self, m: Tensor) -> Tensor:
        """How many hidden dims have e_i > 0 for scheduler values ``m`` (any shape), in closed
        form: soft — σ(λ(mD − i)) ≥ ε ⇔ i ≤ mD + κ/λ; hard — σ(·) > 1 − ε ⇔ i < mD − κ/λ,
        with κ = log((1 − ε)/ε) and i = o, …, D − 1 + o."""
        D, o = self.hidden_size, self.index_offset
        k = math.log((1.0 - self.eps) / self.eps) / self.lam
        if self.threshold == "hard":
            n = torch.ceil(m * D - k) - o
        else:
            n = torch.floor(m * D + k) - o + 1
        return n.clamp(0, D)

    def mask(self, m: Tensor, idx: Tensor) -> Tensor:
        """``e_i = Thres_ε(σ(λ(m·D − i)))`` for ``m [B, 1]`` → ``[B, D]`` (hard or soft)."""
        D = idx.shape[0]
        s = torch.sigmoid((m * D - idx.to(m.dtype)) * self.lam)
        if self.threshold == "hard":
            return (s > 1.0 - self.eps).to(m.dtype)
        return torch.where(s > 1.0 - self.eps, 1.0, torch.where(s < self.eps, 0.0, s))

    # -- the fused per-step path ----------------------------------------------------------------
    @abstractmethod
    def _prepare(self) -> tuple[Tensor, Tensor]:
        """The stacked weight ``[(I + H), G·H]`` (reading ``[x̄, h̄]``) and bias; subclasses."""

    def project_input(self, x: Tensor) -> Tensor:
        """``[x, w_mx·x + b_m]`` for all steps (x itself is needed per step: its mask depends on
        m_t and so on h_{t-1}). Also prepares, once per sequence, the stacked weight of the
        single per-step matmul ``[x̄, h̄] @ W`` and the mask constants for the current λ."""
        self._w, self._b = self._prepare()
        I, H = self.input_size, self.hidden_size
        dt, dev = x.dtype, x.device
        D = torch.cat([torch.full((I,), float(I)), torch.full((H,), float(H))]).to(dev, dt)
        idx = torch.cat([self.idx_x, self.idx_h]).to(dev, dt)
        if not self.mask_input:  # the input dims keep e = 1: z = +∞-like constant
            D[:I], idx[:I] = 0.0, -1e9
        self._zs, self._zo = D * self.lam, idx * (-self.lam)
        self._kappa = math.log((1.0 - self.eps) / self.eps)  # σ(z) > 1 − ε  ⇔  z > κ
        return torch.cat([x, torch.addmm(self.b_m, x.reshape(-1, x.shape[-1]), self.w_mx)
                          .reshape(*x.shape[:-1], 1)], -1)

    def masked_xh(self, xp: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """m_t, both masks at once (``[x-dims, h-dims]``), and ``[x̄, h̄] = e ⊙ [x, h]``."""
        I = self.input_size
        m = torch.sigmoid(torch.addmm(xp[:, I:], h, self.w_mh))
        self._ms.append(m)
        z = torch.addcmul(self._zo, m, self._zs)  # λ (m·D − i) for every x and h dim
        if self.threshold == "hard":
            e = (z > self._kappa).to(z.dtype)
        else:  # Thres_ε(σ(z)) in z-space as in :func:`_mask_` (no gradient outside the band)
            e = torch.sigmoid(torch.add(z, nn.functional.hardshrink(z, self._kappa), alpha=_SNAP))
        xh = torch.cat([xp[:, :I], h], 1) * e
        return xh, e[:, I:]

    # -- bookkeeping ---------------------------------------------------------------------------
    def begin_sequence(self, batch: int) -> None:
        self.end_sequence()  # fold steps run outside a layer (e.g. a model calling step directly)

    def end_sequence(self) -> None:
        """Fold the recorded m_t into the running statistics (and the penalty terms)."""
        self._w = self._b = None  # per-sequence weights: drop the graph (and keep deepcopy working)
        if not self._ms:
            return
        M = torch.cat(self._ms, 1)  # [B, T]
        self._ms = []
        with torch.no_grad():  # tensors, no host sync per forward; stats() reads them out
            md = M.detach()
            self._sum_m = self._sum_m + md.sum()
            self._sum_frac = self._sum_frac + self.units_updated(md).sum() / self.hidden_size
            self._n += md.numel()
        if self.penalty > 0 and self.training and M.requires_grad:
            self._pen_terms.append(M)

    def extra_loss(self) -> Optional[Tensor]:
        """``penalty · mean_b((mean_t m_t − m̄)²)`` over the forwards since the last call."""
        self.end_sequence()
        if not self._pen_terms:
            return None
        terms, self._pen_terms = self._pen_terms, []
        if len({t.shape[0] for t in terms}) == 1:
            M = torch.cat(terms, 1)
            return self.penalty * ((M.mean(1) - self.target_m) ** 2).mean()
        return self.penalty * torch.stack([((t.mean(1) - self.target_m) ** 2).mean() for t in terms]).mean()

    def stats(self) -> dict[str, float]:
        """``mean_m`` and ``compute_fraction`` averaged over all steps since the last call."""
        self.end_sequence()
        if self._n == 0:
            return {}
        out = {"mean_m": float(self._sum_m) / self._n, "compute_fraction": float(self._sum_frac) / self._n}
        self._sum_m, self._sum_frac, self._n = 0.0, 0.0, 0
        return out


class VCLSTMCell(VCCell):
    """VC-LSTM (article 000): an ``nn.LSTM``-layout LSTM (gates i, f, g, o) on x̄, h̄, c̄::

        i, f, g, o = split(W_ih x̄ + b_ih + W_hh h̄ + b_hh)
        c̃ = σ(f + forget_bias) ⊙ c̄ + σ(i) ⊙ tanh(g);   h̃ = σ(o) ⊙ tanh(c̃)
        c_t = e ⊙ c̃ + (1 − e) ⊙ c_{t-1};   h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}

    Internally the gate rows are reordered to o, i, f, g once per sequence, so one sigmoid
    covers three gates (and, in the backward, the three gates ∂c̃ reaches are adjacent);
    parameters keep the ``nn.LSTM`` layout.
    """

    gates = 4
    num_states = 2

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        self.forget_bias = float(forget_bias)

    def _prepare(self) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        w = torch.cat([self.weight_ih, self.weight_hh], 1)
        b = self.bias_ih + self.bias_hh
        if self.forget_bias:
            b = b + torch.cat([b.new_zeros(H), b.new_full((H,), self.forget_bias), b.new_zeros(2 * H)])
        # rows i, f, g, o -> o, i, f, g by slices (an index permutation's backward, index_put
        # with accumulation, cost ~1 ms per sequence)
        w = torch.cat([w[3 * H:], w[:2 * H], w[2 * H:3 * H]])
        b = torch.cat([b[3 * H:], b[:2 * H], b[2 * H:3 * H]])
        return w.t(), b

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h, c = state
        xh, e = self.masked_xh(xp, h)
        gates = torch.addmm(self._b, xh, self._w)  # o, i, f, g
        sg = torch.sigmoid(gates[:, :3 * H])
        ct = torch.addcmul(sg[:, 2 * H:] * (c * e), sg[:, H:2 * H], torch.tanh(gates[:, 3 * H:]))
        ht = sg[:, :H] * torch.tanh(ct)
        c = torch.lerp(c, ct, e)
        h = torch.lerp(h, ht, e)
        return h, (h, c)

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """No per-step hook: the whole sequence through :class:`VCLSTMSequenceFn` (same function)."""
        if self.compile:
            return None
        self.begin_sequence(x.shape[1])
        xp = self.project_input(x)
        h0, c0 = state
        y, h, c, M = VCLSTMSequenceFn.apply(xp, h0, c0, self._w, self._b, self.w_mh, self._zs, self._zo,
                                            (self.input_size, self.threshold == "hard", self.eps, self._kappa))
        self._ms = list(M.unbind(0))
        self.end_sequence()
        return y, (h, c)


class VCRNNCell(VCCell):
    """VC-RNN (Jernite et al. 2017): h̃ = tanh(W_ih x̄ + b_ih + W_hh h̄ + b_hh); h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}."""

    gates = 1

    def _prepare(self) -> tuple[Tensor, Tensor]:
        return torch.cat([self.weight_ih, self.weight_hh], 1).t(), self.bias_ih + self.bias_hh

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h = state[0]
        xh, e = self.masked_xh(xp, h)
        h = torch.lerp(h, torch.tanh(torch.addmm(self._b, xh, self._w)), e)
        return h, (h,)


class VCGRUCell(VCCell):
    """VC-GRU (Jernite et al. 2017): an ``nn.GRU``-layout GRU (gates r, z, n) on x̄, h̄::

        r = σ(W_ir x̄ + b_ir + W_hr h̄ + b_hr);  z = σ(W_iz x̄ + b_iz + W_hz h̄ + b_hz)
        n = tanh(W_in x̄ + b_in + r ⊙ (W_hn h̄ + b_hn));  h̃ = (1 − z) ⊙ n + z ⊙ h̄
        h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}

    One matmul per step: ``[x̄, h̄]`` times the block matrix ``[[W_ir W_iz W_in 0], [W_hr W_hz 0 W_hn]]``.
    """

    gates = 3

    def _prepare(self) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        wi, wh = self.weight_ih, self.weight_hh
        top = torch.cat([wi, wi.new_zeros(H, self.input_size)], 0)  # [4H, I]
        bot = torch.cat([wh[:2 * H], wh.new_zeros(H, H), wh[2 * H:]], 0)  # [4H, H]
        b = torch.cat([self.bias_ih[:2 * H] + self.bias_hh[:2 * H], self.bias_ih[2 * H:], self.bias_hh[2 * H:]])
        return torch.cat([top, bot], 1).t(), b

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h = state[0]
        xh, e = self.masked_xh(xp, h)
        g = torch.addmm(self._b, xh, self._w)  # [r, z, n_x, n_h]
        rz = torch.sigmoid(g[:, :2 * H])
        n = torch.tanh(torch.addcmul(g[:, 2 * H:3 * H], rz[:, :H], g[:, 3 * H:]))
        ht = torch.lerp(n, xh[:, self.input_size:], rz[:, H:])  # (1 − z) n + z h̄
        h = torch.lerp(h, ht, e)
        return h, (h,)

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """No per-step hook: the whole sequence through :class:`VCGRUSequenceFn` (same function)."""
        if self.compile:
            return None
        self.begin_sequence(x.shape[1])
        xp = self.project_input(x)
        y, h, M = VCGRUSequenceFn.apply(xp, state[0], self._w, self._b, self.w_mh, self._zs, self._zo,
                                        (self.input_size, self.threshold == "hard", self.eps, self._kappa))
        self._ms = list(M.unbind(0))
        self.end_sequence()
        return y, (h,)
