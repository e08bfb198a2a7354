"""Delta-RNN (Ororbia, Mikolov & Reitter 2017, "Learning Simpler Language Models with the
Delta Recurrent Neural Network Framework", arXiv 1703.08864; article 004).

The form implemented (SPEC §3, the paper's Delta-RNN with late-integration gate)::

    d1_t = α ⊙ (V h_{t-1}) ⊙ (W x_t)
    d2_t = β1 ⊙ (V h_{t-1}) + β2 ⊙ (W x_t)
    z_t  = tanh(d1_t + d2_t + b_z)                       (inner function)
    r_t  = σ(W x_t + b_r)                                (gate from the same data term W x_t)
    h_t  = Φ((1 − r_t) ⊙ z_t + r_t ⊙ h_{t-1})            (outer function)

α, β1, β2, b_z, b_r are learnable vectors initialised as the authors did: α = 2, β1 = β2 = 1,
b_z = b_r = 0 (their TF code notes "alpha 2.0 works better than 1.0"). W, V start uniform in
±1/√H like the other cells. Φ, the outer activation, is ``outer_activation``: ``tanh``
(default), ``identity`` or ``relu``. Our reading: the paper writes Φ as a generic outer
non-linearity; we could not check its text here, and the public TF implementation by the
authors' group defaults Φ to ReLU — use ``outer_activation=relu`` to follow that code.

Everything that depends on x only — ``α ⊙ Wx + β1``, ``β2 ⊙ Wx + b_z`` and ``r`` — is computed
for all steps before the loop, so a step is one matmul ``V h`` and four element-wise ops:
``z = tanh(Vh ⊙ (α⊙Wx + β1) + (β2⊙Wx + b_z))``, ``h = Φ(z + r ⊙ (h − z))``.

Without a per-step hook the whole sequence runs in :class:`DeltaRNNSequenceFn` (hand-written
forward/BPTT without autograd inside the loop; the same function); with one (zoneout)
:meth:`DeltaRNNCell.step` runs under autograd.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import Cell, State

_OUTER = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v}


class DeltaRNNSequenceFn(torch.autograd.Function):
    """Whole-sequence Delta-RNN with a hand-written BPTT.

    Inputs: ``xp [T, B, 3H] = [a, b, r]`` (:meth:`DeltaRNNCell.project_input`), ``h0 [B, H]``,
    ``v [H, H]``, the outer activation's name. Per step: ``vh = h V^T``,
    ``z = tanh(b + vh ⊙ a)``, ``h = Φ(lerp(z, h, r))``. Output ``(y [T, B, H], h_T)``.
    The backward's recursion-independent factors are made in the forward step while its
    data is in cache; a backward step is one GEMM and three element-wise ops.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, v: Tensor, outer: str):  # type: ignore[override]
        T, B, G = xp.shape
        H = G // 3
        vt = v.t()
        grad = any(ctx.needs_input_grad)
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
                pz = torch.addcmul(one, z_[t], z_[t], value=-1, out=pz_[t]).mul_(dphi)  # Φ' (1 − z²)
                pz.addcmul_(pz, r_[t], value=-1)  # · (1 − r)
                torch.mul(pz, a_[t], out=qa_[t])
                torch.mul(dphi, r_[t], out=rr_[t])
                torch.sub(h_[t], z_[t], out=w_[t]).mul_(dphi)  # Φ' (h_{t-1} − z)
        ctx.outer = outer
        ctx.save_for_backward(F, vh, hs, v)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        F, vh, hs, v = ctx.saved_tensors
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
        return dxp, dh, dv, None


class DeltaRNNCell(Cell):
    num_states = 1

    def __init__(self, input_size: int, hidden_size: int, outer_activation: str = "tanh",
                 alpha_init: float = 2.0, beta1_init: float = 1.0, beta2_init: float = 1.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        if outer_activation not in _OUTER:
            raise ValueError(f"outer_activation must be one of {sorted(_OUTER)}, not {outer_activation!r}")
        H = hidden_size
        self.outer_activation = outer_activation
        self._phi = _OUTER[outer_activation]
        self.inits = (float(alpha_init), float(beta1_init), float(beta2_init))
        self.weight_ih = nn.Parameter(torch.empty(H, input_size))  # W
        self.weight_hh = nn.Parameter(torch.empty(H, H))  # V
        self.alpha = nn.Parameter(torch.empty(H))
        self.beta1 = nn.Parameter(torch.empty(H))
        self.beta2 = nn.Parameter(torch.empty(H))
        self.bias_z = nn.Parameter(torch.empty(H))
        self.bias_r = nn.Parameter(torch.empty(H))
        self.initialize()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.weight_ih, -k, k)
        nn.init.uniform_(self.weight_hh, -k, k)
        a, b1, b2 = self.inits
        nn.init.constant_(self.alpha, a)
        nn.init.constant_(self.beta1, b1)
        nn.init.constant_(self.beta2, b2)
        nn.init.zeros_(self.bias_z)
        nn.init.zeros_(self.bias_r)

    def project_input(self, x: Tensor) -> Tensor:  # [.., 3H] = [α⊙Wx + β1, β2⊙Wx + b_z, r]
        wx = torch.nn.functional.linear(x, self.weight_ih)
        return torch.cat([torch.addcmul(self.beta1, self.alpha, wx), torch.addcmul(self.bias_z, self.beta2, wx),
                          torch.sigmoid(wx + self.bias_r)], -1)

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """No per-step hook: the whole sequence through :class:`DeltaRNNSequenceFn`."""
        if self.compile:
            return None
        y, h = DeltaRNNSequenceFn.apply(self.project_input(x), state[0], self.weight_hh, self.outer_activation)
        return y, (h,)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h = state[0]
        vh = torch.mm(h, self.weight_hh.t())
        z = torch.tanh(torch.addcmul(xp[:, H:2 * H], vh, xp[:, :H]))
        h = self._phi(torch.lerp(z, h, xp[:, 2 * H:]))
        return h, (h,)
