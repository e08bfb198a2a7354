"""Shared machinery of the regularizers: the base class and which tensors each one touches.

Every regularizer is a small object built from its config node (``_target_`` + options):

* ``apply(model)`` attaches it to a built model with standard torch mechanisms only
  (``torch.nn.utils.parametrize``, forward (pre-)hooks, ``RecurrentLayer.state_hooks``);
  it raises :class:`~rnnbench.errors.ConfigError` (one line) when it cannot apply;
* ``after_step(model)`` runs after every optimizer step (``use_vd`` mask resampling);
* ``final_report(model, task, eval_batch_size, max_eval_batches)`` adds numbers to results.json
  at the end of a run (QAT's integer-only check), listed in ``reported``;
* ``order`` places it among the others, whatever the listing order.

Which parameters count as *input* and *recurrent* matrices of a cell is the cell's own answer,
:meth:`~rnnbench.cells.base.Cell.matrix_names` (a declared ``regularizer_weights``, else
``torch.nn.LSTM``'s ``weight_h*`` / ``weight_i*`` naming).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Any, Iterable, Optional

from torch import nn

from ..cells.base import Cell, RecurrentLayer
from ..errors import ConfigError
from ..reported import Reported


class Regularizer(ABC):
    """Base class: subclasses implement :meth:`apply`; the other hooks are optional."""

    name: str = "regularizer"
    #: place in the order of application, lowest first: weight_norm (0) before weight_drop / awd
    #: (10) — its g/v split must be a weight's first parametrization —, variational dropout (20),
    #: zoneout (30), qat (40)
    order: int = 0
    #: the :meth:`final_report` keys results.json and ``rnnbench table`` show
    reported: tuple[Reported, ...] = ()

    @abstractmethod
    def apply(self, model: nn.Module) -> None:
        """Attach the regularizer to ``model`` (parametrizations, hooks, module swaps)."""

    def after_step(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Called by the trainer after every optimizer step."""

    def final_report(self, model: nn.Module, task: Any, eval_batch_size: int,
                     max_eval_batches: Optional[int]) -> dict[str, float]:
        """Numbers for results.json at the end of a run, ``model`` holding the best checkpoint's
        weights and ``task`` its data; the evaluation batch settings are the run's."""
        return {}

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
