"""An experiment's claim tested on its runs: the difference of means (variant - baseline) with a
95 % Welch interval over seeds, and a verdict.

- ``reproduced``: the interval lies entirely on the claimed side of 0 (of the claim's ``margin`` for
  a non-inferiority claim);
- ``contradicted``: entirely on the other side;
- ``inconclusive``: it contains 0 (or a side has fewer than 2 finished runs).

The claim (``experiment.claim``, schema ``config.ClaimConf``) names the metric, the split, the
direction and the variant/baseline pairs; the regime checks tell whether the baseline is where the
claim applies (over-fitting for a regularizer claim, a flattened valid curve for a cell claim).
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Optional

VERDICTS = ("reproduced", "contradicted", "inconclusive")
LEVEL = 0.95
#: a cell claim's baseline counts as flattened when its valid metric moved less than this over its last epoch
FLAT_RELATIVE = 0.01


def welch_interval(a: list[float], b: list[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean(a) - mean(b), low, high, degrees of freedom): Welch's t interval, unequal variances."""
    from scipy import stats

    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence_level=level)
    delta = statistics.fmean(a) - statistics.fmean(b)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):  # both sides without spread: no interval width
        return delta, delta, delta, math.nan
    return delta, float(ci.low), float(ci.high), float(res.df)


def verdict(low: float, high: float, direction: str, margin: float = 0.0) -> str:
    """``direction``: the claim says the variant's metric is ``lower`` / ``higher`` than the baseline's;
    with a ``margin``, that it is at most ``margin`` worse (the threshold moves from 0 to ±margin)."""
    if direction not in ("lower", "higher"):
        raise ValueError(f"claim.direction must be lower or higher, got {direction!r}")
    threshold = margin if direction == "lower" else -margin
    below, above = high < threshold, low > threshold
    if direction == "lower":
        return "reproduced" if below else ("contradicted" if above else "inconclusive")
    return "reproduced" if above else ("contradicted" if below else "inconclusive")


def _values(variant: dict, split: str, metric: str) -> list[float]:
    out = []
    for r in variant["runs"]:
        if r["results"].get("status") != "ok":
            continue
        v = (r["results"].get(split) or {}).get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out.append(float(v))
    return out


def _figure(figures: list[dict], variant: dict, matches: Callable[[dict, dict], bool]) -> Optional[dict]:
    return next((f for f in figures if matches(variant["runs"][0], f.get("match") or {})), None)


def evaluate(claim: dict, variants: list[dict], exp_baseline: dict,
             matches: Callable[[dict, dict], bool]) -> list[dict]:
    """One record per ``claim.compare`` pair: the variant's and baseline's labels and values,
    Δ, the interval, the verdict, and the paper's Δ where both figures come from one source."""
    metric, split, direction = claim["metric"], claim.get("split", "test"), claim["direction"]
    margin = float(claim.get("margin") or 0.0)
    figures = list(claim.get("figures") or [])
    out = []
    for pair in claim.get("compare") or []:
        base_spec = pair.get("baseline") or exp_baseline or {}
        var = next((v for v in variants if matches(v["runs"][0], pair["variant"])), None)
        base = next((v for v in variants if matches(v["runs"][0], base_spec)), None)
        rec: dict[str, Any] = {"variant": var["label"] if var else str(pair["variant"]),
                               "baseline": base["label"] if base else str(base_spec), "metric": metric,
                               "split": split, "direction": direction, "delta": None, "ci_low": None,
                               "ci_high": None, "df": None, "n_variant": 0, "n_baseline": 0,
                               "verdict": "inconclusive", "why": "", "paper_delta": None, "paper_source": None}
        if var is None or base is None:
            rec["why"] = "no runs of the " + ("variant" if var is None else "baseline")
            out.append(rec)
            continue
        a, b = _values(var, split, metric), _values(base, split, metric)
        rec["n_variant"], rec["n_baseline"] = len(a), len(b)
        if len(a) < 2 or len(b) < 2:
            rec["why"] = "fewer than 2 finished runs on a side"
            if a and b:
                rec["delta"] = statistics.fmean(a) - statistics.fmean(b)
        else:
            rec["delta"], rec["ci_low"], rec["ci_high"], rec["df"] = welch_interval(a, b)
            rec["verdict"] = verdict(rec["ci_low"], rec["ci_high"], direction, margin)
        fv, fb = _figure(figures, var, matches), _figure(figures, base, matches)
        if fv is not None and fb is not None and fv.get("source") == fb.get("source"):
            rec["paper_delta"], rec["paper_source"] = fv["value"] - fb["value"], fv["source"]
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- regimes
def _valid_series(run: dict, metric: str) -> list[tuple[float, int, float]]:
    """(epoch, step, value) of every valid evaluation of a run, in order; a resumed run's repeats
    keep their last record."""
    last: dict[int, tuple[float, int, float]] = {}
    for row in run["metrics"]:
        if row.get("split") == "valid" and isinstance(row.get(metric), (int, float)):
            last[int(row["step"])] = (float(row["epoch"]), int(row["step"]), float(row[metric]))
    return [last[k] for k in sorted(last)]


def regime(variant: dict, metric: str, mode: str) -> dict[str, Any]:
    """The baseline's curve facts a regime is judged on, over its finished runs: the step of its
    best valid evaluation, its best and final valid metric, how much worse the final one is
    (``overfit``, in the metric's units, >0 = worse) and the relative change over its last epoch."""
    best_steps, last_steps, bests, finals, last_epoch_rel = [], [], [], [], []
    sign = -1.0 if mode == "max" else 1.0  # >0 = worse
    for r in variant["runs"]:
        if r["results"].get("status") != "ok":
            continue
        series = _valid_series(r, metric)
        if not series:
            continue
        vals = [v for _, _, v in series]
        i_best = max(range(len(vals)), key=lambda i: -sign * vals[i])
        best_steps.append(series[i_best][1])
        last_steps.append(series[-1][1])
        bests.append(vals[i_best])
        finals.append(vals[-1])
        end = series[-1][0]
        prev = [v for ep, _, v in series if ep <= end - 1]
        if prev:
            last_epoch_rel.append(abs(vals[-1] - prev[-1]) / max(abs(prev[-1]), 1e-12))

    def ms(xs: list[float]) -> tuple[Optional[float], Optional[float]]:
        if not xs:
            return None, None
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)

    overfit = [sign * (f - b) for f, b in zip(finals, bests)]
    return {"n": len(bests), "best_step": ms(best_steps), "last_step": ms(last_steps), "best": ms(bests),
            "final": ms(finals), "overfit": ms(overfit), "last_epoch_rel_change": ms(last_epoch_rel),
            "evals_per_run": min((len(_valid_series(r, metric)) for r in variant["runs"]
                                  if r["results"].get("status") == "ok"), default=0)}


def regime_verdict(kind: str, facts: dict) -> tuple[Optional[bool], str]:
    """Whether the baseline is in the claim's regime, and one line saying why."""
    if facts["n"] == 0:
        return None, "no finished baseline runs"
    if kind == "regularizer":
        over, spread = facts["overfit"], facts["final"][1]
        turned = facts["best_step"][0] < facts["last_step"][0]
        ok = turned and over[0] is not None and over[0] > (spread or 0.0)
        return ok, (f"baseline over-fits: {'yes' if ok else 'no'} (best valid at step {facts['best_step'][0]:.0f} "
                    f"of {facts['last_step'][0]:.0f}; final valid worse than its best by {over[0]:.4f}, "
                    f"seeds' spread of the final {0.0 if spread is None else spread:.4f})")
    if kind == "cell":
        rel = facts["last_epoch_rel_change"][0]
        if rel is None:
            return None, "baseline flattened: unknown (fewer than 2 epochs of valid points)"
        ok = rel < FLAT_RELATIVE
        return ok, (f"baseline flattened: {'yes' if ok else 'no'} (valid metric moved {100 * rel:.2f} % over "
                    f"its last epoch; the rule is < {100 * FLAT_RELATIVE:.0f} %)")
    return None, f"no regime rule for a {kind} claim"


def out_of_regime(verdicts: list[dict], regimes: list[dict]) -> None:
    """A verdict is a test of the claim only where its baseline is in the claim's regime: where the
    check says it is not, the verdict becomes inconclusive and says what the interval alone gives."""
    off = {r["baseline"] for r in regimes if r.get("in_regime") is False}
    for c in verdicts:
        if c["baseline"] in off and c["ci_low"] is not None:
            c["why"] = f"the baseline is not in the claim's regime; the interval alone: {c['verdict']}"
            c["verdict"] = "inconclusive"
