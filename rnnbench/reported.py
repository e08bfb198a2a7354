"""The numbers an extension adds to a run's results, declared where they are computed.

A cell's :meth:`~rnnbench.cells.base.Cell.stats` and a regularizer's
:meth:`~rnnbench.regularizers.base.Regularizer.final_report` return numbers under their own
names; the class lists them in ``reported`` so the generic code (results.json, the TensorBoard
hparams, ``rnnbench table``) shows them without naming the cell or regularizer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Reported:
    key: str  #: the name in ``stats()`` / ``final_report()`` and in results.json
    column: Optional[str] = None  #: title of its ``rnnbench table`` column (None: no column)
    fraction: bool = True  #: a fraction in [0, 1], shown in percent
    #: a ``stats()`` key copied from the best epoch's valid metrics to results.json's top level
    result: bool = False
