"""Graceful stop on SIGTERM, SIGUSR1, SIGUSR2 and SIGINT (what schedulers send on preemption and
at a time limit, and Ctrl-C).

The handler only records the signal: the training loop asks :func:`requested` after each
optimizer step (and after each evaluation), writes ``last.pt`` with the same save as the
periodic checkpoint and raises :class:`~rnnbench.errors.Interrupted`, so the stop lands on a step
boundary and a resume is exact. A second signal while that save runs only records again.

Handlers that were installed before the run (submitit's requeue on SIGUSR2, for one) are kept
and called by :func:`forward` once the run has saved and written ``results.json``.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
_state: dict[str, Any] = {"signum": None, "previous": {}}


def _record(signum: int, frame: Any) -> None:
    # only a flag: the loop stops at the next step boundary, so nothing is left half-written
    if _state["signum"] is None:
        _state["signum"] = signum


def requested() -> Optional[int]:
    """The first signal received while :func:`catch_signals` was active, else None."""
    return _state["signum"]


@contextmanager
def catch_signals() -> Iterator[None]:
    """Record :data:`SIGNALS` instead of dying; restore the previous handlers on exit.

    Outside the main thread (a thread-based launcher) Python cannot set handlers: a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["signum"] = None
    previous = {s: signal.signal(s, _record) for s in SIGNALS}
    _state["previous"] = previous
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def forward(signum: int) -> None:
    """Call the Python handler that was in place for ``signum`` before the run, if any (a
    scheduler's requeue hook); the defaults (die, KeyboardInterrupt, ignore) are left out."""
    prev = _state["previous"].get(signum)
    if callable(prev) and prev is not signal.default_int_handler and prev is not _record:
        prev(signum, None)
