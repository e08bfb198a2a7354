"""Regularizer tests run on one thread (the machine is shared)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
