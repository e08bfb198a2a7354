"""qat (article 002 is_quant; Jacob et al. 2018): fake-quant training and the integer-only path."""
from __future__ import annotations


import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from rnnbench.errors import ConfigError
from rnnbench.regularizers import apply_regularizers
from rnnbench.regularizers import qat
from rnnbench.regularizers.qat import export_int, int_forward, int_only_report

from regutil import classifier


def _qat_classifier(cell="lstm", layers=2, hidden=16, seed=0, delay=0):
    torch.manual_seed(seed)
    m = classifier(cell, hidden=hidden, layers=layers, inp=28, classes=10)
    apply_regularizers(m, {"qat": {"quant_delay": delay}})
    return m


def _train(m, steps=5, x=None):
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for s in range(steps):
        for mod in m.modules():
            if hasattr(mod, "set_training_progress"):
                mod.set_training_progress(s, steps)
        xb = torch.rand(32, 28, 28) if x is None else x
        loss = nn.functional.cross_entropy(m(xb), torch.randint(0, 10, (32,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_int_path_reproduces_fake_quant_logits_exactly(cell):
    m = _qat_classifier(cell)
    _train(m, 3)
    m.eval()
    x = torch.rand(200, 28, 28)
    fq = m(x)
    q = int_forward(export_int(m), x)
    assert q.dtype == torch.int64
    # the fake-quant logits are the integers at scale 2^-8
    torch.testing.assert_close(fq.double() * 256, q.double(), rtol=0, atol=0)


class DtypeLog(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.float_ops = []
        self.int_seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            if out.dtype == torch.int64:
                self.int_seen = True
            elif self.int_seen and out.is_floating_point():
                self.float_ops.append(getattr(func, "__name__", str(func)))
        return out


def test_int_path_has_no_float_op_after_input_quantisation():
    m = _qat_classifier("lstm")
    m.eval()
    params = export_int(m)
    log = DtypeLog()
    with log:
        int_forward(params, torch.rand(8, 28, 28))
    assert log.int_seen and log.float_ops == []


def test_fake_quant_lstm_approximates_float_lstm():
    """Independent reference: the float model (quantisation off). int8 weights/activations
    change a 2-layer LSTM's outputs by a few LSBs of h (S_H = 2^-7), not more."""
    m = _qat_classifier("lstm", delay=10)
    x = torch.rand(64, 28, 28)
    m(x)  # a training batch calibrates the observers
    m.eval()
    y_float, _ = m.rnn(x.transpose(0, 1))
    for mod in m.modules():
        if hasattr(mod, "set_training_progress"):
            mod.set_training_progress(10, 20)
    y_q, _ = m.rnn(x.transpose(0, 1))
    assert torch.all(torch.frac(y_q * 128) == 0)  # h on the int8 grid 2^-7
    assert (y_q - y_float).abs().max().item() < 0.05
    assert (y_q - y_float).abs().mean().item() < 0.01


def test_quant_delay_trains_float_first():
    m = _qat_classifier("lstm", delay=3)
    ref = classifier("lstm", hidden=16, layers=2, inp=28, classes=10)
    sd = {k.replace(".float_cell", ""): v for k, v in m.state_dict().items() if "x_obs" not in k and "qat_enabled" not in k}
    ref.load_state_dict(sd)
    x = torch.rand(4, 28, 28)
    for mod in m.modules():
        if hasattr(mod, "set_training_progress"):
            mod.set_training_progress(2, 10)
    assert all(c.fused for c in m.rnn.cells())  # float phase keeps the native kernel
    torch.testing.assert_close(m(x), ref(x))
    for mod in m.modules():
        if hasattr(mod, "set_training_progress"):
            mod.set_training_progress(3, 10)
    assert not any(c.fused for c in m.rnn.cells())
    assert not torch.allclose(m(x), ref(x))
    assert torch.all(torch.frac(m(x).double() * 256) == 0)


def test_observer_is_the_ema_of_max_abs():
    m = _qat_classifier("lstm", layers=1)
    obs = m.rnn.cells()[0].x_obs
    maxima = [2.0, 1.0, 3.0]
    expect = None
    for a in maxima:
        x = torch.zeros(1, 28, 28)
        x[0, 0, 0] = -a
        m(x)
        expect = a if expect is None else expect + (1 - 0.99) * (a - expect)
        assert obs.amax.item() == pytest.approx(expect)
    m.eval()
    m(torch.full((1, 28, 28), 9.0))
    assert obs.amax.item() == pytest.approx(expect)  # frozen in eval


def test_ste_gradients_reach_every_parameter():
    m = _qat_classifier("lstm")
    m(torch.rand(8, 28, 28)).square().sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_int_only_report_on_a_few_examples():
    class FewExamples:
        def __init__(self):
            g = torch.Generator().manual_seed(5)
            self.y = torch.randint(0, 2, (300,), generator=g)
            self.x = torch.rand(300, 28, 28, generator=g) * 0.5
            self.x[:, -4:] += 0.5 * self.y[:, None, None]  # class 1: bright last rows

        def eval_batches(self, split, batch_size):
            for i in range(0, len(self.x), batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]

    task = FewExamples()
    m = _qat_classifier("lstm", hidden=16)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(30):
        loss = nn.functional.cross_entropy(m(task.x), task.y)
        opt.zero_grad(), loss.backward(), opt.step()
    rep = int_only_report(m, task, batch_size=100)
    assert rep["n"] == 300
    assert rep["int_agreement"] >= 0.99
    assert abs(rep["int_acc"] - rep["fq_acc"]) <= 1 - rep["int_agreement"] + 1e-9
    assert rep["fq_acc"] > 0.7  # it learned the toy rule (chance is ~0.5)
    assert m.training  # mode restored


def test_qat_refuses_cells_without_an_integer_step():
    with pytest.raises(ConfigError) as e:
        apply_regularizers(classifier("gru"), {"qat": {}})
    assert "\n" not in str(e.value) and "gru" in str(e.value)


def test_export_needs_a_qat_classifier():
    with pytest.raises(ConfigError):
        export_int(classifier("lstm"))


def test_quant_mode_travels_with_the_checkpoint():
    m = _qat_classifier("lstm", delay=2)
    for mod in m.modules():
        if hasattr(mod, "set_training_progress"):
            mod.set_training_progress(5, 10)
    fresh = classifier("lstm", hidden=16, layers=2, inp=28, classes=10)
    apply_regularizers(fresh, {"qat": {"quant_delay": 2}})
    assert not fresh.rnn.cells()[0].quant_enabled
    fresh.load_state_dict(m.state_dict())
    assert all(c.quant_enabled for c in fresh.rnn.cells()) and fresh.head.quant_enabled


@pytest.mark.parametrize("K", [4, 1040, 1041])
def test_int_mm_is_the_exact_integer_product(K):
    """float32 below K·127² < 2^24 (every partial sum an exact integer), float64 above: either way
    the int64 matmul's value, for the largest-magnitude operands."""
    g = torch.Generator().manual_seed(K)
    a = torch.randint(-127, 128, (5, K), generator=g)
    b = torch.randint(-127, 128, (7, K), generator=g)
    a[0], b[0] = 127, 127  # a partial sum that reaches K·127²
    got = qat.int_mm(a.double(), b.double())
    assert got.dtype == torch.float64
    assert torch.equal(got.to(torch.int64), a @ b.t())


def test_fused_round_clamp_and_lut_nodes_match_the_autograd_chain():
    """round_clamp = qclamp(round_half_up(.)) and lut_act = STE of fn(g S_G)/S_A, value and
    gradient bit for bit, at the clamp bounds too (torch.clamp passes no gradient there)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, dtype=torch.float64, generator=g) * 100).requires_grad_()
    with torch.no_grad():
        x[:4] = torch.tensor([127.0, -127.0, 126.6, 127.4])
    dy = torch.randn(64, dtype=torch.float64, generator=g)
    want = torch.clamp(qat.ste(x, torch.floor(x.detach() + 0.5)), -127, 127)
    got = qat.round_clamp(x, -127, 127)
    assert torch.equal(got, want)
    assert torch.equal(torch.autograd.grad(got, x, dy)[0], torch.autograd.grad(want, x, dy)[0])
    gates = torch.randint(qat.LUT_LO, qat.LUT_HI + 1, (64,), generator=g).double().requires_grad_()
    for which, fn, table in [("sigmoid", torch.sigmoid, qat.SIGMOID_LUT), ("tanh", torch.tanh, qat.TANH_LUT)]:
        q = table[gates.detach().to(torch.int64) - qat.LUT_LO].double()
        want = qat.ste(fn(gates * 2.0 ** -qat.G_BITS) * 2.0 ** qat.A_BITS, q)
        got = qat.lut_act(gates, which)
        assert torch.equal(got, want)
        assert torch.equal(torch.autograd.grad(got, gates, dy)[0], torch.autograd.grad(want, gates, dy)[0])
