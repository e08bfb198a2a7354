"""rnnbench.nn.LSTM / GRU / RNN against torch.nn.LSTM / GRU / RNN with copied weights: outputs,
final states and gradients (input, initial state, every weight), on padded and packed input,
batch_first, bidirectional, 2 layers, both execution paths (native kernel and hand-written BPTT)."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnbench.nn as rnn

PAIRS = [(rnn.LSTM, torch.nn.LSTM), (rnn.GRU, torch.nn.GRU), (rnn.RNN, torch.nn.RNN)]
SHAPES = [dict(num_layers=2, bidirectional=True, batch_first=True),
          dict(num_layers=2, bidirectional=True, batch_first=False),
          dict(num_layers=1, bidirectional=False, batch_first=False)]
I, H, B, T = 3, 5, 4, 6
LENGTHS = [4, 6, 1, 4]  # unsorted, with a tie: the packed path sorts and restores the order


def _as_tuple(h):
    return h if isinstance(h, tuple) else (h,)


def _pair(mine_cls, ref_cls, fused: bool, **shape):
    torch.manual_seed(0)
    ref = ref_cls(I, H, dtype=torch.float64, **shape)
    mine = mine_cls(I, H, dtype=torch.float64, fused=fused, **shape).copy_from_torch(ref)
    return mine, ref


def _run(module, x, hx, packed: bool, batch_first: bool):
    """Forward, then a loss mixing every output and state (fixed random weights)."""
    inp = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False) if packed else x
    y, h = module(inp, hx)
    if packed:
        y, _ = pad_packed_sequence(y, batch_first=batch_first)
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
    for s in _as_tuple(h):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    return y, _as_tuple(h)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("shape", SHAPES, ids=["2x-bidir-batch_first", "2x-bidir", "1x"])
@pytest.mark.parametrize("fused", [True, False], ids=["native", "bptt"])
@pytest.mark.parametrize("mine_cls,ref_cls", PAIRS, ids=["lstm", "gru", "rnn"])
def test_equals_torch(mine_cls, ref_cls, fused, shape, packed):
    mine, ref = _pair(mine_cls, ref_cls, fused, **shape)
    dirs = 2 if shape["bidirectional"] else 1
    x = torch.randn((B, T, I) if shape["batch_first"] else (T, B, I), dtype=torch.float64)
    n_states = 2 if mine_cls is rnn.LSTM else 1
    h0 = [torch.randn(shape["num_layers"] * dirs, B, H, dtype=torch.float64) for _ in range(n_states)]
    outs = []
    for m in (mine, ref):
        xs = x.clone().requires_grad_()
        hs = [h.clone().requires_grad_() for h in h0]
        y, h = _run(m, xs, tuple(hs) if n_states == 2 else hs[0], packed, shape["batch_first"])
        outs.append((y, h, xs.grad, [s.grad for s in hs]))
    (y1, h1, gx1, gh1), (y2, h2, gx2, gh2) = outs
    torch.testing.assert_close(y1, y2)
    for a, b in zip(h1 + tuple(gh1) + (gx1,), h2 + tuple(gh2) + (gx2,)):
        torch.testing.assert_close(a, b)
    for i, cell in enumerate(mine.cells()):
        suffix = f"_l{i // dirs}" + ("_reverse" if i % dirs else "")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(getattr(cell, name).grad, getattr(ref, name + suffix).grad)


@pytest.mark.parametrize("mine_cls,ref_cls", PAIRS, ids=["lstm", "gru", "rnn"])
def test_unbatched_and_no_bias(mine_cls, ref_cls):
    """2-D (unbatched) input and ``bias=False`` as torch.nn has them; defaults (hx=None) too."""
    torch.manual_seed(0)
    ref = ref_cls(I, H, num_layers=2, bias=False, dtype=torch.float64)
    mine = mine_cls(I, H, num_layers=2, bias=False, dtype=torch.float64).copy_from_torch(ref)
    x = torch.randn(T, I, dtype=torch.float64)
    y1, h1 = mine(x)
    y2, h2 = ref(x)
    torch.testing.assert_close(y1, y2)
    for a, b in zip(_as_tuple(h1), _as_tuple(h2)):
        torch.testing.assert_close(a, b)
    assert not any(p.requires_grad for c in mine.cells() for n, p in c.named_parameters() if n.startswith("bias"))


def test_wrong_hx_shape_is_refused():
    lstm = rnn.LSTM(I, H, num_layers=2)
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        lstm(torch.randn(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, H)))
    with pytest.raises(ValueError, match=r"\(h_0, c_0\)"):
        lstm(torch.randn(T, B, I), torch.zeros(2, B, H))
