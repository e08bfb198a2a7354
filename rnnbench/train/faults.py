"""Fault injection for tests: ``RNNBENCH_FAULT=<action>@<point>=<n>[,<action>@<point>=<n>...]``
makes a run fail on cue.

Faults that happen by injection cannot race the run the way a sleep-then-kill does.

- action: ``sigkill`` (the process kills itself: no handler, no cleanup), ``raise`` (a
  ``RuntimeError``, the run's ordinary failure path), ``sigterm`` / ``sigusr1`` / ``sigusr2`` /
  ``sigint`` (the process sends itself that signal, as a scheduler or Ctrl-C would; Python runs
  the handler before the call returns) or ``enospc`` (an ``OSError(ENOSPC)``, a full disk)
- point: ``step`` (right after optimizer step n, before anything else at that step), ``epoch``
  (right after epoch n has ended and its checkpoint is written: between epochs), ``save`` (inside
  the n-th checkpoint write of the process, after the temp file is written and before it
  replaces the old file) or ``write`` (at the n-th write of another run file: metrics.jsonl,
  results.json, task_state.json)

Unset (the normal case), every hook is a no-op.
"""
from __future__ import annotations

import errno
import os
import signal
from functools import lru_cache
from typing import Optional

from ..errors import ConfigError

ENV = "RNNBENCH_FAULT"
SIGNAL_ACTIONS = {"sigterm": signal.SIGTERM, "sigusr1": signal.SIGUSR1, "sigusr2": signal.SIGUSR2,
                  "sigint": signal.SIGINT}
ACTIONS = ("sigkill", "raise", "enospc", *SIGNAL_ACTIONS)
POINTS = ("step", "epoch", "save", "write")
_counts = {"save": 0, "write": 0}


def _parse_one(spec: str) -> Optional[tuple[str, str, int]]:
    try:
        action, rest = spec.split("@", 1)
        point, n = rest.split("=", 1)
        fault = (action, point, int(n))
    except ValueError:
        return None
    return fault if fault[0] in ACTIONS and fault[1] in POINTS and fault[2] >= 1 else None


@lru_cache(maxsize=None)
def _parse(spec: Optional[str]) -> tuple[tuple[str, str, int], ...]:
    if not spec:
        return ()
    faults = tuple(_parse_one(s.strip()) for s in spec.split(","))
    if None in faults:
        raise ConfigError(f"{ENV}={spec!r}: expected <{'|'.join(ACTIONS)}>@<{'|'.join(POINTS)}>=<n >= 1>[,...], "
                          "e.g. sigkill@step=7; unset it for a normal run")
    return faults  # type: ignore[return-value]


def _fire(action: str, where: str, path: Optional[str] = None) -> None:
    if action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action in SIGNAL_ACTIONS:
        signal.raise_signal(SIGNAL_ACTIONS[action])
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    raise RuntimeError(f"{ENV}: injected fault at {where}")


def _at(point: str, n: int, where: str, path: Optional[str] = None) -> None:
    for action, p, k in _parse(os.environ.get(ENV)):
        if p == point and k == n:
            _fire(action, where, path)


def at_step(step: int) -> None:
    """Called by the trainer after each optimizer step."""
    _at("step", step, f"step {step}")


def at_epoch_end(epoch: int) -> None:
    """Called by the trainer after epoch ``epoch`` (1-based) has ended and saved last.pt."""
    _at("epoch", epoch, f"the end of epoch {epoch}")


def _count(point: str) -> int:
    if not any(p == point for _, p, _ in _parse(os.environ.get(ENV))):
        return 0
    _counts[point] += 1
    return _counts[point]


def in_save(path: Optional[str] = None) -> None:
    """Called by the atomic checkpoint write between writing its temp file and the rename."""
    n = _count("save")
    if n:
        _at("save", n, f"checkpoint write {n}", path)


def in_write(path: Optional[str] = None) -> None:
    """Called before each write of a run file other than a checkpoint."""
    n = _count("write")
    if n:
        _at("write", n, f"run-file write {n}", path)
