"""GRU cell (Cho et al. 2014; the form of ``torch.nn.GRU``).

    r, z, n_x = split(W_ih x_t + b_ih);  r_h, z_h, n_h = split(W_hh h_{t-1} + b_hh)
    r = σ(r_x + r_h);  z = σ(z_x + z_h);  n = tanh(n_x + r ⊙ n_h)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

``nn.GRU`` layout (gate order r, z, n). Three execution paths, all the same function:

* ``fused=True`` and no per-step hook: the native kernel ``torch._VF.gru``;
* ``fused=False`` and no per-step hook: :class:`GRUSequenceFn`, a hand-written forward/BPTT
  (no autograd recording inside the loop, buffers allocated once, 6 ops per forward step and 4
  per backward step, ``dW_hh`` as one GEMM over all steps);
* any per-step hook (zoneout): :meth:`GRUCell.step` under autograd.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import Cell, State


class GRUSequenceFn(torch.autograd.Function):
    """Whole-sequence GRU with a hand-written BPTT.

    Inputs: ``xp [T, B, 3H]`` (``W_ih x + b_ih``), ``h0 [B, H]``, ``w_hh [3H, H]``,
    ``b_hh [3H]``. Output ``(y [T, B, H], h_T)``. Per step: ``hp = b_hh + h W_hh^T``,
    ``[r, z] = σ(x_rz + hp_rz)``, ``n = tanh(x_n + r ⊙ hp_n)``, ``h = lerp(n, h, z)``
    (= ``n + z ⊙ (h − n)``).
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor):  # type: ignore[override]
        T, B, G = xp.shape
        H = G // 3
        wt = w_hh.t()
        hp = torch.empty_like(xp)  # W_hh h + b_hh
        rz = xp.new_empty(T, B, 2 * H)  # activated r, z
        n = xp.new_empty(T, B, H)
        hs = xp.new_empty(T + 1, B, H)  # h_0 .. h_T
        hs[0] = h0
        for t in range(T):
            torch.addmm(b_hh, hs[t], wt, out=hp[t])
            torch.add(xp[t, :, :2 * H], hp[t, :, :2 * H], out=rz[t]).sigmoid_()
            torch.addcmul(xp[t, :, 2 * H:], rz[t, :, :H], hp[t, :, 2 * H:], out=n[t]).tanh_()
            torch.lerp(n[t], hs[t], rz[t, :, H:], out=hs[t + 1])
        ctx.save_for_backward(hp, rz, n, hs, w_hh)
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor]):  # type: ignore[override]
        hp, rz, n, hs, w_hh = ctx.saved_tensors
        T, B, G = hp.shape
        H = G // 3
        r, z = rz[..., :H], rz[..., H:]
        # per-unit factors from dh_t (after adding dy_t) to the pre-activations, vectorized
        a = (1 - z) * (1 - n * n)  # dL/d(pre_n) = dh (1 − z) tanh'
        coef = torch.cat([a * hp[..., 2 * H:] * r * (1 - r),  # dL/d(pre_r)
                          (hs[:-1] - n) * z * (1 - z),  # dL/d(pre_z)
                          a * r], -1).view(T, B, 3, H)  # dL/d(hp_n)
        dhp = torch.empty_like(hp)  # dL/d(W_hh h + b_hh)
        D = torch.empty_like(n)  # dL/dh_t (total)
        dh = dhT.clone() if dhT is not None else hp.new_zeros(B, H)
        tmp = hp.new_empty(B, H)
        for t in range(T - 1, -1, -1):
            if dy is not None:
                torch.add(dh, dy[t], out=D[t])
            else:
                D[t].copy_(dh)
            torch.mul(D[t].unsqueeze(1), coef[t], out=dhp[t].view(B, 3, H))
            torch.mul(D[t], z[t], out=tmp)
            dh = torch.addmm(tmp, dhp[t], w_hh)
        dxp = torch.cat([dhp[..., :2 * H], D * a], -1)
        dw = torch.mm(dhp.reshape(T * B, G).t(), hs[:-1].reshape(T * B, H))
        return dxp, dh, dw, dhp.sum((0, 1))


class GRUCell(Cell):
    num_states = 1

    def __init__(self, input_size: int, hidden_size: int, **kw) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(3 * H))
        self.bias_hh = nn.Parameter(torch.empty(3 * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def project_input(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h = state[0]
        hp = torch.addmm(self.bias_hh, h, self.weight_hh.t())
        xr, xz, xn = xp.chunk(3, 1)
        hr, hz, hn = hp.chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)
        return h, (h,)

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """The custom whole-sequence path (``fused=False``, no hooks): :class:`GRUSequenceFn`."""
        if self.compile:
            return None
        y, h = GRUSequenceFn.apply(self.project_input(x), state[0], self.weight_hh, self.bias_hh)
        return y, (h,)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        y, h = torch._VF.gru(x, state[0][None], weights, True, 1, 0.0, self.training, False, False)
        return y, (h[0],)
