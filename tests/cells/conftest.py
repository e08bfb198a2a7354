"""Cell tests use tiny tensors: one intra-op thread is fastest (and avoids OpenMP spin-waits
when the cores are shared); overrides the session-wide ``_threads`` fixture."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
