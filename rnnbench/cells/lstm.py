"""LSTM cell (Hochreiter & Schmidhuber 1997; the form of ``torch.nn.LSTM``).

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = σ(f + forget_bias) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(c_t)

Parameters have ``nn.LSTM``'s layout (gate order i, f, g, o), so weights copy across. The
optional ``forget_bias`` (article 001, TF's ``LSTMCell(forget_bias=...)``) is a constant added
inside the forget sigmoid. With ``fused=True`` and no per-step hook the whole sequence runs on
the native kernel (``torch._VF.lstm``, the op behind ``nn.LSTM``), fed the cell's (possibly
parametrized) weights — so weight norm / weight drop keep the fused path.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .base import Cell, State


class LSTMCell(Cell):
    num_states = 2
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.forget_bias = float(forget_bias)
        self.weight_ih = nn.Parameter(torch.empty(self.gates * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * H, H))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * H))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -k, k)

    def _bias_ih(self) -> Tensor:
        b = self.bias_ih
        if self.forget_bias:
            H = self.hidden_size
            fb = torch.zeros_like(b)
            fb[H:2 * H] = self.forget_bias
            b = b + fb
        return b

    def project_input(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight_ih, self._bias_ih() + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        gates = torch.addmm(xp, h, self.weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        h0, c0 = state
        weights = [self.weight_ih, self.weight_hh, self._bias_ih(), self.bias_hh]
        y, h, c = torch._VF.lstm(x, (h0[None], c0[None]), weights, True, 1, 0.0, self.training,
                                 False, False)
        return y, (h[0], c[0])
