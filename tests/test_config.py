"""Every config in every group composes and instantiates (compose API); schemas reject typos."""
from __future__ import annotations

import re

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


# ----------------------------------------------------------------------------- allowed values
def _schema_closure() -> list[type]:
    """Every schema: the top level, every group option (config.SCHEMAS), and every schema those
    reach through a typed field or a RANGES entry (train, schedule, lr_scale, clip, experiment)."""
    import dataclasses
    import typing

    from rnnbench import config as C

    todo = [C.Config, *(s for opts in C.SCHEMAS.values() for s in opts.values())]
    seen: list[type] = []
    while todo:
        s = todo.pop(0)
        if s in seen:
            continue
        seen.append(s)
        hints = typing.get_type_hints(s)
        for f in dataclasses.fields(s):
            stack = [hints[f.name], C.range_of(s, f.name)]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and dataclasses.is_dataclass(t):
                    todo.append(t)
                stack.extend(typing.get_args(t))
    return seen


def _numeric_fields() -> list[tuple[type, str, bool]]:
    """``(schema, field, integer)`` of every int / float / tuple-of-floats field, each reported
    once: by the first schema in _schema_closure that has it (a parent's field by its first
    concrete option, so each is tried on a config that composes)."""
    import dataclasses
    import typing

    out, done = [], set()
    for s in _schema_closure():
        hints = typing.get_type_hints(s)
        for f in dataclasses.fields(s):
            t = hints[f.name]
            args = [a for a in typing.get_args(t) if a is not type(None)]
            base = args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t
            if base in (int, float, tuple) and f.name not in {n for c, n in done if issubclass(s, c)}:
                owner = next(c for c in reversed(s.__mro__) if dataclasses.is_dataclass(c)
                             and f.name in {g.name for g in dataclasses.fields(c)})
                done.add((owner, f.name))
                out.append((s, f.name, base is int))
    return out


def _selection(schema: type) -> tuple[list[str], str]:
    """Overrides that compose ``schema`` into the config, and the key prefix of its fields."""
    from rnnbench import config as C

    fixed = {C.Config: ([], ""), C.TrainConf: ([], "train."), C.ScheduleConf: ([], "optimizer.schedule."),
             C.LrScaleConf: ([], "optimizer.lr_scale."),
             C.ClipConf: (["optimizer.clip={kind: global, max_norm: 1.0}"], "optimizer.clip."),
             C.ClaimConf: (["experiment=wn_mnist"], "experiment.claim."),
             C.FigureConf: (["experiment=wn_mnist"], "experiment.claim.figures[0].")}
    if schema in fixed:
        return fixed[schema]
    for group, opts in C.SCHEMAS.items():
        for name, s in opts.items():
            if s is schema:
                option = next(p.stem for p in sorted((CONF / group).glob("*.yaml"))
                              if re.search(rf"- _schema_{name}(@_here_)?\n", p.read_text()))
                if group == "regularizer":
                    return [f"regularizer=[{option}]"], f"regularizer.{option}."
                return [f"{group}={option}"], f"{group}."
    raise AssertionError(f"no way to compose {schema.__name__}: add it to _selection")


def _bad_value(rule, integer: bool) -> str:
    """A value just outside ``rule`` (below its lower end, else above its upper one, else inf)."""
    if rule.lo is not None:
        v = rule.lo if rule.lo_open else rule.lo - (1 if integer else 0.5)
    elif rule.hi is not None:
        v = rule.hi if rule.hi_open else rule.hi + 1
    else:
        return "inf"
    return str(int(v)) if integer else str(float(v))


NUMERIC = _numeric_fields()


def test_every_numeric_field_declares_its_range():
    """A new int/float field without a RANGES entry fails here; so does an entry for no field."""
    import dataclasses

    from rnnbench.config import RANGES, Range, range_of

    missing = [f"{s.__name__}.{n}" for s, n, _ in NUMERIC if not isinstance(range_of(s, n), Range)]
    assert not missing, f"add these to config.RANGES: {missing}"
    stray = [f"{s.__name__}.{n}" for s, entries in RANGES.items() for n in entries
             if n not in {f.name for f in dataclasses.fields(s)}]
    assert not stray, stray
    assert len(NUMERIC) > 60  # the walk found the schemas


@pytest.mark.parametrize("schema,name,integer", NUMERIC, ids=[f"{s.__name__}.{n}" for s, n, _ in NUMERIC])
def test_out_of_range_value_is_a_one_line_error(schema, name, integer, capsys, tmp_path):
    """``rnnbench train <key>=<value outside its range>``: exit 2 before any run starts, one line
    naming the key, the value and what is allowed, no traceback."""
    from rnnbench import cli
    from rnnbench.config import range_of

    from testutil import SMOKE

    select, prefix = _selection(schema)
    rule = range_of(schema, name)
    bad = _bad_value(rule, integer)
    if name == "betas":
        bad = f"[{bad},0.999]"
    key = prefix + name
    override = f"{key}={bad}"
    if schema.__name__ == "FigureConf":  # an override cannot reach into a list: replace the list
        override = f"experiment.claim.figures=[{{{name}: {bad}, source: x}}]"
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *SMOKE, *select, override, f"hydra.run.dir={tmp_path / 'run'}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {key}=") and (": must be" in line or ": each must be" in line), line
    assert rule.describe(integer) in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [["model.dropout=1.0"], ["cell=vclstm", "cell.eps=0.5"], ["optimizer.lr=nan"],
                                       ["optimizer.betas=[0.9,1.0]"], ["optimizer.schedule.gamma=1.0"],
                                       ["dataset=mnist_row", "dataset.n_valid=60000"],
                                       ["regularizer=[awd]", "regularizer.awd.wdrop=1"], ["cell=vcgru", "cell.lam=inf"],
                                       ["optimizer.clip={max_norm: -1}"]], ids=lambda o: o[-1])
def test_upper_ends_and_non_finite_values_are_rejected(overrides):
    from rnnbench.config import check_ranges
    from rnnbench.errors import ConfigError

    key = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError, match="^" + re.escape(key) + r"(\.max_norm)?="):
        check_ranges(compose(overrides))


def _every_shipped_config() -> list[list[str]]:
    groups = [f"{g}={o}" for g in ("dataset", "model", "cell", "optimizer") for o in options(g)]
    groups += [f"regularizer=[{o}]" for o in options("regularizer")]
    scales = [None, *options("scale")]
    exps = [[f"experiment={e}"] + ([f"scale={s}"] if s else []) for e in options("experiment") for s in scales]
    return [[g] for g in groups] + [[f"scale={s}"] for s in options("scale")] + exps


@pytest.mark.parametrize("overrides", _every_shipped_config(), ids=lambda o: " ".join(o))
def test_every_shipped_config_is_within_range(overrides):
    """Every conf/ option and every experiment at scale smoke/cpu/paper passes check_ranges."""
    from rnnbench.config import check_ranges

    check_ranges(compose(overrides))
    check_ranges(compose(overrides, tuned=True))


@pytest.mark.parametrize("overrides,expect", [
    (["dataset.max_value=1"], "dataset.max_value=1 gives 4 distinct operand pairs"),
    (["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"], "optimizer=sgd: Nesterov momentum"),
    (["cell=vclstm", "cell.lam_schedule=bogus"], "cell: lam_schedule must be constant, linear or exp"),
    (["cell=delta_rnn", "cell.outer_activation=x"], "cell: outer_activation must be one of"),
], ids=lambda v: v[-1] if isinstance(v, list) else "")
def test_settings_checked_when_built_are_config_errors(overrides, expect, tmp_path):
    """What a range cannot say (a combination, a word) is refused where it is used, as a
    ConfigError (one line from the CLI), never an internal error."""
    from testutil import SMOKE, run_in_process

    from rnnbench.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expect)):
        run_in_process(SMOKE + overrides, tmp_path)
