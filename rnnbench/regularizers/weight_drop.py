"""Weight drop: DropConnect on the hidden-to-hidden matrices (Merity et al. 2017, AWD-LSTM;
article 002's ``WeightDropLSTMCell``).

    W_hh_eff = W_hh ⊙ M / (1 − p),    M_ij ~ Bernoulli(1 − p)   (training only)

It is a ``torch.nn.utils.parametrize`` parametrization of every recurrent matrix
(:meth:`~rnnbench.cells.base.Cell.matrix_names`). ``RecurrentLayer`` evaluates
parametrized weights once per sequence (``parametrize.cached()``), so one mask serves every
step of a sequence and the fused native kernel (``torch._VF.lstm``/``gru``/``rnn_tanh``) keeps
running — fed the dropped matrix, no per-step Python loop, no change to the cell.

* ``use_vd=false`` (AWD-LSTM): a fresh mask for each sequence (each layer call).
* ``use_vd=true`` (article 002's variational DropConnect): the mask is a buffer kept until
  :meth:`WeightDrop.after_step` resamples it after the optimizer step (the article's
  ``get_vd_update_op``), so forward, backward and step all see the same mask.

In ``eval()`` the parametrization is the identity.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from .base import Regularizer, matrices_or_fail, require_cells


class DropConnectMask(nn.Module):
    """Parametrization ``W -> W ⊙ M / (1 − p)`` in training, ``W`` in eval."""

    def __init__(self, p: float, use_vd: bool = False) -> None:
        super().__init__()
        self.p = float(p)
        self.use_vd = bool(use_vd)
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def sample(self, like: Tensor) -> Tensor:
        """M / (1 − p) with M_ij = [u_ij ≥ p], u ~ U[0, 1) (i.e. Bernoulli(1 − p); rand + compare
        is ~3x faster than ``bernoulli_`` on CPU, which matters on the fused path)."""
        keep = 1.0 - self.p
        return (torch.rand_like(like) >= self.p).to(like.dtype).mul_(1.0 / keep)

    def resample(self) -> None:
        """Draw a new kept mask (use_vd); the next training forward draws it if none yet."""
        self.mask = torch.empty(0, device=self.mask.device)

    def forward(self, w: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return w
        if not self.use_vd:
            return w * self.sample(w)
        if self.mask.shape != w.shape or self.mask.device != w.device or self.mask.dtype != w.dtype:
            self.mask = self.sample(w.detach())
        return w * self.mask


class WeightDrop(Regularizer):
    name = "weight_drop"
    order = 10

    def __init__(self, p: float = 0.5, use_vd: bool = False, matrices: Sequence[str] = ("recurrent",)) -> None:
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"regularizer.weight_drop.p must be in [0, 1), got {p}")
        self.p = float(p)
        self.use_vd = bool(use_vd)
        self.matrices = list(matrices)
        self._masks: list[DropConnectMask] = []

    def apply(self, model: nn.Module) -> None:
        for cell in require_cells(model, self.name):
            for name in matrices_or_fail(cell, self.matrices, self.name):
                m = DropConnectMask(self.p, self.use_vd)
                parametrize.register_parametrization(cell, name, m)
                self._masks.append(m)

    def resample(self) -> None:
        for m in self._masks:
            m.resample()

    def after_step(self, model: nn.Module) -> None:
        if self.use_vd:
            self.resample()
