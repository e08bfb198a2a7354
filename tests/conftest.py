"""Shared fixtures. Helpers (paths, compose, in-process runs) are in ``testutil.py``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from testutil import data_root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("real datasets not found (set RNNBENCH_DATA or put them in ../shared/data)")
    return root


@pytest.fixture(autouse=True)
def _threads():
    """Tests use tiny tensors: one intra-op thread is fastest and keeps results reproducible."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
    torch.set_flush_denormal(False)  # a training run turns it on (train.flush_denormal) for the process
