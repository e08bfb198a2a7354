"""Small cell-throughput check (the full ``rnnbench bench`` comes later).

``python -m rnnbench.cells.speed [--shapes 28x64x28x128,784x64x1x128] [--repeats 5] [--threads 1]``
times forward + backward of one layer per cell on random data, interleaving the cases across
repeats (so load from other processes hits them alike) and reporting medians, plus the ratio to
``torch.nn.LSTM`` of the same hidden size.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

import torch
from torch import nn

from .base import RecurrentLayer
from .delta_rnn import DeltaRNNCell
from .gru import GRUCell
from .lstm import LSTMCell
from .multiplicative import MLSTMCell, MRNNCell
from .rnn import RNNCell
from .vc import VCGRUCell, VCLSTMCell, VCRNNCell

CASES: dict[str, Callable[[int, int], nn.Module]] = {
    "lstm (custom fused=false)": lambda i, h: RecurrentLayer(LSTMCell(i, h, fused=False)),
    "lstm (step loop)": lambda i, h: _hooked(RecurrentLayer(LSTMCell(i, h, fused=False))),
    "rnn (custom)": lambda i, h: RecurrentLayer(RNNCell(i, h, fused=False)),
    "gru (custom)": lambda i, h: RecurrentLayer(GRUCell(i, h, fused=False)),
    "vclstm": lambda i, h: RecurrentLayer(VCLSTMCell(i, h)),
    "vclstm (step loop)": lambda i, h: _hooked(RecurrentLayer(VCLSTMCell(i, h))),
    "vcrnn": lambda i, h: RecurrentLayer(VCRNNCell(i, h)),
    "vcgru": lambda i, h: RecurrentLayer(VCGRUCell(i, h)),
    "mlstm": lambda i, h: RecurrentLayer(MLSTMCell(i, h)),
    "mrnn": lambda i, h: RecurrentLayer(MRNNCell(i, h)),
    "delta_rnn": lambda i, h: RecurrentLayer(DeltaRNNCell(i, h)),
}
BASELINE = "nn.LSTM (native)"


def _hooked(layer: RecurrentLayer) -> RecurrentLayer:
    layer.state_hooks.append(lambda prev, new, lay: new)  # forces the generic per-step loop
    return layer


def bench(shapes: list[tuple[int, int, int, int]], repeats: int = 5, threads: Optional[int] = 1,
          only: Optional[list[str]] = None, stat: str = "median") -> dict[tuple, dict[str, float]]:
    """Forward+backward milliseconds per case and shape ``(T, B, I, H)``: the median or the
    minimum (``stat``; the minimum is the steadier one when other processes share the CPU)."""
    if threads:
        torch.set_num_threads(threads)
    out: dict[tuple, dict[str, float]] = {}
    for T, B, I, H in shapes:
        torch.manual_seed(0)
        x = torch.randn(T, B, I)
        mods: dict[str, nn.Module] = {BASELINE: nn.LSTM(I, H)}
        mods.update({k: f(I, H) for k, f in CASES.items() if not only or k in only})

        def run(m: nn.Module) -> None:
            y, _ = m(x)
            y.sum().backward()

        times: dict[str, list[float]] = {k: [] for k in mods}
        for m in mods.values():  # warm-up
            run(m)
        for _ in range(repeats):
            for k, m in mods.items():
                t0 = time.perf_counter()
                run(m)
                times[k].append((time.perf_counter() - t0) * 1e3)
        agg = min if stat == "min" else statistics.median
        out[(T, B, I, H)] = {k: agg(v) for k, v in times.items()}
    return out


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="28x64x28x128,784x64x1x128", help="TxBxIxH,...")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated case names (default all)")
    ap.add_argument("--stat", default="median", choices=["median", "min"])
    a = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    res = bench(shapes, a.repeats, a.threads, [s for s in a.only.split(",") if s] or None, a.stat)  # type: ignore[arg-type]
    for shape, r in res.items():
        print(f"T={shape[0]} B={shape[1]} I={shape[2]} H={shape[3]}  threads={a.threads}  ({a.stat} of {a.repeats}, fwd+bwd)")
        base = r[BASELINE]
        for k, v in r.items():
            print(f"  {k:28s} {v:9.1f} ms   {v / base:5.2f}x nn.LSTM")


if __name__ == "__main__":
    main()
