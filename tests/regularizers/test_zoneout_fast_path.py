"""Zoneout inside the whole-sequence kernels of the LSTM, GRU, RNN, mLSTM, mRNN, Delta-RNN, VC-LSTM,
VC-GRU and VC-RNN: its masks drawn for the whole sequence up front are the numbers the per-step hook
draws, and the kernel with them is the per-step loop's function (outputs, states, every gradient,
VC's penalty and statistics; float64), trained and evaluated, locked or not, with weight drop."""
from __future__ import annotations

import math

import pytest
import torch

from rnnbench.cells.kernels.lstm import LSTMSequenceFn
from rnnbench.regularizers import apply_regularizers

from regutil import classifier

ZONEOUTS = [dict(z_h=0.3, z_c=0.6), dict(z_h=0.3, z_c=0.6, locked=True), dict(z_h=0.0, z_c=0.5),
            dict(z_h=0.2, z_c=0.0)]


#: the cells with zoneout in their kernel; VC cells as ``<cell>-<threshold>``, with the computation penalty
CELLS = ["lstm", "gru", "rnn", "mlstm", "mrnn", "delta_rnn", "vclstm-soft", "vclstm-hard", "vcgru-soft", "vcgru-hard",
         "vcrnn-soft", "vcrnn-hard"]


def _pair(regs: dict, fused: bool, bidirectional: bool = False, layers: int = 1, cell: str = "lstm"):
    """Two copies of one model: ``fast`` as built (zoneout in the kernel), ``loop`` whose zoneout
    hooks are wrapped in plain functions, so its layers run the per-step loop with the hook."""
    cell, *threshold = cell.split("-")
    over = dict(threshold=threshold[0], penalty=0.5) if threshold else {}
    torch.manual_seed(0)
    fast = classifier(cell, hidden=6, layers=layers, bidirectional=bidirectional, fused=fused, **over).double()
    apply_regularizers(fast, regs)
    loop = classifier(cell, hidden=6, layers=layers, bidirectional=bidirectional, fused=fused, **over).double()
    apply_regularizers(loop, regs)
    loop.load_state_dict(fast.state_dict())
    for layer in loop.rnn.recurrent_layers():
        hook = layer.state_hooks[-1]
        layer.state_hooks[-1] = lambda p, n, lyr, hook=hook: hook(p, n, lyr)
    assert {lyr.path() for lyr in fast.rnn.recurrent_layers()} == {"sequence"}
    assert {lyr.path() for lyr in loop.rnn.recurrent_layers()} == {"loop"}
    return fast, loop


def _assert_same(fast, loop, x, seed: int) -> None:
    """Both models from the same seed: the same outputs, auxiliary loss (VC's penalty, training
    only), parameter gradients and cell statistics (VC's mean m_t and compute fraction)."""
    got = []
    for model in (fast, loop):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        out = model(x)
        extra = model.rnn.extra_loss()
        (out.pow(2).sum() + (extra if extra is not None else 0)).backward()
        # no graph reaches a VC scheduler's w_mh with the hard threshold and no penalty: no gradient is a zero one
        grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
        got.append((out, extra, grads, model.rnn.stats()))
    (a, ea, ga, sa), (b, eb, gb, sb) = got
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert (ea is None) == (eb is None) and (ea is None or math.isclose(ea.item(), eb.item(), rel_tol=1e-12))
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-12, msg=n)
    assert sa.keys() == sb.keys() and all(math.isclose(sa[k], sb[k], rel_tol=1e-12) for k in sa)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("zs", ZONEOUTS, ids=lambda z: "-".join(f"{k}{v}" for k, v in z.items()))
def test_kernel_equals_the_loop_in_training(zs, fused, cell):
    fast, loop = _pair({"zoneout": zs}, fused, cell=cell)
    _assert_same(fast.train(), loop.train(), torch.randn(5, 9, 5, dtype=torch.float64), seed=7)


@pytest.mark.parametrize("cell", CELLS)
def test_kernel_equals_the_loop_bidirectional_two_layers_and_in_eval(cell):
    fast, loop = _pair({"zoneout": dict(z_h=0.25, z_c=0.5)}, fused=True, bidirectional=True, layers=2, cell=cell)
    x = torch.randn(4, 8, 5, dtype=torch.float64)
    for train in (True, False):
        _assert_same(fast.train(train), loop.train(train), x, seed=3)


@pytest.mark.parametrize("cell", CELLS)
def test_kernel_equals_the_loop_with_weight_drop(cell):
    """Weight drop's mask is drawn when the recurrent weight is first read, before the zoneout
    masks, in both paths: the same random numbers go to the same places."""
    fast, loop = _pair({"weight_drop": dict(p=0.4), "zoneout": dict(z_h=0.1, z_c=0.4)}, fused=False, cell=cell)
    _assert_same(fast.train(), loop.train(), torch.randn(4, 6, 5, dtype=torch.float64), seed=11)


TWO_STATE = ["masks", "expectation", "h_only", "c_only", "locked"]
ONE_STATE = ["masks", "expectation", "locked"]
F64 = dict(dtype=torch.float64)


def _k(kind: str, T: int, B: int, H: int) -> tuple:
    """(kh, kc) of a kind of zoneout: per-step 0/1 masks, eval's constants, one slot only, locked."""
    mask = lambda *s: (torch.rand(*s) < 0.5).double()  # noqa: E731
    return {"masks": (mask(T, B, H), mask(T, B, H)), "expectation": (torch.tensor(0.3, **F64), torch.tensor(0.6, **F64)),
            "h_only": (mask(T, B, H), None), "c_only": (None, mask(T, B, H)), "locked": (mask(B, H), mask(B, H))}[kind]


def _leaves(*shapes) -> tuple:
    return tuple(torch.randn(*s, **F64, requires_grad=True) for s in shapes)


@pytest.mark.parametrize("kind", TWO_STATE)
def test_gradcheck_with_zoneout(kind):
    torch.manual_seed(1)
    T, B, I, H = 4, 3, 2, 3
    args = _leaves((T, B, I), (4 * H, I), (4 * H,), (B, H), (B, H), (4 * H, H))  # x, w_ih, b, h0, c0, w_hh
    kh, kc = _k(kind, T, B, H)
    assert torch.autograd.gradcheck(lambda *a: LSTMSequenceFn.apply(*a, kh, kc), args)


@pytest.mark.parametrize("kind", ONE_STATE)
def test_gru_gradcheck_with_zoneout(kind):
    from rnnbench.cells.kernels.gru import GRUSequenceFn

    torch.manual_seed(2)
    T, B, H = 4, 3, 3
    args = _leaves((T, B, 3 * H), (B, H), (3 * H, H), (3 * H,))  # xp, h0, w_hh, b_hh
    k = _k(kind, T, B, H)[0]
    assert torch.autograd.gradcheck(lambda *a: GRUSequenceFn.apply(*a, k), args)


@pytest.mark.parametrize("kind", [*ONE_STATE, "none"])
def test_rnn_gradcheck(kind):
    from rnnbench.cells.kernels.rnn import RNNSequenceFn

    torch.manual_seed(5)
    T, B, H = 4, 3, 3
    args = _leaves((T, B, H), (B, H), (H, H))  # xp, h0, w_hh
    k = _k(kind, T, B, H)[0] if kind != "none" else None
    assert torch.autograd.gradcheck(lambda *a: RNNSequenceFn.apply(*a, k), args)


@pytest.mark.parametrize("kind", TWO_STATE)
def test_mlstm_gradcheck_with_zoneout(kind):
    from rnnbench.cells.kernels.mlstm import MLSTMSequenceFn

    torch.manual_seed(3)
    T, B, H = 4, 3, 3
    args = _leaves((T, B, 5 * H), (B, H), (B, H), (H, H), (4 * H, H))  # xp, h0, c0, w_mh, w_m
    kh, kc = _k(kind, T, B, H)
    assert torch.autograd.gradcheck(lambda *a: MLSTMSequenceFn.apply(*a, kh, kc), args)


@pytest.mark.parametrize("kind", [*ONE_STATE, "none"])
def test_mrnn_gradcheck_with_zoneout(kind):
    from rnnbench.cells.kernels.mrnn import MRNNSequenceFn

    torch.manual_seed(6)
    T, B, H = 4, 3, 3
    args = _leaves((T, B, 2 * H), (B, H), (H, H), (H, H))  # xp, h0, w_mh, w_hm
    k = _k(kind, T, B, H)[0] if kind != "none" else None
    assert torch.autograd.gradcheck(lambda *a: MRNNSequenceFn.apply(*a, k), args)


@pytest.mark.parametrize("outer", ["tanh", "relu", "identity"])
@pytest.mark.parametrize("kind", ONE_STATE)
def test_delta_rnn_gradcheck_with_zoneout(kind, outer):
    from rnnbench.cells.kernels.delta_rnn import DeltaRNNSequenceFn

    torch.manual_seed(4)
    T, B, H = 4, 3, 3
    xp, h0, v = _leaves((T, B, 3 * H), (B, H), (H, H))
    with torch.no_grad():
        xp[..., 2 * H:] = torch.sigmoid(xp[..., 2 * H:])  # r is a gate
    k = _k(kind, T, B, H)[0]
    assert torch.autograd.gradcheck(lambda *a: DeltaRNNSequenceFn.apply(*a, outer, k), (xp, h0, v))


def test_masks_are_the_hooks_numbers():
    """The up-front draw and the per-step hook's draws, from the same seed, keep the same units."""
    from rnnbench.regularizers.zoneout import ZoneoutHook

    like = torch.zeros(16, 8)
    for locked in (False, True):
        hook = ZoneoutHook((0.3, 0.6), locked)
        torch.manual_seed(5)
        kh, kc = hook.sequence_mix(6, like, training=True)
        torch.manual_seed(5)
        hook.new_sequence()
        steps = []
        for t in range(6):  # prev = 1, new = 0: the output is the keep mask
            steps.append(hook((like + 1, like + 1), (like, like), torch.nn.Module()))
        for slot, k in ((0, kh), (1, kc)):
            torch.testing.assert_close(k.expand(6, 16, 8).float(), torch.stack([s[slot] for s in steps]))


@pytest.mark.parametrize("cell,kind", [("vclstm", k) for k in (*TWO_STATE, "none")] +
                         [(c, k) for c in ("vcgru", "vcrnn") for k in (*ONE_STATE, "none")])
def test_vc_gradcheck_with_zoneout(cell, kind):
    """The VC kernels with zoneout's factors; soft threshold, λ = 1 at H = 4: mask values in the band
    (a gradient to m_t) and snapped to 0 or 1 outside it."""
    from rnnbench.cells.kernels.vc import VCGRUSequenceFn, VCLSTMSequenceFn
    from rnnbench.cells.kernels.vcrnn import VCRNNSequenceFn

    torch.manual_seed(6)
    T, B, I, H = 4, 2, 2, 4
    lam, eps = 1.0, 0.1
    zs = torch.tensor([float(I)] * I + [float(H)] * H, **F64) * lam
    zo = torch.cat([torch.arange(I), torch.arange(H)]).to(torch.float64) * -lam
    meta = (I, False, eps, math.log((1 - eps) / eps))
    lstm = cell == "vclstm"
    states = ((B, H),) * (1 + lstm)
    G = 1 if cell == "vcrnn" else 4  # the base cell's output columns per hidden unit
    args = _leaves((T, B, I + 1), *states, (G * H, I + 1 + H), (H, 1))  # xp, h0 (, c0), wt, w_mh
    ks = _k(kind, T, B, H)[:1 + lstm] if kind != "none" else (None,) * (1 + lstm)
    fn = {"vclstm": VCLSTMSequenceFn, "vcgru": VCGRUSequenceFn, "vcrnn": VCRNNSequenceFn}[cell]
    assert torch.autograd.gradcheck(lambda *a: fn.apply(*a, zs, zo, meta, *ks), args)
