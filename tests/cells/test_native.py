"""The compiled kernels (rnnbench/cells/kernels/native): they build wherever a C++ compiler and
ninja exist, compute what the Python-loop kernels compute (both are tested here, so CI runs both
paths), pass a float64 gradcheck, and a machine without a compiler falls back with one warning."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from testutil import REPO

from rnnbench.cells.kernels import native
from rnnbench.cells.kernels.delta_rnn import DeltaRNNSequenceFn
from rnnbench.cells.kernels.gru import GRUSequenceFn
from rnnbench.cells.kernels.lstm import LSTMSequenceFn
from rnnbench.cells.kernels.mlstm import MLSTMSequenceFn
from rnnbench.cells.kernels.mrnn import MRNNSequenceFn
from rnnbench.cells.kernels.rnn import RNNSequenceFn
from rnnbench.cells.kernels.vc import VCGRUSequenceFn, VCLSTMSequenceFn
from rnnbench.cells.kernels.vcrnn import VCRNNSequenceFn



@pytest.fixture(scope="module")
def compiled():
    """The compiled module; a failed build fails here on a machine with a toolchain."""
    if os.environ.get("RNNBENCH_NATIVE") == "0":
        pytest.skip("RNNBENCH_NATIVE=0")
    missing = native._missing_toolchain()
    if missing is not None:
        pytest.skip(f"{missing}: the fallback test covers this machine")
    with native.enabled(True):
        assert native.available(), "the compiled kernels failed to build (see the warning above)"
    return native.get()


def _keep(zoneout: str, n: int, T: int, B: int, H: int, dtype, g):
    """``n`` zoneout keep factors: per-step masks, locked masks, the evaluation expectation, or none;
    ``<kind>_bytes``: the masks as the ``uint8`` that ``keep_masks`` draws for the compiled kernels (the
    Python loop reads them as floats), ``mixed``: a byte mask beside a float one."""
    if zoneout.endswith("_bytes"):
        return [k if k is None else k.to(torch.uint8) for k in _keep(zoneout[:-6], n, T, B, H, dtype, g)]
    if zoneout == "mixed":
        return [k.to(torch.uint8) if i == 0 else k for i, k in enumerate(_keep("masks", n, T, B, H, dtype, g))]
    if zoneout == "none":
        return [None] * n
    if zoneout == "masks":  # training: a fresh [T, B, H] mask per step, as slices of one draw
        u = torch.rand(T, n, B, H, dtype=dtype, generator=g)
        return [(u[:, i] < 0.3 + 0.2 * i).to(dtype) for i in range(n)]
    if zoneout == "locked":  # one [B, H] mask for every step
        u = torch.rand(n, B, H, dtype=dtype, generator=g)
        return [(u[i] < 0.3 + 0.2 * i).to(dtype) for i in range(n)]
    if zoneout == "expectation":  # evaluation: the scalar z
        return [torch.tensor(0.05 + 0.45 * i, dtype=dtype) for i in range(n)]
    if zoneout == "last_only":  # zoneout on the cell state only (LSTM), z_h = 0
        return [None] * (n - 1) + [(torch.rand(T, B, H, dtype=dtype, generator=g) < 0.5).to(dtype)]
    raise ValueError(zoneout)


def _inputs(kernel: str, zoneout: str, T=5, B=3, I=4, H=6, dtype=torch.float64, seed=0):
    """(Function, differentiable inputs, constant zoneout factors) of a kernel."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, dtype=dtype, generator=g)).requires_grad_()

    if kernel == "lstm":  # x, w_ih, b, h0, c0, w_hh; keep factors kh, kc
        return LSTMSequenceFn, [r(T, B, I), r(4 * H, I, s=0.5), r(4 * H, s=0.5), r(B, H), r(B, H),
                                r(4 * H, H, s=0.5)], _keep(zoneout, 2, T, B, H, dtype, g)
    if kernel == "gru":  # xp, h0, w_hh, b_hh; keep factor k
        return GRUSequenceFn, [r(T, B, 3 * H), r(B, H), r(3 * H, H, s=0.5), r(3 * H, s=0.5)], \
            _keep(zoneout, 1, T, B, H, dtype, g)
    if kernel == "rnn":  # xp, h0, w_hh; keep factor k
        return RNNSequenceFn, [r(T, B, H), r(B, H), r(H, H, s=0.5)], _keep(zoneout, 1, T, B, H, dtype, g)
    if kernel == "mlstm":  # xp, h0, c0, w_mh, w_m; keep factors kh, kc
        return MLSTMSequenceFn, [r(T, B, 5 * H, s=0.5), r(B, H), r(B, H), r(H, H, s=0.5), r(4 * H, H, s=0.5)], \
            _keep(zoneout, 2, T, B, H, dtype, g)
    if kernel == "mrnn":  # xp, h0, w_mh, w_hm; keep factor k
        return MRNNSequenceFn, [r(T, B, 2 * H), r(B, H), r(H, H, s=0.5), r(H, H, s=0.5)], \
            _keep(zoneout, 1, T, B, H, dtype, g)
    if kernel.startswith(("vclstm", "vcgru")):  # xp = [x, w_mx·x + b_m], h0 (, c0), wt, w_mh; zs, zo, meta, keep factors
        cell, threshold, *dm = kernel.split("-")
        lstm = cell == "vclstm"
        # soft: a band of mask values several dims wide at H = 6; hard: λ large enough that some
        # dims of x and h are on at every step (a smaller one leaves the state frozen)
        lam, eps = (0.5 if threshold == "soft" else 2.0), 0.1
        zs = torch.cat([torch.full((I,), float(I)), torch.full((H,), float(H))]).to(dtype) * lam
        zo = torch.cat([torch.arange(I), torch.arange(H)]).to(dtype) * -lam
        meta = (I, threshold == "hard", eps, math.log((1 - eps) / eps))
        fn = VCLSTMSequenceFn if lstm else VCGRUSequenceFn
        args = [r(T, B, I + 1), r(B, H)] + [r(B, H)] * lstm + [r(4 * H, I + 1 + H, s=0.5), r(H, 1, s=0.5)]
        return (_WithoutM(fn) if dm else fn), args, [zs, zo, meta] + _keep(zoneout, 1 + lstm, T, B, H, dtype, g)
    if kernel.startswith("delta_rnn"):  # xp = [a, b, r], h0, v, Φ; keep factor k
        outer = kernel.partition(":")[2]
        xp = torch.cat([torch.randn(T, B, 2 * H, dtype=dtype, generator=g),
                        torch.rand(T, B, H, dtype=dtype, generator=g)], -1).requires_grad_()  # r in (0, 1)
        return _Outer(DeltaRNNSequenceFn, outer), [xp, r(B, H), r(H, H, s=0.5)], _keep(zoneout, 1, T, B, H, dtype, g)
    if kernel.startswith("vcrnn"):  # xp = [x, a], h0, wt, w_mh; constants zs, zo, meta, keep factor k
        lam, kappa = 0.7, math.log(0.9 / 0.1)  # eps = 0.1
        zs = lam * torch.cat([torch.full((I,), float(I)), torch.full((H,), float(H))]).to(dtype)
        zo = -lam * torch.cat([torch.arange(I), torch.arange(H)]).to(dtype)
        xp = torch.cat([torch.randn(T, B, I, dtype=dtype, generator=g),
                        2 * torch.randn(T, B, 1, dtype=dtype, generator=g)], -1).requires_grad_()  # m over (0, 1)
        return VCRNNSequenceFn, [xp, r(B, H), r(H, I + 1 + H, s=0.5), r(H, 1)], \
            [zs, zo, (I, kernel.endswith("-hard"), 0.1, kappa)] + _keep(zoneout, 1, T, B, H, dtype, g)
    raise ValueError(kernel)


class _WithoutM:
    """A VC kernel whose M output (m_t, for the penalty) is dropped: its gradient dM arrives as None."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def apply(self, *args):
        return self.fn.apply(*args)[:-1]


class _Outer:
    """A kernel whose non-tensor argument (the outer activation) sits before the keep factors."""

    def __init__(self, fn, outer: str) -> None:
        self.fn, self.outer = fn, outer

    def apply(self, *a):
        return self.fn.apply(*a[:3], self.outer, *a[3:])


def _run(on: bool, fn, args, keep, grads=True):
    leaves = [a.detach().clone().requires_grad_() for a in args]
    with native.enabled(on):
        outs = fn.apply(*leaves, *keep)
        if grads:
            # a loss that reaches every output (y at all steps, the final states) with unequal weights
            (outs[0].sin().sum() + sum((1.5 + i) * o.square().sum() for i, o in enumerate(outs[1:]))).backward()
    return list(outs) + ([a.grad for a in leaves] if grads else [])


#: VC: ``<cell>-<threshold>``, ``-nodM`` without a gradient on M (no penalty)
VC_KERNELS = [f"{c}-{t}{m}" for c in ("vclstm", "vcgru") for t in ("soft", "hard") for m in ("", "-nodM")]
KERNELS = ["lstm", "gru", "rnn", "mlstm", "mrnn", "delta_rnn:tanh", "delta_rnn:relu", "delta_rnn:identity",
           *VC_KERNELS, "vcrnn-soft", "vcrnn-hard"]
ZONEOUT = ["none", "masks", "locked", "expectation", "last_only", "masks_bytes", "locked_bytes", "last_only_bytes",
           "mixed"]


@pytest.mark.parametrize("zoneout", ZONEOUT)
@pytest.mark.parametrize("kernel", KERNELS)
def test_compiled_kernel_equals_the_python_loop(compiled, kernel, zoneout):
    """Outputs and every input's gradient agree to float64 rounding, zoneout's masks included."""
    fn, args, keep = _inputs(kernel, zoneout)
    for u, v in zip(_run(True, fn, args, keep), _run(False, fn, args, keep)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("zoneout", ["masks", "locked"])
def test_byte_masks_give_the_float_masks_numbers(compiled, kernel, zoneout):
    """The compiled kernel reads a 0/1 byte mask as the float mask of the same bits: equal outputs
    and gradients, bit for bit, in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        fn, args, keep = _inputs(kernel, zoneout, T=7, B=4, H=16, dtype=dtype)
        as_bytes = [k.to(torch.uint8) if torch.is_tensor(k) and k.dim() >= 2 else k for k in keep]
        assert any(torch.is_tensor(k) and k.dtype == torch.uint8 for k in as_bytes)
        for u, v in zip(_run(True, fn, args, as_bytes), _run(True, fn, args, keep)):
            assert u.dtype == v.dtype and torch.equal(u, v)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("zoneout", ["masks", "masks_bytes"])
def test_compiled_kernel_in_float32_and_without_grad(compiled, kernel, zoneout):
    fn, args, keep = _inputs(kernel, zoneout, T=7, B=4, H=16, dtype=torch.float32)
    for u, v in zip(_run(True, fn, args, keep), _run(False, fn, args, keep)):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for u, v in zip(_run(True, fn, args, keep, grads=False), _run(False, fn, args, keep, grads=False)):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_compiled_kernel_split_over_threads(compiled, kernel):
    """A batch big enough for the loops to be split over two threads (rows.h: each thread
    owns half the rows for the whole sequence): the same numbers as one thread and as the
    Python loop."""
    fn, args, keep = _inputs(kernel, "masks", T=3, B=64, I=8, H=32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        # 64 rows: two chunks, on two threads (serial if the build lost OpenMP)
        assert compiled.batch_threads(64) == 2
        split = _run(True, fn, args, keep)
        torch.set_num_threads(1)
        assert compiled.batch_threads(64) == 1
        one = _run(True, fn, args, keep)
    finally:
        torch.set_num_threads(threads)
    for u, v, w in zip(split, one, _run(False, fn, args, keep)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)
        # the split's GEMMs have 32 rows, the loop's 64: MKL's float64 kernels on AVX-512 (an AMD EPYC
        # host) round them differently, up to 3e-11 relative in the mRNN's gradients; a wrong split is O(1)
        torch.testing.assert_close(u, w, rtol=1e-10, atol=1e-10)


@pytest.fixture()
def engine(compiled, request):
    """The kernels' GEMM engine set to ``request.param`` for one test, restored after."""
    old = compiled.gemm_engine()
    used = compiled.set_gemm(request.param)
    yield used
    compiled.set_gemm(old)


def _f64_mm(a, b):
    return (a.double() @ b.double()).float()


@pytest.mark.parametrize("engine", ["onednn", "blas"], indirect=True)
def test_gemm_engine_against_a_float64_product(compiled, engine):
    """native/gemm.h's mm / mm_out / addmm_out against float64 torch.mm, in the layouts the
    kernels use: a strided output (a column slice of a wider buffer: its neighbours untouched), a
    transposed operand, a bias row broadcast, the output as its own addend; above and below the
    size from which oneDNN runs."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    for M, K, N in [(64, 157, 512), (32, 512, 128), (64, 128, 1), (5, 7, 3)]:
        a, b = r(M, K), r(K, N)
        torch.testing.assert_close(compiled.mm(a, b), _f64_mm(a, b), rtol=1e-4, atol=1e-4)
        wide = torch.full((M, N + 11), 7.0)
        out = wide[:, 5:5 + N]
        bt = r(N, K).t()  # a transposed view
        compiled.mm_out(out, a, bt)
        torch.testing.assert_close(out, _f64_mm(a, bt), rtol=1e-4, atol=1e-4)
        assert (wide[:, :5] == 7).all() and (wide[:, 5 + N:] == 7).all()
        bias = r(N)
        compiled.addmm_out(out, bias, a, b)
        torch.testing.assert_close(out, bias + _f64_mm(a, b), rtol=1e-4, atol=1e-4)
        c = out.clone()
        compiled.addmm_out(out, out, a, b)
        torch.testing.assert_close(out, c + _f64_mm(a, b), rtol=1e-4, atol=1e-4)
        assert (wide[:, :5] == 7).all() and (wide[:, 5 + N:] == 7).all()
    x64 = r(64, 157).double()  # float64 always runs at::mm
    torch.testing.assert_close(compiled.mm(x64, x64.t()), x64 @ x64.t(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ["onednn", "blas"], indirect=True)
def test_gemm_engine_is_the_one_that_runs(compiled, engine):
    """Which library ran the GEMMs, seen in the profiler: under oneDNN the LSTM kernel's forward
    (the input projection, each step's GEMM) issues no aten::mm / aten::addmm, under BLAS it does."""
    from torch.profiler import ProfilerActivity, profile

    fn, args, keep = _inputs("lstm", "none", T=4, B=64, I=32, H=128, dtype=torch.float32)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn.apply(*args, *keep)
    names = {e.name for e in prof.events()}
    aten_gemms = names & {"aten::mm", "aten::addmm"}
    assert (not aten_gemms) if engine == "onednn" else ("aten::addmm" in aten_gemms), names


def _cpu_vendor() -> str:
    """The CPU's vendor as Linux reports it in /proc/cpuinfo (not CPUID, which the extension reads)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("vendor_id")), "")
    except OSError:
        return ""


def test_gemm_engine_follows_the_setting(compiled):
    old = compiled.gemm_engine()
    onednn = "onednn" if torch.backends.mkldnn.is_available() else "blas"
    try:
        assert compiled.set_gemm("blas") == "blas" == compiled.gemm_engine()
        # oneDNN wherever this torch exports its matmul (torch's x86 and aarch64 wheels do)
        assert compiled.set_gemm("onednn") == onednn == compiled.gemm_engine()
        # auto: MKL on an Intel CPU (its own tuned kernels), oneDNN elsewhere
        vendor = _cpu_vendor()
        if vendor:
            assert compiled.intel_cpu() == (vendor == "GenuineIntel")
        assert compiled.set_gemm("auto") == ("blas" if compiled.intel_cpu() else onednn) == compiled.gemm_engine()
        with pytest.raises(RuntimeError, match="engine is 'auto', 'onednn' or 'blas'"):
            compiled.set_gemm("mkl")
    finally:
        compiled.set_gemm(old)


def test_gemm_engine_default_is_auto(compiled):
    """RNNBENCH_GEMM unset gives auto's engine; a value that is no engine warns and gives auto's too."""
    code = ("from rnnbench.cells.kernels import native; m = native.get(); "
            "print(native.gemm_engine(), 'blas' if m.intel_cpu() else 'onednn')")
    for value in (None, "cublas"):
        env = {k: v for k, v in os.environ.items() if k != "RNNBENCH_GEMM"}
        if value is not None:
            env["RNNBENCH_GEMM"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        got, want = out.stdout.split()
        assert got == want or (want == "onednn" and got == "blas" and not torch.backends.mkldnn.is_available())
        assert ("RNNBENCH_GEMM=cublas is not one of auto, onednn, blas; using auto" in out.stderr) == (value is not None)


# no soft threshold: at this size a float32 rounding moves a few units across the soft band's edge
# (where σ snaps to 0 or 1), on either engine, and which ones depends on the CPU (vcrnn-soft on an AMD
# EPYC, vcgru-soft too on an Intel Xeon); their float64 tests above cover them, and their GEMMs are
# the hard variants' calls in the same loops
@pytest.mark.parametrize("engine", ["onednn", "blas"], indirect=True)
@pytest.mark.parametrize("kernel", [k for k in KERNELS if "-soft" not in k])
def test_compiled_kernel_in_float32_at_gemm_size(compiled, engine, kernel):
    """float32 at sizes where oneDNN runs the kernels' GEMMs (B = 64, H = 128): outputs and
    gradients as the Python loop's (torch.mm) to float32 accuracy, per-step zoneout masks included."""
    fn, args, keep = _inputs(kernel, "masks", T=4, B=64, I=32, H=128, dtype=torch.float32)
    for u, v in zip(_run(True, fn, args, keep), _run(False, fn, args, keep)):
        scale = max(1.0, v.abs().max().item())
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("on", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("zoneout", ["none", "masks", "masks_bytes"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_gradcheck(kernel, zoneout, on, request):
    """Full float64 Jacobian check of both kernels' BPTT (the masks are constants)."""
    if on:
        request.getfixturevalue("compiled")
    fn, args, keep = _inputs(kernel, zoneout, T=4, B=2, I=3, H=3)
    with native.enabled(on):
        assert torch.autograd.gradcheck(lambda *a: fn.apply(*a, *keep), tuple(args), eps=1e-6, atol=1e-6,
                                        rtol=1e-4)


@pytest.mark.parametrize("on", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("kernel", [k for k in VC_KERNELS if "-hard" in k])
def test_vc_hard_kernel_without_an_input_gradient(kernel, on, request):
    """meta's fifth entry False (x is data): every output and gradient as with True, the x columns
    of ∂xp aside — 0 from the compiled kernel, which skips them, the true ∂x from the Python loop."""
    if on:
        request.getfixturevalue("compiled")
    fn, args, (zs, zo, meta, *keep) = _inputs(kernel, "masks")
    with_dx = _run(on, fn, args, [zs, zo, (*meta, True), *keep])
    without = _run(on, fn, args, [zs, zo, (*meta, False), *keep])
    I, n_out = meta[0], len(with_dx) - len(args)
    dxp = n_out  # the first input is xp = [x, a]
    for i, (u, v) in enumerate(zip(with_dx, without)):
        if i == dxp:
            torch.testing.assert_close(u[..., I:], v[..., I:], rtol=1e-12, atol=1e-12)
            assert u[..., :I].abs().max() > 1e-3
            assert (v[..., :I] == 0).all() if on else torch.equal(u[..., :I], v[..., :I])
        else:
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("zoneout", ["none", "masks"])
@pytest.mark.parametrize("kernel", ["vcrnn-soft", "vcrnn-hard"])
def test_vcrnn_compiled_kernel_with_a_gradient_on_y_only(compiled, kernel, zoneout):
    """No gradient on h_T or M (no penalty): the backward's dhT and dM arrive as None."""
    fn, args, keep = _inputs(kernel, zoneout)
    grads = []
    for on in (True, False):
        leaves = [a.detach().clone().requires_grad_() for a in args]
        with native.enabled(on):
            fn.apply(*leaves, *keep)[0].sin().sum().backward()
        grads.append([a.grad for a in leaves])
    for u, v in zip(*grads):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("locked", [False, True], ids=["per_step", "locked"])
def test_keep_masks_are_torch_rands_numbers_compared(compiled, dtype, locked):
    """``keep_masks``: zoneout's masks are ``torch.rand([T, k, B, H]) < z`` (locked ``[k, B, H]``) from
    the default generator, as 0/1 bytes (drawn in ``dtype``'s precision), and the generator is left where that draw leaves it; drawn after 0, 1,
    623 and 624 numbers, so the blocks straddle the Mersenne Twister's 624-word twists."""
    zs = [0.05, 0.5, 0.3]
    for T, B, H in [(5, 3, 7), (3, 64, 128), (1, 1, 1), (2, 1, 700)]:
        for before in (0, 1, 623, 624, 1000):
            torch.manual_seed(11)
            torch.rand(before)
            got = compiled.keep_masks(T, B, H, zs, locked, dtype)
            after = torch.rand(5)
            torch.manual_seed(11)
            torch.rand(before)
            u = torch.rand((len(zs), B, H) if locked else (T, len(zs), B, H), dtype=dtype)
            want = [(u[j] if locked else u[:, j]) < z for j, z in enumerate(zs)]
            assert torch.equal(torch.rand(5), after)
            for g, w in zip(got, want):
                assert g.dtype == torch.uint8 and torch.equal(g, w.to(torch.uint8))


def test_zoneout_draws_the_same_masks_compiled_or_not(compiled):
    from rnnbench.regularizers.zoneout import ZoneoutHook

    like = torch.zeros(16, 8)
    for locked in (False, True):
        hook = ZoneoutHook((0.3, 0.6), locked)
        masks = []
        for on in (True, False):
            torch.manual_seed(5)
            with native.enabled(on):
                masks.append(hook.sequence_mix(6, like, training=True))
        for a, b in zip(*masks):  # the compiled draw's bytes, the Python draw's floats
            assert a.dtype == torch.uint8 and b.dtype == like.dtype and torch.equal(a.to(b.dtype), b)


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
