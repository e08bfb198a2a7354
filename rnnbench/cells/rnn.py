"""Elman RNN cell (TF's BasicRNNCell, ``torch.nn.RNN`` with tanh).

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

``nn.RNN`` layout; the fused path runs ``torch._VF.rnn_tanh``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, register_schema
from .base import Cell, State


class RNNCell(Cell):
    flop_model = (1, 1, 2)  # a tanh and a bias add per unit; one state, h (Cell's default)

    def __init__(self, input_size: int, hidden_size: int, **kw) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(H, H))
        self.bias_ih = nn.Parameter(torch.empty(H))
        self.bias_hh = nn.Parameter(torch.empty(H))
        self.initialize()

    def project_input(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.tanh(torch.addmm(xp, state[0], self.weight_hh.t()))
        return h, (h,)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        y, h = torch._VF.rnn_tanh(x, state[0][None], weights, True, 1, 0.0, self.training, False, False)
        return y, (h[0],)


# ----------------------------------------------------------------------------- options
@dataclass
class RNNCellConf(CellConf):
    _target_: str = "rnnbench.cells.rnn.RNNCell"
    name: str = "rnn"


register_schema("cell", "rnn", RNNCellConf)
