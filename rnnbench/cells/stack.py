"""Stacks of recurrent layers: multi-layer, optionally bidirectional (cf. torch/nn/modules/rnn.py).

``RNNStack`` is what models use: it builds one cell per layer and direction from the ``cell``
config (``_target_`` instantiation), runs them time-major, and concatenates directions.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from .base import Cell, CellRunner, RecurrentLayer, State

CellFactory = Callable[..., Cell]


def cell_factory(cell_cfg: Any) -> CellFactory:
    """``(input_size, hidden_size, one_hot_input=False) -> Cell`` from a cell config node
    (``_target_`` + options).

    ``one_hot_input`` says the cell reads one-hot symbols (a seq2seq encoder's or decoder's first
    layer); the cell class turns it into options (:meth:`Cell.input_options`)."""
    from hydra.utils import get_class, instantiate

    cls = get_class(str(cell_cfg["_target_"]))

    def make(input_size: int, hidden_size: int, one_hot_input: bool = False) -> Cell:
        extra = cls.input_options(cell_cfg, one_hot_input)
        return instantiate(cell_cfg, input_size=input_size, hidden_size=hidden_size, **extra)

    return make


class Bidirectional(nn.Module):
    """A forward and a backward layer over the same input; outputs concatenated on features."""

    def __init__(self, fw: RecurrentLayer, bw: RecurrentLayer) -> None:
        super().__init__()
        self.fw, self.bw = fw, bw

    def forward(self, x: Tensor, state: Optional[tuple[State, State]] = None, **layer_kw: Any):
        s_fw, s_bw = state if state is not None else (None, None)
        y_fw, s_fw = self.fw(x, s_fw, **layer_kw)
        y_bw, s_bw = self.bw(x, s_bw, **layer_kw)
        return torch.cat([y_fw, y_bw], -1), (s_fw, s_bw)


class RNNStack(CellRunner):
    """``num_layers`` recurrent layers (each uni- or bidirectional), dropout between layers.

    ``forward(x [T, B, I], states) -> (y [T, B, H * dirs], states)`` where ``states`` is a list
    with one entry per layer (a cell state tuple, or a pair of them when bidirectional).
    Keyword arguments of ``forward`` go to every layer (``rnnbench.nn``'s layers take ``lengths``).
    """

    layer_cls: type[RecurrentLayer] = RecurrentLayer  #: the layer class a subclass may swap in

    def __init__(self, make_cell: CellFactory, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, one_hot_input: bool = False) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        dirs = 2 if bidirectional else 1
        self.output_size = hidden_size * dirs
        layers = []
        for i in range(num_layers):
            n_in = input_size if i == 0 else self.output_size
            # the first layer reads the (one-hot) input; plain (input, hidden) factories stay valid
            kw = {"one_hot_input": True} if one_hot_input and i == 0 else {}
            if bidirectional:
                layers.append(Bidirectional(self.layer_cls(make_cell(n_in, hidden_size, **kw)),
                                            self.layer_cls(make_cell(n_in, hidden_size, **kw), reverse=True)))
            else:
                layers.append(self.layer_cls(make_cell(n_in, hidden_size, **kw)))
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def recurrent_layers(self) -> list[RecurrentLayer]:
        return [m for m in self.modules() if isinstance(m, RecurrentLayer)]

    def cells(self) -> list[Cell]:
        return [layer.cell for layer in self.recurrent_layers()]

    def forward(self, x: Tensor, states: Optional[list] = None, **layer_kw: Any) -> tuple[Tensor, list]:
        states = list(states) if states is not None else [None] * self.num_layers
        new_states = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x, s = layer(x, states[i], **layer_kw)
            new_states.append(s)
        return x, new_states


def map_state(states: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor in a (nested) state structure (e.g. ``Tensor.detach``)."""
    if isinstance(states, Tensor):
        return fn(states)
    if isinstance(states, (list, tuple)):
        return type(states)(map_state(s, fn) for s in states)
    return states
