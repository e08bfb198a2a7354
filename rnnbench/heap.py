"""Keep freed memory in the process: glibc's malloc serves each block over its mmap threshold
(128 KiB, adapting up to 32 MiB) with a fresh ``mmap`` and hands it back on ``free``, and trims the
heap's top the same way. A training step allocates the same buffers every batch (a 784-step LSTM's
gate slab alone is 100 MiB), so each batch paid page faults and page zeroing for all of them: at
``long`` that was 45 % of a compiled LSTM batch (docs/performance.md). Raising both thresholds keeps
those pages for the next batch, as jemalloc / tcmalloc (PyTorch's CPU tuning guide) would. Set by
``rnnbench train`` and ``rnnbench bench`` for their own process (``RNNBENCH_MALLOC=system`` leaves
glibc's defaults); a program importing rnnbench may call :func:`keep_freed_memory` itself."""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("rnnbench")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_KEEP = 1 << 30  # blocks below 1 GiB from the heap; up to 1 GiB of freed heap kept


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False (nothing changed) where
    ``RNNBENCH_MALLOC=system`` or the C library is not glibc."""
    if os.environ.get("RNNBENCH_MALLOC", "").strip().lower() == "system":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators keep their own policy
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
    if not ok:
        log.debug("mallopt refused the thresholds; glibc's defaults stay")
    return ok
