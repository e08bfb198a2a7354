"""Bidirectional classifier (article 003 §2, TF ``static_bidirectional_rnn``): the torch model
against the article's NumPy code and against ``torch.nn.RNN/LSTM/GRU(bidirectional=True)``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnbench.models.classifier import Classifier
from rnnbench.tasks.base import TaskSpec

SPEC = TaskSpec("classification", 28, 10, 28)
CELLS = {"rnn": ("rnnbench.cells.rnn.RNNCell", torch.nn.RNN), "lstm": ("rnnbench.cells.lstm.LSTMCell", torch.nn.LSTM),
         "gru": ("rnnbench.cells.gru.GRUCell", torch.nn.GRU)}


def make(cell: str, hidden: int = 12, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    m = Classifier(SPEC, {"_target_": CELLS[cell][0], "name": cell}, hidden_size=hidden, bidirectional=True)
    return m.double().eval()


def images(n: int = 5, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def article_bidirectional(param: list[np.ndarray], X: np.ndarray, n_hidden: int, n_time: int = 28) -> np.ndarray:
    """Article 003 §2's NumPy recomputation, transcribed; returns softmax(score)."""
    w_fw, c_fw, w_bw, c_bw, v, b = param
    N = X.shape[0]
    output_fw = []
    state = np.zeros([N, n_hidden])
    for i in range(n_time):
        state = np.tanh(np.dot(np.hstack((X[:, i, :], state)), w_fw) + c_fw)
        output_fw.append(state)
    output_bw = []
    state = np.zeros([N, n_hidden])
    for i in reversed(range(n_time)):
        state = np.tanh(np.dot(np.hstack((X[:, i, :], state)), w_bw) + c_bw)
        output_bw.append(state)
    outputs = tuple(np.hstack((fw, bw)) for fw, bw in zip(output_fw, reversed(output_bw)))
    score = np.dot(outputs[-1], v) + b
    return np.exp(score) / np.sum(np.exp(score), axis=1, keepdims=True)


def test_rnn_bidir_equals_article_numpy_code():
    m = make("rnn", hidden=12)
    layer = m.rnn.layers[0]

    def kernel(cell):  # TF BasicRNNCell: tanh([x, h] W + c)
        return (np.vstack([cell.weight_ih.detach().numpy().T, cell.weight_hh.detach().numpy().T]),
                (cell.bias_ih + cell.bias_hh).detach().numpy())

    params = [*kernel(layer.fw.cell), *kernel(layer.bw.cell), m.head.weight.detach().numpy().T,
              m.head.bias.detach().numpy()]
    assert len(params) == 6
    x = images()
    with torch.no_grad():
        probs = torch.softmax(m(x), -1).numpy()
    np.testing.assert_allclose(probs, article_bidirectional(params, x.numpy(), 12), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_bidir_equals_torch_bidirectional_rnn(cell):
    """Last output = [forward state after all rows, backward state after reading only the last row]."""
    m = make(cell, hidden=9)
    ref = CELLS[cell][1](28, 9, batch_first=True, bidirectional=True).double()
    layer = m.rnn.layers[0]
    with torch.no_grad():
        for suffix, sub in (("", layer.fw.cell), ("_reverse", layer.bw.cell)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l0{suffix}").copy_(getattr(sub, name))
        x = images()
        out, _ = ref(x)
        want = out[:, -1] @ m.head.weight.T + m.head.bias
        got = m(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_backward_half_has_read_only_the_last_row(cell):
    """outputs[-1] = [h_fw(T), h_bw(T)] and h_bw(T) has seen row T only (article 003 §2): with the
    forward half of the head zeroed, changing row T-2 leaves the logits alone, changing row T does not."""
    H = 8
    m = make(cell, hidden=H)
    x = images(4)
    first, last = x.clone(), x.clone()
    first[:, -3] += 0.5  # an earlier row (row 1 has faded out of a small RNN by step 28)
    last[:, -1] += 0.5
    with torch.no_grad():
        assert not torch.allclose(m(x), m(first))  # the forward direction carries it
        m.head.weight[:, :H] = 0
        torch.testing.assert_close(m(first), m(x), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(m(last), m(x))
    assert m.rnn.output_size == 2 * H


def test_bidir_classifier_config():
    from testutil import compose

    cfg = compose(["dataset=mnist_row", "model=bidir_classifier", "cell=gru"])
    assert cfg.model.name == "bidir_classifier" and cfg.model.bidirectional is True
