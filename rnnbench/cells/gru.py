"""GRU cell (Cho et al. 2014; the form of ``torch.nn.GRU``).

    r, z, n_x = split(W_ih x_t + b_ih);  r_h, z_h, n_h = split(W_hh h_{t-1} + b_hh)
    r = σ(r_x + r_h);  z = σ(z_x + z_h);  n = tanh(n_x + r ⊙ n_h)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

``nn.GRU`` layout (gate order r, z, n); the fused path runs ``torch._VF.gru``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .base import Cell, State


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

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        y, h = torch._VF.gru(x, state[0][None], weights, True, 1, 0.0, self.training, False, False)
        return y, (h[0],)
