"""LSTM cell (Hochreiter & Schmidhuber 1997; the form of ``torch.nn.LSTM``).

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = σ(f + forget_bias) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(c_t)

Parameters have ``nn.LSTM``'s layout (gate order i, f, g, o), so weights copy across. The
optional ``forget_bias`` (article 001, TF's ``LSTMCell(forget_bias=...)``) is a constant added
inside the forget sigmoid.

Three execution paths, all numerically the same function:

* ``fused=True`` and no per-step hook: the whole sequence on the native kernel
  (``torch._VF.lstm``, the op behind ``nn.LSTM``), fed the cell's (possibly parametrized)
  weights — so weight norm / weight drop keep the fused path;
* ``fused=False`` and no per-step hook: ``LSTMSequenceFn`` (:mod:`rnnbench.cells.kernels.lstm`),
  a hand-written forward/BPTT (no autograd recording inside the loop, buffers allocated once, gates reordered to
  o, i, f, g so one sigmoid covers three gates and one multiply the three ``dc`` terms,
  ``dW_hh``, ``dW_ih`` and ``dx`` as one GEMM each over all steps);
* zoneout (and no other per-step hook), fused or not: ``LSTMSequenceFn`` with the masks drawn
  for the whole sequence up front (the same numbers the per-step hook would draw);
* any other per-step hook: :meth:`LSTMCell.step`, one ``addmm`` per step under autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, REAL, register_schema
from .base import Cell, Mix, State
from .kernels.lstm import LSTMSequenceFn, to_oifg
from .kernels.linear import linear


class LSTMCell(Cell):
    num_states = 2
    gates = 4
    flop_model = (4, 4, 10)  # 3 σ, 2 tanh, 5 mul/add
    takes_state_mix = True  # zoneout runs inside LSTMSequenceFn
    compiled_kernel = True  # LSTMSequenceFn's loop is C++ where it builds (kernels/native/lstm.cpp)

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.forget_bias = float(forget_bias)
        self.weight_ih = nn.Parameter(torch.empty(self.gates * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * H, H))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * H))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * H))
        self.initialize()

    def _bias_ih(self) -> Tensor:
        b = self.bias_ih
        if self.forget_bias:
            H = self.hidden_size
            fb = torch.zeros_like(b)
            fb[H:2 * H] = self.forget_bias
            b = b + fb
        return b

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self._bias_ih() + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        H = self.hidden_size
        gates = torch.addmm(xp, h, self.weight_hh.t())
        i, f = torch.sigmoid(gates[:, :2 * H]).chunk(2, 1)  # one σ for i and f
        c = torch.addcmul(f * c, i, torch.tanh(gates[:, 2 * H:3 * H]))
        h = torch.sigmoid(gates[:, 3 * H:]) * torch.tanh(c)
        return h, (h, c)

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """The custom whole-sequence path (``fused=False`` or zoneout, no other hook):
        :class:`~rnnbench.cells.kernels.lstm.LSTMSequenceFn`, with zoneout's masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        h0, c0 = state
        w_ih, b, w_hh = to_oifg(self.weight_ih), to_oifg(self._bias_ih() + self.bias_hh), to_oifg(self.weight_hh)
        kh, kc = mix() if mix is not None else (None, None)  # drawn after the weights, as the loop does
        y, h, c = LSTMSequenceFn.apply(x, w_ih, b, h0, c0, w_hh, kh, kc)
        return y, (h, c)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        h0, c0 = state
        weights = [self.weight_ih, self.weight_hh, self._bias_ih(), self.bias_hh]
        y, h, c = torch._VF.lstm(x, (h0[None], c0[None]), weights, True, 1, 0.0, self.training,
                                 False, False)
        return y, (h[0], c[0])


# ----------------------------------------------------------------------------- options
@dataclass
class LSTMCellConf(CellConf):
    _target_: str = "rnnbench.cells.lstm.LSTMCell"
    name: str = "lstm"
    forget_bias: float = 0.0  #: added inside the forget-gate sigmoid (article 001)


register_schema("cell", "lstm", LSTMCellConf, ranges={"forget_bias": REAL})
