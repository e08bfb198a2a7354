"""``rnnbench table --summary DIR``: one line per comparison page under ``DIR`` (``<name>/table.csv``
as ``rnnbench table`` writes it): experiment, claim, verdict, Δ (95 % CI), the paper's Δ.

A table from before the claims (no comparison rows) gets its verdict here from the variant rows'
means, standard deviations and counts (Welch from summary statistics, the same interval), read
against the claim the experiment states now; such rows are marked "(old table)" and stay
inconclusive, with what their interval alone says: their regime was not chosen by the claim's rule."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import RnnbenchError
from .claims import verdict


def _float(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def welch_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Δ = m1 - m2 and its Welch interval from two groups' means, sample stds and sizes."""
    from scipy import stats

    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    d = m1 - m2
    if v1 + v2 == 0:
        return d, d, d
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(v1 + v2)
    return d, d - half, d + half


def _old_comparisons(rows: list[dict], claim: dict, exp_baseline: dict,
                     matches: Callable[[dict, dict], bool], cfg_of: Callable[[dict], dict]) -> list[dict]:
    out = []
    split, metric = claim.get("split", "test"), claim["metric"]
    for pair in claim.get("compare") or []:
        spec_b = pair.get("baseline") or exp_baseline
        var = next((r for r in rows if matches({"cfg": cfg_of(r)}, pair["variant"])), None)
        base = next((r for r in rows if matches({"cfg": cfg_of(r)}, spec_b)), None)
        if var is None or base is None:
            continue
        st = [(_float(r[f"{split}_mean"]), _float(r[f"{split}_std"]), int(_float(r[f"{split}_n"]) or 0))
              for r in (var, base)]
        rec = {"variant": var["variant"], "baseline": base["variant"], "metric": metric, "split": split,
               "n_variant": st[0][2], "n_baseline": st[1][2], "paper_delta": None, "old": True}
        if var.get("metric") and var["metric"] != metric:  # the old table's columns hold another metric
            rec.update(delta=None, ci_low=None, ci_high=None,
                       verdict=f"not testable (the table holds {var['metric']}, the claim is about {metric})")
            out.append(rec)
            continue
        figs = [next((f for f in claim.get("figures") or [] if matches({"cfg": cfg_of(r)}, f.get("match") or {})), None)
                for r in (var, base)]
        if all(figs) and figs[0].get("source") == figs[1].get("source"):
            rec["paper_delta"] = figs[0]["value"] - figs[1]["value"]
        if all(m is not None and s is not None and n >= 2 for m, s, n in st):
            d, lo, hi = welch_from_stats(*st[0], *st[1])
            # an old table's regime was not chosen by the claim's rule: its interval tests that budget only
            said = verdict(lo, hi, claim["direction"], float(claim.get("margin") or 0.0))
            rec.update(delta=d, ci_low=lo, ci_high=hi, verdict="inconclusive",
                       why=f"old regime; the interval alone: {said}")
        else:
            rec.update(delta=None, ci_low=None, ci_high=None, verdict="inconclusive")
        out.append(rec)
    return out


def _why(c: dict) -> str:
    """The verdict's qualifier: an old table's, or why a computed interval is not the verdict."""
    if c.get("old"):
        return f" (old table; {c['why']})" if c.get("why") else " (old table)"
    return f" ({c['why']})" if c.get("why") else ""


def summary(results_dir: Path, claims: dict[str, dict], fmt: Callable[[Optional[float], str], str],
            matches: Callable[[dict, dict], bool], cfg_of: Callable[[dict], dict]) -> str:
    """The Markdown summary; ``claims``: experiment name -> {claim, baseline} as configured."""
    lines = ["| experiment | article's claim | verdict | Δ (95 % CI) | paper's Δ |", "|---|---|---|---|---|"]
    found = False
    for name in sorted(claims):
        path = Path(results_dir) / name / "table.csv"
        if not path.is_file():
            continue
        found = True
        with path.open() as f:
            rows = list(csv.DictReader(f))
        claim, base = claims[name]["claim"], claims[name]["baseline"]
        comps = [r for r in rows if r.get("row") == "comparison"]
        if comps:
            comps = [{**c, **{k: _float(c.get(k)) for k in ("delta", "ci_low", "ci_high", "paper_delta")}}
                     for c in comps]
        else:
            comps = _old_comparisons([r for r in rows if r.get("row", "variant") == "variant"], claim, base,
                                     matches, cfg_of)
        said = " ".join(str(claim.get("statement", "")).split())
        said = said[:90].rsplit(" ", 1)[0] + " …" if len(said) > 90 else said
        for c in comps:
            m = c["metric"]
            ci = "—" if c.get("ci_low") is None else f"[{fmt(c['ci_low'], m)}, {fmt(c['ci_high'], m)}]"
            pd = "—" if c.get("paper_delta") is None else fmt(c["paper_delta"], m)
            lines.append(f"| [{name}]({name}.md) | {c['variant']} vs {c['baseline']}, {c['split']} {m} "
                         f"{claim['direction']}: {said} | **{c['verdict']}**{_why(c)} "
                         f"| {fmt(c.get('delta'), m)} {ci} | {pd} |")
    if not found:
        raise RnnbenchError(f"table --summary: no <experiment>/table.csv under {results_dir}")
    return "\n".join(lines) + "\n"
