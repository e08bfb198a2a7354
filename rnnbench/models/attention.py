"""Attention encoder-decoders for the addition task (article 003 §3), two kinds.

``attention=window`` — TensorFlow's ``tf.contrib.rnn.AttentionCellWrapper`` around one cell, as
article 003 uses it (its NumPy recomputation spells out the 22 matrices: 12 for the encoder
wrapper + output layer, 10 for the decoder wrapper). Per step, with ``a_{t-1}`` the previous
attention read-out (size A) and ``W_{t-1}`` the window ``[B, L, A]`` of the last L wrapper
outputs (zeros at the start)::

    x̃_t   = W1 [x_t, a_{t-1}] + c1                    (in_proj: input size -> input size)
    h_t, s_t = cell(x̃_t, s_{t-1})                      (any Cell; s_t its state tuple)
    q_t   = [s_t]  (the state tuple concatenated — TF flattens a tuple state into the query)
    e_tj  = v · tanh(K W_{t-1,j} + Q q_t + c)          (attn_k: 1x1 conv, attn_v, attn_w/attn_c)
    α_t   = softmax_j(e_tj);   a_t = Σ_j α_tj W_{t-1,j}
    o_t   = W3 [h_t, a_t] + c3                        (out_proj: -> A)
    W_t   = [W_{t-1,2..L}, o_t]                       (the window slides by one)

The decoder is a second wrapper that continues from the encoder's ``(s, a, W)``; the answer's
first symbol is read out from the encoder's last output ``o_T`` (``score = W4 o + c4``, the
``head``), each later one from the decoder's output, its input being the previous answer
symbol one-hot (true one with teacher forcing, argmax otherwise).

``attention=additive`` — standard additive (Bahdanau et al. 2015, arXiv 1409.0473) attention
over all encoder outputs ``E = [e_1..e_T]``. With ``s_{i-1}`` the decoder state (the
encoder's final state for i = 0)::

    α_i = softmax_j(v · tanh(K e_j + Q [s_{i-1}] + c));   ctx_i = Σ_j α_ij e_j
    i = 0:  o_0 = W_o [e_T, ctx_0] + b_o                    (first output from the encoder)
    i > 0:  h_i, s_i = cell([y_{i-1}, ctx_i], s_{i-1});  o_i = W_o [h_i, ctx_i] + b_o
    logits_i = head(o_i)

Both work with every cell through the step interface (``cell.project_input`` + ``cell.step``);
the cells sit inside :class:`~rnnbench.cells.RecurrentLayer` modules so regularizers find them:
weight norm / weight drop via ``parametrize`` (evaluated once per forward under
``parametrize.cached()``), zoneout via ``state_hooks`` (honoured by the per-step loops here).
The additive model's encoder is a one-layer ``RNNStack``, so variational dropout / awd apply to
its input and outputs; the window model has no stack and refuses them (one-line ConfigError).
The model is a :class:`~rnnbench.cells.base.CellRunner` for the cells it steps itself, as
``RNNStack`` is for its own: the trainer adds their ``extra_loss()`` (VC penalty) and logs their
``stats()`` (compute fraction). Set ``model.record_trace = True`` to keep
the per-step hidden states, attention weights and outputs of the last forward in ``model.trace``
(tests compare them with the NumPy version).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..cells import Cell, RecurrentLayer, RNNStack, State, cell_factory
from ..cells.base import CellRunner
from ..errors import ConfigError
from ..tasks.base import TaskSpec

ATTENTION_KINDS = ("window", "additive")


def _state_size(cell: nn.Module) -> int:
    """Width of the concatenated state tuple (the attention query)."""
    st = cell.init_state(1, torch.device("cpu"), torch.float32)
    return sum(int(s.shape[-1]) for s in st)


def _cell_step(layer: RecurrentLayer, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One step of ``layer.cell`` on raw input ``x [B, I]``, with the layer's state hooks (zoneout)."""
    h, new_state = layer.cell.step(layer.cell.project_input(x), state)
    for hook in layer.state_hooks:
        new_state = hook(state, new_state, layer)
        h = new_state[0]
    return h, new_state



class AdditiveScore(nn.Module):
    """``α = softmax_j(v · tanh(K m_j + Q q + c))`` over memory ``m [B, L, A]``; returns (read-out, α)."""

    def __init__(self, memory_size: int, query_size: int, attn_vec_size: int) -> None:
        super().__init__()
        self.attn_k = nn.Linear(memory_size, attn_vec_size, bias=False)
        self.attn_q = nn.Linear(query_size, attn_vec_size)
        self.attn_v = nn.Parameter(torch.empty(attn_vec_size))
        nn.init.uniform_(self.attn_v, -1.0 / attn_vec_size ** 0.5, 1.0 / attn_vec_size ** 0.5)

    def forward(self, memory: Tensor, query: Tensor, keys: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        keys = self.attn_k(memory) if keys is None else keys
        e = (self.attn_v * torch.tanh(keys + self.attn_q(query)[:, None])).sum(-1)
        alpha = torch.softmax(e, -1)
        return (alpha[..., None] * memory).sum(1), alpha


class WindowAttentionCell(nn.Module):
    """TF ``AttentionCellWrapper(cell, attn_length, state_is_tuple=True)`` (see module doc)."""

    def __init__(self, make_cell: Any, input_size: int, hidden_size: int, attn_length: int,
                 attn_size: int, attn_vec_size: int) -> None:
        super().__init__()
        if attn_length < 1:
            raise ConfigError(f"model.attn_length must be >= 1, got {attn_length}")
        self.attn_length = attn_length
        self.attn_size = attn_size
        self.in_proj = nn.Linear(input_size + attn_size, input_size)
        self.layer = RecurrentLayer(make_cell(input_size, hidden_size))
        self.attention = AdditiveScore(attn_size, _state_size(self.layer.cell), attn_vec_size)
        self.out_proj = nn.Linear(hidden_size + attn_size, attn_size)

    def init_carry(self, batch: int, like: Tensor) -> tuple[State, Tensor, Tensor]:
        state = self.layer.cell.init_state(batch, like.device, like.dtype)
        attns = like.new_zeros(batch, self.attn_size)
        window = like.new_zeros(batch, self.attn_length, self.attn_size)
        return state, attns, window

    def forward(self, x: Tensor, carry: tuple[State, Tensor, Tensor]):
        """One step: ``x [B, I]`` -> (output o_t [B, A], new carry, h_t, α_t)."""
        state, attns, window = carry
        inp = self.in_proj(torch.cat([x, attns], -1))
        h, state = _cell_step(self.layer, inp, state)
        attns, alpha = self.attention(window, torch.cat(state, -1))
        out = self.out_proj(torch.cat([h, attns], -1))
        window = torch.cat([window[:, 1:], out[:, None]], 1)
        return out, (state, attns, window), h, alpha


class AttentionSeq2Seq(CellRunner):
    """``forward(x_onehot [B, T_in, V], y_onehot=None) -> logits [B, T_out, V]`` (see module doc)."""

    def __init__(self, spec: TaskSpec, cell: Any, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, attention: str = "window", attn_length: int = 7,
                 attn_size: Optional[int] = None, attn_vec_size: Optional[int] = None, **_: Any) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ConfigError(f"model.attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
        if num_layers != 1:
            raise ConfigError(f"model=attention_seq2seq wraps one cell; model.num_layers must be 1, got {num_layers}")
        self.kind = attention
        self.out_len = spec.out_len
        self.vocab = spec.num_classes
        self.record_trace = False
        self.trace: list[dict[str, Tensor]] = []
        make = cell_factory(cell)
        H = hidden_size
        if attention == "window":
            A = attn_size or H
            Va = attn_vec_size or A
            self.encoder = WindowAttentionCell(make, spec.input_size, H, attn_length, A, Va)
            self.decoder = WindowAttentionCell(make, spec.num_classes, H, attn_length, A, Va)
            self.head = nn.Linear(A, spec.num_classes)
        else:
            A = attn_size or H
            Va = attn_vec_size or H
            self.encoder = RNNStack(make, spec.input_size, H, 1, one_hot_input=True)  # a stack: locked dropout applies
            self.decoder = RecurrentLayer(make(spec.num_classes + H, H, one_hot_input=True))  # [one-hot symbol, context]
            self.attention = AdditiveScore(H, _state_size(self.decoder.cell), Va)
            self.out_proj = nn.Linear(2 * H, A)
            self.head = nn.Linear(A, spec.num_classes)

    def cells(self) -> list[Cell]:
        """The cells this model steps itself (not those inside an ``RNNStack``, which reports its own)."""
        return self._stepped_cells()

    def _record(self, **kw: Tensor) -> None:
        if self.record_trace:
            self.trace.append({k: v.detach().clone() for k, v in kw.items()})

    def _stepped_cells(self) -> list[Cell]:
        if self.kind == "window":
            return [self.encoder.layer.cell, self.decoder.layer.cell]
        return [self.decoder.cell]

    def forward(self, x: Tensor, y_onehot: Optional[Tensor] = None) -> Tensor:
        self.trace = []
        cells = self._stepped_cells()
        for c in cells:  # the cells' per-sequence bookkeeping (e.g. VC statistics), as RecurrentLayer does
            c.begin_sequence(x.shape[0])
        try:
            with parametrize.cached():
                if self.kind == "window":
                    return self._forward_window(x, y_onehot)
                return self._forward_additive(x, y_onehot)
        finally:
            for c in cells:
                c.end_sequence()

    def _next_input(self, i: int, logits: Tensor, y_onehot: Optional[Tensor], dtype: torch.dtype) -> Tensor:
        if y_onehot is not None:
            return y_onehot[:, i - 1]
        return F.one_hot(logits.argmax(-1), self.vocab).to(dtype)

    def _forward_window(self, x: Tensor, y_onehot: Optional[Tensor]) -> Tensor:
        enc, dec = self.encoder, self.decoder
        enc.layer.new_sequence()
        dec.layer.new_sequence()
        carry = enc.init_carry(x.shape[0], x)
        out = None
        for t in range(x.shape[1]):
            out, carry, h, alpha = enc(x[:, t], carry)
            self._record(h=h, alpha=alpha, out=out)
        logits = [self.head(out)]
        for i in range(1, self.out_len):
            inp = self._next_input(i, logits[-1], y_onehot, x.dtype)
            out, carry, h, alpha = dec(inp, carry)
            self._record(h=h, alpha=alpha, out=out)
            logits.append(self.head(out))
        return torch.stack(logits, 1)

    def _forward_additive(self, x: Tensor, y_onehot: Optional[Tensor]) -> Tensor:
        mem, states = self.encoder(x.transpose(0, 1))  # [T, B, H]; fused path when possible
        mem, state = mem.transpose(0, 1), states[0]  # [B, T, H]
        keys = self.attention.attn_k(mem)
        ctx, alpha = self.attention(mem, torch.cat(state, -1), keys)
        out = self.out_proj(torch.cat([mem[:, -1], ctx], -1))
        self._record(h=mem[:, -1], alpha=alpha, out=out)
        logits = [self.head(out)]
        self.decoder.new_sequence()
        for i in range(1, self.out_len):
            inp = self._next_input(i, logits[-1], y_onehot, x.dtype)
            ctx, alpha = self.attention(mem, torch.cat(state, -1), keys)
            h, state = _cell_step(self.decoder, torch.cat([inp, ctx], -1), state)
            out = self.out_proj(torch.cat([h, ctx], -1))
            self._record(h=h, alpha=alpha, out=out)
            logits.append(self.head(out))
        return torch.stack(logits, 1)
