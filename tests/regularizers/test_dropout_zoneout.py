"""variational_dropout (locked dropout, article 002 / AWD-LSTM) and zoneout (Krueger et al. 2016)."""
from __future__ import annotations

import pytest
import torch

from rnnbench.cells.base import Cell
from rnnbench.errors import ConfigError
from rnnbench.regularizers import apply_regularizers

from regutil import classifier, five_sigma, lm


# ----------------------------------------------------------------------------- variational dropout
def _record_pre(module, store):
    return module.register_forward_pre_hook(lambda mod, args: store.append(args[0].detach().clone()))


def _record_post(module, store):
    return module.register_forward_hook(lambda mod, args, out: store.append(out[0].detach().clone()))


def _locked_mask(dropped, raw):
    """mask = dropped / raw where raw ≠ 0; asserts it is the same at every step t."""
    ratio = dropped / raw
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-5), "mask changes over time"
    return ratio[0]


def test_locked_dropout_on_input_between_layers_and_output():
    torch.manual_seed(0)
    p_in, p_h, p_out = 0.3, 0.5, 0.2
    m = classifier("lstm", hidden=32, layers=2, inp=40)
    raw_out, raw_l0 = [], []
    _record_post(m.rnn, raw_out)  # registered before: sees the undropped output
    _record_post(m.rnn.layers[0], raw_l0)
    apply_regularizers(m, {"variational_dropout": {"input": p_in, "hidden": p_h, "output": p_out}})
    seen_in0, seen_in1, seen_out = [], [], []
    _record_pre(m.rnn.layers[0], seen_in0)  # registered after: see the dropped tensors
    _record_pre(m.rnn.layers[1], seen_in1)
    _record_post(m.rnn, seen_out)
    B = 64
    x = torch.rand(B, 7, 40) + 0.5  # nonzero everywhere
    m(x)
    masks = {"input": _locked_mask(seen_in0[0], x.transpose(0, 1)),
             "hidden": _locked_mask(seen_in1[0], raw_l0[0]),
             "output": _locked_mask(seen_out[0], raw_out[0])}
    for (name, mask), p in zip(masks.items(), (p_in, p_h, p_out)):
        vals = set(torch.round(mask * 1e4).unique().tolist())
        assert vals == {0.0, round(1e4 / (1 - p))}, (name, vals)
        kept = (mask != 0).float().mean().item()
        assert abs(kept - (1 - p)) < five_sigma(1 - p, mask.numel()), name
        assert not torch.equal(mask[0], mask[1])  # independent across batch items
    seen_in0.clear()
    m(x)
    assert not torch.equal(seen_in0[0][0], x.transpose(0, 1)[0] * masks["input"])  # new mask per sequence


def test_locked_dropout_is_identity_in_eval():
    m = classifier("gru", hidden=8, layers=2)
    ref = classifier("gru", hidden=8, layers=2)
    ref.load_state_dict(m.state_dict())
    apply_regularizers(m, {"variational_dropout": {"input": 0.5, "hidden": 0.5, "output": 0.5}})
    m.eval(), ref.eval()
    x = torch.randn(4, 7, 5)
    torch.testing.assert_close(m(x), ref(x))


def test_embedding_dropout_drops_whole_vocabulary_rows():
    torch.manual_seed(1)
    V, p = 400, 0.3
    model = lm("lstm", vocab=V, emb=6)
    apply_regularizers(model, {"variational_dropout": {"embedding": p}})
    seen = []
    model.embedding.register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    ids = torch.arange(V).repeat(3).reshape(3, V)  # every id three times (different positions/rows)
    model(ids)
    out = seen[0]  # [T=V, B=3, E]
    ref = model.embedding.weight.detach()[ids.t()]
    ratio = out / ref
    row_mask = ratio[..., 0]
    assert torch.allclose(ratio, row_mask[..., None].expand_as(ratio))  # whole vectors
    assert torch.allclose(row_mask, row_mask[:, :1].expand_as(row_mask))  # same id -> same mask
    kept = (row_mask[:, 0] != 0).float()
    assert set(torch.round(row_mask[:, 0] * 1e4).unique().tolist()) == {0.0, round(1e4 / (1 - p))}
    assert abs(kept.mean().item() - (1 - p)) < five_sigma(1 - p, V)


def test_embedding_dropout_needs_an_embedding():
    with pytest.raises(ConfigError, match="nn.Embedding"):
        apply_regularizers(classifier("lstm"), {"variational_dropout": {"embedding": 0.1}})
    apply_regularizers(classifier("lstm"), {"awd": {}})  # awd: only where present


# ----------------------------------------------------------------------------- zoneout
def _plain_loop(cell, x, z_h, z_c):
    """Reference: the expectation formula written out, h_t = z h_{t-1} + (1 − z) ĥ_t (same for c)."""
    state = cell.init_state(x.shape[1], x.device, x.dtype)
    zs = (z_h, z_c)
    for t in range(x.shape[0]):
        _, new = cell(x[t], state)
        state = tuple(zs[i] * s + (1 - zs[i]) * n for i, (s, n) in enumerate(zip(state, new)))
    return state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zoneout_eval_equals_expectation(cell):
    torch.manual_seed(2)
    m = classifier(cell, hidden=8)
    apply_regularizers(m, {"zoneout": {"z_h": 0.3, "z_c": 0.6}})
    m.eval()
    x = torch.randn(4, 7, 5)
    layer = m.rnn.layers[0]
    _, state = layer(x.transpose(0, 1))
    ref = _plain_loop(layer.cell, x.transpose(0, 1), 0.3, 0.6)
    assert len(state) == layer.cell.num_states
    for a, b in zip(state, ref):
        torch.testing.assert_close(a, b)


def _zoneout_trace(cell, z_h, z_c, locked, B=64, H=32, T=6, seed=3):
    """Per step: which units kept their previous value (observed from the hook's in/out)."""
    torch.manual_seed(seed)
    m = classifier(cell, hidden=H)
    apply_regularizers(m, {"zoneout": {"z_h": z_h, "z_c": z_c, "locked": locked}})
    layer = m.rnn.layers[0]
    hook = layer.state_hooks[0]
    kept = []

    def spy(prev, new, lyr):
        out = hook(prev, new, lyr)
        for o, p, n in zip(out, prev, new):
            assert torch.all((o == p) | (o == n))  # each unit is either kept or updated
        kept.append(tuple((o == p) & (p != n) for o, p, n in zip(out, prev, new)))
        return out

    layer.state_hooks[0] = spy
    x = torch.randn(B, T, 5)
    m(x)
    return kept


@pytest.mark.parametrize("cell,zs", [("lstm", (0.2, 0.6)), ("gru", (0.3,))])
def test_zoneout_keep_rates(cell, zs):
    kept = _zoneout_trace(cell, zs[0], 0.6, locked=False)
    assert all(len(k) == len(zs) for k in kept)  # single-state cells: z_h only
    for i, z in enumerate(zs):
        k = torch.stack([s[i] for s in kept[1:]]).float()  # step 0: prev = 0 may equal new
        assert abs(k.mean().item() - z) < five_sigma(z, k.numel())
    masks = [s[0] for s in kept[1:]]
    assert not all(torch.equal(masks[0], mk) for mk in masks)  # per-step masks (paper)


def test_zoneout_locked_mask_is_the_same_across_time():
    kept = _zoneout_trace("lstm", 0.3, 0.5, locked=True)
    for i in (0, 1):
        masks = [s[i] for s in kept[1:]]
        assert all(torch.equal(masks[0], mk) for mk in masks)
    again = _zoneout_trace("lstm", 0.3, 0.5, locked=True, seed=4)
    assert not torch.equal(again[1][0], kept[1][0])


def test_zoneout_refuses_cells_with_more_than_two_states():
    class Three(Cell):
        num_states = 3

        def project_input(self, x):
            return x

        def step(self, xp, state):
            return state[0], state

    from rnnbench.cells import RecurrentLayer

    model = torch.nn.Sequential(RecurrentLayer(Three(2, 2)))
    with pytest.raises(ConfigError) as e:
        apply_regularizers(model, {"zoneout": {}})
    assert "\n" not in str(e.value) and "zoneout" in str(e.value)
