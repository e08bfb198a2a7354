"""Weight normalization (Salimans & Kingma 2016; article 001) on the cells' weight matrices.

    w_r = g_r · v_r / ‖v_r‖        for every output unit r (a row in nn.LSTM layout)

applied with :func:`torch.nn.utils.parametrizations.weight_norm` (``dim=0``) to the input
and/or recurrent matrices of every cell (see :meth:`~rnnbench.cells.base.Cell.matrix_names`).
``g`` and ``v`` become the parameters (``parametrizations.<name>.original0`` / ``original1``);
the weight is recomputed once per sequence (``parametrize.cached()`` in ``RecurrentLayer``),
so the fused native kernel keeps running on the normalized weights.

``init: article`` re-initialises as article 001's TF code: v ~ truncated N(0, 0.05) (cut at
two standard deviations, as ``tf.truncated_normal_initializer``), g = 0.1, biases b = 0.
``init: keep`` keeps the cell's weights (g = ‖w_r‖, v = w).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

from ..cells.base import MATRIX_KINDS as KINDS
from ..errors import ConfigError
from .base import Regularizer, matrices_or_fail, require_cells


def article_init_(v: torch.Tensor, g: torch.Tensor, std: float = 0.05, g_value: float = 0.1) -> None:
    """v ~ N(0, std) truncated to [-2·std, 2·std]; g = g_value (article 001)."""
    with torch.no_grad():
        nn.init.trunc_normal_(v, mean=0.0, std=std, a=-2 * std, b=2 * std)
        g.fill_(g_value)


class WeightNorm(Regularizer):
    name = "weight_norm"
    order = 0

    def __init__(self, matrices: Sequence[str] = KINDS, init: str = "keep", init_std: float = 0.05,
                 init_g: float = 0.1, zero_bias: bool = True) -> None:
        bad = [m for m in matrices if m not in KINDS]
        if bad or not matrices:
            raise ConfigError(f"regularizer.weight_norm.matrices must be a non-empty subset of {list(KINDS)}, "
                              f"got {list(matrices)}")
        if init not in ("keep", "article"):
            raise ConfigError(f"regularizer.weight_norm.init must be keep or article, got {init!r}")
        self.matrices = list(matrices)
        self.init = init
        self.init_std = float(init_std)
        self.init_g = float(init_g)
        self.zero_bias = bool(zero_bias)

    def apply(self, model: nn.Module) -> None:
        for cell in require_cells(model, self.name):
            for name in matrices_or_fail(cell, self.matrices, self.name):
                if parametrize.is_parametrized(cell, name):
                    raise ConfigError(f"regularizer weight_norm must come before others touching {name} "
                                      f"(it is already parametrized on {type(cell).__name__})")
                torch_weight_norm(cell, name, dim=0)
                if self.init == "article":
                    p = cell.parametrizations[name]
                    article_init_(p.original1, p.original0, self.init_std, self.init_g)
            if self.init == "article" and self.zero_bias:
                with torch.no_grad():
                    for bname, b in cell.named_parameters(recurse=False):
                        if b.dim() == 1 and bname.startswith("bias"):
                            b.zero_()
