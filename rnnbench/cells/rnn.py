"""Elman RNN cell (TF's BasicRNNCell, ``torch.nn.RNN`` with tanh).

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

``nn.RNN`` layout. Three paths, all the same function: the native ``torch._VF.rnn_tanh``
(``fused=true``, no per-step hook); ``RNNSequenceFn`` (:mod:`rnnbench.cells.kernels.rnn`: a
hand-written forward/BPTT, no autograd inside the loop) for ``fused=false`` and for zoneout, its
masks drawn for the sequence up front; :meth:`RNNCell.step` under autograd with any other hook.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, register_schema
from .base import Cell, Mix, State
from .kernels.rnn import RNNSequenceFn
from .kernels.linear import linear


class RNNCell(Cell):
    flop_model = (1, 1, 2)  # a tanh and a bias add per unit; one state, h (Cell's default)
    takes_state_mix = True  # zoneout runs inside RNNSequenceFn
    compiled_kernel = True  # RNNSequenceFn's loop is C++ where it builds (kernels/native/rnn.cpp)

    def __init__(self, input_size: int, hidden_size: int, **kw) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(H, H))
        self.bias_ih = nn.Parameter(torch.empty(H))
        self.bias_hh = nn.Parameter(torch.empty(H))
        self.initialize()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.tanh(torch.addmm(xp, state[0], self.weight_hh.t()))
        return h, (h,)

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """``fused=false`` or zoneout, no other hook: ``kernels.rnn.RNNSequenceFn``, with zoneout's
        masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        xp, w_hh = self.project_input(x), self.weight_hh
        k = mix()[0] if mix is not None else None  # drawn after the weights, as the loop does
        y, h = RNNSequenceFn.apply(xp, state[0], w_hh, k)
        return y, (h,)

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
