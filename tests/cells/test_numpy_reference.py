"""Every cell's step == an independent NumPy float64 implementation of its equation (the cell's docstring).

The NumPy functions below are written from the equations (article 000 / 004); they use
no torch — they receive the parameters as NumPy arrays and run their own time loop.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cellutil import make_cell, npw, run_layer


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


# --------------------------------------------------------------------------- reference steps
def np_rnn(p, x, h):
    return np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])


def np_lstm_gates(p, x, h, c, forget_bias=0.0):
    a = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    H = h.shape[1]
    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    c_new = sig(f + forget_bias) * c + sig(i) * np.tanh(g)
    return sig(o) * np.tanh(c_new), c_new


def np_gru(p, x, h):
    H = h.shape[1]
    gx = x @ p["weight_ih"].T + p["bias_ih"]
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    r = sig(gx[:, :H] + gh[:, :H])
    z = sig(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def np_vc_mask(m, D, lam, eps, hard, offset):
    """(e)_i = Thres_eps(sigmoid(lam (m D - i))), i = offset .. D-1+offset; m [B, 1]."""
    i = np.arange(D) + offset
    s = sig(lam * (m * D - i[None, :]))
    if hard:
        return (s > 1 - eps).astype(np.float64)
    e = s.copy()
    e[s < eps] = 0.0
    e[s > 1 - eps] = 1.0
    return e


def np_vc_step(kind, p, opt, x, state):
    h = state[0]
    m = sig(x @ p["w_mx"] + h @ p["w_mh"] + p["b_m"])  # [B, 1]
    e = np_vc_mask(m, h.shape[1], opt["lam"], opt["eps"], opt["hard"], opt["offset"])
    ex = np_vc_mask(m, x.shape[1], opt["lam"], opt["eps"], opt["hard"], opt["offset"])
    xb, hb = ex * x, e * h
    if kind == "vclstm":
        c = state[1]
        ht, ct = np_lstm_gates(p, xb, hb, e * c)
        return (e * ht + (1 - e) * h, e * ct + (1 - e) * c), m
    if kind == "vcrnn":
        return (e * np_rnn(p, xb, hb) + (1 - e) * h,), m
    return (e * np_gru(p, xb, hb) + (1 - e) * h,), m


def np_mrnn(p, x, h):
    H = h.shape[1]
    W_mx, W_hx = p["weight_ix"][:H], p["weight_ix"][H:]
    m = (x @ W_mx.T + p.get("bias_m", 0.0)) * (h @ p["weight_mh"].T)
    return np.tanh(m @ p["weight_hm"].T + x @ W_hx.T + p["bias"])


def np_mlstm(p, x, h, c):
    H = h.shape[1]
    Wx = p["weight_ix"]
    W_mx, W_hx, W_ix, W_fx, W_ox = (Wx[k * H:(k + 1) * H] for k in range(5))
    Wm = p["weight_m"]
    W_hm, W_im, W_fm, W_om = (Wm[k * H:(k + 1) * H] for k in range(4))
    b_h, b_i, b_f, b_o = (p["bias"][k * H:(k + 1) * H] for k in range(4))
    m = (x @ W_mx.T + p.get("bias_m", 0.0)) * (h @ p["weight_mh"].T)
    hhat = m @ W_hm.T + x @ W_hx.T + b_h
    i = sig(x @ W_ix.T + m @ W_im.T + b_i)
    f = sig(x @ W_fx.T + m @ W_fm.T + b_f)
    o = sig(x @ W_ox.T + m @ W_om.T + b_o)
    c = f * c + i * hhat
    return np.tanh(c * o), c


def np_delta(p, x, h, phi):
    Vh = h @ p["weight_hh"].T
    Wx = x @ p["weight_ih"].T
    d1 = p["alpha"] * Vh * Wx
    d2 = p["beta1"] * Vh + p["beta2"] * Wx
    z = np.tanh(d1 + d2 + p["bias_z"])
    r = sig(Wx + p["bias_r"])
    v = (1 - r) * z + r * h
    return {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "identity": lambda a: a}[phi](v)


# --------------------------------------------------------------------------- the comparisons
def _perturb(cell, scale=0.3):
    """Give every parameter non-trivial values (α, β, biases included)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


CASES = [
    ("rnn", ("fused=false",)), ("lstm", ("fused=false",)), ("lstm", ("fused=false", "forget_bias=1.0")),
    ("gru", ("fused=false",)),
    ("vclstm", ("threshold=soft",)), ("vclstm", ("threshold=hard", "lam=3.0")),
    ("vclstm", ("threshold=soft", "index_offset=1", "lam=0.5", "eps=0.2")),
    ("vcrnn", ("threshold=soft",)), ("vcrnn", ("threshold=hard",)),
    ("vcgru", ("threshold=soft",)), ("vcgru", ("threshold=hard", "lam=2.0")),
    ("mrnn", ()), ("mrnn", ("factor_bias=1.0",)), ("mlstm", ()), ("mlstm", ("forget_bias=1.0",)),
    ("mlstm", ("factor_bias=0.5",)),
    ("delta_rnn", ()), ("delta_rnn", ("outer_activation=relu",)), ("delta_rnn", ("outer_activation=identity",)),
]


@pytest.mark.parametrize("name,overrides", CASES, ids=[f"{n}-{'-'.join(o)}" for n, o in CASES])
def test_cell_matches_numpy(name, overrides):
    T, B, I, H = 6, 4, 5, 8
    cell = make_cell(name, I, H, overrides)
    if not name.startswith("vc"):
        _perturb(cell)
    else:  # keep m_t spread over (0, 1) so the masks have edges
        _perturb(cell, 0.1)
    cell.eval()
    p = {n: npw(t) for n, t in cell.named_parameters()}
    torch.manual_seed(3)
    x = torch.randn(T, B, I, dtype=torch.float64)
    y, state = run_layer(cell, x)
    X = x.numpy().copy()
    st = tuple(np.zeros((B, H)) for _ in range(2 if name in ("lstm", "vclstm", "mlstm") else 1))
    ys, ms = [], []
    for t in range(T):
        xt = X[t]
        if name == "rnn":
            st = (np_rnn(p, xt, st[0]),)
        elif name == "lstm":
            fb = float([o for o in overrides if o.startswith("forget_bias")][0].split("=")[1]) if len(overrides) > 1 else 0.0
            st = np_lstm_gates(p, xt, st[0], st[1], fb)
        elif name == "gru":
            st = (np_gru(p, xt, st[0]),)
        elif name.startswith("vc"):
            opt = {"lam": cell.lam, "eps": cell.eps, "hard": cell.threshold == "hard", "offset": cell.index_offset}
            assert ("threshold=hard" in overrides) == opt["hard"]
            st, m = np_vc_step(name, p, opt, xt, st)
            ms.append(m)
        elif name == "mrnn":
            st = (np_mrnn(p, xt, st[0]),)
        elif name == "mlstm":
            st = np_mlstm(p, xt, st[0], st[1])
        else:
            st = (np_delta(p, xt, st[0], cell.outer_activation),)
        ys.append(st[0])
    np.testing.assert_allclose(y.detach().numpy(), np.stack(ys), rtol=1e-10, atol=1e-10)
    for a, b in zip(state, st):
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-10, atol=1e-10)
    if name.startswith("vc"):
        M = np.concatenate(ms)
        assert M.std() > 0.01, "m_t should vary in this test"
        stats = cell.stats()
        np.testing.assert_allclose(stats["mean_m"], M.mean(), rtol=1e-9)
        E = np_vc_mask(M, H, cell.lam, cell.eps, cell.threshold == "hard", cell.index_offset)
        np.testing.assert_allclose(stats["compute_fraction"], (E > 0).mean(), rtol=1e-9)
        assert 0.0 < stats["compute_fraction"] < 1.0


@pytest.mark.parametrize("name", ["mrnn", "mlstm"])
def test_blank_input_and_the_factor_bias(name):
    """x_t = 0 (a blank MNIST row): without b_m, m_t = 0, so the mRNN's h_t = tanh(b) whatever
    h_{t-1} (hand-computed) and the mLSTM's ĥ_t and gates lose h_{t-1}; with b_m the step still
    reads h_{t-1}."""
    x = torch.zeros(1, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 4, dtype=torch.float64)
    for fb, reads_h in ((None, False), (1.0, True)):
        cell = make_cell(name, 3, 4, () if fb is None else (f"factor_bias={fb}",))
        if fb is None:
            assert cell.bias_m is None
        else:
            assert torch.equal(cell.bias_m.detach(), torch.full((4,), fb, dtype=torch.float64))
        _perturb(cell)
        states = [(h, torch.zeros_like(h)) if name == "mlstm" else (h,) for h in (h0, 2 * h0)]
        y1, y2 = (run_layer(cell, x, s)[0] for s in states)
        assert torch.allclose(y1, y2) != reads_h
        if name == "mrnn" and fb is None:
            torch.testing.assert_close(y1[0], torch.tanh(cell.bias).expand(2, 4).detach(), rtol=0, atol=1e-15)


def test_mlstm_reads_both_paths_of_m():
    """A changed W_mh must change the output (m_t feeds ĥ and the gates)."""
    cell = make_cell("mlstm", 3, 4)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    y1, _ = run_layer(cell, x)
    with torch.no_grad():
        cell.weight_mh.mul_(2.0)
    y2, _ = run_layer(cell, x)
    assert not torch.allclose(y1, y2)
