"""Atomic checkpoints: write to a temp file in the same folder, fsync, then ``os.replace``.

A crash during a save leaves the previous checkpoint intact; loading uses
``torch.load(weights_only=True)`` so a checkpoint can never run code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import RnnbenchError
from . import faults


def save_atomic(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        faults.in_save()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise RnnbenchError(f"no checkpoint at {path}; check train.resume (it takes a run directory)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RnnbenchError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); "
                            "it is corrupt or from another version — start a fresh run") from e


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
