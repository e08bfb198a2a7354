"""Composition (Hydra list group), application to every cell, and one-line errors."""
from __future__ import annotations

import functools

import pytest
import torch
from omegaconf import OmegaConf

from rnnbench.cells.base import Cell, RecurrentLayer
from rnnbench.errors import ConfigError
from rnnbench.regularizers import apply_regularizers

from regutil import CELLS, REGULARIZERS, classifier, compose_cfg, lm

#: (regularizer, cell) pairs of the base cells that must be refused; all other base pairs apply
REFUSED = {("qat", "gru")}
BASE_CELLS = {"lstm", "gru", "rnn"}


def test_all_regularizers_have_configs():
    assert set(REGULARIZERS) >= {"weight_norm", "weight_drop", "variational_dropout", "zoneout", "awd", "qat"}


def test_list_composes_name_to_options():
    cfg = compose_cfg(["regularizer=[weight_norm,zoneout]", "regularizer.zoneout.z_h=0.1"])
    reg = OmegaConf.to_container(cfg.regularizer)
    assert list(reg) == ["weight_norm", "zoneout"]
    assert reg["zoneout"]["z_h"] == 0.1 and reg["zoneout"]["_target_"].endswith("Zoneout")
    assert list(compose_cfg(["regularizer=awd"]).regularizer) == ["awd"]
    assert list(compose_cfg([]).regularizer) == []


def test_sweep_syntax_gives_one_list_per_job():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_overrides(["regularizer=[weight_norm],[weight_drop,zoneout]"])[0]
    jobs = list(o.sweep_string_iterator())
    assert jobs == ["[weight_norm]", "[weight_drop,zoneout]"]
    assert list(compose_cfg([f"regularizer={jobs[1]}"]).regularizer) == ["weight_drop", "zoneout"]


def test_schema_rejects_unknown_keys_and_bad_types():
    with pytest.raises(Exception, match="z_hh"):
        compose_cfg(["regularizer=[zoneout]", "regularizer.zoneout.z_hh=0.1"])
    with pytest.raises(Exception):
        compose_cfg(["regularizer=[zoneout]", "regularizer.zoneout.z_h=abc"])


def test_unknown_name_and_option_fail_with_one_line():
    for cfg in ({"dropconnect": {}}, {"zoneout": {"z_hh": 0.1}}, {"weight_drop": {"p": 1.5}}):
        with pytest.raises(ConfigError) as e:
            apply_regularizers(classifier("lstm"), cfg)
        assert "\n" not in str(e.value)


def test_regularizer_needing_recurrent_matrices_fails_clearly():
    class NoMatrices(Cell):
        def __init__(self, i, h):
            super().__init__(i, h)
            self.kernel = torch.nn.Parameter(torch.zeros(h, h))

        def project_input(self, x):
            return x

        def step(self, xp, state):
            h = torch.tanh(xp + state[0] @ self.kernel)
            return h, (h,)

    model = torch.nn.Sequential(RecurrentLayer(NoMatrices(2, 2)))
    for name in ("weight_drop", "weight_norm"):
        with pytest.raises(ConfigError) as e:
            apply_regularizers(model, {name: {}})
        msg = str(e.value)
        assert "\n" not in msg and name in msg and "nomatrices" in msg


@functools.lru_cache(maxsize=None)
def _cfg_options(reg_name: str) -> dict:
    return OmegaConf.to_container(compose_cfg([f"regularizer=[{reg_name}]"]).regularizer)


@pytest.mark.parametrize("reg", REGULARIZERS)
@pytest.mark.parametrize("cell", CELLS)
def test_every_regularizer_trains_every_cell(reg, cell):
    """A few optimizer steps (classifier, 2 layers): finite loss, parameters move, after_step,
    eval and a state_dict round trip into a freshly regularized twin — or one clear line."""
    torch.manual_seed(0)
    opts = _cfg_options(reg)
    model = classifier(cell, hidden=8, layers=2)
    try:
        regs = apply_regularizers(model, opts)
    except ConfigError as e:
        assert "\n" not in str(e) and reg in str(e)
        if cell in BASE_CELLS:
            assert (reg, cell) in REFUSED, f"{reg} should apply to {cell}: {e}"
        return
    assert (reg, cell) not in REFUSED
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(8, 7, 5), torch.randint(0, 3, (8,))
    for step in range(3):
        for m in model.modules():
            if hasattr(m, "set_training_progress"):
                m.set_training_progress(step, 3)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for r in regs:
            r.after_step(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    out = model(x)
    twin = classifier(cell, hidden=8, layers=2)
    apply_regularizers(twin, opts)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    torch.testing.assert_close(twin(x), out)


@pytest.mark.parametrize("reg", ["awd", "variational_dropout", "weight_drop", "zoneout", "weight_norm"])
def test_language_model_trains(reg):
    torch.manual_seed(1)
    model = lm("lstm", vocab=11)
    regs = apply_regularizers(model, _cfg_options(reg))
    opt = torch.optim.SGD(model.parameters(), 0.5)
    ids = torch.randint(0, 11, (4, 9))
    for _ in range(3):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), ids[:, 1:].reshape(-1))
        opt.zero_grad(), loss.backward(), opt.step()
        for r in regs:
            r.after_step(model)
    assert torch.isfinite(loss)


def test_weight_norm_and_weight_drop_compose_in_any_listing_order():
    torch.manual_seed(2)
    model = classifier("lstm", hidden=8)
    regs = apply_regularizers(model, {"weight_drop": {"p": 0.3}, "weight_norm": {}})
    assert [r.name for r in regs] == ["weight_norm", "weight_drop"]
    c = model.rnn.cells()[0]
    assert len(c.parametrizations["weight_hh"]) == 2
    model(torch.rand(2, 7, 5)).sum().backward()
    assert c.parametrizations["weight_hh"].original0.grad is not None
