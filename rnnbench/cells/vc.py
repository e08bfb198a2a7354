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
exp from ``lam`` to ``lam_final``; the trainer calls :meth:`set_training_progress`), and a
computation penalty ``penalty · mean_b((mean_t m_t − m̄)²)`` pulls the average m_t toward the
target m̄ (``target_m``); it is returned by :meth:`extra_loss` and added to the loss.
:meth:`stats` reports ``mean_m`` and ``compute_fraction`` (the fraction of hidden units updated,
e > 0, per step — the computation the cell actually spends), averaged since the last call.

Execution: every step is one matmul ``[x̄, h̄] @ W`` (input and recurrent weights stacked once
per sequence) and both masks come from one ``m·zs + zo`` op. With no per-step hook, VC-LSTM runs
:class:`VCLSTMSequenceFn` (hand-written forward + BPTT, same function, gradchecked); VC-RNN,
VC-GRU and any hooked VC-LSTM use the generic :meth:`step` under autograd.
"""
from __future__ import annotations

from abc import abstractmethod

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import Cell, State


def _masks_and_scheduler_backward(dxh: Tensor, de: Tensor, dx: Tensor, dh: Tensor, ex: Tensor, x: Tensor,
                                  eh: Tensor, h: Tensor, I: int, dm_direct: Optional[Tensor],
                                  kz: Optional[Tensor], dmd: Tensor, da_out: Tensor, wmh_t: Tensor) -> None:
    """One step of the VC backward shared by VC-LSTM and VC-GRU, in place.

    From ``dxh`` = ∂L/∂[x̄, h̄]: the gradients reaching x (through x̄ = e^x ⊙ x) and h (through
    h̄ = e ⊙ h), ∂L/∂e (into ``de``, whose hidden half already holds the lerps' part), and —
    through the soft threshold's ∂e/∂m (``kz``; None for the hard one) plus any direct
    gradient on m (the penalty, ``dm_direct``) — ∂L/∂a of the scheduler's pre-activation
    (``da_out``), which also flows to h through w_mh. ``dx[:, I:]`` receives ∂L/∂a for the
    projected scheduler input."""
    torch.mul(dxh[:, :I], ex, out=dx[:, :I])
    torch.mul(dxh[:, :I], x, out=de[:, :I])
    dh.addcmul_(dxh[:, I:], eh)
    de[:, I:].addcmul_(dxh[:, I:], h)
    if kz is None:
        dm = dm_direct.clone() if dm_direct is not None else dxh.new_zeros(dxh.shape[0], 1)
    else:
        dm = (de * kz).sum(1, keepdim=True)
        if dm_direct is not None:
            dm.add_(dm_direct)
    da = dm.mul_(dmd)
    da_out.copy_(da)
    dx[:, I:] = da
    dh.addmm_(da, wmh_t)


class VCLSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-LSTM with a hand-written BPTT (the no-hook path of :class:`VCLSTMCell`).

    Inputs: ``xp [T, B, I + 1]`` (``[x, w_mx·x + b_m]``), ``h0, c0``, the stacked weight
    ``w [(I + H), 4H]`` (gate order i, f, o, g) and bias ``b [4H]``, ``w_mh [H, 1]``, the mask
    constants ``zs, zo [I + H]`` (z = m·zs + zo) and ``(I, hard, eps, kappa)``. Outputs
    ``y [T, B, H], h_T, c_T, M [T, B, 1]`` (M = m_t, an output so the penalty's gradient flows).
    The soft threshold passes ``∂e/∂s = 1`` inside the band ε ≤ s ≤ 1 − ε and 0 outside; the
    hard one passes nothing. Weight gradients are one GEMM each over all steps.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w: Tensor, b: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta
        T, B, _ = xp.shape
        H = h0.shape[1]
        x, xa = xp[..., :I], xp[..., I:]
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, I + H)  # e (x dims, h dims)
        xhs = xp.new_empty(T, B, I + H)  # [x̄, h̄]
        gates = xp.new_empty(T, B, 4 * H)  # activated i, f, o, g
        cts = xp.new_empty(T, B, H)  # c̃
        tcs = xp.new_empty(T, B, H)  # tanh(c̃)
        hs = xp.new_empty(T + 1, B, H)
        cs = xp.new_empty(T + 1, B, H)
        hs[0], cs[0] = h0, c0
        tmp = xp.new_empty(B, H)
        # per-step views made once (one unbind per tensor instead of ~25 slicing ops per step)
        V = [tn.unbind(0) for tn in (xa, x, ms, es, es[..., :I], es[..., I:], xhs, xhs[..., :I], xhs[..., I:],
                                      gates, gates[..., :3 * H], gates[..., 3 * H:], gates[..., :H],
                                      gates[..., H:2 * H], gates[..., 2 * H:3 * H], cts, tcs, hs, cs)]
        for t in range(T):
            (a_t, x_t, m_t, e, ex, eh, xh, xh_x, xh_h, g, g_sig, g_g, g_i, g_f, g_o, ct, tc) = (lst[t] for lst in V[:17])
            h, c, h_new, c_new = V[17][t], V[18][t], V[17][t + 1], V[18][t + 1]
            m = torch.addmm(a_t, h, w_mh, out=m_t).sigmoid_()
            z = torch.addcmul(zo, m, zs)
            if hard:
                torch.gt(z, kappa, out=e)
            else:
                torch.sigmoid(z, out=e)
                e.masked_fill_(e < eps, 0.0).masked_fill_(e > 1.0 - eps, 1.0)
            torch.mul(x_t, ex, out=xh_x)
            torch.mul(h, eh, out=xh_h)
            torch.addmm(b, xh, w, out=g)
            g_sig.sigmoid_()
            g_g.tanh_()
            torch.mul(c, eh, out=tmp).mul_(g_f)
            torch.addcmul(tmp, g_i, g_g, out=ct)
            torch.tanh(ct, out=tc)
            torch.lerp(c, ct, eh, out=c_new)
            torch.mul(g_o, tc, out=tmp)
            torch.lerp(h, tmp, eh, out=h_new)
        ctx.meta = meta
        ctx.save_for_backward(xp, ms, es, xhs, gates, cts, tcs, hs, cs, w, w_mh, zs, zo)
        return hs[1:], hs[T].clone(), cs[T].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor],  # type: ignore[override]
                 dM: Optional[Tensor]):
        xp, ms, es, xhs, gates, cts, tcs, hs, cs, w, w_mh, zs, zo = ctx.saved_tensors
        I, hard, eps, kappa = ctx.meta
        T, B, _ = xp.shape
        H = hs.shape[2]
        dxp = torch.empty_like(xp)
        dgates = torch.empty_like(gates)
        das = xp.new_empty(T, B, 1)
        dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
        dc = dcT.clone() if dcT is not None else xp.new_zeros(B, H)
        wt, wmh_t = w.t(), w_mh.t()
        # the factors that do not depend on the recursion, vectorized over time (the loop
        # below is bound by per-op overhead, not memory); then one unbind per tensor
        sg = gates[..., :3 * H]
        i_, o_, g_ = gates[..., :H], gates[..., 2 * H:3 * H], gates[..., 3 * H:]
        dsig = torch.addcmul(sg, sg, sg, value=-1.0)  # σ' = s − s² of i, f, o
        eh_all = es[..., I:]
        p_o = tcs * dsig[..., 2 * H:]  # d pre_o = dht ⊙ p_o
        ht = o_ * tcs  # h̃
        q = torch.addcmul(o_, ht, tcs, value=-1.0)  # o (1 − tanh²c̃): dct += dht ⊙ q
        p_i = g_ * dsig[..., :H]  # d pre_i = dct ⊙ p_i
        p_f = cs[:-1] * eh_all
        p_f.mul_(dsig[..., H:2 * H])  # d pre_f = dct ⊙ (c ⊙ e) σ'(f)
        p_g = torch.addcmul(i_, i_ * g_, g_, value=-1.0)  # i (1 − g²): d pre_g = dct ⊙ p_g
        dh_ = ht.sub_(hs[:-1])  # h̃ − h
        dc_ = cts - cs[:-1]  # c̃ − c
        if not hard:
            # ∂e/∂m = e (1 − e) λD inside the band, where e = σ(z); e ∈ {0, 1} outside gives 0
            kz_l = torch.addcmul(es, es, es, value=-1.0).mul_(zs).unbind(0)
        dm_ = torch.addcmul(ms, ms, ms, value=-1.0)  # σ'(a) = m (1 − m)
        L = [tn.unbind(0) for tn in (p_o, q, p_i, p_f, p_g, dh_, dc_, eh_all, gates[..., H:2 * H], cs[:-1],
                                      hs[:-1], es[..., :I], xp[..., :I], dgates, dxp, dm_)]
        for t in range(T - 1, -1, -1):
            po, qq, pi, pf, pg, dhd, dcd, eh, f, c, h, ex, x, dg, dx, dmd = (lst[t] for lst in L)
            if dy is not None:
                dh.add_(dy[t])
            de = xp.new_empty(B, I + H)
            deh = de[:, I:]
            torch.mul(dh, dhd, out=deh).addcmul_(dc, dcd)  # ∂/∂e of the two lerps
            dht = dh * eh
            dct = dc * eh
            dh.sub_(dht)  # (1 − e) dh: the carried part
            dc.sub_(dct)
            dct.addcmul_(dht, qq)
            torch.mul(dht, po, out=dg[:, 2 * H:3 * H])
            torch.mul(dct, pi, out=dg[:, :H])
            torch.mul(dct, pf, out=dg[:, H:2 * H])
            torch.mul(dct, pg, out=dg[:, 3 * H:])
            dce = dct.mul_(f)  # ∂/∂(c ⊙ e)
            dc.addcmul_(dce, eh)
            deh.addcmul_(dce, c)
            dxh = torch.mm(dg, wt)  # ∂/∂[x̄, h̄]
            _masks_and_scheduler_backward(dxh, de, dx, dh, ex, x, eh, h, I,
                                          dM[t] if dM is not None else None,
                                          None if hard else kz_l[t], dmd, das[t], wmh_t)
        G = dgates.reshape(T * B, 4 * H)
        dw = torch.mm(xhs.reshape(T * B, I + H).t(), G)
        db = G.sum(0)
        dw_mh = torch.mm(hs[:-1].reshape(T * B, H).t(), das.reshape(T * B, 1))
        return dxp, dh, dc, dw, db, dw_mh, None, None, None


class VCGRUSequenceFn(torch.autograd.Function):
    """Whole-sequence VC-GRU with a hand-written BPTT (the no-hook path of :class:`VCGRUCell`).

    Same conventions as :class:`VCLSTMSequenceFn`; ``w [(I + H), 4H]`` is the block matrix whose
    output is ``[r, z, n_x, n_h]`` pre-activations (see :class:`VCGRUCell`).
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w: Tensor, b: Tensor, w_mh: Tensor,  # type: ignore[override]
                zs: Tensor, zo: Tensor, meta: tuple) -> tuple[Tensor, Tensor, Tensor]:
        I, hard, eps, kappa = meta
        T, B, _ = xp.shape
        H = h0.shape[1]
        x, xa = xp[..., :I], xp[..., I:]
        ms = xp.new_empty(T, B, 1)
        es = xp.new_empty(T, B, I + H)
        xhs = xp.new_empty(T, B, I + H)  # [x̄, h̄]
        gs = xp.new_empty(T, B, 4 * H)  # σ(r), σ(z), n_x, n_h
        ns = xp.new_empty(T, B, H)  # n
        hts = xp.new_empty(T, B, H)  # h̃
        hs = xp.new_empty(T + 1, B, H)
        hs[0] = h0
        V = [tn.unbind(0) for tn in (xa, x, ms, es, es[..., :I], es[..., I:], xhs, xhs[..., :I], xhs[..., I:],
                                      gs, gs[..., :2 * H], gs[..., :H], gs[..., H:2 * H], gs[..., 2 * H:3 * H],
                                      gs[..., 3 * H:], ns, hts, hs)]
        for t in range(T):
            a_t, x_t, m_t, e, ex, eh, xh, xh_x, xh_h, g, g_rz, r, zg, nx, nh, n, ht = (lst[t] for lst in V[:17])
            h, h_new = V[17][t], V[17][t + 1]
            m = torch.addmm(a_t, h, w_mh, out=m_t).sigmoid_()
            z = torch.addcmul(zo, m, zs)
            if hard:
                torch.gt(z, kappa, out=e)
            else:
                torch.sigmoid(z, out=e)
                e.masked_fill_(e < eps, 0.0).masked_fill_(e > 1.0 - eps, 1.0)
            torch.mul(x_t, ex, out=xh_x)
            torch.mul(h, eh, out=xh_h)
            torch.addmm(b, xh, w, out=g)
            g_rz.sigmoid_()
            torch.addcmul(nx, r, nh, out=n).tanh_()
            torch.lerp(n, xh_h, zg, out=ht)
            torch.lerp(h, ht, eh, out=h_new)
        ctx.meta = meta
        ctx.save_for_backward(xp, ms, es, xhs, gs, ns, hts, hs, w, w_mh, zs, zo)
        return hs[1:], hs[T].clone(), ms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dM: Optional[Tensor]):  # type: ignore[override]
        xp, ms, es, xhs, gs, ns, hts, hs, w, w_mh, zs, zo = ctx.saved_tensors
        I, hard, eps, kappa = ctx.meta
        T, B, _ = xp.shape
        H = hs.shape[2]
        dxp = torch.empty_like(xp)
        dgs = torch.empty_like(gs)
        das = xp.new_empty(T, B, 1)
        dh = dhT.clone() if dhT is not None else xp.new_zeros(B, H)
        wt, wmh_t = w.t(), w_mh.t()
        r, zg, nh, hb = gs[..., :H], gs[..., H:2 * H], gs[..., 3 * H:], xhs[..., I:]
        dpn = (ns * ns).neg_().add_(1.0).mul_(1 - zg)  # (1 − n²)(1 − z): d pre_n = dht ⊙ dpn
        p_z = (hb - ns).mul_(torch.addcmul(zg, zg, zg, value=-1.0))  # (h̄ − n) σ'(z)
        p_r = torch.addcmul(r, r, r, value=-1.0).mul_(nh)  # n_h σ'(r)
        d_hb = hts - hs[:-1]  # h̃ − h
        if not hard:  # ∂e/∂m = e (1 − e) λD in the band; e ∈ {0, 1} outside gives 0
            kz_l = torch.addcmul(es, es, es, value=-1.0).mul_(zs).unbind(0)
        dm_ = torch.addcmul(ms, ms, ms, value=-1.0)
        L = [tn.unbind(0) for tn in (dpn, p_z, p_r, d_hb, es[..., I:], zg, r, hs[:-1], es[..., :I], xp[..., :I],
                                      dgs, dxp, dm_)]
        for t in range(T - 1, -1, -1):
            pn, pz, pr, dhd, eh, z_t, r_t, h, ex, x, dg, dx, dmd = (lst[t] for lst in L)
            if dy is not None:
                dh.add_(dy[t])
            de = xp.new_empty(B, I + H)
            deh = de[:, I:]
            torch.mul(dh, dhd, out=deh)  # ∂/∂e of h_t = lerp(h, h̃, e)
            dht = dh * eh
            dh.sub_(dht)
            torch.mul(dht, pn, out=dg[:, 2 * H:3 * H])  # d pre_n (= d n_x)
            torch.mul(dg[:, 2 * H:3 * H], r_t, out=dg[:, 3 * H:])  # d n_h
            torch.mul(dg[:, 2 * H:3 * H], pr, out=dg[:, :H])  # d pre_r
            torch.mul(dht, pz, out=dg[:, H:2 * H])  # d pre_z
            dxh = torch.mm(dg, wt)  # ∂/∂[x̄, h̄]
            dxh[:, I:].addcmul_(dht, z_t)  # h̄ also enters h̃ = (1 − z) n + z h̄
            _masks_and_scheduler_backward(dxh, de, dx, dh, ex, x, eh, h, I,
                                          dM[t] if dM is not None else None,
                                          None if hard else kz_l[t], dmd, das[t], wmh_t)
        G = dgs.reshape(T * B, 4 * H)
        dw = torch.mm(xhs.reshape(T * B, I + H).t(), G)
        db = G.sum(0)
        dw_mh = torch.mm(hs[:-1].reshape(T * B, H).t(), das.reshape(T * B, 1))
        return dxp, dh, dw, db, dw_mh, None, None, None


class VCCell(Cell):
    """Shared scheduler, masks, λ schedule, penalty and statistics of the VC cells."""

    gates = 1
    num_states = 1
    #: for the regularizers: the base cell's matrices (the scheduler vectors stay plain)
    regularizer_weights = {"input": ("weight_ih",), "recurrent": ("weight_hh",)}

    def __init__(self, input_size: int, hidden_size: int, lam: float = 1.0, eps: float = 0.1,
                 threshold: str = "soft", lam_schedule: str = "constant", lam_final: Optional[float] = None,
                 target_m: float = 0.5, penalty: float = 0.0, index_offset: int = 0, mask_input: bool = True,
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
        self.eps = float(eps)
        self.threshold = threshold
        self.target_m = float(target_m)
        self.penalty = float(penalty)
        self.index_offset = int(index_offset)
        self.mask_input = bool(mask_input)
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
        self.reset_parameters()

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
        else:
            s = torch.sigmoid(z)
            e = torch.where(s > 1.0 - self.eps, 1.0, torch.where(s < self.eps, 0.0, s))
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

    Internally the gate rows are reordered to i, f, o, g once per sequence, so one sigmoid
    covers three gates; parameters keep the ``nn.LSTM`` layout.
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
        # rows i, f, g, o -> i, f, o, g by slices (an index permutation's backward, index_put
        # with accumulation, cost ~1 ms per sequence)
        w = torch.cat([w[:2 * H], w[3 * H:], w[2 * H:3 * H]])
        b = torch.cat([b[:2 * H], b[3 * H:], b[2 * H:3 * H]])
        return w.t(), b

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h, c = state
        xh, e = self.masked_xh(xp, h)
        gates = torch.addmm(self._b, xh, self._w)  # i, f, o, g
        sg = torch.sigmoid(gates[:, :3 * H])
        ct = torch.addcmul(sg[:, H:2 * H] * (c * e), sg[:, :H], torch.tanh(gates[:, 3 * H:]))
        ht = sg[:, 2 * H:] * torch.tanh(ct)
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
