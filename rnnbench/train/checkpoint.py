"""Atomic checkpoints: write to a temp file in the same folder, fsync, then ``os.replace``.

A crash or a full disk during a save leaves the previous checkpoint intact; loading uses
``torch.load(weights_only=True)`` so a checkpoint can never run code.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import RnnbenchError
from . import faults
from ..rundir import write_atomic


def save_atomic(obj: Any, path: str | Path) -> None:
    # serialized in memory first: torch's file writer turns a full disk into an opaque
    # "unexpected pos" error, a plain write keeps the errno (rundir reports ENOSPC with the path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(Path(path), buf.getvalue(), on_written=lambda: faults.in_save(str(path)))


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
