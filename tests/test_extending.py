"""docs/extending.md, followed literally: its toy cell (the code blocks marked ``extending-test``)
added in the places the doc lists, trained, and checked by ``rnnbench verify``."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from testutil import REPO, SMOKE, TINY_ADD, run_in_process

DOC = REPO / "docs" / "extending.md"
MODULE = "leaky_rnn"  # the doc's rnnbench/cells/leaky_rnn.py, here a top-level module in a tmp dir


def doc_blocks() -> dict[str, str]:
    """``{role: code}`` of the blocks marked ``<!-- extending-test: role -->`` in the doc."""
    text = DOC.read_text()
    return dict(re.findall(r"<!-- extending-test: ([\w-]+) -->\n```\w*\n(.*?)```", text, re.S))


def test_the_doc_marks_a_block_for_each_place_it_lists():
    assert set(doc_blocks()) == {"cell-module", "cell-conf", "cell-numpy"}


def add_from_doc(tmp_path: Path, monkeypatch, *roles: str) -> str:
    """Put the doc's blocks ``roles`` where the doc says (the module beside the tests' tmp dir and
    imported, as ``import rnnbench.cells`` imports every module of the package; the conf file in a
    folder Hydra also searches; the NumPy step into ``numpy_ref``; the registries restored after the
    test); return the searchpath override."""
    import importlib
    import sys

    from rnnbench import config
    from rnnbench.verify import numpy_ref

    blocks = {k: v.replace("rnnbench.cells.leaky_rnn", MODULE) for k, v in doc_blocks().items()}
    # fresh copies: the doc's lines add to them, the test's end drops them
    monkeypatch.setattr(config, "SCHEMAS", {k: dict(v) for k, v in config.SCHEMAS.items()})
    monkeypatch.setattr(config, "RANGES", dict(config.RANGES))
    monkeypatch.setattr(numpy_ref, "CELLS", dict(numpy_ref.CELLS))
    if "cell-module" in roles:
        (tmp_path / f"{MODULE}.py").write_text(blocks["cell-module"])
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, MODULE, raising=False)
        importlib.import_module(MODULE)
    if "cell-conf" in roles:
        conf = tmp_path / "conf" / "cell"
        conf.mkdir(parents=True)
        (conf / "leaky_rnn.yaml").write_text(blocks["cell-conf"])
    if "cell-numpy" in roles:
        exec(compile(blocks["cell-numpy"], "extending.md:cell-numpy", "exec"), {**vars(numpy_ref)})
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_a_toy_cell_added_as_the_doc_says_trains_and_verifies(tmp_path, monkeypatch):
    from rnnbench.verify import verify_run

    search = add_from_doc(tmp_path, monkeypatch, "cell-module", "cell-conf", "cell-numpy")
    run_dir = tmp_path / "run"
    results = run_in_process(["cell=leaky_rnn", "cell.leak=0.7", search, *TINY_ADD, *SMOKE], run_dir)
    assert results["status"] == "ok" and results["cell"] == "leaky_rnn"
    from leaky_rnn import LeakyRNNCell

    assert results["params"] > 0 and LeakyRNNCell.flop_model == (1, 1, 5)
    report = verify_run(run_dir, echo=None)
    assert report.ok and {s.split for s in report.splits} == {"valid", "test"}


def test_a_range_check_guards_the_toy_option(tmp_path, monkeypatch):
    """The range the doc's module registers is live: leak=2 is refused when the config is composed."""
    from rnnbench import config
    from rnnbench.errors import ConfigError
    from testutil import compose

    search = add_from_doc(tmp_path, monkeypatch, "cell-module", "cell-conf")
    cfg = compose(["cell=leaky_rnn", "cell.leak=2", search])
    with pytest.raises(ConfigError, match="cell.leak=2"):
        config.check_ranges(cfg)
