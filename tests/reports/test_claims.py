"""The claim's verdict on a synthetic sweep with known metrics: Welch's interval worked out by hand
(the quantile from scipy's t distribution, nothing else from the code under test), one case of each
verdict, the paper's Δ, and the regime checks (over-fitting, flattened curve)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from rnnbench.reports.claims import regime, regime_verdict, verdict, welch_interval
from rnnbench.reports.table import make_table

BASE = [1.0, 1.2, 1.4]  # mean 1.2, sample variance 0.04
VARIANTS = {"gru": [0.5, 0.6, 0.7], "rnn": [0.7, 0.8, 0.9], "mlstm": [1.7, 1.8, 1.9]}  # variance 0.01 each
CLAIM = {"kind": "cell", "statement": "toy", "source": "nowhere", "metric": "bpc", "split": "test",
         "direction": "lower", "compare": [{"variant": {"cell": c}} for c in VARIANTS],
         "figures": [{"match": {"cell": "lstm"}, "value": 1.5, "source": "paper A"},
                     {"match": {"cell": "gru"}, "value": 1.25, "source": "paper A"},
                     {"match": {"cell": "rnn"}, "value": 1.0, "source": "paper B"}]}


def by_hand(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch: Δ ± t(0.975, ν) · sqrt(s_a²/n_a + s_b²/n_b), ν by Welch-Satterthwaite."""
    def var(x):
        m = sum(x) / len(x)
        return sum((v - m) ** 2 for v in x) / (len(x) - 1)
    va, vb = var(a) / len(a), var(b) / len(b)
    nu = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, nu) * math.sqrt(va + vb)
    d = sum(a) / len(a) - sum(b) / len(b)
    return d, d - half, d + half


def test_welch_interval_matches_the_formula():
    # s² = 0.04 and 0.01, n = 3: se² = 0.05 / 3, ν = (0.05/3)² / ((0.04/3)²/2 + (0.01/3)²/2) = 2.941...
    d, lo, hi, df = welch_interval(VARIANTS["rnn"], BASE)
    assert df == pytest.approx(50 / 17)
    assert (d, lo, hi) == pytest.approx(by_hand(VARIANTS["rnn"], BASE), abs=1e-12)
    assert d == pytest.approx(-0.4) and lo == pytest.approx(-0.8155, abs=1e-4) and hi == pytest.approx(0.0155, abs=1e-4)  # t(0.975, 2.94) = 3.219


@pytest.mark.parametrize("lo,hi,direction,want", [
    (-0.3, -0.1, "lower", "reproduced"), (0.1, 0.3, "lower", "contradicted"), (-0.1, 0.1, "lower", "inconclusive"),
    (0.1, 0.3, "higher", "reproduced"), (-0.3, -0.1, "higher", "contradicted"), (-0.1, 0.1, "higher", "inconclusive")])
def test_verdict_rule(lo, hi, direction, want):
    assert verdict(lo, hi, direction) == want


@pytest.mark.parametrize("lo,hi,want", [(-0.008, 0.004, "reproduced"), (-0.03, -0.02, "contradicted"),
                                        (-0.02, 0.01, "inconclusive")])
def test_a_non_inferiority_margin_moves_the_threshold(lo, hi, want):
    # "close to the float model": at most 1 point lower (margin 0.01) with direction higher
    assert verdict(lo, hi, "higher", margin=0.01) == want
    assert verdict(-hi, -lo, "lower", margin=0.01) == want


def _job(root: Path, num: int, cell: str, seed: int, test_bpc: float, curve: list[float], claim: dict) -> None:
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"cell={cell}", f"seed={seed}"]))
    cfg = {"seed": seed, "cell": {"name": cell}, "dataset": {"name": "ptb_char"}, "regularizer": {},
           "optimizer": {"name": "adam", "clip": None},
           "experiment": {"name": "toy", "article": "x", "baseline": {"cell": "lstm"}, "claim": claim}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    best = min(range(len(curve)), key=lambda i: curve[i])
    res = {"status": "ok", "valid": {"bpc": curve[best]}, "test": {"bpc": test_bpc}, "params": 10, "seed": seed,
           "cell": cell, "dataset": "ptb_char", "regularizer": [], "metric": "bpc", "metric_mode": "min",
           "best_step": 10 * (best + 1)}
    (d / "results.json").write_text(json.dumps(res))
    rows = [{"epoch": (i + 1) / 2, "step": 10 * (i + 1), "split": "valid", "loss": v, "bpc": v} for i, v in enumerate(curve)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sweep(root: Path, claim: dict) -> Path:
    num = 0
    for cell, values in {"lstm": BASE, **VARIANTS}.items():
        for seed, v in enumerate(values):
            # two valid points an epoch; the baseline turns at step 30 and ends 0.3 above its best
            curve = [2.0, 1.5, 1.0 + seed / 100, 1.1 + seed / 100, 1.3 + seed / 100] if cell == "lstm" else [2.0, 1.0]
            _job(root, num, cell, seed, v, curve, claim)
            num += 1
    return root


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """A regularizer claim: the baseline over-fits (best at step 30 of 50), so it is in the regime."""
    return _sweep(tmp_path / "sweep", {**CLAIM, "kind": "regularizer"})


@pytest.fixture()
def cell_sweep(tmp_path: Path) -> Path:
    """The same runs under a cell claim: the baseline has not flattened, so it is not in the regime."""
    return _sweep(tmp_path / "cell_sweep", CLAIM)


def test_table_gives_each_verdict_with_its_interval(sweep: Path, tmp_path: Path):
    out = make_table([str(sweep)], tmp_path / "out", figure=False)
    got = {c["variant"]: c for c in out["claims"]}
    assert [got[c]["verdict"] for c in VARIANTS] == ["reproduced", "inconclusive", "contradicted"]
    for cell, values in VARIANTS.items():
        d, lo, hi = by_hand(values, BASE)
        assert (got[cell]["delta"], got[cell]["ci_low"], got[cell]["ci_high"]) == pytest.approx((d, lo, hi), abs=1e-12)
        assert got[cell]["baseline"] == "lstm" and (got[cell]["n_variant"], got[cell]["n_baseline"]) == (3, 3)
    # the paper's Δ only where both figures come from one source
    assert got["gru"]["paper_delta"] == pytest.approx(-0.25) and got["rnn"]["paper_delta"] is None
    # the verdict leads every output
    md = (tmp_path / "out" / "table.md").read_text()
    assert md.startswith("**Claim**") and md.index("reproduced") < md.index("| variant |")
    assert "[-1.0155, -0.1845]" in md  # Δ -0.6 ± 0.4155 (gru)
    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    assert [r["row"] for r in rows[:3]] == ["comparison"] * 3 and rows[0]["verdict"] == "reproduced"
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert tex.index("reproduced") < tex.index("variant &")


def test_regime_checks_read_the_baseline_curve(cell_sweep: Path, tmp_path: Path):
    out = make_table([str(cell_sweep)], tmp_path / "out", figure=False)
    (reg,) = out["regimes"]
    assert reg["baseline"] == "lstm" and reg["best_step"][0] == 30 and reg["last_step"][0] == 50
    assert reg["overfit"][0] == pytest.approx(0.3) and reg["final"][1] == pytest.approx(0.01)
    # a cell claim: over its last epoch (1.5 -> 2.5) the valid metric moved 0.3 / (1.0, 1.01, 1.02): 29.70 % on average
    assert reg["in_regime"] is False and "29.70 %" in reg["line"]
    # out of its regime, no pair is a test of the claim: all inconclusive, the interval kept and said
    got = {c["variant"]: c for c in out["claims"]}
    assert [got[c]["verdict"] for c in VARIANTS] == ["inconclusive"] * 3
    assert got["gru"]["why"].endswith("the interval alone: reproduced")
    assert got["mlstm"]["why"].endswith("the interval alone: contradicted")
    assert (got["gru"]["ci_low"], got["gru"]["ci_high"]) == pytest.approx(by_hand(VARIANTS["gru"], BASE)[1:], abs=1e-12)
    assert "inconclusive (the baseline is not in the claim's regime; the interval alone: reproduced)" in (
        tmp_path / "out" / "table.md").read_text()
    facts = regime({"runs": []}, "bpc", "min")
    assert regime_verdict("regularizer", facts) == (None, "no finished baseline runs")


def test_regularizer_regime_wants_the_turn_beyond_the_seeds_spread():
    def run(curve):
        rows = [{"epoch": i + 1, "step": i + 1, "split": "valid", "bpc": v} for i, v in enumerate(curve)]
        return {"results": {"status": "ok"}, "metrics": rows}

    turned = regime({"runs": [run([2, 1, 1.2]), run([2, 1.01, 1.21])]}, "bpc", "min")
    assert regime_verdict("regularizer", turned)[0] is True
    still_falling = regime({"runs": [run([2, 1.5, 1.0]), run([2, 1.4, 1.1])]}, "bpc", "min")
    assert regime_verdict("regularizer", still_falling)[0] is False
    # accuracy (max): final 0.80 below the best 0.90 by 0.10 > spread
    acc = regime({"runs": [run([0.5, 0.9, 0.8]), run([0.5, 0.91, 0.81])]}, "bpc", "max")
    assert acc["overfit"][0] == pytest.approx(0.1) and regime_verdict("regularizer", acc)[0] is True


def test_summary_reads_new_and_old_tables(sweep: Path, tmp_path: Path):
    """``table --summary``: a page with comparison rows is read as written; a table from before
    the claims gets the same Welch interval from its means, stds and counts."""
    from rnnbench.reports import summary as summary_mod
    from rnnbench.reports.table import _num, cfg_from_overrides, matches

    pages = tmp_path / "results"
    make_table([str(sweep)], pages / "toy", figure=False)
    old = pages / "old"
    old.mkdir()
    # an old table: variant rows only, overrides as Hydra wrote them
    (old / "table.csv").write_text(
        "variant,baseline,overrides,test_mean,test_std,test_n\n"
        f"lstm,True,cell=lstm,1.2,0.2,3\n"
        f"gru,False,cell=gru,0.6,0.1,3\n")
    claims = {"toy": {"claim": CLAIM, "baseline": {"cell": "lstm"}},
              "old": {"claim": {**CLAIM, "compare": [{"variant": {"cell": "gru"}}]}, "baseline": {"cell": "lstm"}}}
    md = summary_mod.summary(pages, claims, _num, matches, cfg_from_overrides)
    lines = [ln for ln in md.splitlines() if ln.startswith("| [")]
    assert len(lines) == 4  # three pairs of toy, one of old
    old_line = next(ln for ln in lines if ln.startswith("| [old]"))
    new_gru = next(ln for ln in lines if ln.startswith("| [toy]") and "gru vs lstm" in ln)
    # an old table's regime was not chosen by the rule: inconclusive, with what its interval says
    assert "**inconclusive** (old table; old regime; the interval alone: reproduced)" in old_line
    assert "-0.6000 [-1.0155, -0.1845]" in old_line
    assert "**reproduced** |" in new_gru and "-0.6000 [-1.0155, -0.1845]" in new_gru and "-0.2500" in new_gru
    # an old table of another metric than the claim's gives no verdict
    (old / "table.csv").write_text("variant,baseline,overrides,metric,test_mean,test_std,test_n\n"
                                   "lstm,True,cell=lstm,acc,0.9,0.01,3\ngru,False,cell=gru,acc,0.95,0.01,3\n")
    md = summary_mod.summary(pages, claims, _num, matches, cfg_from_overrides)
    assert "**not testable (the table holds acc, the claim is about bpc)** (old table) | — — |" in md


def test_cfg_from_overrides_matches_like_a_saved_config():
    from rnnbench.reports.table import cfg_from_overrides, matches

    row = {"overrides": "optimizer.clip={kind:per_tensor,max_norm:0.5} regularizer=[weight_norm] cell=lstm"}
    cfg = cfg_from_overrides(row)
    assert matches({"cfg": cfg}, {"regularizer": ["weight_norm"], "cell": "lstm",
                                  "optimizer.clip": {"kind": "per_tensor", "max_norm": 0.5}})
    assert not matches({"cfg": cfg}, {"regularizer": []})
