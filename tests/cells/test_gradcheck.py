"""torch.autograd.gradcheck on small float64 instances of every cell (input, initial state, parameters)."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from rnnbench.cells import RecurrentLayer
from cellutil import make_cell

CASES = [
    ("rnn", ("fused=false",)), ("lstm", ("fused=false",)), ("lstm", ("fused=true",)), ("gru", ("fused=false",)),
    ("vclstm", ("threshold=soft", "lam=0.5")), ("vclstm", ("threshold=hard",)),
    ("vclstm", ("threshold=soft", "lam=0.5", "penalty=1.0")), ("vclstm", ("threshold=hard", "penalty=1.0")),
    ("vcrnn", ("threshold=soft", "lam=0.5")), ("vcrnn", ("threshold=hard", "penalty=1.0")),
    ("vcrnn", ("threshold=soft", "lam=0.5", "penalty=1.0")), ("vcgru", ("threshold=soft", "lam=0.5")),
    ("vcgru", ("threshold=hard", "penalty=1.0")), ("vcgru", ("threshold=soft", "lam=0.5", "penalty=1.0")),
    ("mlstm", ()), ("mlstm", ("factor_bias=1.0",)), ("mrnn", ()), ("mrnn", ("factor_bias=1.0",)), ("delta_rnn", ()), ("delta_rnn", ("outer_activation=identity",)),
]


CASES = [(n, o, False) for n, o in CASES] + [("lstm", ("fused=false",), True), ("mlstm", (), True), ("mrnn", (), True),
                                             ("vclstm", ("threshold=soft",), True), ("vcgru", ("threshold=soft",), True),
                                             ("vcrnn", ("threshold=soft",), True)]


@pytest.mark.parametrize("name,overrides,hooked", CASES,
                         ids=[f"{n}-{'-'.join(o)}{'-steploop' if k else ''}" for n, o, k in CASES])
def test_gradcheck(name, overrides, hooked):
    """Full Jacobian check for the hand-written LSTM BPTT; fast (random-projection) mode elsewhere.

    ``hooked`` adds an identity state hook, forcing the generic per-step loop (the path
    zoneout uses) instead of a cell's whole-sequence path."""
    T, B, I, H = 4, 2, 3, 4
    cell = make_cell(name, I, H, overrides, seed=1)
    layer = RecurrentLayer(cell)
    if hooked:
        layer.state_hooks.append(lambda prev, new, lay: new)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in cell.named_parameters())
    torch.manual_seed(5)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    n_st = cell.num_states
    st = tuple((0.5 * torch.randn(B, H, dtype=torch.float64)).requires_grad_() for _ in range(n_st))

    def f(x, *rest):
        ps, s = rest[:len(names)], rest[len(names):]
        y, s_new = functional_call(layer, {f"cell.{n}": p for n, p in zip(names, ps)}, (x, tuple(s)))
        extra = cell.extra_loss()  # VC computation penalty (None unless penalty > 0)
        return (y,) + tuple(s_new) + ((extra,) if extra is not None else ())

    # full check of the hand-written BPTTs
    fast = not (name in ("lstm", "mlstm", "mrnn", "vclstm", "vcgru", "vcrnn") and not hooked)
    assert torch.autograd.gradcheck(f, (x, *params, *st), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)
    if name.startswith("vc") and "threshold=soft" in overrides:  # the soft band is exercised at t = 0
        with torch.no_grad():
            m0 = torch.sigmoid(x[0] @ cell.w_mx + st[0] @ cell.w_mh + cell.b_m)
            e = cell.mask(m0, cell.idx_h)
        assert ((e > 0) & (e < 1)).any()
