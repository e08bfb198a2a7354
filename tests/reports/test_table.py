"""``rnnbench table`` on a synthetic sweep with known metrics: grouping, mean ± std, baseline, Δ,
reference figures, failed/diverged runs kept, and the four output files."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnnbench.reports.table import main as table_main, make_table

# (variant overrides, cell, regularizer list, per-seed (valid acc, test acc) or a status)
BASE = {"valid": [0.90, 0.92, 0.95], "test": [0.89, 0.93, 0.94]}
WN = {"valid": [0.97, 0.96], "test": [0.965, 0.955]}  # seed 2 diverged
EXPERIMENT = {"name": "toy", "baseline": {"regularizer": []},
              "reference": [{"match": {"regularizer": ["weight_norm"]}, "value": 0.989, "note": "paper X"}]}


def _job(root: Path, num: int, overrides: list[str], regs: list[str], seed: int, results: dict | None,
         curve: list[tuple[float, float]]) -> None:
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    cfg = {"seed": seed, "cell": {"name": "lstm"}, "dataset": {"name": "mnist_row"},
           "regularizer": {r: {"_target_": "x"} for r in regs}, "optimizer": {"name": "adam", "clip": None},
           "experiment": EXPERIMENT}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
    rows = []
    for ep, (tl, va) in enumerate(curve, 1):
        rows.append({"epoch": ep, "step": 10 * ep, "split": "train", "loss": tl})
        rows.append({"epoch": ep, "step": 10 * ep, "split": "valid", "loss": tl + 0.1, "acc": va})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ok(valid: float, test: float, seed: int, regs: list[str], params: int, spe: float, eps: float) -> dict:
    return {"status": "ok", "valid": {"acc": valid, "loss": 0.3}, "test": {"acc": test, "loss": 0.3},
            "params": params, "s_per_epoch": spe, "examples_per_s": eps, "seed": seed, "cell": "lstm",
            "dataset": "mnist_row", "regularizer": regs, "metric": "acc", "metric_mode": "max"}


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    num = 0
    # job order as Hydra's basic sweeper: the variant varies slowest, then the seed
    for seed in range(3):
        _job(root, num, ["regularizer=[]", f"seed={seed}", "experiment=toy"], [], seed,
             _ok(BASE["valid"][seed], BASE["test"][seed], seed, [], 1000, 10.0 + seed, 500.0 + 10 * seed),
             [(1.0 + seed / 10, 0.5), (0.5, BASE["valid"][seed])])
        num += 1
    for seed in range(3):
        if seed < 2:
            res = _ok(WN["valid"][seed], WN["test"][seed], seed, ["weight_norm"], 1100, 20.0, 400.0)
        else:
            res = {"status": "diverged", "error": "loss is NaN at step 7", "seed": seed, "cell": "lstm",
                   "regularizer": ["weight_norm"], "valid": {}, "test": {}, "metric": "acc", "metric_mode": "max"}
        _job(root, num, ["regularizer=[weight_norm]", f"seed={seed}", "experiment=toy"], ["weight_norm"], seed,
             res, [(0.9, 0.6), (0.4, 0.96)])
        num += 1
    # a third variant whose only run never wrote results.json (killed)
    _job(root, num, ["regularizer=[zoneout]", "seed=0", "experiment=toy"], ["zoneout"], 0, None, [(1.1, 0.4)])
    return root


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_means_stds_baseline_delta(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = make_table([str(sweep)], out)
    rows = {r["variant"]: r for r in _csv(out / "table.csv")}
    assert list(rows) == ["lstm", "lstm + weight_norm", "lstm + zoneout"]
    base, wn, zo = rows["lstm"], rows["lstm + weight_norm"], rows["lstm + zoneout"]
    assert base["baseline"] == "True" and wn["baseline"] == "False"
    # math, by hand / statistics
    assert float(base["valid_mean"]) == pytest.approx((0.90 + 0.92 + 0.95) / 3)
    assert float(base["valid_std"]) == pytest.approx(statistics.stdev([0.90, 0.92, 0.95]))
    assert float(base["test_mean"]) == pytest.approx((0.89 + 0.93 + 0.94) / 3)
    assert float(base["test_std"]) == pytest.approx(statistics.stdev([0.89, 0.93, 0.94]))
    assert float(base["s_per_epoch_mean"]) == pytest.approx(11.0)
    assert float(base["examples_per_s_std"]) == pytest.approx(10.0)
    assert float(wn["test_mean"]) == pytest.approx(0.96)
    assert float(wn["test_std"]) == pytest.approx(statistics.stdev([0.965, 0.955]))
    assert int(wn["test_n"]) == 2 and int(wn["n_runs"]) == 3 and wn["statuses"] == "diverged=1;ok=2"
    assert float(wn["delta_test"]) == pytest.approx(0.96 - (0.89 + 0.93 + 0.94) / 3)
    assert float(wn["paper"]) == pytest.approx(0.989) and wn["paper_note"] == "paper X"
    # the variant with no finished run keeps its row
    assert zo["n_ok"] == "0" and zo["statuses"] == "unfinished=1" and zo["test_mean"] == ""
    md = summary["markdown"]
    assert "lstm **(baseline)**" in md
    assert "| lstm + weight_norm | 2/3 ok (1 diverged) |" in md
    assert "0/1 ok (1 unfinished)" in md
    assert "loss is NaN at step 7" in md  # the failure is listed, not dropped
    assert "98.9 (paper X)" in md
    mean_pct = 100 * statistics.fmean([0.89, 0.93, 0.94])
    assert f"{mean_pct:.2f} ± {100 * statistics.stdev([0.89, 0.93, 0.94]):.2f}" in md
    tex = (out / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and r"\textbf{lstm (baseline)}" in tex
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_baseline_from_the_command_line(sweep: Path, tmp_path: Path, capsys):
    assert table_main([str(sweep), "--out", str(tmp_path / "o"), "--baseline", "regularizer=[weight_norm]",
                       "--no-figure"]) == 0
    out = capsys.readouterr().out
    assert "lstm + weight_norm **(baseline)**" in out
    assert not (tmp_path / "o" / "curves.png").exists()
    rows = {r["variant"]: r for r in _csv(tmp_path / "o" / "table.csv")}
    assert float(rows["lstm"]["delta_test"]) == pytest.approx((0.89 + 0.93 + 0.94) / 3 - 0.96)


def test_first_variant_is_the_default_baseline(sweep: Path, tmp_path: Path):
    for cfg in sweep.glob("*/.hydra/config.yaml"):  # no experiment-declared baseline
        c = yaml.safe_load(cfg.read_text())
        c["experiment"] = None
        cfg.write_text(yaml.safe_dump(c))
    summary = make_table([str(sweep)], tmp_path / "o", figure=False)
    assert summary["baseline"] == 0 and summary["variants"][0] == "lstm"


def test_cli_errors_are_one_line(tmp_path: Path):
    for args in (["table", str(tmp_path / "nope")], ["table", str(tmp_path)], ["table"], ["table", "--bogus", "x"]):
        p = subprocess.run([sys.executable, "-m", "rnnbench", *args], capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.startswith("error: table:") and p.stderr.count("\n") == 1, p.stderr
