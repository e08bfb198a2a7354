"""Custom step paths == torch.nn.LSTM / RNN / GRU with copied weights: outputs, final state, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnbench.cells import GRUCell, LSTMCell, RecurrentLayer, RNNCell, RNNStack

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
REF = {"lstm": (nn.LSTM, LSTMCell), "rnn": (nn.RNN, RNNCell), "gru": (nn.GRU, GRUCell)}


def _identity_hook(prev, new, layer):  # forces the generic per-step loop
    return new


def _copy(ref: nn.Module, cell, suffix: str = "_l0") -> None:
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, n).copy_(getattr(ref, n + suffix))


def _grads(params):
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["lstm", "rnn", "gru"])
@pytest.mark.parametrize("path", ["custom", "steploop", "native"])
def test_paths_equal_torch_nn(kind, path, dtype):
    torch.manual_seed(0)
    T, B, I, H = 7, 3, 5, 6
    ref_cls, cell_cls = REF[kind]
    ref = ref_cls(I, H).to(dtype)
    cell = cell_cls(I, H, fused=(path == "native")).to(dtype)
    _copy(ref, cell)
    layer = RecurrentLayer(cell)
    if path == "steploop":
        layer.state_hooks.append(_identity_hook)
    x = torch.randn(T, B, I, dtype=dtype)
    h0 = torch.randn(B, H, dtype=dtype)
    c0 = torch.randn(B, H, dtype=dtype)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    hs = [h0.clone().requires_grad_(), h0.clone().requires_grad_()]
    cs = [c0.clone().requires_grad_(), c0.clone().requires_grad_()]
    w_out = torch.randn(T, B, H, dtype=dtype)
    if kind == "lstm":
        y_ref, (hT_ref, cT_ref) = ref(xs[0], (hs[0][None], cs[0][None]))
        y, (hT, cT) = layer(xs[1], (hs[1], cs[1]))
        finals = [(hT_ref[0], hT), (cT_ref[0], cT)]
        loss_ref = (y_ref * w_out).sum() + hT_ref.sum() * 0.5 + (cT_ref ** 2).sum()
        loss = (y * w_out).sum() + hT.sum() * 0.5 + (cT ** 2).sum()
    else:
        y_ref, hT_ref = ref(xs[0], hs[0][None])
        y, (hT,) = layer(xs[1], (hs[1],))
        finals = [(hT_ref[0], hT)]
        loss_ref = (y_ref * w_out).sum() + (hT_ref ** 2).sum()
        loss = (y * w_out).sum() + (hT ** 2).sum()
    tol = TOL[dtype]
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
    for a, b in finals:
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    loss_ref.backward()
    loss.backward()
    ref_params = [getattr(ref, n + "_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    for a, b in zip(_grads(ref_params), _grads(params)):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=tol, atol=tol)
    torch.testing.assert_close(hs[1].grad, hs[0].grad, rtol=tol, atol=tol)
    if kind == "lstm":
        torch.testing.assert_close(cs[1].grad, cs[0].grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("fused", [False, True])
def test_lstm_forget_bias_equals_nn_lstm_with_shifted_bias(fused):
    torch.manual_seed(1)
    I, H = 4, 5
    ref = nn.LSTM(I, H).double()
    cell = LSTMCell(I, H, forget_bias=1.0, fused=fused).double()
    _copy(ref, cell)
    with torch.no_grad():
        ref.bias_ih_l0[H:2 * H] += 1.0
    x = torch.randn(6, 2, I, dtype=torch.float64)
    y_ref, _ = ref(x)
    y, _ = RecurrentLayer(cell)(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_custom_stack_bidirectional_two_layers_equals_torch_nn(kind):
    torch.manual_seed(2)
    T, B, I, H = 5, 3, 4, 6
    ref_cls, cell_cls = REF[kind]
    ref = ref_cls(I, H, num_layers=2, bidirectional=True).double()
    stack = RNNStack(lambda i, h: cell_cls(i, h, fused=False), I, H, num_layers=2, bidirectional=True).double()
    for li, layer in enumerate(stack.layers):
        _copy(ref, layer.fw.cell, f"_l{li}")
        _copy(ref, layer.bw.cell, f"_l{li}_reverse")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y_ref, _ = ref(x)
    y, states = stack(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    y_ref.pow(2).sum().backward()
    y.pow(2).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(stack.layers[1].bw.cell.weight_hh.grad, ref.weight_hh_l1_reverse.grad,
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("overrides", [(), ("factor_bias=1.0",)], ids=["", "factor_bias"])
@pytest.mark.parametrize("name", ["mlstm", "mrnn"])
def test_sequence_kernel_equals_the_step_loop(name, overrides):
    """The multiplicative cells' whole-sequence kernels (no torch.nn counterpart) == their ``step``
    under autograd: outputs, final states, and the input's, initial states' and parameters' gradients."""
    from cellutil import make_cell

    T, B, I, H = 6, 3, 4, 5
    cell = make_cell(name, I, H, overrides, seed=2)
    torch.manual_seed(4)
    x = torch.randn(T, B, I, dtype=torch.float64)
    st = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(cell.num_states))
    got = []
    for hooked in (False, True):
        layer = RecurrentLayer(cell)
        if hooked:
            layer.state_hooks.append(_identity_hook)
        assert layer.path() == ("loop" if hooked else "sequence")
        cell.zero_grad(set_to_none=True)
        xs, s0 = x.clone().requires_grad_(), tuple(s.clone().requires_grad_() for s in st)
        y, s = layer(xs, s0)
        (y.sin().sum() + sum((1.5 + i) * v.square().sum() for i, v in enumerate(s))).backward()
        got.append([y, *s, xs.grad, *(v.grad for v in s0), *(p.grad for p in cell.parameters())])
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
