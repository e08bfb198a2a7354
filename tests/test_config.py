"""Every config in every group composes and instantiates (compose API); schemas reject typos."""
from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import ValidationError

from testutil import CONF, compose, tuned_pairs

from rnnbench.models import build_model
from rnnbench.tasks.base import TaskSpec
from rnnbench.train.optim import build_optimizer


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


SPEC_OF = {"classification": TaskSpec("classification", 28, 10, 28),
           "seq2seq": TaskSpec("seq2seq", 12, 12, 7, 4),
           "lm": TaskSpec("lm", 50, 50, 20)}
MODEL_KIND = {"classifier": "classification", "bidir_classifier": "classification", "seq2seq": "seq2seq",
              "attention_seq2seq": "seq2seq", "lm": "lm"}


def test_default_config_is_addition_seq2seq_lstm():
    cfg = compose()
    assert (cfg.dataset.name, cfg.model.name, cfg.cell.name) == ("addition", "seq2seq", "lstm")
    assert cfg.regularizer == {} and cfg.device == "auto"
    for key in ("seed", "data.root", "model.hidden_size", "model.num_layers", "optimizer.lr", "optimizer.clip",
                "train.epochs", "train.max_steps", "train.batch_size", "dataset.limit"):
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]


@pytest.mark.parametrize("name", options("dataset"))
def test_dataset_configs_compose_and_pick_a_model(name):
    cfg = compose([f"dataset={name}"])
    assert cfg.dataset.name == name
    want = {"addition": "seq2seq", "ptb_char": "lm", "shakespeare_char": "lm"}.get(name, "classifier")
    assert cfg.model.name == want


@pytest.mark.parametrize("name", options("dataset"))
def test_dataset_configs_instantiate(name, data_dir):
    from rnnbench.tasks import build_task

    cfg = compose([f"dataset={name}", "dataset.limit=100"], data_dir)
    task = build_task(cfg)
    batch = next(iter(task.train_batches(8, 0, 0)))
    assert batch[0].shape[0] == 8
    assert task.spec.kind == MODEL_KIND[cfg.model.name]


@pytest.mark.parametrize("name", options("model"))
@pytest.mark.parametrize("cell", options("cell"))
def test_model_configs_instantiate_with_every_cell(name, cell):
    cfg = compose([f"model={name}", f"cell={cell}", "model.hidden_size=8"])
    model = build_model(cfg.model, cfg.cell, SPEC_OF[MODEL_KIND[name]])
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_configs_instantiate(name):
    cfg = compose([f"optimizer={name}"])
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg.optimizer)
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
    assert type(opt).__name__.lower() == name.replace("adamw", "adamw")


@pytest.mark.parametrize("name", options("cell"))
def test_cell_configs_instantiate(name):
    cfg = compose([f"cell={name}"])
    cell = instantiate(cfg.cell, input_size=3, hidden_size=4)
    h, state = cell(torch.randn(2, 3))
    assert h.shape == (2, 4)


@pytest.mark.parametrize("name", options("scale"))
def test_scale_configs_compose(name):
    assert compose([f"scale={name}"]).dataset.name == "addition"


@pytest.mark.parametrize("bad", ["train.epoch=3", "cell.forgetbias=1", "model.hidden=3"])
def test_misspelled_key_fails_at_composition(bad):
    with pytest.raises(ConfigCompositionException):
        compose([bad])


@pytest.mark.parametrize("bad", ["train.epochs=abc", "model.hidden_size=1.5", "train.verify=maybe"])
def test_wrong_type_fails_at_composition(bad):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose([bad])


def test_unknown_group_option_fails():
    with pytest.raises(Exception, match="cell/nosuchcell"):
        compose(["cell=nosuchcell"])


def test_clip_config():
    cfg = compose(["optimizer.clip={kind: per_tensor, max_norm: 0.5}"])
    assert cfg.optimizer.clip.kind == "per_tensor" and cfg.optimizer.clip.max_norm == 0.5


@pytest.mark.parametrize("name,dataset,cell", tuned_pairs())
def test_tuned_file_applies_to_its_pair_only_and_keeps_the_budget(name, dataset, cell):
    """conf/tuned/<dataset>_<cell>.yaml is picked by that pair, names itself in ``tuned``, and
    changes only the cell's options and the optimizer: never the budget (epochs, batch size,
    steps) nor the model's size, so "within the default budget" stays true."""
    import yaml

    text = yaml.safe_load((CONF / "tuned" / f"{name}.yaml").read_text())
    assert set(text) <= {"tuned", "cell", "optimizer"}, set(text)
    assert text["tuned"] == name
    base = compose([f"dataset={dataset}", f"cell={cell}"])
    tuned = compose([f"dataset={dataset}", f"cell={cell}"], tuned=True)
    assert base.tuned is None and tuned.tuned == name
    assert base.train == tuned.train and base.model == tuned.model and base.dataset == tuned.dataset
    assert base.cell != tuned.cell or base.optimizer != tuned.optimizer
    others = [c for c in options("cell") if c != cell]
    assert compose([f"dataset={dataset}", f"cell={others[0]}"], tuned=True).tuned is None


@pytest.mark.parametrize("exp", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiments_never_pick_up_tuned_settings(exp):
    """An experiment reproduces its article with one setting for all its cells (on its own dataset)."""
    for cell in sorted({c for _, _, c in tuned_pairs()}):
        cfg = compose([f"experiment={exp}", f"cell={cell}"], tuned=True)
        assert cfg.tuned is None, (exp, cell)
