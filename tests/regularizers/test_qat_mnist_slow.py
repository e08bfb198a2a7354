"""QAT on real MNIST rows (slow): int-only agrees with fake-quant on ≥ 99 % of the test set and
loses ≤ 1 accuracy point vs the float model trained for the same number of steps."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "qat_mnist.py"


@pytest.mark.slow
def test_qat_mnist_row_int_only_agreement_and_accuracy():
    root = Path(os.environ.get("RNNBENCH_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (root / "MNIST").is_dir():
        pytest.skip("MNIST not found (set RNNBENCH_DATA)")
    spec = importlib.util.spec_from_file_location("qat_mnist", SCRIPT)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rep = study.main(["--data", str(root), "--float-steps", "1000", "--qat-steps", "250", "--hidden", "100"])
    assert rep["n"] == 10000
    assert rep["int_agreement"] >= 0.99
    assert rep["float_acc"] > 0.9  # the float model learned (the comparison means something)
    assert rep["float_acc"] - rep["int_acc"] <= 0.01
