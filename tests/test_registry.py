"""One registry (rnnbench/registry.py): every cell and regularizer config has its class, and
what they declare reaches the generic code under their own names."""
from __future__ import annotations

from rnnbench import registry
from rnnbench.cells.base import Cell
from rnnbench.regularizers.base import Regularizer
from testutil import CONF


def test_every_cell_and_regularizer_config_names_a_registered_class():
    cells, regs = registry.cells(), registry.regularizers()
    assert {p.stem for p in (CONF / "cell").glob("*.yaml")} == set(cells)
    assert all(issubclass(c, Cell) and len(c.flop_model) == 3 for c in cells.values())
    assert all(issubclass(r, Regularizer) for r in regs.values())
    # every regularizer config file selects one of them (awd_char is awd at other rates)
    assert {p.stem for p in (CONF / "regularizer").glob("*.yaml")} - set(regs) <= {"awd_char"}


def test_declared_reports_are_the_ones_the_table_shows():
    from rnnbench.reports import table

    keys = [r.key for r in registry.reported()]
    assert len(keys) == len(set(keys))
    assert {"compute_fraction", "int_agreement", "int_acc"} == {k for k, _ in table.EXTRA_COLUMNS}
    assert {"mean_m", "compute_fraction", "fq_acc"} <= table.FRACTION_METRICS
