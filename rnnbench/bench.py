"""``rnnbench bench``: forward+backward time of every cell (and of the LSTM with each
regularizer) against the fused ``torch.nn.LSTM`` measured in the same run.

A benchmark, not a test: it prints a table (and ``--json`` / ``--csv``); nothing is asserted.

What one row measures: a one-layer :class:`~rnnbench.cells.RNNStack` in ``train()`` mode,
input ``x [T, B, I]``, ``y, _ = model(x); y.sum().backward()`` with the gradients set to
``None`` before every batch. ``ms`` is the median (``--stat min``: the minimum) over
``--repeats`` batches after ``--warmup`` batches (a row stops early, after 3 batches at least,
once it has spent ``--max-seconds``). Every timed batch of a row follows one batch of the
reference ``nn.LSTM`` (``torch.nn.LSTM`` itself, not our cell) at the same shape, so a row and
its reference see the same machine load; ``ratio_to_lstm`` is the ratio of the two statistics,
and the reference row shows the statistic over all the block's reference batches.

FLOPs (:func:`flops`): ``forward = 2·T·B·H·(r_in·I + r_rec·H) + e·T·B·H`` with the cell's
GEMM row multiples ``r_in``, ``r_rec`` (e.g. LSTM 4, 4) and an element-wise count ``e`` per
hidden unit and step (the cell class's ``flop_model``); forward+backward = 3 × forward (the backward's two GEMMs per forward
GEMM: input and weight gradients). GFLOP/s is that count over the row's time; the
``matmul_peak`` row is the best fp32 ``torch.mm`` rate of square GEMMs on the same device and
thread count, measured at the start and at the end of the run (the higher is kept: the ceiling
to compare with).

Peak memory: on CPU, the peak of the running sum of the CPU allocator's allocations and
frees recorded by ``torch.profiler`` (``profile_memory=True``) during one extra forward+backward
— activations, gradients and workspaces; parameters and the input, allocated before, are not
counted. On CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the batch.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import registry
from .errors import ConfigError, RnnbenchError
from .heap import keep_freed_memory

SHAPES: dict[str, tuple[int, int, int, int]] = {
    "short": (28, 64, 28, 128),  # row-wise MNIST
    "long": (784, 64, 1, 128),  # pixel MNIST
    "wide": (100, 64, 128, 512),
}

def _cells() -> list[str]:
    """Every cell config (:mod:`rnnbench.registry`); ``<name>_custom`` is the per-step /
    hand-written path of a cell with a native kernel (``fused=false``)."""
    from .cells.base import Cell

    out = []
    for name, cls in registry.cells().items():
        out.append(name)
        if cls.native_forward is not Cell.native_forward:
            out.append(f"{name}_custom")
    return out


CELLS = _cells()
REGULARIZERS = list(registry.regularizers())
REFERENCE = "nn.LSTM"
PEAK = "matmul_peak"

COLUMNS = ["cell", "regularizer", "shape", "ms", "ratio_to_lstm", "gflops", "peak_mem_mb"]


def split_options(name: str) -> tuple[str, dict[str, Any]]:
    """``"vclstm[threshold=hard,lam=2]"`` → ``("vclstm", {"threshold": "hard", "lam": 2})``: a row
    of a cell with some of its config options set (values read as YAML scalars)."""
    import yaml

    if not name.endswith("]") or "[" not in name:
        return name, {}
    base, _, inner = name[:-1].partition("[")
    opts: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in inner.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"bad cell options {name!r}: use name[key=value,...]")
        opts[key.strip()] = yaml.safe_load(value.strip())
    return base, opts


def _own_step(row: str) -> bool:
    """The row runs the cell's own step code (what ``--compile`` compiles): a ``_custom`` row, or
    a cell without a fused native kernel."""
    from .cells.base import Cell

    return row.endswith("_custom") or registry.cells()[base_cell(row)].native_forward is Cell.native_forward


def base_cell(name: str) -> str:
    name = split_options(name)[0]
    for suffix in ("_custom", "_compiled"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def flops(cell: str, T: int, B: int, I: int, H: int) -> float:
    """Forward+backward FLOPs of one batch (see the module doc)."""
    cls = registry.cells().get(base_cell(cell))
    r_in, r_rec, e = cls.flop_model if cls is not None else registry.cells()["lstm"].flop_model
    fwd = 2.0 * T * B * H * (r_in * I + r_rec * H) + e * T * B * H
    return 3.0 * fwd


# ----------------------------------------------------------------------------- arguments
def parse_shape(spec: str) -> tuple[str, tuple[int, int, int, int]]:
    spec = spec.strip()
    if spec in SHAPES:
        return spec, SHAPES[spec]
    parts = spec.split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ConfigError(f"bad shape {spec!r}: use short, long, wide or T,B,I,H (four positive integers)")
    return ",".join(str(d) for d in dims), dims  # type: ignore[return-value]


def _names(arg: Optional[str], choices: list[str], what: str) -> Optional[list[str]]:
    if arg is None:
        return None
    out = [s.strip() for s in re.split(r",(?![^\[]*\])", arg) if s.strip()]  # commas inside [...] stay
    bad = [s for s in out if split_options(s)[0] not in choices]
    if bad or not out:
        raise ConfigError(f"unknown {what} {', '.join(bad) or repr(arg)}; choose from {', '.join(choices)}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnbench bench",
        description="Forward+backward time per batch of every cell and of the LSTM with each regularizer, "
                    "with ratios to torch.nn.LSTM measured in the same run.")
    p.add_argument("--shape", action="append", metavar="NAME|T,B,I,H",
                   help="short (28,64,28,128), long (784,64,1,128), wide (100,64,128,512) or T,B,I,H; "
                        "repeatable (default: short, long, wide)")
    p.add_argument("--cells", metavar="A,B", help=f"cells to run (default: all): {', '.join(CELLS)}; "
                                                  "name[key=value,...] sets cell options, e.g. vclstm[threshold=hard]")
    p.add_argument("--peer", choices=["tf"],
                   help="also time the articles' own TensorFlow cells (article 000's VCLSTM, article 001's "
                        "weight-normalised LSTM) beside the rows of ours that compute the same function; "
                        "needs tensorflow importable (pip install tensorflow-cpu), skipped with one line if not")
    p.add_argument("--regularizers", metavar="A,B",
                   help="regularizers to run: none and/or " + ", ".join(REGULARIZERS) + ". Default: every "
                        "cell without a regularizer plus lstm with each one; given --cells too, every "
                        "selected cell with each selected regularizer")
    p.add_argument("--compile", action="store_true",
                   help="also run <cell>_compiled rows (torch.compile of the step; compile time in compile_s)")
    p.add_argument("--repeats", type=int, default=7, help="timed batches per row (median; default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    p.add_argument("--max-seconds", type=float, default=6.0,
                   help="stop a row's timed batches after this long (at least 3 batches; default 6)")
    p.add_argument("--stat", choices=["median", "min"], default="median",
                   help="statistic of the timed batches for ms and the ratios (default median; min is "
                        "steadier on a loaded machine: it keeps the batches the scheduler left alone)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: short shape only, 1 warm-up, 2 repeats, no matmul-peak sweep")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N) (default: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write the rows as a JSON list (- for stdout)")
    p.add_argument("--csv", metavar="PATH", help="write the rows as CSV (- for stdout)")
    return p


@dataclass
class Plan:
    shapes: list[tuple[str, tuple[int, int, int, int]]]
    jobs: list[tuple[str, str]]  # (cell, regularizer)
    repeats: int
    warmup: int
    max_seconds: float
    memory: bool
    peak: bool
    stat: str = "median"
    extra: dict = field(default_factory=dict)


def make_plan(a: argparse.Namespace) -> Plan:
    cells = _names(a.cells, CELLS, "cell")
    regs = _names(a.regularizers, ["none", *REGULARIZERS], "regularizer")
    if cells is None and regs is None:
        jobs = [(c, "none") for c in CELLS] + [("lstm", r) for r in REGULARIZERS]
    elif regs is None:
        jobs = [(c, "none") for c in cells]  # type: ignore[union-attr]
    elif cells is None:
        jobs = [("lstm", r) for r in regs]
    else:
        jobs = [(c, r) for r in regs for c in cells]
    if a.compile:
        jobs += [(f"{base_cell(c)}_compiled", r) for c, r in list(jobs) if r == "none" and _own_step(c)]
    if a.peer == "tf":
        from .peers import tf as peer_tf

        why = peer_tf.unavailable()
        if why is None:
            for p in peer_tf.PEERS:
                jobs += [j for j in (p.ours, (p.name, p.ours[1])) if j not in jobs]
            if not a.no_memory:  # torch.profiler segfaults in a process that has loaded TensorFlow
                print("rnnbench bench: --peer tf: no peak-memory pass (torch.profiler crashes beside TensorFlow)",
                      file=sys.stderr, flush=True)
                a.no_memory = True
        else:
            print(f"rnnbench bench: --peer tf skipped: {why}", file=sys.stderr, flush=True)
    if a.quick:
        shapes = [parse_shape(s) for s in (a.shape or ["short"])]
        repeats, warmup = min(a.repeats, 2), min(a.warmup, 1)
    else:
        shapes = [parse_shape(s) for s in (a.shape or list(SHAPES))]
        repeats, warmup = a.repeats, a.warmup
    if repeats < 1 or warmup < 0:
        raise ConfigError("--repeats must be ≥ 1 and --warmup ≥ 0")
    return Plan(shapes=shapes, jobs=jobs, repeats=repeats, warmup=warmup, max_seconds=a.max_seconds,
                memory=not a.no_memory, peak=not a.quick, stat=a.stat)


# ----------------------------------------------------------------------------- models
def _compose(cell: str, reg: str):
    from hydra import compose, initialize_config_dir

    from .config import CONF_DIR, register_configs

    register_configs()
    ov = [f"cell={cell}"] + ([f"regularizer=[{reg}]"] if reg != "none" else [])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=ov)


def build_model(cell: str, reg: str, I: int, H: int, device):
    """A one-layer RNNStack of the cell's config (``fused``/``compile`` per the row name)."""
    import torch

    from .cells import RNNStack
    from .config import instantiate
    from .regularizers import apply_regularizers

    if cell == REFERENCE:
        return torch.nn.LSTM(I, H).to(device)
    cfg = _compose(base_cell(cell), reg)
    kw: dict[str, Any] = dict(split_options(cell)[1])
    if cell.endswith("_custom"):
        kw["fused"] = False
    if cell.endswith("_compiled"):
        kw.update(fused=False, compile=True)
    model = RNNStack(lambda i, h: instantiate(cfg.cell, input_size=i, hidden_size=h, **kw), I, H)
    if reg != "none":
        apply_regularizers(model, cfg.regularizer)
    return model.to(device)


def _peer(cell: str):
    """The TF peer row named ``cell``, or None (the peers' module loads only when one is asked for)."""
    if not cell.startswith("tf_"):
        return None
    from .peers import tf as peer_tf

    return next((p for p in peer_tf.PEERS if p.name == cell), None)


def path_of(model) -> str:
    """Which execution path a row ran: native kernel, hand-written sequence, or step loop."""
    from .cells import RNNStack
    from .cells.kernels import native

    if not isinstance(model, RNNStack):
        return "native"
    layer = model.recurrent_layers()[0]
    cell = layer.cell
    path = layer.path()
    if path == "sequence" and cell.compiled_kernel and native.available():
        return "sequence+c++"
    return path + "+compile" if cell.compile else path


# ----------------------------------------------------------------------------- timing
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_fn(model, x) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]

    def run() -> None:
        for p in params:
            p.grad = None
        y = model(x)[0]
        y.sum().backward()

    return run


def time_fn(fn: Callable[[], None], device, repeats: int, warmup: int, max_seconds: float,
            ref: Optional[Callable[[], None]] = None) -> tuple[list[float], list[float], float]:
    """Per-batch times in ms of ``fn`` (after warm-up), of ``ref`` run alternately with it (one
    reference batch before each timed batch, so both see the same machine load), and the
    first warm-up batch's time in s."""
    first = 0.0
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times: list[float] = []
    ref_times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        if ref is not None:
            t0 = time.perf_counter()
            ref()
            _sync(device)
            ref_times.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - t0
        times.append(dt * 1e3)
        spent += dt
        if spent > max_seconds and len(times) >= 3:
            break
    return times, ref_times, first


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop chatter on fd 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], None], device) -> Optional[float]:
    import torch

    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if "tensorflow" in sys.modules:  # torch.profiler segfaults in a process that has loaded TensorFlow
        return None
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    try:
        evs = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # pragma: no cover - profiler internals moved
        return None
    evs.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in evs:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2**20


def matmul_peak(device, sizes=(512, 1024, 2048), repeats: int = 5) -> tuple[float, int]:
    """Best fp32 ``torch.mm`` GFLOP/s over square sizes: (GFLOP/s, size)."""
    import torch

    best, best_n = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        times, _, _ = time_fn(lambda: torch.mm(a, b, out=out), device, repeats, 2, 3.0)
        g = 2.0 * n ** 3 / (min(times) / 1e3) / 1e9
        if g > best:
            best, best_n = g, n
    return best, best_n


# ----------------------------------------------------------------------------- the run
def measure(cell: str, reg: str, shape_name: str, dims, plan: Plan, device,
            ref: Optional[Callable[[], None]] = None) -> dict:
    import torch

    T, B, I, H = dims
    torch.manual_seed(plan.extra.get("seed", 0))
    t0 = time.perf_counter()
    peer = _peer(cell)
    if peer is not None:  # the article's TF code: its own batch function
        from .peers import tf as peer_tf

        if device.type != "cpu":
            raise RnnbenchError("the TF peers run on the CPU only")
        peer_tf.set_threads(torch.get_num_threads())
        fn, path, flops_cell = peer_tf.batch_fn(peer, T, B, I, H, plan.extra.get("seed", 0)), "tf.function", \
            peer.flops_cell
    else:
        model = build_model(cell, reg, I, H, device)
        model.train()
        x = torch.randn(T, B, I, device=device)
        fn, path, flops_cell = batch_fn(model, x), path_of(model), cell if cell != REFERENCE else "lstm"
    warmup = max(plan.warmup, 2) if cell.endswith("_compiled") or peer is not None else plan.warmup
    times, ref_times, first = time_fn(fn, device, plan.repeats, warmup, plan.max_seconds, ref)
    stat = min if plan.stat == "min" else statistics.median
    ms = stat(times)
    row: dict[str, Any] = {
        "cell": cell, "regularizer": reg, "shape": shape_name, "T": T, "B": B, "I": I, "H": H,
        "path": path, "ms": ms, "ms_median": statistics.median(times), "ms_min": min(times),
        "n": len(times), "stat": plan.stat,
        "examples_per_s": B / (ms / 1e3),
        "gflops": flops(flops_cell, T, B, I, H) / (ms / 1e3) / 1e9,
    }
    if ref_times:
        row["ref_ms"] = stat(ref_times)
        row["ratio_to_lstm"] = ms / row["ref_ms"]
    if cell.endswith("_compiled") or peer is not None:  # torch.compile / tf.function tracing
        row["compile_s"] = max(first - ms / 1e3, 0.0)
    if peer is not None:
        row["article"] = peer.article
    row["peak_mem_mb"] = peak_memory_mb(fn, device) if plan.memory and peer is None else None
    row["build_s"] = time.perf_counter() - t0
    row["loadavg"] = os.getloadavg()[0]
    row.update({k: plan.extra[k] for k in ("gemm", "heap") if k in plan.extra})
    return row, fn


def head_to_head(row: dict, fns: dict, shape_name: str, plan: Plan, device, log: Callable[[str], None]) -> None:
    """A peer row against the row of ours that computes the same function, their batches
    alternated (each row's ×nn.LSTM comes from a different stretch of time; on a loaded machine
    two rows' ms are not comparable, two interleaved series are): ``ours_ms``, ``peer_ms_h2h``
    and ``ratio_to_ours`` (the peer's median over ours; > 1: ours is faster)."""
    peer = _peer(row["cell"])
    if peer is None or peer.ours not in fns or (row["cell"], row["regularizer"]) not in fns:
        return
    times, ours, _ = time_fn(fns[row["cell"], row["regularizer"]], device, plan.repeats, 1, plan.max_seconds,
                             ref=fns[peer.ours])
    stat = min if plan.stat == "min" else statistics.median
    row.update(ours_ms=stat(ours), peer_ms_h2h=stat(times), ratio_to_ours=stat(times) / stat(ours))
    log(f"[{shape_name}] {row['cell']} against {'+'.join(peer.ours)}, batches alternated: "
        f"{row['peer_ms_h2h']:.2f} against {row['ours_ms']:.2f} ms (×{row['ratio_to_ours']:.2f} ours)")


def run(plan: Plan, device, log: Callable[[str], None]) -> list[dict]:
    """The matmul-peak row, then per shape the reference and every job. Each job's batches
    alternate with reference batches; ``ratio_to_lstm`` is the ratio of the two medians."""
    import torch

    rows: list[dict] = []
    common = {"device": str(device), "threads": torch.get_num_threads()}
    peak_g = None
    if plan.peak:
        peak_g, n = matmul_peak(device)
        rows.append({"cell": PEAK, "regularizer": "none", "shape": f"mm{n}", "ms": 2.0 * n ** 3 / peak_g / 1e6,
                     "ratio_to_lstm": None, "gflops": peak_g, "peak_mem_mb": None, "path": "torch.mm",
                     "loadavg": os.getloadavg()[0], **common})
        log(f"matmul peak: {peak_g:.1f} GFLOP/s (fp32 mm {n}x{n}x{n})")
    peak_row = rows[-1] if rows else None
    for shape_name, dims in plan.shapes:
        ref, ref_fn = measure(REFERENCE, "none", shape_name, dims, plan, device)
        log(f"[{shape_name}] {REFERENCE}: {ref['ms']:.2f} ms")
        block = [ref]
        all_ref = []
        fns: dict[tuple[str, str], Callable[[], None]] = {}
        for cell, reg in plan.jobs:
            try:
                r, fns[cell, reg] = measure(cell, reg, shape_name, dims, plan, device, ref=ref_fn)
            except RnnbenchError as e:
                log(f"[{shape_name}] {cell}+{reg}: skipped ({e})")
                continue
            all_ref.append(r["ref_ms"])
            block.append(r)
            log(f"[{shape_name}] {cell}{'' if reg == 'none' else '+' + reg}: {r['ms']:.2f} ms "
                f"(×{r['ratio_to_lstm']:.2f}, {r['path']})")
        if all_ref:  # the reference row: over all the block's interleaved batches
            ref_ms = (min if plan.stat == "min" else statistics.median)(all_ref)
            ref.update(ms=ref_ms, examples_per_s=dims[1] / (ref_ms / 1e3),
                       gflops=flops("lstm", *dims) / (ref_ms / 1e3) / 1e9)
        ref["ratio_to_lstm"] = 1.0
        for r in block:
            head_to_head(r, fns, shape_name, plan, device, log)
        for r in block:
            r.update(common)
            rows.append(r)
    if plan.peak:  # once more at the end: a load spike during one measurement must not set the ceiling
        again, n2 = matmul_peak(device)
        if again > peak_g:
            peak_g = again
            peak_row.update(gflops=again, shape=f"mm{n2}", ms=2.0 * n2 ** 3 / again / 1e6)
        log(f"matmul peak (end of run): {again:.1f} GFLOP/s; using {peak_g:.1f}")
        for r in rows:
            if r is not peak_row:
                r["frac_of_peak"] = r["gflops"] / peak_g
    return rows


# ----------------------------------------------------------------------------- output
def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def table(rows: list[dict]) -> str:
    head = ["cell", "regularizer", "shape", "path", "ms", "×lstm", "ex/s", "GFLOP/s", "%peak", "peak MB"]
    body = []
    for r in rows:
        body.append([r["cell"], r["regularizer"], r["shape"], r.get("path", ""), _fmt(r["ms"], ".2f"),
                     _fmt(r.get("ratio_to_lstm"), ".2f"), _fmt(r.get("examples_per_s"), ".0f"),
                     _fmt(r.get("gflops"), ".1f"),
                     _fmt(100 * r["frac_of_peak"] if r.get("frac_of_peak") is not None else None, ".0f"),
                     _fmt(r.get("peak_mem_mb"), ".1f")])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    num = {4, 5, 6, 7, 8, 9}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in num else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise RnnbenchError(f"cannot write {path}: {e.strerror}") from None


def to_csv(rows: list[dict]) -> str:
    keys = COLUMNS + sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    plan = make_plan(a)
    plan.extra["seed"] = a.seed
    import torch

    if a.device not in ("cpu", "cuda") and not a.device.startswith("cuda:"):
        raise ConfigError(f"unknown --device {a.device!r}: use cpu or cuda")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here")
    if a.threads is not None:
        if a.threads < 1:
            raise ConfigError("--threads must be ≥ 1")
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    heap = "kept" if keep_freed_memory() else "system"  # as `rnnbench train` runs (rnnbench/heap.py)
    to_stdout = a.json == "-" or a.csv == "-"
    out = sys.stderr if to_stdout else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from .cells.kernels import native

    plan.extra["gemm"], plan.extra["heap"] = native.gemm_engine(), heap
    log(f"rnnbench bench: torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}, compiled kernels' GEMMs: {plan.extra['gemm']}, "
        f"freed memory: {heap}")
    rows = run(plan, device, log)
    print(table(rows), file=out, flush=True)
    for r in rows:
        if r.get("ratio_to_ours") is not None:
            print(f"{r['cell']} [{r['shape']}] against ours, batches alternated: {r['peer_ms_h2h']:.2f} ms "
                  f"against {r['ours_ms']:.2f} ms: ×{r['ratio_to_ours']:.2f} ours (> 1: ours is faster)", file=out)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=out)
    if a.json:
        _write(a.json, json.dumps(rows, indent=1) + "\n")
    if a.csv:
        _write(a.csv, to_csv(rows))
    return 0
