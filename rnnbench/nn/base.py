"""The drop-in recurrent module: ``torch.nn.LSTM``'s signature and returns on rnnbench's cells.

A module is an :class:`~rnnbench.cells.RNNStack` (the layers the CLI's models use, so the same
native kernels and hand-written BPTT run) of one cell class, plus ``torch.nn.LSTM``'s calling
convention: time-major or ``batch_first`` input, unbatched 2-D input, ``PackedSequence`` in and
out, ``hx`` and ``h_n`` as ``[num_layers * num_directions, B, H]`` (a ``(h, c)`` pair for cells
with a memory cell). Regularizers are keyword arguments applied with the CLI's own
:func:`~rnnbench.regularizers.apply_regularizers`.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import Cell, cells_extra_loss, cells_stats
from ..regularizers import apply_regularizers
from .layer import LengthStack

Hx = Union[Tensor, tuple[Tensor, Tensor], None]


def regularizer_config(weight_norm: Any = None, weight_drop: Any = None, zoneout: Any = None,
                       variational_dropout: Any = None) -> dict[str, dict]:
    """The ``regularizer`` mapping (name -> options) from the modules' short keyword forms:
    ``weight_norm=True``, ``weight_drop=p``, ``zoneout=(z_c, z_h)`` or one z for both,
    ``variational_dropout=p`` (inputs, between layers and outputs); a dict is the options."""
    out: dict[str, dict] = {}
    if weight_norm:
        out["weight_norm"] = dict(weight_norm) if isinstance(weight_norm, dict) else {}
    if weight_drop:
        out["weight_drop"] = dict(weight_drop) if isinstance(weight_drop, dict) else {"p": float(weight_drop)}
    if zoneout:
        if isinstance(zoneout, dict):
            out["zoneout"] = dict(zoneout)
        else:  # (z_c, z_h) in the order the zoneout paper states them (z_c = 0.5, z_h = 0.05)
            z_c, z_h = (zoneout, zoneout) if isinstance(zoneout, (int, float)) else zoneout
            out["zoneout"] = {"z_c": float(z_c), "z_h": float(z_h)}
    if variational_dropout:
        vd = variational_dropout
        out["variational_dropout"] = (dict(vd) if isinstance(vd, dict) else
                                      {"input": float(vd), "hidden": float(vd), "output": float(vd)})
    return out


class RecurrentModule(nn.Module):
    """Base of the ``rnnbench.nn`` modules; subclasses set ``cell_class`` and ``cell_name``."""

    cell_class: type[Cell]
    cell_name: str

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 weight_norm: Any = None, weight_drop: Any = None, zoneout: Any = None,
                 variational_dropout: Any = None, device: Any = None, dtype: Optional[torch.dtype] = None,
                 **cell_options: Any) -> None:
        super().__init__()
        if not (isinstance(num_layers, int) and num_layers >= 1 and hidden_size >= 1 and input_size >= 1):
            raise ValueError("input_size, hidden_size and num_layers must be integers >= 1")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        self.num_directions = 2 if bidirectional else 1

        def make(n_in: int, n_hidden: int) -> Cell:
            return self.cell_class(n_in, n_hidden, name=self.cell_name, **cell_options)

        self.rnn = LengthStack(make, input_size, hidden_size, num_layers, bidirectional, dropout)
        if not bias:
            self._drop_biases()
        self.regularizers = apply_regularizers(self, regularizer_config(weight_norm, weight_drop, zoneout,
                                                                        variational_dropout))
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def _drop_biases(self) -> None:
        """``bias=False``: the cells' bias vectors (``bias*``) held at zero, out of training."""
        for cell in self.cells():
            for name, p in cell.named_parameters(recurse=False):
                if name.startswith("bias"):
                    nn.init.zeros_(p)
                    p.requires_grad_(False)

    # -- torch.nn.LSTM's calling convention -----------------------------------------------------
    def forward(self, input: Union[Tensor, PackedSequence], hx: Hx = None):
        lengths, order = None, None
        if isinstance(input, PackedSequence):
            # padded in the packed (decreasing-length) order, as the layers need it
            x, n = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
            lengths, order, batched = n.tolist(), input, True
        else:
            batched = input.dim() == 3
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: expected 2-D (unbatched) or 3-D input, got {input.dim()}-D")
            x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
            x = x.transpose(0, 1) if self.batch_first else x
        states = self._layer_states(hx, x.shape[1], batched, order)
        kw = {"lengths": lengths} if lengths is not None else {}
        with parametrize.cached():  # one weight-drop mask for every layer and segment of this call
            y, states = self.rnn(x, states, **kw)
        h_n = self._stack_states(states, batched, order)
        if lengths is not None:
            data = pack_padded_sequence(y, lengths).data
            return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), h_n
        y = y.transpose(0, 1) if self.batch_first else y
        return (y if batched else y.squeeze(0 if self.batch_first else 1)), h_n

    @property
    def num_states(self) -> int:
        return self.cell_class.num_states

    def _layer_states(self, hx: Hx, batch: int, batched: bool, order: Optional[PackedSequence]) -> Optional[list]:
        """``hx`` ([L·D, B, H] tensors) -> the stack's per-layer states (sorted as the packed batch)."""
        if hx is None:
            return None
        parts = list(hx) if isinstance(hx, (tuple, list)) else [hx]
        if len(parts) != self.num_states:
            raise ValueError(f"{type(self).__name__}: hx must be {'(h_0, c_0)' if self.num_states == 2 else 'h_0'}")
        want = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if not batched:
            parts = [p.unsqueeze(1) for p in parts]
        if order is not None and order.sorted_indices is not None:
            parts = [p.index_select(1, order.sorted_indices) for p in parts]
        for p in parts:
            if tuple(p.shape) != want:
                raise RuntimeError(f"Expected hidden size {want}, got {tuple(p.shape)}")
        D = self.num_directions
        per = [tuple(p[i] for p in parts) for i in range(self.num_layers * D)]
        return [per[i * D] if D == 1 else (per[i * D], per[i * D + 1]) for i in range(self.num_layers)]

    def _stack_states(self, states: list, batched: bool, order: Optional[PackedSequence]) -> Hx:
        flat = [s for layer in states for s in (layer if self.bidirectional else (layer,))]
        out = [torch.stack([s[k] for s in flat]) for k in range(self.num_states)]
        if order is not None and order.unsorted_indices is not None:
            out = [o.index_select(1, order.unsorted_indices) for o in out]
        if not batched:
            out = [o.squeeze(1) for o in out]
        return out[0] if self.num_states == 1 else (out[0], out[1])

    # -- what the trainer does for the CLI's models, for your own loop --------------------------
    def cells(self) -> list[Cell]:
        """Every cell, by layer then direction."""
        return self.rnn.cells()

    def extra_loss(self) -> Optional[Tensor]:
        """Auxiliary loss of the forwards since the last call (a VC cell's computation penalty);
        add it to your loss. None when there is none."""
        return cells_extra_loss(self.cells())

    def stats(self) -> dict[str, float]:
        """Per-forward statistics averaged since the last call (VC: ``mean_m``, ``compute_fraction``)."""
        return cells_stats(self.cells())

    def after_step(self) -> None:
        """Call after each optimizer step (``weight_drop={'p': .., 'use_vd': True}`` resamples its mask)."""
        for r in self.regularizers:
            r.after_step(self)

    def flatten_parameters(self) -> None:
        """``torch.nn.LSTM`` compatibility: nothing to do (no cuDNN weight buffer here)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for k, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                           ("bidirectional", False)):
            if getattr(self, k) != default:
                s += f", {k}={getattr(self, k)}"
        if self.regularizers:
            s += ", regularizers=[" + ", ".join(type(r).__name__ for r in self.regularizers) + "]"
        return s
