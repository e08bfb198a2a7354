"""Helpers for the cell tests: composed cell configs and layers run over a sequence."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from rnnbench.cells import RecurrentLayer

CELLS = ["rnn", "lstm", "gru", "vclstm", "vcrnn", "vcgru", "mlstm", "mrnn", "delta_rnn"]


def cell_cfg(name: str, overrides: tuple[str, ...] = ()) -> Any:
    """The ``cell`` node of the primary config composed with ``cell=<name>`` (a fresh copy)."""
    from omegaconf import OmegaConf

    return OmegaConf.create(OmegaConf.to_container(_cell_cfg(name, tuple(overrides))))


@lru_cache(maxsize=None)
def _cell_cfg(name: str, overrides: tuple[str, ...]) -> Any:
    from testutil import compose

    return compose([f"cell={name}", *(f"cell.{o}" for o in overrides)]).cell


def make_cell(name: str, input_size: int, hidden_size: int, overrides: tuple[str, ...] = (),
              dtype: torch.dtype = torch.float64, seed: int = 0):
    from hydra.utils import instantiate

    torch.manual_seed(seed)
    cell = instantiate(cell_cfg(name, overrides), input_size=input_size, hidden_size=hidden_size)
    return cell.to(dtype)


def npw(t: torch.Tensor):
    """A parameter as a float64 NumPy array (the NumPy references get nothing else from torch)."""
    return t.detach().double().cpu().numpy().copy()


def run_layer(cell, x: torch.Tensor, state=None, reverse: bool = False):
    return RecurrentLayer(cell, reverse=reverse)(x, state)
