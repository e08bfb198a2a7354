"""weight_drop (AWD-LSTM, article 002): DropConnect on W_hh, one mask per sequence."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from rnnbench.cells import RecurrentLayer
from rnnbench.cells.lstm import LSTMCell
from rnnbench.regularizers import apply_regularizers

from regutil import classifier, five_sigma

P = 0.4
NATIVE = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}  # torch._VF kernels (the ops behind nn.LSTM/GRU/RNN)


class CaptureRNNOps(TorchFunctionMode):
    """Records the weight list each native RNN kernel call receives (observed, not assumed)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in NATIVE.values():
            self.calls.append((func.__name__, [w.detach().clone() for w in args[2]]))
        return func(*args, **(kwargs or {}))


def _spy_steps(cell):
    """Wrap the cell's step to record the recurrent matrix it sees at every step."""
    seen = []
    orig = cell.step

    def step(xp, state):
        seen.append(cell.weight_hh.detach().clone())
        return orig(xp, state)

    cell.step = step
    return seen


def _raw_hh(cell):
    return cell.parametrizations["weight_hh"].original.detach()


def _is_dropconnect_of(w_eff, w, p):
    return torch.all((w_eff == 0) | torch.isclose(w_eff, w / (1 - p), rtol=1e-6, atol=0))


def _plain_twin(m, cell, w_hh, hidden=16):
    """The same classifier without weight drop, its recurrent matrix fixed to ``w_hh``."""
    ref = classifier(cell, hidden=hidden, fused=False)
    rc, c = ref.rnn.cells()[0], m.rnn.cells()[0]
    with torch.no_grad():
        for name in ("weight_ih", "bias_ih", "bias_hh"):
            getattr(rc, name).copy_(getattr(c, name))
        rc.weight_hh.copy_(w_hh)
        ref.head.load_state_dict(m.head.state_dict())
    return ref


@pytest.mark.parametrize("path", ["step_loop", "sequence", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_one_matrix_per_sequence_on_every_path(cell, path):
    """Observe the mask parametrization's evaluations: exactly one per sequence, whatever the
    execution path (step loop / the cell's custom sequence path / native kernel), and the
    sequence's output is that of a plain cell run with that one matrix at every step."""
    torch.manual_seed(0)
    m = classifier(cell, hidden=16, fused=(path == "fused"))
    apply_regularizers(m, {"weight_drop": {"p": P}})
    c = m.rnn.cells()[0]
    layer = m.rnn.layers[0]
    if path == "step_loop":
        layer.state_hooks.append(lambda prev, new, lyr: new)  # an identity hook forces the step loop
        steps = _spy_steps(c)
    evaluated = []
    c.parametrizations["weight_hh"][0].register_forward_hook(lambda mod, a, out: evaluated.append(out.detach().clone()))
    x = torch.randn(3, 7, 5)
    y = m(x)
    assert len(evaluated) == 1
    w = evaluated[0]
    assert _is_dropconnect_of(w, _raw_hh(c), P) and (w == 0).any()
    if path == "step_loop":
        assert len(steps) == 7 and all(torch.equal(s, w) for s in steps)
    torch.testing.assert_close(y, _plain_twin(m, cell, w)(x))
    evaluated.clear()
    m(x)
    assert len(evaluated) == 1 and not torch.equal(evaluated[0], w)  # a new mask for the next sequence


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_path_runs_native_kernel_once_with_one_dropped_matrix(cell):
    torch.manual_seed(1)
    m = classifier(cell, hidden=16)
    apply_regularizers(m, {"weight_drop": {"p": P}})
    c = m.rnn.cells()[0]
    steps = _spy_steps(c)
    x = torch.randn(3, 7, 5)
    with CaptureRNNOps() as cap:
        y = m(x)
    assert steps == []  # no per-step Python loop
    assert [f for f, _ in cap.calls] == [NATIVE[cell]]  # one native call for the sequence
    w_hh = cap.calls[0][1][1]
    assert _is_dropconnect_of(w_hh, _raw_hh(c), P) and (w_hh == 0).any()
    # the kernel used that matrix at every step: a plain cell with it fixed reproduces the output
    torch.testing.assert_close(y, _plain_twin(m, cell, w_hh)(x))
    with CaptureRNNOps() as cap2:
        m(x)
    assert not torch.equal(cap2.calls[0][1][1], w_hh)


def test_use_vd_keeps_mask_until_resampled_after_step():
    torch.manual_seed(2)
    m = classifier("lstm", hidden=16)
    regs = apply_regularizers(m, {"weight_drop": {"p": P, "use_vd": True}})
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(3, 7, 5)
    masks = []
    for _ in range(2):
        with CaptureRNNOps() as cap:
            m(x).sum().backward()
            m(x)
        w0, w1 = cap.calls[0][1][1], cap.calls[1][1][1]
        assert torch.equal(w0 == 0, w1 == 0)  # same mask across sequences before the step
        masks.append(w0 == 0)
        opt.step()
        opt.zero_grad()
        for r in regs:
            r.after_step(m)
    assert not torch.equal(masks[0], masks[1])  # resampled after the optimizer step


def test_mask_keep_rate_and_scale():
    """Kept fraction of N Bernoulli(1−p) draws: |mean − (1−p)| < 5σ; kept entries scaled 1/(1−p)."""
    torch.manual_seed(3)
    m = classifier("lstm", hidden=64)
    apply_regularizers(m, {"weight_drop": {"p": P}})
    c = m.rnn.cells()[0]
    n, kept = 0, 0
    for _ in range(5):
        with torch.nn.utils.parametrize.cached():
            w = c.weight_hh.detach()
        assert _is_dropconnect_of(w, _raw_hh(c), P)
        kept += (w != 0).sum().item()
        n += w.numel()
    assert abs(kept / n - (1 - P)) < five_sigma(1 - P, n)


def test_eval_is_deterministic_and_undropped():
    torch.manual_seed(4)
    m = classifier("lstm", hidden=16)
    apply_regularizers(m, {"weight_drop": {"p": P}})
    c = m.rnn.cells()[0]
    m.eval()
    x = torch.randn(3, 7, 5)
    assert torch.equal(m(x), m(x))
    assert torch.equal(c.weight_hh, _raw_hh(c))
    m.train()
    assert not torch.equal(m(x), m(x))


def test_no_warnings_on_fused_training():
    torch.manual_seed(5)
    m = classifier("lstm", hidden=16, layers=2)
    apply_regularizers(m, {"weight_drop": {"p": P}})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m(torch.randn(3, 7, 5)).sum().backward()
    assert [str(x.message) for x in w] == []


def test_weight_dropped_lstm_keeps_the_native_kernel(monkeypatch):
    """What makes a weight-dropped LSTM cost what nn.LSTM costs (``rnnbench bench`` measures it, no
    test times it): the layer runs the native fused op, once per sequence, on the dropped weights."""
    from rnnbench.regularizers.weight_drop import WeightDrop

    torch.manual_seed(6)
    layer = RecurrentLayer(LSTMCell(8, 8))
    WeightDrop(p=0.5).apply(nn.Sequential(layer))
    assert layer.path() == "native"
    calls = []
    real = torch._VF.lstm
    monkeypatch.setattr(torch._VF, "lstm", lambda *a, **k: calls.append(a[2][1].detach().clone()) or real(*a, **k))
    layer(torch.randn(5, 3, 8))[0].sum().backward()
    assert len(calls) == 1  # one fused call for the whole sequence
    assert (calls[0] == 0).float().mean().item() > 0.3  # fed W_hh with dropped entries
