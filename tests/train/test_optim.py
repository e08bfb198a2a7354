"""``optimizer.lr_scale``: per-role learning rates (parameter groups), checked by hand on one SGD
step, through a schedule, with parametrized weights, and through a run and its resume."""
from __future__ import annotations

import json

import pytest
import torch

from testutil import SMOKE, compose, run_in_process

from rnnbench.errors import ConfigError
from rnnbench.models import build_model
from rnnbench.regularizers import apply_regularizers
from rnnbench.tasks import build_task
from rnnbench.train.optim import build_optimizer, build_scheduler, param_groups

# the recurrent matrices of each cell, written out here (not read from Cell.matrix_names)
RECURRENT = {"mrnn": {"weight_mh", "weight_hm"}, "lstm": {"weight_hh"}, "mlstm": {"weight_mh", "weight_m"},
             "delta_rnn": {"weight_hh"}}


def _model(overrides):
    cfg = compose(overrides + ["dataset.n_train=64", "dataset.n_valid=8", "dataset.n_test=8", "model.hidden_size=6"])
    model = build_model(cfg.model, cfg.cell, build_task(cfg).spec)
    if cfg.regularizer:
        apply_regularizers(model, cfg.regularizer)
    return cfg, model


def _names(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


@pytest.mark.parametrize("cell", sorted(RECURRENT))
def test_recurrent_group_holds_exactly_the_recurrent_matrices(cell):
    cfg, model = _model([f"cell={cell}", "optimizer.lr_scale.recurrent=0.25"])
    groups = param_groups(model, cfg.optimizer.lr_scale)
    assert [g["role"] for g in groups] == ["rest", "recurrent"]
    want = {f"{side}.layers.0.cell.{w}" for side in ("encoder", "decoder") for w in RECURRENT[cell]}
    assert _names(model, groups[1]["params"]) == want
    everything = {n for n, p in model.named_parameters()}
    assert _names(model, groups[0]["params"]) == everything - want  # each parameter in one group
    opt = build_optimizer(groups, cfg.optimizer)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([cfg.optimizer.lr, 0.25 * cfg.optimizer.lr])


def test_default_scales_make_one_group_as_before():
    cfg, model = _model(["cell=mrnn"])
    opt = build_optimizer(param_groups(model, cfg.optimizer.lr_scale), cfg.optimizer)
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_one_sgd_step_moves_each_group_by_its_own_lr():
    cfg, model = _model(["cell=lstm", "optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=0.1",
                         "optimizer.lr_scale.recurrent=0.5", "optimizer.lr_scale.input=2"])
    opt = build_optimizer(param_groups(model, cfg.optimizer.lr_scale), cfg.optimizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        lr = 0.05 if n.endswith("weight_hh") else 0.2 if n.endswith("weight_ih") else 0.1
        torch.testing.assert_close(p.detach(), before[n] - lr * grads[n], rtol=0, atol=1e-7, msg=n)


def test_schedule_keeps_the_ratio():
    cfg, model = _model(["cell=mrnn", "optimizer.lr_scale.recurrent=0.3"])
    opt = build_optimizer(param_groups(model, cfg.optimizer.lr_scale), cfg.optimizer)
    sched = build_scheduler(opt, cfg.optimizer.schedule, 10)  # addition: cosine
    for _ in range(4):
        opt.step()
        sched.step()
    base, rec = (g["lr"] for g in opt.param_groups)
    assert 0 < base < cfg.optimizer.lr and rec == pytest.approx(0.3 * base)


def test_parametrized_matrices_scale_their_parameters():
    cfg, model = _model(["cell=lstm", "regularizer=[weight_norm]", "optimizer.lr_scale.recurrent=0.5"])
    names = _names(model, param_groups(model, cfg.optimizer.lr_scale)[1]["params"])
    assert names == {f"{s}.layers.0.cell.parametrizations.weight_hh.original{i}"
                     for s in ("encoder", "decoder") for i in (0, 1)}  # weight norm's g and v


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_bad_scales_are_config_errors(value):
    cfg, model = _model(["cell=lstm", f"optimizer.lr_scale.recurrent={value}"])
    with pytest.raises(ConfigError, match="optimizer.lr_scale.recurrent must be a positive number"):
        param_groups(model, cfg.optimizer.lr_scale)


def test_run_with_lr_scale_resumes_with_its_groups(tmp_path):
    ov = SMOKE + ["cell=mrnn", "optimizer.lr_scale.recurrent=0.5", "train.max_steps=4", "train.num_threads=1"]
    res = run_in_process(ov, tmp_path / "a")
    assert res["status"] == "ok"
    ck = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    lrs = [g["lr"] for g in ck["optimizer"]["param_groups"]]
    assert len(lrs) == 2 and lrs[1] == pytest.approx(0.5 * lrs[0])
    hp = json.loads((tmp_path / "a" / "results.json").read_text())["hparams"]
    assert any("lr_scale" in k and "recurrent" in k for k in hp), hp  # the setting is in the record
