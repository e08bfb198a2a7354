"""The VC-LSTM and VC-GRU whole-sequence kernels (:mod:`rnnbench.cells.vc`, no per-step hook):
the masks in z-space and the scheduler's backward they share, and the two autograd Functions.
Each names the per-step views its loops walk (:class:`VCLSTMForwardStep`, …); the same loops run
compiled (native/vc.cpp, on the buffers allocated here) where :func:`native.get` gives the module."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import as_factor, native

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


def _u_buffer(xp: Tensor, I: int, *states: Tensor) -> Tensor:
    """``U [T + 1, B, I + 1 + ΣH]``, rows ``[x_t, 1, h_{t-1}(, c_{t-1})]``: x and the bias column
    filled, the initial states in ``U[0]`` (the loop writes each next row's states)."""
    T, B, _ = xp.shape
    U = xp.new_empty(T + 1, B, I + 1 + sum(s.shape[1] for s in states))
    U[:T, :, :I] = xp[..., :I]
    U[:, :, I] = 1.0
    U[0, :, I + 1:] = torch.cat(states, 1)
    return U


def _gemm_weights(wt: Tensor) -> tuple[Tensor, Tensor]:
    """The stacked weight ``wt [G·H, I + 1 + H]`` (row r reads ``[x̄, 1, h̄]``, the bias inside
    the GEMM) as the forward's ``wf = wtᵀ`` and the backward's ``wt``, both row-major: each loop's
    GEMM reads its operand in the layout MKL runs fastest at these sizes (measured: a transposed
    operand costs +9 % per forward step, +50 % per backward step)."""
    wt = wt.contiguous()
    return wt.t().contiguous(), wt


def _stacked_grad(xb: Tensor, dg: Tensor) -> Tensor:
    """∂L/∂wt from the loop's ``xb [T, B, I + 1 + H]`` and gate gradients ``dg [T, B, G·H]``: one
    GEMM ``xbᵀ dg`` (faster than ``dgᵀ xb`` by ≈ 10–25 % here), returned transposed (a view)."""
    T, B, K = xb.shape
    return native.mm(xb.reshape(T * B, K).t(), dg.reshape(T * B, dg.shape[2])).t()


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


def _keep_cols(ks: tuple[Optional[Tensor], ...], T: int, B: int, H: int, like: Tensor) -> Optional[Tensor]:
    """Zoneout's keep factors (one per state slot, each broadcastable to ``[T, B, H]``: per-step
    masks, a locked ``[B, H]`` mask or the evaluation's scalar; None: that slot not mixed) as
    ``1 − k`` side by side, ``[T or 1, B, n·H]``; None without zoneout. Zoneout after the VC update,
    lerp(lerp(s, s̃, e), s, k), is lerp(s, s̃, e') with the state lerp weight ``e' = (1 − k) ⊙ e``."""
    if all(k is None for k in ks):
        return None
    ks = tuple(as_factor(k, like) for k in ks)
    steps = T if any(k is not None and k.dim() == 3 and k.shape[0] != 1 for k in ks) else 1
    out = like.new_empty(steps, B, len(ks) * H)
    one = like.new_ones(())
    for i, k in enumerate(ks):  # each 1 − k written into its columns (half the time of a cat of 1 − k)
        cols = out[..., i * H:(i + 1) * H]
        if k is None:
            cols.fill_(1)
        else:
            torch.sub(one, k.expand(steps, B, H), out=cols)
    return out


def _times_one_minus_k_(t: Tensor, keep: Optional[Tensor], is_k: bool) -> Tensor:
    """``t ⊙ (1 − k)`` in place, from the keep factor as the forward took it: ``k`` itself
    (``is_k``: the compiled kernels, which form 1 − k in their loops) or ``1 − k`` (the Python loop's)."""
    if keep is None:
        return t
    return t.addcmul_(t, keep, value=-1) if is_k else t.mul_(keep)


def _hard_dx_(dx: Tensor, dgates: Tensor, wt_x: Tensor, ex: Tensor, meta: tuple) -> None:
    """The hard threshold's ``∂x = e ⊙ (∂gates · W_xᵀ)`` for all steps in one GEMM, into ``dx``
    (a ``[T, B, I]`` view): its compiled loops skip these columns, since under the hard threshold
    ∂x̄ feeds nothing recurrent (the soft one's ∂e reads it). Zeros when ``meta``'s fifth entry
    says x needs no gradient (the cell's input is data, not another layer's output)."""
    if len(meta) > 4 and not meta[4]:
        dx.zero_()
        return
    T, B, G = dgates.shape
    assert dx.stride(0) == B * dx.stride(1)  # a column slice of a [T, B, ·] buffer: rows merge
    native.mm(dgates.reshape(T * B, G), wt_x, out=dx.as_strided((T * B, dx.shape[2]), dx.stride()[1:]))
    dx.mul_(ex)


def _keep_rows(ks: tuple[Optional[Tensor], ...], B: int, H: int, like: Tensor) -> Optional[list[Tensor]]:
    """Zoneout's keep factors as the compiled VC-LSTM reads them: each slot a contiguous ``[T or 1,
    B, H]`` tensor (None, a slot not mixed: 0; the evaluation's scalar and a locked ``[B, H]`` mask:
    one row); no copy of a per-step mask, which ``keep_masks`` draws contiguous. The slots share one
    dtype: ``uint8`` masks where every factor given is one (the kernels read bytes), else ``like``'s.
    None without zoneout."""
    given = [k for k in ks if k is not None]
    if not given:
        return None
    if any(k.dtype != given[0].dtype for k in given):
        ks = tuple(as_factor(k, like) for k in ks)
    dtype = next(k for k in ks if k is not None).dtype
    rows = []
    for k in ks:
        if k is None:
            k = like.new_zeros(1, B, H, dtype=dtype)
        rows.append(k.expand(k.shape[0] if k.dim() == 3 else 1, B, H).contiguous())
    return rows


def _steps(views: Any, step_type: type, reverse: bool = False):
    """One ``step_type`` per time step: the per-step view (``unbind(0)``, one op per tensor) of
    every field of ``views`` (a field that is None, an absent gradient, stays None)."""
    T = next(len(t) for t in views if t is not None)
    cols = [t.unbind(0) if t is not None else (None,) * T for t in views]
    if reverse:
        cols = [c[::-1] for c in cols]
    return map(step_type._make, zip(*cols))


class VCLSTMForwardStep(NamedTuple):
    """Step t's views of the VC-LSTM forward's buffers (``U[t] = [x_t, 1, h_{t-1}, c_{t-1}]``)."""
    a: Tensor  #: the scheduler's input part w_mx·x_t + b_m
    m: Tensor  #: m_t, written
    e: Tensor  #: the mask over U's columns, written
    ex: Tensor  #: … over [x, 1, h]
    ec: Tensor  #: … over c
    ux: Tensor  #: U[t]'s [x, 1, h]
    c: Tensor  #: U[t]'s c
    xb: Tensor  #: [x̄, 1, h̄], written (kept for the weight gradient)
    f: Tensor  #: σ(f), kept for ∂c̄
    F012: Tensor  #: the backward's factors of o, i, f
    F3: Tensor  #: … of g
    q: Tensor  #: o (1 − tanh²c̃)
    dd: Tensor  #: [h̃ − h, c̃ − c]
    h: Tensor  #: U[t]'s h
    s: Tensor  #: U[t]'s [h, c]
    eh: Tensor  #: the mask over [h, c]
    s_next: Tensor  #: U[t + 1]'s [h, c], written
    ak: Optional[Tensor]  #: zoneout's 1 − [k_h, k_c] (None: no zoneout)
    ez: Optional[Tensor]  #: the state lerp's weight e' = ak ⊙ e, written (zoneout)


class VCLSTMBackwardStep(NamedTuple):
    """Step t's views of the VC-LSTM backward's saved tensors and gradient buffers."""
    Fo: Tensor  #: the factor of o
    F3: Tensor  #: the factors of i, f, g
    q: Tensor
    dd: Tensor
    f: Tensor
    e: Tensor
    ex: Tensor
    eh: Tensor
    w: Tensor  #: the state lerp's weight: e' with zoneout, else eh
    omw: Optional[Tensor]  #: 1 − e' (zoneout; None: the carried gradient is one lerp)
    m: Tensor
    u: Tensor  #: U[t]
    dg: Tensor  #: ∂ gate pre-activations, written
    dg_o: Tensor  #: … of o
    dg3: Tensor  #: … of i, f, g
    dx: Tensor  #: ∂L/∂x_t, written
    da: Tensor  #: ∂L/∂a_t, written
    dy: Optional[Tensor]  #: ∂L/∂y_t (None: no gradient on the outputs)
    dM: Optional[Tensor]  #: ∂L/∂m_t from the penalty (None: none)


class VCGRUForwardStep(NamedTuple):
    """Step t's views of the VC-GRU forward's buffers (``U[t] = [x_t, 1, h_{t-1}]``)."""
    a: Tensor
    m: Tensor
    e: Tensor
    xb: Tensor  #: [x̄, 1, h̄]
    hb: Tensor  #: h̄
    g: Tensor  #: [σ(r), σ(z), n_x, n_h], written
    g_rz: Tensor
    r: Tensor
    z: Tensor
    nx: Tensor
    nh: Tensor
    n: Tensor
    ht: Tensor  #: h̃
    u: Tensor  #: U[t]
    h: Tensor  #: U[t]'s h
    eh: Tensor
    h_next: Tensor  #: U[t + 1]'s h, written
    ak: Optional[Tensor]  #: zoneout's 1 − k (None: no zoneout)
    ez: Optional[Tensor]  #: the state lerp's weight e' = ak ⊙ e, written (zoneout)


class VCGRUBackwardStep(NamedTuple):
    """Step t's views of the VC-GRU backward's saved tensors and gradient buffers."""
    F: Tensor  #: the four gates' factors
    dd: Tensor  #: h̃ − h
    z: Tensor
    e: Tensor
    w: Tensor  #: the state lerp's weight: e' with zoneout, else e over h
    m: Tensor
    u: Tensor
    dg: Tensor
    dg4: Tensor
    du: Tensor  #: ∂L/∂U[t] (its x columns are ∂L/∂x_t)
    duh: Tensor
    da: Tensor
    dy: Optional[Tensor]
    dM: Optional[Tensor]


class VCLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-LSTM with a hand-written BPTT (the no-hook path of :class:`VCLSTMCell`).

    Inputs: ``xp [T, B, I + 1]`` (``[x, w_mx·x + b_m]``), ``h0, c0``, the stacked weight
    ``wt [4H, I + 1 + H]`` (gate rows o, i, f, g; row r reads ``[x̄, 1, h̄]``, so the bias is its
    column I), ``w_mh [H, 1]``, the mask
    constants ``zs, zo [I + H]`` (z = m·zs + zo) and ``(I, hard, eps, kappa[, x_grad])`` (x_grad
    False: x needs no gradient, so the hard threshold's ∂x is left 0; default True). Outputs
    ``y [T, B, H], h_T, c_T, M [T, B, 1]`` (M = m_t, an output so the penalty's gradient flows;
    outputs without a gradient arrive as None). The soft threshold passes ``∂e/∂z = σ'(z)``
    inside the band and 0 outside; the hard one passes nothing. Optional zoneout factors ``kh, kc``
    (broadcastable to ``[T, B, H]``, 1 = keep the previous value) mix after the VC update,
    ``s_t = lerp(s_vc, s_{t−1}, k)``: the state lerp's weight becomes ``e' = (1 − k) ⊙ e`` (the
    masking h̄ = e ⊙ h keeps e), ``1 − k`` is folded into ``h̃ − h`` (∂e), and the carried state
    gradient is ``(1 − e') ∂[h, c] + e ∂[h̄, c̄]``.

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
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, wt: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple, kh: Optional[Tensor] = None,
                kc: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta[:4]
        T, B, _ = xp.shape
        H = h0.shape[1]
        grad = any(ctx.needs_input_grad)
        ctx.ext = ext = native.get(xp)
        J = I + 1  # first h column of U
        JH = J + H  # first c column of U
        K = JH + H
        zs2, zo2, _ = _mask_consts(zs, zo, I, True)
        wf, wt = _gemm_weights(wt)  # [(I + 1 + H), 4H] and [4H, I + 1 + H], row-major
        U = _u_buffer(xp, I, h0, c0)  # [x_t, 1, h_{t-1}, c_{t-1}]
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, K)  # e (x dims, bias, h dims, h dims again for c)
        xb = xp.new_empty(T, B, JH)  # [x̄, 1, h̄]
        fs = xp.new_empty(T, B, H)  # σ(f), kept for ∂c̄ = ∂c̃ ⊙ f
        # the backward's per-step factors, formed here while their inputs are in cache:
        # d pre = ∂h̃ ⊙ F[0] (o) and ∂c̃ ⊙ F[1:] (i, f, g); ∂c̃ += ∂h̃ ⊙ q; ∂e += ∂[h, c] ⊙ dd
        F = xp.new_empty(T, B, 4, H)
        q = xp.new_empty(T, B, H)  # o (1 − tanh²c̃)
        dd = xp.new_empty(T, B, 2 * H)  # [h̃ − h, c̃ − c]
        zoned = kh is not None or kc is not None
        ez = xp.new_empty(T, B, 2 * H) if zoned else None  # e' = (1 − k) ⊙ e
        if ext is not None:  # the same loop in C++ (native/vc.cpp), filling these buffers
            kz = _keep_rows((kh, kc), B, H, xp) or [None, None]
            ext.vclstm_forward(xp, wf, w_mh, zs2, zo2, U, ms, es, xb, fs, F, q, dd, ez, *kz, I, hard, kappa, grad)
            return VCLSTMSequenceFn._done(ctx, meta, xp, ms, es, xb, fs, F, q, dd, U, wt, w_mh, zs, zo, ez)
        ak = _keep_cols((kh, kc), T, B, H, xp)  # zoneout: 1 − [k_h, k_c]
        # the Python loop's per-step scratch (the C++ loop has its own)
        g = xp.new_empty(B, 4 * H)  # scratch: σ(o), σ(i), σ(f), g's pre-activation
        g_s, g_o, g_i, g_f, g_g = g[:, :3 * H], g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        ht, tmp = xp.new_empty(B, 2 * H), xp.new_empty(B, K)  # [h̃, c̃]; scratch
        h_t, c_t = ht[:, :H], ht[:, H:]
        P = xp.new_empty(B, 3 * H)  # [tanh(c̃), g, c̄]: σ' of o, i, f multiplies these
        tc, gg, cb = P[:, :H], P[:, H:2 * H], P[:, 2 * H:]
        views = VCLSTMForwardStep(a=xp[..., I:], m=ms, e=es, ex=es[..., :JH], ec=es[..., JH:], ux=U[:T, :, :JH],
                                  c=U[:T, :, JH:], xb=xb, f=fs, F012=F.view(T, B, 4 * H)[..., :3 * H], F3=F[:, :, 3],
                                  q=q, dd=dd, h=U[:T, :, J:JH], s=U[:T, :, J:], eh=es[..., J:], s_next=U[1:, :, J:],
                                  ak=ak.expand(T, B, 2 * H) if ak is not None else None, ez=ez)
        for v in _steps(views, VCLSTMForwardStep):
            torch.addmm(v.a, v.h, w_mh, out=v.m).sigmoid_()
            _mask_(v.e, v.m, zo2, zs2, hard, kappa, tmp)
            torch.mul(v.ux, v.ex, out=v.xb)
            torch.mul(v.c, v.ec, out=cb)
            torch.mm(v.xb, wf, out=g)
            g_s.sigmoid_()
            v.f.copy_(g_f)
            torch.tanh(g_g, out=gg)
            torch.mul(g_f, cb, out=c_t).addcmul_(g_i, gg)  # c̃ = f ⊙ c̄ + i ⊙ g
            torch.tanh(c_t, out=tc)
            torch.mul(g_o, tc, out=h_t)
            ew = v.eh if v.ez is None else torch.mul(v.eh, v.ak, out=v.ez)
            torch.lerp(v.s, ht, ew, out=v.s_next)
            _sig_bwd_(P, g_s, grad_input=v.F012)  # [tanh(c̃) σ'(o), g σ'(i), c̄ σ'(f)]
            _tanh_bwd_(g_i, gg, grad_input=v.F3)  # i (1 − g²)
            _tanh_bwd_(g_o, tc, grad_input=v.q)
            torch.sub(ht, v.s, out=v.dd)
            if v.ak is not None:
                v.dd.mul_(v.ak)  # ∂e' = ∂s_t ⊙ (s̃ − s), ∂e = (1 − k) ⊙ ∂e'
        return VCLSTMSequenceFn._done(ctx, meta, xp, ms, es, xb, fs, F, q, dd, U, wt, w_mh, zs, zo, ez)

    @staticmethod
    def _done(ctx: Any, meta: tuple, xp: Tensor, ms: Tensor, es: Tensor, xb: Tensor, fs: Tensor, F: Tensor, q: Tensor,
              dd: Tensor, U: Tensor, *rest: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        I, T, H = meta[0], xp.shape[0], fs.shape[2]
        J, JH = I + 1, I + 1 + H
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xp, ms, es, xb, fs, F, q, dd, U, *rest)
        return U[1:, :, J:JH], U[T, :, J:JH].clone(), U[T, :, JH:].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor],  # type: ignore[override]
                 dM: Optional[Tensor]):
        xp, ms, es, xb, fs, F, q, dd, U, wt, w_mh, zs, zo, ez = ctx.saved_tensors
        I, hard, eps, kappa = ctx.meta[:4]
        T, B, _ = xp.shape
        H = q.shape[2]
        J = I + 1
        JH = J + H
        K = JH + H
        zs2, _, zs_col = _mask_consts(zs, zo, I, True)
        wmh_t = w_mh.t()
        dS, dS2 = xp.new_zeros(B, 2 * H), xp.new_empty(B, 2 * H)  # ∂L/∂[h, c], two buffers in turn
        if dhT is not None:
            dS[:, :H] = dhT
        if dcT is not None:
            dS[:, H:] = dcT
        dgates = xp.new_empty(T, B, 4 * H)
        dxp = xp.new_empty(T, B, J)  # [∂L/∂x, ∂L/∂a]
        if ctx.ext is not None:  # the same loop in C++ (native/vc.cpp)
            dS = ctx.ext.vclstm_backward(dS, dgates, dxp, U, es, ez, F, q, dd, fs, ms, wt, zs2, w_mh.contiguous(),
                                         dy, dM, I, hard)
            if hard:
                _hard_dx_(dxp[..., :I], dgates, wt[:, :I], es[..., :I], ctx.meta)
            return VCLSTMSequenceFn._weight_grads(dS, dgates, dxp, xb, U, I)
        dhc, dX, de = xp.new_empty(B, 2 * H), xp.new_empty(B, K), xp.new_empty(B, K)
        dht, dct, dct3, dcb, dXg = dhc[:, :H], dhc[:, H:], dhc[:, H:].unsqueeze(1), dX[:, JH:], dX[:, :JH]
        dXx, dXs, deS = dX[:, :I], dX[:, J:], de[:, J:]
        # ∂L/∂[h, c] with its h half: the step's carried gradient and the one it writes, in turn
        cur, nxt = (dS, dS[:, :H]), (dS2, dS2[:, :H])
        views = VCLSTMBackwardStep(Fo=F[:, :, 0], F3=F[:, :, 1:], q=q, dd=dd, f=fs, e=es, ex=es[..., :I],
                                   eh=es[..., J:], w=ez if ez is not None else es[..., J:],
                                   omw=1 - ez if ez is not None else None, m=ms, u=U[:T], dg=dgates,
                                   dg_o=dgates[..., :H],
                                   dg3=dgates[..., H:].view(T, B, 3, H), dx=dxp[..., :I], da=dxp[..., I:],
                                   dy=dy, dM=dM)
        for v in _steps(views, VCLSTMBackwardStep, reverse=True):
            (dS, dS_h), (dS2, dS2_h) = cur, nxt
            if v.dy is not None:
                dS_h.add_(v.dy)
            torch.mul(dS, v.w, out=dhc)  # [∂h̃, ∂c̃] direct
            dct.addcmul_(dht, v.q)
            torch.mul(dht, v.Fo, out=v.dg_o)
            torch.mul(v.F3, dct3, out=v.dg3)
            torch.mul(dct, v.f, out=dcb)  # ∂c̄
            torch.mm(v.dg, wt, out=dXg)  # ∂[x̄, 1, h̄]
            torch.mul(dXx, v.ex, out=v.dx)  # ∂x through x̄ = e ⊙ x
            if not hard:
                torch.mul(dX, v.u, out=de)  # ∂/∂e of [x̄, 1, h̄, c̄]
                deS.addcmul_(dS, v.dd)
            if v.omw is None:
                torch.lerp(dS, dXs, v.eh, out=dS2)  # (1 − e) ∂[h, c] + e ∂[h̄, c̄]
            else:
                torch.mul(dS, v.omw, out=dS2).addcmul_(v.eh, dXs)  # (1 − e') ∂[h, c] + e ∂[h̄, c̄]
            _scheduler_backward_(de, v.e, v.m, zs_col, v.dM, v.da, dS2_h, wmh_t, hard)
            cur, nxt = nxt, cur
        return VCLSTMSequenceFn._weight_grads(cur[0], dgates, dxp, xb, U, I)

    @staticmethod
    def _weight_grads(dS: Tensor, dgates: Tensor, dxp: Tensor, xb: Tensor, U: Tensor, I: int) -> tuple:
        """The gradients of every input from the loop's results: the weights' are one GEMM each."""
        T, B, G = dgates.shape
        H, J = G // 4, I + 1
        dw_mh = torch.mm(U[:T, :, J:J + H].reshape(T * B, H).t(), dxp[..., I:].reshape(T * B, 1))
        return dxp, dS[:, :H], dS[:, H:], _stacked_grad(xb, dgates), dw_mh, None, None, None, None, None


class VCGRUSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-GRU with a hand-written BPTT (the no-hook path of :class:`VCGRUCell`).

    Same conventions as :class:`VCLSTMSequenceFn`; ``wt [4H, I + 1 + H]`` is the block matrix
    (bias column included) whose output is ``[r, z, n_x, n_h]`` pre-activations (see :class:`VCGRUCell`). ``U[t] =
    [x_t, 1, h_{t-1}]`` rows of one buffer (one mask op, one masking op, a bias-free GEMM, the
    lerp writes ``U[t + 1]``; y is a view of U). In the backward all four gate gradients are ∂h̃
    times per-step factors built once, vectorized over time, so they take one broadcast op. Zoneout
    (``k``) as in :class:`VCLSTMSequenceFn`: the state lerp's weight ``e' = (1 − k) ⊙ e``, ``1 − k``
    folded into ``h̃ − h``, the carried gradient ``(1 − e') ∂h`` plus the paths through h̄ and m.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, wt: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple, k: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta[:4]
        T, B, _ = xp.shape
        H = h0.shape[1]
        ctx.ext = ext = native.get(xp)
        J = I + 1
        K = J + H
        zs2, zo2, _ = _mask_consts(zs, zo, I, False)
        wf, wt = _gemm_weights(wt)
        U = _u_buffer(xp, I, h0)  # [x_t, 1, h_{t-1}]
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, K)
        xb = xp.new_empty(T, B, K)  # [x̄, 1, h̄]
        gs = xp.new_empty(T, B, 4 * H)  # σ(r), σ(z), n_x, n_h
        ns = xp.new_empty(T, B, H)  # n
        hts = xp.new_empty(T, B, H)  # h̃
        ez = xp.new_empty(T, B, H) if k is not None else None  # e' = (1 − k) ⊙ e
        if ext is not None:  # the same loop in C++ (native/vc.cpp), filling these buffers; it forms 1 − k
            kr = (_keep_rows((k,), B, H, xp) or [None])[0]
            ext.vcgru_forward(xp, wf, w_mh, zs2, zo2, U, ms, es, xb, gs, ns, hts, ez, kr, I, hard, kappa)
            return VCGRUSequenceFn._done(ctx, meta, xp, ms, es, xb, gs, ns, hts, U, wt, w_mh, zs, zo, ez, kr)
        ak = _keep_cols((k,), T, B, H, xp)  # zoneout: 1 − k
        tmp = xp.new_empty(B, K)
        views = VCGRUForwardStep(a=xp[..., I:], m=ms, e=es, xb=xb, hb=xb[..., J:], g=gs, g_rz=gs[..., :2 * H],
                                 r=gs[..., :H], z=gs[..., H:2 * H], nx=gs[..., 2 * H:3 * H], nh=gs[..., 3 * H:],
                                 n=ns, ht=hts, u=U[:T], h=U[:T, :, J:], eh=es[..., J:], h_next=U[1:, :, J:],
                                 ak=ak.expand(T, B, H) if ak is not None else None, ez=ez)
        for v in _steps(views, VCGRUForwardStep):
            torch.addmm(v.a, v.h, w_mh, out=v.m).sigmoid_()
            _mask_(v.e, v.m, zo2, zs2, hard, kappa, tmp)
            torch.mul(v.u, v.e, out=v.xb)
            torch.mm(v.xb, wf, out=v.g)
            v.g_rz.sigmoid_()
            torch.addcmul(v.nx, v.r, v.nh, out=v.n).tanh_()
            torch.lerp(v.n, v.hb, v.z, out=v.ht)  # (1 − z) n + z h̄
            ew = v.eh if v.ez is None else torch.mul(v.eh, v.ak, out=v.ez)
            torch.lerp(v.h, v.ht, ew, out=v.h_next)
        return VCGRUSequenceFn._done(ctx, meta, xp, ms, es, xb, gs, ns, hts, U, wt, w_mh, zs, zo, ez, ak)

    @staticmethod
    def _done(ctx: Any, meta: tuple, xp: Tensor, ms: Tensor, es: Tensor, xb: Tensor, gs: Tensor, ns: Tensor,
              hts: Tensor, U: Tensor, *rest: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        J, T = meta[0] + 1, xp.shape[0]
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xp, ms, es, xb, gs, ns, hts, U, *rest)
        return U[1:, :, J:], U[T, :, J:].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dM: Optional[Tensor]):  # type: ignore[override]
        xp, ms, es, xb, gs, ns, hts, U, wt, w_mh, zs, zo, ez, keep = ctx.saved_tensors  # keep: k or 1 − k
        I, hard, eps, kappa = ctx.meta[:4]
        T, B, _ = xp.shape
        H = ns.shape[2]
        J = I + 1
        K = J + H
        zs2, _, zs_col = _mask_consts(zs, zo, I, False)
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
        if hard and ctx.ext is not None:  # ∂e has no use under the hard threshold (the Python loop forms it anyway)
            dd = xp.new_empty(0)
        else:
            dd = hts - U[:T, :, J:]  # h̃ − h
            _times_one_minus_k_(dd, keep, ctx.ext is not None)  # ∂e = (1 − k) ⊙ ∂e'
        if ctx.ext is not None:  # the same loop in C++ (native/vc.cpp)
            dh = ctx.ext.vcgru_backward(dh.contiguous(), dgs, dU, das, U, es, ez, F, dd, gs, ms, wt, zs2,
                                        w_mh.contiguous(), dy, dM, I, hard)
            if hard:
                _hard_dx_(dU[..., :I], dgs, wt[:, :I], es[..., :I], ctx.meta)
            return VCGRUSequenceFn._weight_grads(dh, dgs, dU, das, xb, U, I)
        views = VCGRUBackwardStep(F=F, dd=dd, z=zg, e=es, w=ez if ez is not None else es[..., J:], m=ms, u=U[:T],
                                  dg=dgs, dg4=dgs.view(T, B, 4, H), du=dU, duh=dU[..., J:], da=das, dy=dy, dM=dM)
        for v in _steps(views, VCGRUBackwardStep, reverse=True):
            if v.dy is not None:
                dh.add_(v.dy)
            torch.mul(dh, v.w, out=dht)
            torch.sub(dh, dht, out=dh2)  # the carried part
            torch.mul(v.F, dht4, out=v.dg4)
            torch.mm(v.dg, wt, out=dX)  # ∂[x̄, 1, h̄] through the gates
            dXh.addcmul_(dht, v.z)  # h̄ also enters h̃ = (1 − z) n + z h̄
            torch.mul(dX, v.e, out=v.du)  # through [x̄, 1, h̄] = U ⊙ e
            if not hard:
                torch.mul(dX, v.u, out=de)  # ∂/∂e
                deh.addcmul_(dh, v.dd)
            dh2.add_(v.duh)
            _scheduler_backward_(de, v.e, v.m, zs_col, v.dM, v.da, dh2, wmh_t, hard)
            dh, dh2 = dh2, dh
        return VCGRUSequenceFn._weight_grads(dh, dgs, dU, das, xb, U, I)

    @staticmethod
    def _weight_grads(dh: Tensor, dgs: Tensor, dU: Tensor, das: Tensor, xb: Tensor, U: Tensor, I: int) -> tuple:
        """The gradients of every input from the loop's results: the weights' are one GEMM each."""
        T, B, K = dU.shape
        J, H = I + 1, dgs.shape[2] // 4
        dw_mh = torch.mm(U[:T, :, J:].reshape(T * B, H).t(), das.reshape(T * B, 1))
        dxp = torch.cat([dU[..., :I], das], 2)
        return dxp, dh, _stacked_grad(xb, dgs), dw_mh, None, None, None, None
