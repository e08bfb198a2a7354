"""Shared machinery of the regularizers: the base class and which tensors each one touches.

Every regularizer is a small object built from its config node (``_target_`` + options):

* ``apply(model)`` attaches it to a built model with standard torch mechanisms only
  (``torch.nn.utils.parametrize``, forward (pre-)hooks, ``RecurrentLayer.state_hooks``);
  it raises :class:`~rnnbench.errors.ConfigError` (one line) when it cannot apply;
* ``after_step(model)`` runs after every optimizer step (``use_vd`` mask resampling).

Which parameters count as *input* and *recurrent* matrices of a cell is the cell's own answer,
:meth:`~rnnbench.cells.base.Cell.matrix_names` (a declared ``regularizer_weights``, else
``torch.nn.LSTM``'s ``weight_h*`` / ``weight_i*`` naming).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Iterable

from torch import nn

from ..cells.base import Cell, RecurrentLayer
from ..errors import ConfigError


class Regularizer(ABC):
    """Base class: subclasses implement :meth:`apply`; :meth:`after_step` is optional."""

    name: str = "regularizer"

    @abstractmethod
    def apply(self, model: nn.Module) -> None:
        """Attach the regularizer to ``model`` (parametrizations, hooks, module swaps)."""

    def after_step(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Called by the trainer after every optimizer step."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def cells_of(model: nn.Module) -> list[Cell]:
    return [m for m in model.modules() if isinstance(m, Cell)]


def layers_of(model: nn.Module) -> list[RecurrentLayer]:
    return [m for m in model.modules() if isinstance(m, RecurrentLayer)]


def require_cells(model: nn.Module, who: str) -> list[Cell]:
    cells = cells_of(model)
    if not cells:
        raise ConfigError(f"regularizer {who} needs a model with recurrent cells (found none in "
                          f"{type(model).__name__})")
    return cells


def cell_name(cell: Cell) -> str:
    return getattr(cell, "cell_name", type(cell).__name__)


def matrices_or_fail(cell: Cell, kinds: Iterable[str], who: str) -> list[str]:
    names = [n for k in kinds for n in cell.matrix_names(k)]
    if not names:
        raise ConfigError(f"regularizer {who} cannot apply to cell {cell_name(cell)}: it has no "
                          f"{'/'.join(kinds)} weight matrix (weight_h*/weight_i* or regularizer_weights)")
    return names
