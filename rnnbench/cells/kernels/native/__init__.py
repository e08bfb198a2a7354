"""The compiled kernels: the C++ sources in this folder, built by ``torch.utils.cpp_extension``
(with ninja) on first use into torch's extension cache (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``); later processes load the cached build. A kernel module calls
:func:`get` and runs its Python loop when it returns ``None``: ``RNNBENCH_NATIVE=0``, a tensor
not on the CPU, or a failed build (no compiler, no ninja), which logs one warning line.
``RNNBENCH_GEMM`` picks the kernels' GEMM engine once per process (:func:`gemm_engine`): ``auto``
(default: ``blas`` on an Intel CPU, where MKL runs the kernels it tunes for that CPU, ``onednn``
elsewhere, where it does not), ``onednn`` (float32 GEMMs through oneDNN's matmul, the engine of ``nn.LSTM``'s fused
kernel, where this torch exports it) or ``blas`` (``at::mm``). docs/performance.md records what each gains."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

import torch
from torch import Tensor

log = logging.getLogger("rnnbench")

SOURCES = ("module.cpp", "lstm.cpp", "gru.cpp", "rnn.cpp", "mlstm.cpp", "mrnn.cpp", "vc.cpp", "delta_rnn.cpp",
           "vcrnn.cpp", "masks.cpp")  # + gemm.h, keep.h, rows.h
GEMM_ENGINES = ("auto", "onednn", "blas")
_state: dict = {"enabled": os.environ.get("RNNBENCH_NATIVE", "1") != "0", "tried": False, "module": None}


def get(x: Optional[Tensor] = None) -> Optional[ModuleType]:
    """The compiled module (built on the first call), or ``None`` where the Python loop must run."""
    if not _state["enabled"] or (x is not None and x.device.type != "cpu"):
        return None
    if not _state["tried"]:
        _state["tried"] = True
        _state["module"] = _build()
    return _state["module"]


def _build() -> Optional[ModuleType]:
    reason = _missing_toolchain()
    if reason is None:
        try:
            module = _load()
            module.set_gemm(_gemm_choice())
            return module
        except Exception as e:  # any build failure (headers, flags, linker): the Python loop does the same work
            lines = str(e).strip().splitlines() or [type(e).__name__]
            reason = next((ln.strip() for ln in lines if "error:" in ln), lines[0])[:300]  # the compiler's line
    log.warning("compiled kernels unavailable (%s); running the Python-loop kernels "
                "(RNNBENCH_NATIVE=0 skips the build)", reason)
    return None


def _gemm_choice() -> str:
    choice = os.environ.get("RNNBENCH_GEMM", "auto").strip().lower()
    if choice not in GEMM_ENGINES:
        log.warning("RNNBENCH_GEMM=%s is not one of %s; using auto", choice, ", ".join(GEMM_ENGINES))
        return "auto"
    return choice


def gemm_engine() -> str:
    """The compiled kernels' GEMM engine in this process: ``onednn``, ``blas``, or ``none`` (no
    compiled kernels: the Python loop's GEMMs are ``torch.mm``'s)."""
    module = get()
    return module.gemm_engine() if module is not None else "none"


def _missing_toolchain() -> Optional[str]:
    cxx = os.environ.get("CXX", "c++")  # the compiler torch.utils.cpp_extension runs
    if shutil.which(cxx) is None:
        return f"no C++ compiler: {cxx!r} is not on PATH"
    if shutil.which("ninja") is None:
        return "ninja is not installed (pip install ninja)"
    return None


def _load() -> ModuleType:
    here = Path(__file__).resolve().parent
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns that a CPU-only machine has no CUDA runtime, and more
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.cpp_extension import load

            # no -march=native: a cache shared by a cluster's nodes must run on all of them. -fopenmp:
            # at::parallel_for (rows.h) is an OpenMP pragma in the headers, serial without it; the
            # libgomp.so.1 linked is the one torch has loaded (same soname), so there is one thread pool.
            # -fno-trapping-math: no FP traps are enabled, and it lets GCC turn a select between two
            # computed values (keep.h lerp on a random mask or a GRU gate) into a blend, so those
            # loops vectorize; values are unchanged (no reassociation, no fast-math)
            # the headers' hash as a define: torch rebuilds a cached extension when its sources or
            # flags change, and would keep a build whose headers alone changed (an upgrade's gemm.h)
            return load(name="rnnbench_native", sources=[str(here / s) for s in SOURCES],
                        extra_cflags=["-O3", "-fopenmp", "-fno-trapping-math", f"-DRNNBENCH_HEADERS={_headers_hash(here)}"],
                        extra_ldflags=["-fopenmp"], verbose=False)
    finally:
        quiet.setLevel(level)


def _headers_hash(here: Path) -> str:
    digest = hashlib.sha256()
    for h in sorted(here.glob("*.h")):
        digest.update(h.name.encode() + b"\0" + h.read_bytes())
    return digest.hexdigest()[:16]


def available() -> bool:
    """Whether the compiled kernels run in this process (building them if not tried yet)."""
    return get() is not None


@contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Run a block with the compiled kernels on or off (tests compare the two paths)."""
    old = _state["enabled"]
    _state["enabled"] = on
    try:
        yield
    finally:
        _state["enabled"] = old


def mm(a: Tensor, b: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``a b`` (into ``out``, which may be a strided view) with the compiled kernels' GEMM engine,
    ``torch.mm`` where they do not run: the whole-sequence GEMMs of the kernels' Python side."""
    module = get(a)
    if module is None:
        return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)
    if out is None:
        return module.mm(a, b)
    module.mm_out(out, a, b)
    return out
