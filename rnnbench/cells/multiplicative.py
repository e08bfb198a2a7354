"""Multiplicative cells of article 004: mRNN (Sutskever, Martens & Hinton 2011) and
multiplicative LSTM (Krause, Lu, Murray & Renals 2016, arXiv 1609.07959).

Both factor the recurrent matrix through an input-dependent intermediate state::

    m_t = (W_mx x_t) ⊙ (W_mh h_{t-1})

Per step this costs two matmuls (``W_mh h`` and then everything that reads ``m_t``, fused into
one); every ``W_*x x_t`` term is computed for all steps with one GEMM in :meth:`project_input`.
The intermediate size is ``hidden_size`` (the papers' choice, dim m = dim h).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import Cell, State


class MRNNCell(Cell):
    """Multiplicative RNN (Sutskever et al. 2011; article 004)::

        m_t = (W_mx x_t) ⊙ (W_mh h_{t-1})
        h_t = tanh(W_hm m_t + W_hx x_t + b)

    ``weight_ix = [W_mx; W_hx]`` (2H × I), ``weight_mh = W_mh`` (H × H), ``weight_hm = W_hm``
    (H × H), ``bias = b``.
    """

    num_states = 1
    #: for the regularizers: W_hm diag(W_mx x) W_mh is the factored recurrent matrix
    regularizer_weights = {"input": ("weight_ix",), "recurrent": ("weight_mh", "weight_hm")}

    def __init__(self, input_size: int, hidden_size: int, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.weight_ix = nn.Parameter(torch.empty(2 * H, input_size))
        self.weight_mh = nn.Parameter(torch.empty(H, H))
        self.weight_hm = nn.Parameter(torch.empty(H, H))
        self.bias = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)
        # keep |m| ≈ |h|: W_mx x then starts near ±1 per unit instead of ±k
        nn.init.uniform_(self.weight_ix[: self.hidden_size], -1.0 / math.sqrt(self.input_size),
                         1.0 / math.sqrt(self.input_size))

    def project_input(self, x: Tensor) -> Tensor:  # [.., 2H] = [W_mx x, W_hx x + b]
        H = self.hidden_size
        bias = torch.cat([self.bias.new_zeros(H), self.bias])
        return torch.nn.functional.linear(x, self.weight_ix, bias)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        m = xp[:, :H] * torch.mm(state[0], self.weight_mh.t())
        h = torch.tanh(torch.addmm(xp[:, H:], m, self.weight_hm.t()))
        return h, (h,)


class MLSTMCell(Cell):
    """Multiplicative LSTM (Krause et al. 2016), exactly the form of SPEC §3 / article 004::

        m_t = (W_mx x_t) ⊙ (W_mh h_{t-1})
        ĥ_t = W_hm m_t + W_hx x_t + b_h
        i_t = σ(W_ix x_t + W_im m_t + b_i);  f_t = σ(W_fx x_t + W_fm m_t + b_f)
        o_t = σ(W_ox x_t + W_om m_t + b_o)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ ĥ_t
        h_t = tanh(c_t ⊙ o_t)

    (the paper's form: no tanh on ĥ_t, the output gate inside the tanh). Layout:
    ``weight_ix = [W_mx; W_hx; W_ix; W_fx; W_ox]`` (5H × I), ``weight_mh = W_mh`` (H × H),
    ``weight_m = [W_hm; W_im; W_fm; W_om]`` (4H × H), ``bias = [b_h; b_i; b_f; b_o]`` (4H).
    ``forget_bias`` is added to b_f at initialisation.
    """

    num_states = 2
    #: for the regularizers: W_mh and W_m* act on h through the factored recurrence
    regularizer_weights = {"input": ("weight_ix",), "recurrent": ("weight_mh", "weight_m")}

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.forget_bias = float(forget_bias)
        self.weight_ix = nn.Parameter(torch.empty(5 * H, input_size))
        self.weight_mh = nn.Parameter(torch.empty(H, H))
        self.weight_m = nn.Parameter(torch.empty(4 * H, H))
        self.bias = nn.Parameter(torch.empty(4 * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        k = 1.0 / math.sqrt(H)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)
        nn.init.uniform_(self.weight_ix[:H], -1.0 / math.sqrt(self.input_size), 1.0 / math.sqrt(self.input_size))
        with torch.no_grad():
            self.bias[2 * H:3 * H] += self.forget_bias

    def project_input(self, x: Tensor) -> Tensor:  # [.., 5H] = [W_mx x, W_hx x + b_h, W_*x x + b_*]
        H = self.hidden_size
        bias = torch.cat([self.bias.new_zeros(H), self.bias])
        return torch.nn.functional.linear(x, self.weight_ix, bias)

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
