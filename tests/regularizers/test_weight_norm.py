"""weight_norm (article 001; Salimans & Kingma 2016): w = g·v/‖v‖ per output row."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

from rnnbench.cells import RecurrentLayer
from rnnbench.regularizers import apply_regularizers

from regutil import classifier


def _wn_params(cell, name):
    p = cell.parametrizations[name]
    return p.original0, p.original1  # g [rows, 1], v [rows, cols]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_is_g_v_over_norm(cell):
    m = classifier(cell, hidden=6)
    apply_regularizers(m, {"weight_norm": {"init": "article"}})
    c = m.rnn.cells()[0]
    for name in ("weight_ih", "weight_hh"):
        g, v = _wn_params(c, name)
        with torch.no_grad():  # perturb so g is not constant and norms vary
            g.uniform_(0.5, 2.0)
            v.mul_(torch.rand(v.shape[0], 1) + 0.5)
        expected = g * v / torch.sqrt((v * v).sum(dim=1, keepdim=True))
        torch.testing.assert_close(getattr(c, name), expected, rtol=1e-6, atol=0)
        # every row's norm is exactly g_r
        torch.testing.assert_close(getattr(c, name).norm(dim=1), g[:, 0], rtol=1e-6, atol=0)


def test_gradients_match_paper_formula_and_finite_differences():
    """∇_g L = G·v/‖v‖, ∇_v L = g/‖v‖ (G − (G·v) v/‖v‖²) (Salimans & Kingma eq. 3), G = ∇_w L."""
    torch.manual_seed(0)
    m = classifier("lstm", hidden=4).double()
    apply_regularizers(m, {"weight_norm": {}})
    c = m.rnn.cells()[0]
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    m(x).square().sum().backward()
    g, v = _wn_params(c, "weight_hh")
    # G from an un-normalised twin whose weight is the effective w
    twin = classifier("lstm", hidden=4).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(twin.rnn.cells()[0], name).copy_(getattr(c, name))
        twin.head.load_state_dict(m.head.state_dict())
    twin(x).square().sum().backward()
    G = twin.rnn.cells()[0].weight_hh.grad
    nv = v.detach().norm(dim=1, keepdim=True)
    gv = (G * v.detach()).sum(1, keepdim=True)
    torch.testing.assert_close(g.grad, gv / nv)
    torch.testing.assert_close(v.grad, g.detach() / nv * (G - gv * v.detach() / nv ** 2))

    # and a finite-difference check through the whole model
    def f(gg, vv):
        p = c.parametrizations["weight_hh"]
        with torch.no_grad():
            p.original0.copy_(gg), p.original1.copy_(vv)
        return m(x).square().sum()

    g0, v0 = g.detach().clone(), v.detach().clone()
    eps = 1e-6
    for (i, j) in [(0, 0), (5, 2), (15, 3)]:
        d = torch.zeros_like(v0)
        d[i, j] = eps
        fd = (f(g0, v0 + d) - f(g0, v0 - d)) / (2 * eps)
        assert abs(fd.item() - v.grad[i, j].item()) < 1e-6 * max(1.0, abs(fd.item()))
    for i in (0, 7):
        d = torch.zeros_like(g0)
        d[i, 0] = eps
        fd = (f(g0 + d, v0) - f(g0 - d, v0)) / (2 * eps)
        assert abs(fd.item() - g.grad[i, 0].item()) < 1e-6 * max(1.0, abs(fd.item()))


def test_equals_torch_weight_norm_on_a_linear_map():
    """The cell's input projection x -> W_ih x + b is a plain linear map: same output and g/v
    gradients as nn.Linear + torch.nn.utils.parametrizations.weight_norm with the same g, v."""
    torch.manual_seed(1)
    m = classifier("rnn", hidden=6)
    apply_regularizers(m, {"weight_norm": {"matrices": ["input"]}})
    c = m.rnn.cells()[0]
    ref = torch_weight_norm(nn.Linear(5, 6), "weight", dim=0)
    with torch.no_grad():
        g, v = _wn_params(c, "weight_ih")
        g.uniform_(0.5, 1.5)
        ref.parametrizations.weight.original0.copy_(g)
        ref.parametrizations.weight.original1.copy_(v)
        ref.bias.copy_(c.bias_ih + c.bias_hh)
    x = torch.randn(4, 5)
    y = c.project_input(x)
    torch.testing.assert_close(y, ref(x))
    y.sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(g.grad, ref.parametrizations.weight.original0.grad)
    torch.testing.assert_close(v.grad, ref.parametrizations.weight.original1.grad)
    assert not torch.nn.utils.parametrize.is_parametrized(c, "weight_hh")  # matrices=[input] only


def test_article_init_statistics():
    """v ~ N(0, 0.05) truncated at ±2σ: mean 0, std 0.05·0.8796, |v| ≤ 0.1; g = 0.1; b = 0."""
    torch.manual_seed(2)
    m = classifier("lstm", hidden=64, inp=64)
    apply_regularizers(m, {"weight_norm": {"init": "article"}})
    c = m.rnn.cells()[0]
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    std_trunc = 0.05 * math.sqrt(1 - 2 * 2 * phi2 / math.erf(2 / math.sqrt(2)))  # 0.04398
    for name in ("weight_ih", "weight_hh"):
        g, v = _wn_params(c, name)
        n = v.numel()  # 16384
        assert v.abs().max() <= 0.1 + 1e-7
        assert abs(v.mean().item()) < 5 * std_trunc / math.sqrt(n)
        assert abs(v.std().item() - std_trunc) < 5 * std_trunc / math.sqrt(2 * n)
        assert torch.all(g == 0.1)
    assert torch.all(c.bias_ih == 0) and torch.all(c.bias_hh == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_and_loop_paths_agree_with_plain_cell(cell):
    torch.manual_seed(3)
    fused = classifier(cell, hidden=6, layers=2)
    apply_regularizers(fused, {"weight_norm": {}})
    with torch.no_grad():
        for c in fused.rnn.cells():
            c.parametrizations.weight_hh.original0.mul_(1.5)
    loop = classifier(cell, hidden=6, layers=2, fused=False)
    apply_regularizers(loop, {"weight_norm": {}})
    loop.load_state_dict(fused.state_dict())
    plain = classifier(cell, hidden=6, layers=2, fused=False)
    with torch.no_grad():
        for cp, cf in zip(plain.rnn.cells(), fused.rnn.cells()):
            for name, p in cp.named_parameters():
                p.copy_(getattr(cf, name))
        plain.head.load_state_dict(fused.head.state_dict())
    x = torch.randn(3, 7, 5)
    torch.testing.assert_close(fused(x), plain(x))
    torch.testing.assert_close(loop(x), plain(x))
    assert isinstance(fused.rnn.layers[0], RecurrentLayer) and fused.rnn.layers[0].path() == "native"


def test_per_tensor_clipping_clips_g_and_v_separately():
    """Article 001's clip_by_norm on each gradient: grad <- grad·c/max(‖grad‖, c), so g's and
    v's gradients are each scaled to norm ≤ c, directions unchanged."""
    from omegaconf import OmegaConf

    from rnnbench.train.optim import clip_gradients

    torch.manual_seed(4)
    m = classifier("lstm", hidden=8)
    apply_regularizers(m, {"weight_norm": {"init": "article"}})
    (m(torch.randn(16, 7, 5)) * 100).square().sum().backward()
    params = list(m.parameters())
    before = {id(p): p.grad.clone() for p in params}
    c = 0.5
    clip_gradients(params, OmegaConf.create({"kind": "per_tensor", "max_norm": c}))
    cell = m.rnn.cells()[0]
    gv = [cell.parametrizations[n].original0 for n in ("weight_ih", "weight_hh")] + \
         [cell.parametrizations[n].original1 for n in ("weight_ih", "weight_hh")]
    for p in params:
        b = before[id(p)]
        torch.testing.assert_close(p.grad, b * (c / max(b.norm().item(), c)))
    for p in gv:
        assert before[id(p)].norm() > c  # the test exercises clipping on g and v
        assert p.grad.norm().item() == pytest.approx(c, rel=1e-5)
