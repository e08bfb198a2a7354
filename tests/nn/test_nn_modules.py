"""Every rnnbench.nn module: a packed batch equals each sequence run alone (every cell's fast path
cut at the sequences' own lengths), and each trains inside the README's 20-line user model (run
from the README itself), with and without its regularizers."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnbench.nn as rnn
from testutil import REPO

NAMES = sorted(rnn.MODULES)
REGULARIZED = dict(weight_norm=True, weight_drop=0.3, zoneout=(0.5, 0.05), variational_dropout=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_packed_batch_equals_each_sequence_alone(name):
    torch.manual_seed(0)
    m = rnn.MODULES[name](3, 6, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64).eval()
    lengths = [2, 5, 3, 5]
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    y, h = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    y, _ = pad_packed_sequence(y, batch_first=True)
    h = h if isinstance(h, tuple) else (h,)
    for b, n in enumerate(lengths):
        yb, hb = m(x[b:b + 1, :n])
        hb = hb if isinstance(hb, tuple) else (hb,)
        torch.testing.assert_close(y[b, :n], yb[0])
        assert not y[b, n:].any()  # padding stays zero, as torch.nn pads
        for s, sb in zip(h, hb):
            torch.testing.assert_close(s[:, b], sb[:, 0])


def readme_example() -> dict:
    """The README's "Use a cell in your own model" code, run: its ``Tagger``, ``train`` and ``model``."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Use a cell in your own model"):].split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    return ns


EXAMPLE = readme_example()
Tagger, train = EXAMPLE["Tagger"], EXAMPLE["train"]


def _data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (16, 9), generator=g)
    lengths = torch.randint(3, 10, (16,), generator=g)
    tags = (ids + ids.roll(1, 1)) % 3  # needs the previous token too
    tags[torch.arange(9)[None] >= lengths[:, None]] = -1
    return ids, lengths, tags


@pytest.mark.parametrize("regularized", [False, True], ids=["plain", "regularized"])
@pytest.mark.parametrize("name", NAMES)
def test_trains_in_a_user_model(name, regularized):
    torch.manual_seed(0)
    model = Tagger(rnn.MODULES[name], **(REGULARIZED if regularized else {}))
    if regularized:
        assert len(model.rnn.regularizers) == 4
    ids, lengths, tags = _data()
    with torch.no_grad():
        before = nn.functional.cross_entropy(model.eval()(ids, lengths).transpose(1, 2), tags, ignore_index=-1)
    train(model.train(), ids, lengths, tags)
    with torch.no_grad():
        after = nn.functional.cross_entropy(model.eval()(ids, lengths).transpose(1, 2), tags, ignore_index=-1)
    assert after < 0.6 * before, (before.item(), after.item())


def test_readme_model_as_written_trains():
    ids, lengths, tags = _data()
    model = EXAMPLE["model"]
    assert len(model.rnn.regularizers) == 2 and model.rnn.cells()[0].lam == 2.0
    assert train(model, ids, lengths, tags, steps=2) > 0
    assert 0 < model.rnn.compute_fraction() <= 1


@pytest.mark.parametrize("name", ["vclstm", "vcgru", "vcrnn"])
def test_vc_module_reports_compute_fraction(name):
    m = rnn.MODULES[name](4, 8, penalty=1.0, target_m=0.2, m_bias_init=-1.0)
    assert m.compute_fraction() is None
    m(torch.randn(5, 2, 4))
    frac = m.compute_fraction()
    assert 0.0 < frac < 1.0
    assert m.compute_fraction() is None  # read out: the next value covers the next forwards
    m.train()(torch.randn(5, 2, 4))
    assert m.extra_loss().requires_grad  # the penalty, to add to the loss


def test_options_reach_the_cell_and_bad_ones_fail():
    m = rnn.VCLSTM(4, 8, lam=3.0, threshold="hard", num_layers=2)
    assert all(c.lam == 3.0 and c.threshold == "hard" for c in m.cells())
    assert rnn.DeltaRNN(4, 8, outer_activation="relu").cells()[0].outer_activation == "relu"
    with pytest.raises(ValueError, match="threshold"):
        rnn.VCGRU(4, 8, threshold="medium")
    with pytest.raises(TypeError):
        rnn.LSTM(4, 8, no_such_option=1)
    with pytest.raises(ValueError, match="tanh"):
        rnn.RNN(4, 8, nonlinearity="relu")
