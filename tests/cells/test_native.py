"""The compiled kernels (rnnbench/cells/kernels/native): they build wherever a C++ compiler and
ninja exist, compute what the Python-loop kernels compute (both are tested here, so CI runs both
paths), pass a float64 gradcheck, and a machine without a compiler falls back with one warning."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from testutil import REPO

from rnnbench.cells.kernels import native
from rnnbench.cells.kernels.lstm import LSTMSequenceFn

TOOLCHAIN = shutil.which(os.environ.get("CXX", "c++")) is not None and shutil.which("ninja") is not None


@pytest.fixture(scope="module")
def compiled():
    """The compiled module; a failed build fails here on a machine with a toolchain."""
    if os.environ.get("RNNBENCH_NATIVE") == "0":
        pytest.skip("RNNBENCH_NATIVE=0")
    if not TOOLCHAIN:
        pytest.skip("no C++ compiler or ninja: the fallback test covers this machine")
    with native.enabled(True):
        assert native.available(), "the compiled kernels failed to build (see the warning above)"
    return native.get()


def _lstm_inputs(zoneout: str, T=5, B=3, I=4, H=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, dtype=dtype, generator=g)).requires_grad_()

    args = [r(T, B, I), r(4 * H, I, s=0.5), r(4 * H, s=0.5), r(B, H), r(B, H), r(4 * H, H, s=0.5)]
    if zoneout == "none":
        kh = kc = None
    elif zoneout == "masks":  # training: a fresh [T, B, H] mask per step, as slices of one draw
        u = torch.rand(T, 2, B, H, dtype=dtype, generator=g)
        kh, kc = (u[:, 0] < 0.3).to(dtype), (u[:, 1] < 0.5).to(dtype)
    elif zoneout == "locked":  # one [B, H] mask for every step
        u = torch.rand(2, B, H, dtype=dtype, generator=g)
        kh, kc = (u[0] < 0.3).to(dtype), (u[1] < 0.5).to(dtype)
    elif zoneout == "expectation":  # evaluation: the scalar z
        kh, kc = torch.tensor(0.05, dtype=dtype), torch.tensor(0.5, dtype=dtype)
    elif zoneout == "cell_only":
        kh, kc = None, (torch.rand(T, B, H, dtype=dtype, generator=g) < 0.5).to(dtype)
    return args, kh, kc


def _run(on: bool, args, kh, kc, grads=True):
    leaves = [a.detach().clone().requires_grad_() for a in args]
    with native.enabled(on):
        y, hT, cT = LSTMSequenceFn.apply(*leaves, kh, kc)
        if grads:
            # a loss that reaches every output (y at all steps, h_T, c_T) with unequal weights
            (y.sin().sum() + (hT * 1.5).sum() + cT.square().sum()).backward()
    return [y, hT, cT] + ([a.grad for a in leaves] if grads else [])


ZONEOUT = ["none", "masks", "locked", "expectation", "cell_only"]


@pytest.mark.parametrize("zoneout", ZONEOUT)
def test_compiled_lstm_equals_the_python_loop(compiled, zoneout):
    """Outputs and every input's gradient agree to float64 rounding, zoneout's masks included."""
    args, kh, kc = _lstm_inputs(zoneout)
    a, b = _run(True, args, kh, kc), _run(False, args, kh, kc)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


def test_compiled_lstm_in_float32_and_without_grad(compiled):
    args, kh, kc = _lstm_inputs("masks", T=7, B=4, H=16, dtype=torch.float32)
    for u, v in zip(_run(True, args, kh, kc), _run(False, args, kh, kc)):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for u, v in zip(_run(True, args, kh, kc, grads=False), _run(False, args, kh, kc, grads=False)):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("on", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("zoneout", ["none", "masks"])
def test_lstm_kernel_gradcheck(zoneout, on, request):
    """Full float64 Jacobian check of both kernels' BPTT (the masks are constants)."""
    if on:
        request.getfixturevalue("compiled")
    args, kh, kc = _lstm_inputs(zoneout, T=4, B=2, I=3, H=3)
    with native.enabled(on):
        assert torch.autograd.gradcheck(lambda *a: LSTMSequenceFn.apply(*a, kh, kc), tuple(args), eps=1e-6,
                                        atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("compiler", ["missing", "broken"])
def test_without_a_working_compiler_the_python_loop_runs_after_one_warning(tmp_path, compiler):
    """A missing compiler (CXX pointing nowhere) or one that fails (a script exiting 1), with an
    empty extension cache: one warning line saying why, then the Python-loop kernel runs."""
    cxx = tmp_path / "c++"
    if compiler == "broken":
        cxx.write_text("#!/bin/sh\necho 'x.cpp:1:1: error: simulated failure' >&2\nexit 1\n")
        cxx.chmod(0o755)
    env = dict(os.environ, CXX=str(cxx), TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), RNNBENCH_NATIVE="1",
               PYTHONPATH=str(REPO))
    env.pop("RNNBENCH_DATA", None)
    code = ("import logging, torch; logging.basicConfig(format='%(levelname)s %(message)s');"
            "from rnnbench.cells.kernels import native;"
            "from rnnbench.cells.kernels.lstm import LSTMSequenceFn;"
            "x = torch.randn(3, 2, 4); H = 5;"
            "y, h, c = LSTMSequenceFn.apply(x, torch.randn(4 * H, 4), torch.randn(4 * H), torch.zeros(2, H),"
            " torch.zeros(2, H), torch.randn(4 * H, H), None, None);"
            "y2, h2, c2 = LSTMSequenceFn.apply(x, torch.randn(4 * H, 4), torch.randn(4 * H), torch.zeros(2, H),"
            " torch.zeros(2, H), torch.randn(4 * H, H), None, None);"
            "print('module', native.get(), tuple(y.shape))")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "module None (3, 2, 5)" in p.stdout
    warnings = [ln for ln in p.stderr.splitlines() if "compiled kernels unavailable" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING "), p.stderr  # once, not per call
    assert ("is not on PATH" if compiler == "missing" else "returned non-zero exit status 1") in warnings[0]
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr  # nothing else: torch's own banners silenced
    assert "Traceback" not in p.stderr
