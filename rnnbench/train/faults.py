"""Fault injection for tests: ``RNNBENCH_FAULT=<action>@<point>=<n>`` makes a run fail on cue.

Faults that happen by injection cannot race the run the way a sleep-then-kill does.

- action: ``sigkill`` (the process kills itself: no handler, no cleanup) or ``raise``
  (a ``RuntimeError``, the run's ordinary failure path)
- point: ``step`` (right after optimizer step n, before anything else at that step) or ``save``
  (inside the n-th checkpoint write of the process, after the temp file is written and before it
  replaces the old file)

Unset (the normal case), every hook is a no-op.
"""
from __future__ import annotations

import os
import signal
from functools import lru_cache
from typing import Optional

from ..errors import ConfigError

ENV = "RNNBENCH_FAULT"
ACTIONS = ("sigkill", "raise")
POINTS = ("step", "save")
_saves = {"n": 0}


@lru_cache(maxsize=None)
def _parse(spec: Optional[str]) -> Optional[tuple[str, str, int]]:
    if not spec:
        return None
    try:
        action, rest = spec.split("@", 1)
        point, n = rest.split("=", 1)
        fault = (action, point, int(n))
    except ValueError:
        fault = None
    if fault is None or fault[0] not in ACTIONS or fault[1] not in POINTS or fault[2] < 1:
        raise ConfigError(f"{ENV}={spec!r}: expected <{'|'.join(ACTIONS)}>@<{'|'.join(POINTS)}>=<n >= 1>, "
                          "e.g. sigkill@step=7; unset it for a normal run")
    return fault


def _fire(action: str, where: str) -> None:
    if action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"{ENV}: injected fault at {where}")


def at_step(step: int) -> None:
    """Called by the trainer after each optimizer step."""
    fault = _parse(os.environ.get(ENV))
    if fault is not None and fault[1] == "step" and fault[2] == step:
        _fire(fault[0], f"step {step}")


def in_save() -> None:
    """Called by the atomic checkpoint write between writing its temp file and the rename."""
    fault = _parse(os.environ.get(ENV))
    if fault is None or fault[1] != "save":
        return
    _saves["n"] += 1
    if _saves["n"] == fault[2]:
        _fire(fault[0], f"checkpoint write {fault[2]}")
