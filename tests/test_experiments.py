"""The articles' comparisons (conf/experiment/*): every experiment composes at every scale, smoke
shrinks it to seconds, and each runs end to end at scale=smoke (one seed): sweep -> sweep.json ->
``rnnbench table`` -> table.md/.csv/.tex + curves.png; the HParams of a sweep tell its runs apart."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testutil import CONF, compose

from rnnbench.reports.claims import VERDICTS

COMPARISONS = ["wn_mnist", "seq2seq_addition", "bidir_mnist", "attention_addition", "vc_ptb", "mlstm_ptb",
               "delta_ptb", "zoneout_ptb", "awd_ptb", "vc_mnist", "zoneout_pmnist", "qat_mnist"]
# one fast representative per dataset kind and per table extra; the others are @slow
FAST = {"wn_mnist", "seq2seq_addition", "awd_ptb", "zoneout_pmnist", "qat_mnist", "vc_mnist"}
TWO_SEEDS = "awd_ptb"
SCALED_KEYS = ("model.hidden_size", "train.epochs", "dataset.limit", "model.num_layers")


def test_every_experiment_is_listed():
    on_disk = {p.stem for p in (CONF / "experiment").glob("*.yaml")} - {"optuna_lstm_addition"}
    assert on_disk == set(COMPARISONS)


KINDS = {"regularizer", "cell", "model", "method"}
METRICS = {"mnist_row": {"acc", "loss"}, "pmnist": {"acc", "loss"}, "addition": {"acc", "seq_acc", "loss"},
           "ptb_char": {"bpc", "acc", "loss"}}


def _sweep_variants(exp: str) -> list[list[str]]:
    """The override lists of the experiment's sweep variants (seed left out), as Hydra expands them."""
    import itertools

    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = yaml.safe_load((CONF / "experiment" / f"{exp}.yaml").read_text())["hydra"]["sweeper"]["params"]
    parser = OverridesParser.create()
    axes = []
    for key, val in params.items():
        if key == "seed":
            continue
        ov = parser.parse_override(f"{key}={val}")
        vals = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [str(val)]
        axes.append([f"{key}={v}" for v in vals])
    return [list(c) for c in itertools.product(*axes)]


@pytest.mark.parametrize("exp", COMPARISONS)
def test_every_comparison_states_a_testable_claim(exp):
    """The claim's fields are complete, its metric is one the task reports, and every pair's variant
    and baseline each pick exactly one of the sweep's variants."""
    from omegaconf import OmegaConf

    from rnnbench.reports.table import matches

    cfg = compose([f"experiment={exp}"])
    claim = cfg.experiment.claim
    assert claim.kind in KINDS and claim.direction in ("lower", "higher") and claim.split in ("test", "valid")
    assert claim.metric in METRICS[cfg.dataset.name] and claim.margin >= 0
    assert len(claim.statement) > 40 and claim.source and claim.compare
    for fig in claim.figures:
        assert fig.source and fig.value > 0 and (fig.value <= 1 or claim.metric != "acc")
    composed = [{"cfg": OmegaConf.to_container(compose([f"experiment={exp}", *v]), resolve=True)}
                for v in _sweep_variants(exp)]
    for pair in claim.compare:
        base = OmegaConf.to_container(pair.baseline) if pair.baseline is not None else \
            OmegaConf.to_container(cfg.experiment.baseline)
        for spec in (OmegaConf.to_container(pair.variant), base):
            assert sum(matches(run, spec) for run in composed) == 1, (exp, spec)


def test_only_the_search_has_no_claim():
    # optuna_lstm_addition is a hyperparameter search with no base and variant to compare
    assert compose(["experiment=optuna_lstm_addition"]).experiment is None


def _variants(exp: str) -> int:
    """Number of variants of the experiment's sweep (all params but seed), parsed as Hydra does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import yaml

    params = yaml.safe_load((CONF / "experiment" / f"{exp}.yaml").read_text())["hydra"]["sweeper"]["params"]
    n = 1
    parser = OverridesParser.create()
    for key, val in params.items():
        if key == "seed":
            continue
        ov = parser.parse_override(f"{key}={val}")
        n *= len(list(ov.sweep_string_iterator())) if ov.is_sweep_override() else 1
    return n


@pytest.mark.parametrize("exp", COMPARISONS)
def test_scales_compose(exp):
    smoke = compose([f"experiment={exp}", "scale=smoke"])
    assert smoke.model.hidden_size == 16 and smoke.train.max_steps == 5 and smoke.train.epochs == 1
    assert smoke.dataset.limit == 256 and smoke.train.max_eval_batches == 2
    for scale in ("cpu", "paper"):
        assert (CONF / "experiment_scale" / exp / f"{scale}.yaml").is_file(), f"{exp} has no {scale} sizes"
        cfg = compose([f"experiment={exp}", f"scale={scale}"])
        assert cfg.train.max_steps is None and cfg.model.hidden_size >= 64
    # the paper scale trains on at least as many examples as the cpu one (a cpu regime may take a
    # small prefix for more epochs, or a wider model than the paper's, to reach its claim's regime)
    cpu, paper = compose([f"experiment={exp}", "scale=cpu"]), compose([f"experiment={exp}", "scale=paper"])

    def examples(cfg) -> float:
        limit = cfg.dataset.get("limit")
        return math.inf if limit is None else cfg.train.epochs * limit

    assert examples(paper) >= examples(cpu)
    assert paper.dataset.get("limit") is None or cpu.dataset.get("limit") is not None


def test_scale_without_experiment_still_composes():
    assert compose(["scale=cpu"]).model.hidden_size == 128
    assert compose(["scale=smoke"]).model.hidden_size == 16


def test_wn_mnist_is_the_article():
    cfg = compose(["experiment=wn_mnist", "scale=cpu"])
    assert (cfg.model.hidden_size, cfg.optimizer.name, cfg.optimizer.lr, cfg.train.batch_size) == (100, "adam", 0.1, 64)
    assert cfg.optimizer.clip is None and cfg.dataset.name == "mnist_row" and cfg.cell.name == "lstm"
    assert _variants("wn_mnist") == 4  # {none, weight_norm} x {no clip, per-tensor clip 0.5}


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "rnnbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _table_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("exp", [pytest.param(e, marks=() if e in FAST else pytest.mark.slow) for e in COMPARISONS])
def test_experiment_smoke_end_to_end(exp, tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    seeds = "0,1" if exp == TWO_SEEDS else "0"  # two seeds: the claim gets a real interval
    p = _run(["train", "-m", f"experiment={exp}", "scale=smoke", f"data.root={data_dir}", "train.num_threads=1",
              f"hydra.sweeper.params.seed='{seeds}'", f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    index = json.loads((sweep_dir / "sweep.json").read_text())
    n = _variants(exp)
    n_seeds = len(seeds.split(","))
    assert index["counts"] == {"ok": n * n_seeds}, index["jobs"]
    out = tmp_path / "report"
    t = _run(["table", str(sweep_dir), "--out", str(out)], tmp_path, timeout=300)
    assert t.returncode == 0, t.stderr[-3000:]
    for f in ("table.md", "table.csv", "table.tex", "curves.png"):
        assert (out / f).stat().st_size > 0, f
    all_rows = _table_rows(out / "table.csv")
    claim = compose([f"experiment={exp}"]).experiment.claim
    comparisons = [r for r in all_rows if r["row"] == "comparison"]
    assert all_rows[:len(comparisons)] == comparisons and len(comparisons) == len(claim.compare)  # the claim leads
    for c in comparisons:
        assert c["metric"] == claim.metric and c["n_variant"] == c["n_baseline"] == str(n_seeds)
        if n_seeds == 1:
            assert (c["verdict"], c["ci_low"]) == ("inconclusive", "") and "fewer than 2" in c["why"]
        else:
            assert c["verdict"] in VERDICTS and float(c["ci_low"]) <= float(c["delta"]) <= float(c["ci_high"])
    assert t.stdout.startswith("**Claim**") and "95 % CI" in t.stdout
    rows = [r for r in all_rows if r["row"] == "variant"]
    assert len(rows) == n and len({r["variant"] for r in rows}) == n  # readable, distinct labels
    assert sum(r["baseline"] == "True" for r in rows) == 1
    assert all(r["n_ok"] == str(n_seeds) and r["test_mean"] for r in rows)
    assert "**(baseline)**" in t.stdout
    if exp.startswith("vc_"):
        assert "compute fraction" in t.stdout
        assert any(r["compute_fraction_mean"] for r in rows)
    if exp == "qat_mnist":
        assert "int-only agreement" in t.stdout
    if exp == "wn_mnist":
        _check_hparams(sweep_dir, n)


def _check_hparams(sweep_dir: Path, n: int) -> None:
    """Each run's event file holds its hparams (a session, no experiment description of its own:
    TensorBoard infers one from every run) and its final metrics (HParams dashboard)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    seen = set()
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        ea = EventAccumulator(str(job))
        ea.Reload()
        hp, has_experiment = None, False
        for raw in ea.PluginTagToContent("hparams").values():
            pd = plugin_data_pb2.HParamsPluginData.FromString(raw)
            if pd.HasField("session_start_info"):
                hp = {k: v.string_value or v.number_value for k, v in pd.session_start_info.hparams.items()}
            has_experiment |= pd.HasField("experiment")
        assert hp is not None and not has_experiment
        assert {"valid_best/acc", "test/acc"} <= set(ea.Tags()["scalars"])
        seen.add((hp["regularizer"], hp["clip"]))
    assert len(seen) == n  # the dashboard tells the variants apart


@pytest.mark.parametrize("exp", ["delta_ptb", "mlstm_ptb", "seq2seq_addition", "bidir_mnist"])
def test_cells_are_matched_in_parameters(exp, data_dir):
    """A cell claim's cells, sized by experiment.hidden_sizes, hold within 2 % of the baseline's
    parameter count (the model's embedding and softmax included)."""
    from rnnbench.models import build_model
    from rnnbench.tasks import build_task
    from rnnbench.train.run import count_params

    spec, counts = None, {}
    cells = {o.split("=", 1)[1] for v in _sweep_variants(exp) for o in v if o.startswith("cell=")}
    exp_cfg = compose([f"experiment={exp}", "scale=cpu"]).experiment
    assert cells <= set(exp_cfg.hidden_sizes)
    for cell in cells:
        cfg = compose([f"experiment={exp}", "scale=cpu", f"cell={cell}"], data=data_dir)
        assert cfg.model.hidden_size == cfg.experiment.hidden_sizes[cell]
        spec = spec or build_task(cfg).spec
        counts[cell] = count_params(build_model(cfg.model, cfg.cell, spec))
    base = counts[exp_cfg.baseline["cell"]]
    assert all(abs(n - base) <= 0.02 * base for n in counts.values()), counts
