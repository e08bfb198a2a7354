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
* ``fused=False`` and no per-step hook: :class:`LSTMSequenceFn`, a hand-written forward/BPTT
  (no autograd recording inside the loop, buffers allocated once, gates reordered to
  i, f, o, g so one sigmoid covers three gates, ``dW_hh`` as one GEMM over all steps);
* any per-step hook (zoneout): :meth:`LSTMCell.step`, one ``addmm`` per step under autograd.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import Cell, State


def _ifog_perm(H: int, device: torch.device) -> Tensor:
    """Row permutation from nn.LSTM's gate order (i, f, g, o) to (i, f, o, g)."""
    return torch.cat([torch.arange(0, 2 * H, device=device), torch.arange(3 * H, 4 * H, device=device),
                      torch.arange(2 * H, 3 * H, device=device)])


class LSTMSequenceFn(torch.autograd.Function):
    """Whole-sequence LSTM with a hand-written BPTT, gate order (i, f, o, g).

    Inputs: ``xp [T, B, 4H]`` (input projection plus all biases), ``h0, c0 [B, H]``,
    ``w_hh [4H, H]``. Output ``(y [T, B, H], h_T, c_T)``.
    """

    @staticmethod
    def forward(ctx: Any, xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor):  # type: ignore[override]
        T, B, G = xp.shape
        H = G // 4
        wt = w_hh.t()
        gates = torch.empty_like(xp)  # activated gates, i f o g
        hs = xp.new_empty(T + 1, B, H)  # h_0 .. h_T
        cs = xp.new_empty(T + 1, B, H)
        tc = xp.new_empty(T, B, H)  # tanh(c_t)
        hs[0] = h0
        cs[0] = c0
        for t in range(T):
            g = gates[t]
            torch.addmm(xp[t], hs[t], wt, out=g)
            g[:, :3 * H].sigmoid_()
            g[:, 3 * H:].tanh_()
            torch.mul(g[:, H:2 * H], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(g[:, :H], g[:, 3 * H:])
            torch.tanh(cs[t + 1], out=tc[t])
            torch.mul(g[:, 2 * H:3 * H], tc[t], out=hs[t + 1])
        ctx.save_for_backward(gates, hs, cs, tc, w_hh)
        y = hs[1:]
        return y, hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dhT: Optional[Tensor], dcT: Optional[Tensor]):  # type: ignore[override]
        # Per-step work on [B, H] tiles that stay in cache (vectorizing the activation
        # derivatives over all T first streams several [T, B, H] tensors through memory and
        # was slower).
        gates, hs, cs, tc, w_hh = ctx.saved_tensors
        T, B, G = gates.shape
        H = G // 4
        dgates = torch.empty_like(gates)
        dh = dhT.clone() if dhT is not None else gates.new_zeros(B, H)
        dc = dcT.clone() if dcT is not None else gates.new_zeros(B, H)
        ones = gates.new_ones(B, H)
        tmp = gates.new_empty(B, H)
        dsig = gates.new_empty(B, 3 * H)
        for t in range(T - 1, -1, -1):
            gt, dg = gates[t], dgates[t]
            i, f, o, g = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            if dy is not None:
                dh.add_(dy[t])
            torch.mul(gt[:, :3 * H], gt[:, :3 * H], out=dsig)
            torch.sub(gt[:, :3 * H], dsig, out=dsig)  # σ' = s (1 − s) for i, f, o
            torch.addcmul(ones, tc[t], tc[t], value=-1.0, out=tmp)  # 1 − tanh²(c_t)
            tmp.mul_(o)
            dc.addcmul_(dh, tmp)  # dc_t += dh_t ⊙ o ⊙ tanh'(c_t)
            torch.mul(dh, tc[t], out=dg[:, 2 * H:3 * H]).mul_(dsig[:, 2 * H:])  # d pre_o
            torch.mul(dc, g, out=dg[:, :H]).mul_(dsig[:, :H])  # d pre_i
            torch.mul(dc, cs[t], out=dg[:, H:2 * H]).mul_(dsig[:, H:2 * H])  # d pre_f
            torch.addcmul(ones, g, g, value=-1.0, out=tmp)  # 1 − tanh²(g)
            torch.mul(dc, i, out=dg[:, 3 * H:]).mul_(tmp)  # d pre_g
            dc.mul_(f)
            dh = torch.mm(dg, w_hh)
        dw = torch.mm(dgates.reshape(T * B, G).t(), hs[:-1].reshape(T * B, H))
        return dgates, dh, dc, dw


class LSTMCell(Cell):
    num_states = 2
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw: Any) -> None:
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

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """The custom whole-sequence path (``fused=False``, no hooks): :class:`LSTMSequenceFn`."""
        if self.compile:
            return None
        perm = _ifog_perm(self.hidden_size, x.device)
        xp = torch.nn.functional.linear(x, self.weight_ih[perm], (self._bias_ih() + self.bias_hh)[perm])
        h0, c0 = state
        y, h, c = LSTMSequenceFn.apply(xp, h0, c0, self.weight_hh[perm])
        return y, (h, c)

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        h0, c0 = state
        weights = [self.weight_ih, self.weight_hh, self._bias_ih(), self.bias_hh]
        y, h, c = torch._VF.lstm(x, (h0[None], c0[None]), weights, True, 1, 0.0, self.training,
                                 False, False)
        return y, (h[0], c[0])
