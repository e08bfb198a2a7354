"""Delta-RNN (Ororbia, Mikolov & Reitter 2017, "Learning Simpler Language Models with the
Delta Recurrent Neural Network Framework", arXiv 1703.08864; article 004).

The form implemented (the paper's Delta-RNN with late-integration gate)::

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

Without a per-step hook, or with zoneout alone, the whole sequence runs in
``DeltaRNNSequenceFn`` (:mod:`rnnbench.cells.kernels.delta_rnn`: a hand-written forward/BPTT
without autograd inside the loop, zoneout's masks drawn for the sequence up front; the same
function); with another hook :meth:`DeltaRNNCell.step` runs under autograd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, REAL, register_schema
from .base import Cell, Mix, State
from .kernels.delta_rnn import _OUTER, DeltaRNNSequenceFn
from .kernels.linear import linear


class DeltaRNNCell(Cell):
    num_states = 1
    flop_model = (1, 1, 10)
    takes_state_mix = True  # zoneout runs inside DeltaRNNSequenceFn
    compiled_kernel = True  # DeltaRNNSequenceFn's loop is C++ where it builds (kernels/native/delta_rnn.cpp)

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
        wx = linear(x, self.weight_ih)
        return torch.cat([torch.addcmul(self.beta1, self.alpha, wx), torch.addcmul(self.bias_z, self.beta2, wx),
                          torch.sigmoid(wx + self.bias_r)], -1)

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """No per-step hook but zoneout: the whole sequence through
        ``kernels.delta_rnn.DeltaRNNSequenceFn``, with zoneout's masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        xp, v = self.project_input(x), self.weight_hh
        k = mix()[0] if mix is not None else None  # drawn after the weights, as the loop does
        y, h = DeltaRNNSequenceFn.apply(xp, state[0], v, self.outer_activation, k)
        return y, (h,)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h = state[0]
        vh = torch.mm(h, self.weight_hh.t())
        z = torch.tanh(torch.addcmul(xp[:, H:2 * H], vh, xp[:, :H]))
        h = self._phi(torch.lerp(z, h, xp[:, 2 * H:]))
        return h, (h,)


# ----------------------------------------------------------------------------- options
@dataclass
class DeltaRNNCellConf(CellConf):
    _target_: str = "rnnbench.cells.delta_rnn.DeltaRNNCell"
    name: str = "delta_rnn"
    outer_activation: str = "tanh"  #: Φ: tanh | identity | relu (the authors' TF code uses relu)
    alpha_init: float = 2.0  #: α init (the authors' value)
    beta1_init: float = 1.0
    beta2_init: float = 1.0


register_schema("cell", "delta_rnn", DeltaRNNCellConf, ranges={"alpha_init": REAL, "beta1_init": REAL, "beta2_init": REAL})
