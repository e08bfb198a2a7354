"""rnnbench/heap.py: with the thresholds raised a freed 64 MiB block stays in the process (glibc
reports it as free heap), with glibc's defaults (RNNBENCH_MALLOC=system) it goes back to the OS.
Each case runs in its own interpreter: the setting is process-wide."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from testutil import REPO

PROBE = r"""
import ctypes
from rnnbench.heap import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory()
p = libc.malloc(64 << 20)
ctypes.memset(p, 1, 64 << 20)  # touch the pages
libc.free(p)
print(kept, libc.mallinfo2().fordblks >= 64 << 20)
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc's malloc only")
@pytest.mark.parametrize("setting,expect", [("", "True True"), ("system", "False False")])
def test_a_freed_block_stays_in_the_process_unless_told_not_to(setting, expect):
    env = {**os.environ, "RNNBENCH_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert " ".join(out) == expect
