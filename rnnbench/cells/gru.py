"""GRU cell (Cho et al. 2014; the form of ``torch.nn.GRU``).

    r, z, n_x = split(W_ih x_t + b_ih);  r_h, z_h, n_h = split(W_hh h_{t-1} + b_hh)
    r = σ(r_x + r_h);  z = σ(z_x + z_h);  n = tanh(n_x + r ⊙ n_h)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

``nn.GRU`` layout (gate order r, z, n). Three execution paths, all the same function:

* ``fused=True`` and no per-step hook: the native kernel ``torch._VF.gru``;
* ``fused=False`` and no per-step hook: ``GRUSequenceFn`` (:mod:`rnnbench.cells.kernels.gru`), a hand-written forward/BPTT
  (no autograd recording inside the loop, buffers allocated once, 6 ops per forward step —
  plus the backward factors, while the step is in cache — and 4 per backward step, ``dW_hh`` as one GEMM over all steps);
* zoneout (and no other per-step hook), fused or not: ``GRUSequenceFn`` with the masks drawn
  for the whole sequence up front (the numbers the per-step hook would draw);
* any other per-step hook: :meth:`GRUCell.step` under autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, register_schema
from .base import Cell, Mix, State
from .kernels.gru import GRUSequenceFn
from .kernels.linear import linear


class GRUCell(Cell):
    num_states = 1
    flop_model = (3, 3, 12)
    takes_state_mix = True  # zoneout runs inside GRUSequenceFn
    compiled_kernel = True  # GRUSequenceFn's loop is C++ where it builds (kernels/native/gru.cpp)

    def __init__(self, input_size: int, hidden_size: int, **kw) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(3 * H))
        self.bias_hh = nn.Parameter(torch.empty(3 * H))
        self.initialize()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)

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

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """The custom whole-sequence path (``fused=False`` or zoneout, no other hook):
        ``kernels.gru.GRUSequenceFn``, with zoneout's masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        xp, w_hh, b_hh = self.project_input(x), self.weight_hh, self.bias_hh
        k = mix()[0] if mix is not None else None  # drawn after the weights, as the loop does
        y, h = GRUSequenceFn.apply(xp, state[0], w_hh, b_hh, k)
        return y, (h,)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        y, h = torch._VF.gru(x, state[0][None], weights, True, 1, 0.0, self.training, False, False)
        return y, (h[0],)


# ----------------------------------------------------------------------------- options
@dataclass
class GRUCellConf(CellConf):
    _target_: str = "rnnbench.cells.gru.GRUCell"
    name: str = "gru"


register_schema("cell", "gru", GRUCellConf)
