"""Multiplicative cells of article 004: mRNN (Sutskever, Martens & Hinton 2011) and
multiplicative LSTM (Krause, Lu, Murray & Renals 2016, arXiv 1609.07959).

Both factor the recurrent matrix through an input-dependent intermediate state::

    m_t = (W_mx x_t + b_m) ⊙ (W_mh h_{t-1})

``b_m`` exists only with ``factor_bias`` set (it is its initial value; ``None`` = the papers'
bias-free factor; article 004 leaves biases open). Without it an all-zero input (a blank MNIST row) gives
m_t = 0 and erases the memory: the mRNN's h_t then no longer depends on h_{t-1} at all.

Per step this costs two matmuls (``W_mh h`` and then everything that reads ``m_t``, fused into
one); every ``W_*x x_t`` term is computed for all steps with one GEMM in :meth:`project_input`.
The intermediate size is ``hidden_size`` (the papers' choice, dim m = dim h).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..config import CellConf, REAL, register_schema
from .base import Cell, Mix, State
from .kernels.mlstm import MLSTMSequenceFn
from .kernels.mrnn import MRNNSequenceFn
from .kernels.linear import linear


def _factor_bias(cell: Cell) -> Tensor:
    """b_m of the factor ``W_mx x + b_m``, zeros when the cell has none."""
    return cell.bias_m if cell.bias_m is not None else cell.bias.new_zeros(cell.hidden_size)


def _init_factor_bias(cell: Cell) -> None:
    if cell.bias_m is not None:
        nn.init.constant_(cell.bias_m, cell.factor_bias)


class MRNNCell(Cell):
    """Multiplicative RNN (Sutskever et al. 2011; article 004)::

        m_t = (W_mx x_t + b_m) ⊙ (W_mh h_{t-1})
        h_t = tanh(W_hm m_t + W_hx x_t + b)

    ``weight_ix = [W_mx; W_hx]`` (2H × I), ``weight_mh = W_mh`` (H × H), ``weight_hm = W_hm``
    (H × H), ``bias = b``, ``bias_m = b_m`` (only with ``factor_bias``, initialised to it).
    """

    num_states = 1
    flop_model = (2, 2, 4)
    takes_state_mix = True  # zoneout runs inside MRNNSequenceFn
    compiled_kernel = True  # MRNNSequenceFn's loop is C++ where it builds (kernels/native/mrnn.cpp)
    #: for the regularizers: W_hm diag(W_mx x) W_mh is the factored recurrent matrix
    regularizer_weights = {"input": ("weight_ix",), "recurrent": ("weight_mh", "weight_hm")}

    def __init__(self, input_size: int, hidden_size: int, factor_bias: Optional[float] = None,
                 **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.factor_bias = None if factor_bias is None else float(factor_bias)
        self.weight_ix = nn.Parameter(torch.empty(2 * H, input_size))
        self.weight_mh = nn.Parameter(torch.empty(H, H))
        self.weight_hm = nn.Parameter(torch.empty(H, H))
        self.bias = nn.Parameter(torch.empty(H))
        self.bias_m = nn.Parameter(torch.empty(H)) if factor_bias is not None else None
        self.initialize()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # keep |m| ≈ |h|: W_mx x then starts near ±1 per unit instead of ±k
        nn.init.uniform_(self.weight_ix[: self.hidden_size], -1.0 / math.sqrt(self.input_size),
                         1.0 / math.sqrt(self.input_size))
        _init_factor_bias(self)

    def project_input(self, x: Tensor) -> Tensor:  # [.., 2H] = [W_mx x + b_m, W_hx x + b]
        return linear(x, self.weight_ix, torch.cat([_factor_bias(self), self.bias]))

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        m = xp[:, :H] * torch.mm(state[0], self.weight_mh.t())
        h = torch.tanh(torch.addmm(xp[:, H:], m, self.weight_hm.t()))
        return h, (h,)

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """No per-step hook but zoneout: the whole sequence through
        ``kernels.mrnn.MRNNSequenceFn`` (same function), with zoneout's masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        xp, w_mh, w_hm = self.project_input(x), self.weight_mh, self.weight_hm
        k = mix()[0] if mix is not None else None  # drawn after the weights, as the loop does
        y, h = MRNNSequenceFn.apply(xp, state[0], w_mh, w_hm, k)
        return y, (h,)


class MLSTMCell(Cell):
    """Multiplicative LSTM (Krause et al. 2016), exactly the form of article 004::

        m_t = (W_mx x_t + b_m) ⊙ (W_mh h_{t-1})       (b_m only with ``factor_bias``)
        ĥ_t = W_hm m_t + W_hx x_t + b_h
        i_t = σ(W_ix x_t + W_im m_t + b_i);  f_t = σ(W_fx x_t + W_fm m_t + b_f)
        o_t = σ(W_ox x_t + W_om m_t + b_o)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ ĥ_t
        h_t = tanh(c_t ⊙ o_t)

    (the paper's form: no tanh on ĥ_t, the output gate inside the tanh). Layout:
    ``weight_ix = [W_mx; W_hx; W_ix; W_fx; W_ox]`` (5H × I), ``weight_mh = W_mh`` (H × H),
    ``weight_m = [W_hm; W_im; W_fm; W_om]`` (4H × H), ``bias = [b_h; b_i; b_f; b_o]`` (4H).
    ``forget_bias`` is added to b_f at initialisation; ``bias_m = b_m`` exists only with
    ``factor_bias`` (its initial value).
    """

    num_states = 2
    flop_model = (5, 5, 12)  # W_mh (H) + W_m (4H) per step
    takes_state_mix = True  # zoneout runs inside MLSTMSequenceFn
    compiled_kernel = True  # MLSTMSequenceFn's loop is C++ where it builds (kernels/native/mlstm.cpp)
    #: for the regularizers: W_mh and W_m* act on h through the factored recurrence
    regularizer_weights = {"input": ("weight_ix",), "recurrent": ("weight_mh", "weight_m")}

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0,
                 factor_bias: Optional[float] = None, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.forget_bias = float(forget_bias)
        self.factor_bias = None if factor_bias is None else float(factor_bias)
        self.weight_ix = nn.Parameter(torch.empty(5 * H, input_size))
        self.weight_mh = nn.Parameter(torch.empty(H, H))
        self.weight_m = nn.Parameter(torch.empty(4 * H, H))
        self.bias = nn.Parameter(torch.empty(4 * H))
        self.bias_m = nn.Parameter(torch.empty(H)) if factor_bias is not None else None
        self.initialize()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        k = 1.0 / math.sqrt(H)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)
        nn.init.uniform_(self.weight_ix[:H], -1.0 / math.sqrt(self.input_size), 1.0 / math.sqrt(self.input_size))
        with torch.no_grad():
            self.bias[2 * H:3 * H] += self.forget_bias
        _init_factor_bias(self)

    def project_input(self, x: Tensor) -> Tensor:  # [.., 5H] = [W_mx x + b_m, W_hx x + b_h, W_*x x + b_*]
        return linear(x, self.weight_ix, torch.cat([_factor_bias(self), self.bias]))

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h, c = state
        m = xp[:, :H] * torch.mm(h, self.weight_mh.t())
        pre = torch.addmm(xp[:, H:], m, self.weight_m.t())  # [ĥ, i, f, o]
        gates = torch.sigmoid(pre[:, H:])
        i, f, o = gates.chunk(3, 1)
        c = torch.addcmul(f * c, i, pre[:, :H])
        h = torch.tanh(c * o)
        return h, (h, c)

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """No per-step hook but zoneout: the whole sequence through
        ``kernels.mlstm.MLSTMSequenceFn`` (same function), with zoneout's masks (``mix``)."""
        if self.compile or x.shape[0] == 0:
            return None
        h0, c0 = state
        xp, w_mh, w_m = self.project_input(x), self.weight_mh, self.weight_m
        kh, kc = mix() if mix is not None else (None, None)  # drawn after the weights, as the loop does
        y, h, c = MLSTMSequenceFn.apply(xp, h0, c0, w_mh, w_m, kh, kc)
        return y, (h, c)


# ----------------------------------------------------------------------------- options
@dataclass
class MLSTMCellConf(CellConf):
    _target_: str = "rnnbench.cells.multiplicative.MLSTMCell"
    name: str = "mlstm"
    forget_bias: float = 0.0  #: added to the forget-gate bias at initialisation
    #: None: m = (W_mx x) ⊙ (W_mh h), the paper's form; a number: a learnable bias b_m on the
    #: input factor, m = (W_mx x + b_m) ⊙ (W_mh h), initialised to it
    factor_bias: Optional[float] = None


@dataclass
class MRNNCellConf(CellConf):
    _target_: str = "rnnbench.cells.multiplicative.MRNNCell"
    name: str = "mrnn"
    #: as mlstm: None = the paper's bias-free factor; a number = learnable b_m initialised to it
    factor_bias: Optional[float] = None


register_schema("cell", "mlstm", MLSTMCellConf, ranges={"forget_bias": REAL, "factor_bias": REAL})
register_schema("cell", "mrnn", MRNNCellConf, ranges={"factor_bias": REAL})
