"""``rnnbench table DIR...``: a sweep's comparison table (Markdown, CSV, LaTeX) and curves figure.

Runs are the directories under each DIR holding ``.hydra/overrides.yaml`` (a sweep's job dirs, or
a run dir itself). Runs are grouped into *variants* by their overrides other than ``seed`` (and
``hydra.*``); each variant is one row with mean ± sample std over its seeds of the best-epoch valid
metric, the test metric, parameters, seconds per epoch, examples per second and, where runs report
them, the numbers the cells and regularizers declare (rnnbench.reported: a computation fraction,
an integer-only agreement).

Baseline: the experiment's ``experiment.baseline`` (a match on the composed config, e.g.
``{cell: lstm, regularizer: []}``), else ``--baseline KEY=VALUE`` (same keys), else the first
variant of the sweep (lowest job number). The Δ column is the variant's mean test metric minus the
baseline's. ``experiment.reference`` (a list of ``{match: {...}, value: x, note: "..."}``) puts the
paper's figure beside the matching rows.

``experiment.claim`` (see ``reports.claims``) leads every output: for each variant/baseline pair of
the claim, the difference of means with its 95 % Welch interval over seeds and the verdict
(reproduced / contradicted / inconclusive), then whether the baseline is in the claim's regime.

Failed, diverged or unfinished runs are counted in the ``runs`` column and listed under the table;
a variant whose runs all failed still gets its row.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import RnnbenchError
from .. import registry, rundir
from . import claims as claims_mod

# metrics shown as percentages in Markdown / LaTeX (stored as fractions in results.json): the
# tasks' accuracies and what the cells and regularizers declare (rnnbench.reported)
FRACTION_METRICS = {"acc", "seq_acc", *(r.key for r in registry.reported() if r.fraction)}
# the columns the cells and regularizers declare, where a run reports them
EXTRA_COLUMNS = tuple((r.key, r.column) for r in registry.reported() if r.column)


# ----------------------------------------------------------------------------- loading
def _load_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def find_runs(dirs: list[str]) -> list[Path]:
    """The job directories under every DIR, each once."""
    runs: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise RnnbenchError(f"table: {d} is not a directory (pass sweep or run directories)")
        found = rundir.find_runs(p)
        if not found:
            raise RnnbenchError(f"table: no runs under {d} (expected job dirs holding .hydra/overrides.yaml)")
        runs.extend(r for r in found if r not in runs)
    return runs


def load_run(run_dir: Path) -> dict:
    job = rundir.read_job(run_dir)
    config = rundir.hydra_path(run_dir)
    cfg = _load_yaml(config) if config.exists() else {}
    return {"dir": run_dir, "overrides": job["overrides"], "cfg": cfg or {}, "num": job["num"],
            "results": job["results"], "metrics": rundir.read_metrics(run_dir)}


# ----------------------------------------------------------------------------- variants
def _variant_overrides(overrides: list[str]) -> tuple[str, ...]:
    keep = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "seed" or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        keep.append(o)
    return tuple(sorted(keep))


def _pretty_override(o: str, cfg: dict) -> str:
    key, _, val = o.partition("=")
    key = key.lstrip("+~")
    if key == "optimizer.clip":
        clip = _select(cfg, "optimizer.clip")
        if clip is _MISSING:  # no saved config: parse the override the way Hydra does
            from hydra.core.override_parser.overrides_parser import OverridesParser

            clip = OverridesParser.create().parse_override(o).value()
        if not clip:
            return "no clip"
        return f"clip {clip.get('kind', 'global')} {clip.get('max_norm')}"
    if key == "model.attention":
        return f"{val} attention"
    return f"{key}={val}"


def variant_label(run: dict, differing: set[str]) -> str:
    res, cfg = run["results"], run["cfg"]
    cell = res.get("cell") or (cfg.get("cell") or {}).get("name") or "?"
    regs = res.get("regularizer")
    if regs is None:
        regs = list((cfg.get("regularizer") or {}).keys())
    label = cell + "".join(f" + {r}" for r in regs)
    parts = []
    for o in _variant_overrides(run["overrides"]):
        key = o.split("=", 1)[0].lstrip("+~")
        if o not in differing or key in ("cell", "regularizer"):
            continue
        parts.append(_pretty_override(o, cfg))
    return ", ".join([label, *parts])


def _select(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def matches(run: dict, spec: dict) -> bool:
    """``spec``: {config key: value}; a group key (cell, model, dataset, optimizer) compares its
    ``name``; ``regularizer`` compares the list of regularizer names."""
    cfg = run["cfg"]
    for key, want in (spec or {}).items():
        got = _select(cfg, key)
        if key == "regularizer":
            got = sorted((got or {}).keys()) if isinstance(got, dict) else got
            want = sorted(want or []) if isinstance(want, (list, tuple)) else [want]
        elif isinstance(got, dict) and not isinstance(want, dict) and "name" in got:
            got = got["name"]
        if got is _MISSING or got != want:
            return False
    return True


def _parse_kv(items: list[str]) -> dict:
    from omegaconf import OmegaConf

    spec = {}
    for it in items:
        if "=" not in it:
            raise RnnbenchError(f"table: --baseline expects KEY=VALUE (e.g. cell=lstm), got {it!r}")
        k, v = it.split("=", 1)
        spec[k] = OmegaConf.to_container(OmegaConf.create(f"v: {v}"))["v"]
    return spec


def group_variants(runs: list[dict]) -> list[dict]:
    order: dict[tuple, dict] = {}
    runs = sorted(runs, key=lambda r: (r["num"] is None, r["num"] or 0, str(r["dir"])))
    for r in runs:
        order.setdefault(_variant_overrides(r["overrides"]), {"runs": []})["runs"].append(r)
    all_over = [set(k) for k in order]
    common = set.intersection(*all_over) if all_over else set()
    differing = set().union(*all_over) - common if all_over else set()
    variants = []
    for key, v in order.items():
        v["key"] = key
        v["label"] = variant_label(v["runs"][0], differing)
        variants.append(v)
    # two variants with the same readable label: fall back to the raw overrides
    labels = [v["label"] for v in variants]
    for v in variants:
        if labels.count(v["label"]) > 1:
            v["label"] = " ".join(o for o in v["key"] if o in differing) or v["label"]
    return variants


# ----------------------------------------------------------------------------- statistics
def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float], int]:
    vals = [float(x) for x in values if x is not None and isinstance(x, (int, float)) and math.isfinite(x)]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def summarize(variants: list[dict], metric: str) -> None:
    for v in variants:
        ok = [r for r in v["runs"] if r["results"].get("status") == "ok"]
        res = [r["results"] for r in ok]
        v["stats"] = {
            "valid": mean_std([(x.get("valid") or {}).get(metric) for x in res]),
            "test": mean_std([(x.get("test") or {}).get(metric) for x in res]),
            "params": mean_std([x.get("params") for x in res]),
            "s_per_epoch": mean_std([x.get("s_per_epoch") for x in res]),
            "examples_per_s": mean_std([x.get("examples_per_s") for x in res]),
        }
        v["stats"]["best_step"] = mean_std([x.get("best_step") for x in res if (x.get("best_step") or -1) >= 0])
        finals = []
        for r in ok:
            valid_rows = [row for row in r["metrics"] if row.get("split") == "valid" and metric in row]
            finals.append(valid_rows[-1][metric] if valid_rows else None)
        v["stats"]["final_valid"] = mean_std(finals)
        for key, _ in EXTRA_COLUMNS:
            vals = [x.get(key, (x.get("valid") or {}).get(key)) for x in res]
            v["stats"][key] = mean_std(vals)
        counts: dict[str, int] = {}
        for r in v["runs"]:
            s = r["results"].get("status", "unfinished")
            counts[s] = counts.get(s, 0) + 1
        v["counts"] = counts
        v["seeds"] = sorted({r["results"].get("seed", (r["cfg"] or {}).get("seed")) for r in v["runs"]},
                            key=lambda s: (s is None, s))


# ----------------------------------------------------------------------------- formatting
def _fmt(stat: tuple, name: str, digits: int = 4) -> str:
    m, s, n = stat
    if m is None:
        return "—"
    if name in FRACTION_METRICS:
        m, s = 100 * m, (None if s is None else 100 * s)
        digits = 2
    if name in ("params",):
        txt = f"{m:,.0f}"
        return txt if not s else f"{txt} ± {s:,.0f}"
    if name in ("s_per_epoch", "examples_per_s"):
        digits = 0 if name == "examples_per_s" else (1 if m >= 10 else 2)
    txt = f"{m:.{digits}f}"
    return txt if s is None else f"{txt} ± {s:.{digits}f}"


def _runs_text(v: dict) -> str:
    c = v["counts"]
    total = sum(c.values())
    text = f"{c.get('ok', 0)}/{total} ok"
    bad = [f"{n} {k}" for k, n in sorted(c.items()) if k != "ok"]
    return text + (f" ({', '.join(bad)})" if bad else "")


def build_rows(variants: list[dict], metric: str, baseline: int, refs: list[dict]) -> tuple[list[str], list[list[str]], list[dict]]:
    """Header and formatted rows (Markdown/LaTeX) plus raw records (CSV)."""
    extras = [(k, t) for k, t in EXTRA_COLUMNS if any(v["stats"][k][0] is not None for v in variants)]
    unit = " (%)" if metric in FRACTION_METRICS else ""
    header = ["variant", "runs", f"valid {metric}{unit} (best)", "best at step", f"final valid {metric}{unit}",
              f"test {metric}{unit}", f"Δ test vs baseline{' (points)' if unit else ''}", "paper (test)", "params",
              "s/epoch", "examples/s", *[t + (" (%)" if k in FRACTION_METRICS else "") for k, t in extras]]
    base_test = variants[baseline]["stats"]["test"][0] if variants else None
    rows, records = [], []
    for i, v in enumerate(variants):
        st = v["stats"]
        ref = next((r for r in refs if matches(v["runs"][0], r.get("match") or {})), None)
        ref_txt = ""
        if ref is not None:
            val = ref.get("value")
            if isinstance(val, (int, float)):
                val = f"{100 * val:.1f}" if metric in FRACTION_METRICS else f"{val:g}"
            about = "; ".join(str(ref[k]) for k in ("note", "source") if ref.get(k))
            ref_txt = f"{val}" + (f" ({about})" if about else "")
        delta = None
        if i != baseline and st["test"][0] is not None and base_test is not None:
            delta = st["test"][0] - base_test
        scale = 100 if metric in FRACTION_METRICS else 1
        delta_txt = "baseline" if i == baseline else ("—" if delta is None else f"{scale * delta:+.{2 if scale == 100 else 4}f}")
        label = v["label"] + (" **(baseline)**" if i == baseline else "")
        rows.append([label, _runs_text(v), _fmt(st["valid"], metric), _fmt(st["best_step"], "params"),
                     _fmt(st["final_valid"], metric), _fmt(st["test"], metric), delta_txt,
                     ref_txt or "—", _fmt(st["params"], "params"), _fmt(st["s_per_epoch"], "s_per_epoch"),
                     _fmt(st["examples_per_s"], "examples_per_s"), *[_fmt(st[k], k) for k, _ in extras]])
        rec: dict[str, Any] = {"row": "variant", "variant": v["label"], "baseline": i == baseline, "overrides": " ".join(v["key"]),
                               "seeds": " ".join(str(s) for s in v["seeds"]), "n_ok": v["counts"].get("ok", 0),
                               "n_runs": sum(v["counts"].values()),
                               "statuses": ";".join(f"{k}={n}" for k, n in sorted(v["counts"].items())),
                               "metric": metric}
        for key in ("valid", "best_step", "final_valid", "test", "params", "s_per_epoch", "examples_per_s",
                    *[k for k, _ in extras]):
            m, s, n = st[key]
            rec[f"{key}_mean"], rec[f"{key}_std"], rec[f"{key}_n"] = m, s, n
        rec["delta_test"] = delta
        rec["paper"] = ref.get("value") if ref else None
        rec["paper_note"] = ref.get("note") if ref else None
        records.append(rec)
    return header, rows, records


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def _tex(s: str) -> str:
    s = s.replace("**(baseline)**", "(baseline)")
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("—", "--"), ("−", "-")):
        s = s.replace(a, b) if a != "\\" else s.replace(a, b)
    return s


def to_latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
           r"\toprule", " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for r in rows:
        cells = [_tex(c) for c in r]
        if "(baseline)" in r[0]:
            cells[0] = r"\textbf{" + cells[0] + "}"
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _tex(caption) + "}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    if records:
        keys: list[str] = []
        for r in records:
            keys += [k for k in r if k not in keys]
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


# ----------------------------------------------------------------------------- curves
def _curve(runs: list[dict], split: str, key: str) -> tuple[list[float], list[float], list[float]]:
    by_epoch: dict[float, list[float]] = {}
    for r in runs:
        last: dict[Any, dict] = {}
        for row in r["metrics"]:  # a resumed run may repeat an epoch: keep its last record
            if row.get("split") == split and key in row and row.get("epoch") is not None:
                last[row["epoch"]] = row
        for ep, row in last.items():
            v = row[key]
            if isinstance(v, (int, float)) and math.isfinite(v):
                by_epoch.setdefault(float(ep), []).append(float(v))
    xs = sorted(by_epoch)
    means = [statistics.fmean(by_epoch[x]) for x in xs]
    stds = [statistics.stdev(by_epoch[x]) if len(by_epoch[x]) > 1 else 0.0 for x in xs]
    return xs, means, stds


def plot_curves(variants: list[dict], metric: str, baseline: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["loss"] + ([metric] if metric != "loss" else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, v in enumerate(variants):
        color = colors[i % len(colors)]
        label = v["label"] + (" (baseline)" if i == baseline else "")
        bad = {k: n for k, n in v["counts"].items() if k != "ok"}
        if bad:
            label += " [" + ", ".join(f"{n} {k}" for k, n in bad.items()) + "]"
        for ax, key in zip(axes[0], keys):
            for split, style in (("train", "-"), ("valid", "--")):
                xs, m, s = _curve(v["runs"], split, key)
                if not xs:
                    continue
                scale = 100 if key in FRACTION_METRICS else 1
                m = [scale * a for a in m]
                s = [scale * a for a in s]
                ax.plot(xs, m, style, color=color, marker="o", ms=3,
                        label=f"{label} — {split}" if ax is axes[0][0] else None)
                ax.fill_between(xs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)],
                                color=color, alpha=0.15, lw=0)
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes[0], keys):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(("cross-entropy (nats)" if key == "loss" else key) + (" (%)" if key in FRACTION_METRICS else ""))
        ax.set_title(f"{key}: mean over seeds, band ±1 std (train solid, valid dashed)", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    rows = (len(handles) + 1) // 2
    fig.tight_layout(rect=(0, min(0.45, 0.055 * rows + 0.02), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- claim
def _num(x: Optional[float], metric: str, signed: bool = True) -> str:
    if x is None:
        return "—"
    if metric in FRACTION_METRICS:
        return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def claim_rows(verdicts: list[dict]) -> tuple[list[str], list[list[str]]]:
    unit = lambda c: " (points)" if c["metric"] in FRACTION_METRICS else ""  # noqa: E731
    header = ["comparison", "verdict", "Δ (variant − baseline)", "95 % CI", "seeds", "paper's Δ"]
    rows = []
    for c in verdicts:
        m = c["metric"]
        ci = "—" if c["ci_low"] is None else f"[{_num(c['ci_low'], m)}, {_num(c['ci_high'], m)}]"
        verdict = c["verdict"] + (f" ({c['why']})" if c["why"] else "")
        paper = "—" if c["paper_delta"] is None else f"{_num(c['paper_delta'], m)} ({c['paper_source']})"
        rows.append([f"{c['variant']} vs {c['baseline']}: {c['split']} {m}{unit(c)}", verdict,
                     _num(c["delta"], m), ci, f"{c['n_variant']} vs {c['n_baseline']}", paper])
    return header, rows


def claim_markdown(claim: dict, verdicts: list[dict], regimes: list[dict]) -> str:
    margin = float(claim.get("margin") or 0.0)
    side = (f"{claim.get('direction')} than the baseline" if not margin else
            f"at most {_num(margin, claim.get('metric'), signed=False)}{' points' if claim.get('metric') in FRACTION_METRICS else ''} "
            f"{'higher' if claim.get('direction') == 'lower' else 'lower'} than the baseline")
    md = (f"**Claim** ({claim.get('kind', '?')}, {claim.get('split', 'test')} {claim.get('metric')} {side}): {claim.get('statement', '').strip()} "
          f"— {claim.get('source', '')}\n\n")
    if verdicts:
        md += to_markdown(*claim_rows(verdicts)) + "\n\n"
        zero = "0" if not margin else ("−" if claim.get("direction") == "higher" else "+") + _num(margin, claim.get("metric"), signed=False)
        md += ("Δ: difference of the means over seeds; 95 % CI: Welch's t interval (scipy.stats); reproduced = "
               f"the interval lies on the claimed side of {zero}, contradicted = on the other side, inconclusive = "
               f"it contains {zero}.\n\n")
    if claim.get("kind") in ("regularizer", "cell"):
        for r in regimes:
            md += f"Regime ({r['baseline']}): {r['line']}.\n\n"
    elif regimes:  # no baseline rule: one line, not one per baseline
        md += f"Regime: a {claim.get('kind')} claim is compared in the article's own set-up (no rule on the baseline's curve).\n\n"
    return md


def claim_latex(verdicts: list[dict]) -> str:
    header, rows = claim_rows(verdicts)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
           r"\toprule", " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    out += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\caption{The claim: difference of means with a 95\,\% Welch "
            r"interval over seeds, and the verdict}", r"\end{table}"]
    return "\n".join(out) + "\n\n"


# ----------------------------------------------------------------------------- main
def make_table(dirs: list[str], out_dir: Optional[Path] = None, baseline_spec: Optional[dict] = None,
               name: Optional[str] = None, figure: bool = True) -> dict:
    """Build the table; write table.md/.csv/.tex and curves.png into ``out_dir``; return a summary."""
    runs = [load_run(r) for r in find_runs(dirs)]
    metrics = {r["results"].get("metric") for r in runs if r["results"].get("metric")}
    if len(metrics) > 1:
        raise RnnbenchError(f"table: the runs use different metrics ({', '.join(sorted(metrics))}); "
                            "table one dataset at a time")
    metric = metrics.pop() if metrics else "loss"
    variants = group_variants(runs)
    summarize(variants, metric)
    exp = next((r["cfg"].get("experiment") for r in runs if isinstance(r["cfg"].get("experiment"), dict)), None) or {}
    spec = baseline_spec or exp.get("baseline")
    baseline = 0
    if spec:
        hits = [i for i, v in enumerate(variants) if matches(v["runs"][0], spec)]
        if not hits and baseline_spec:
            raise RnnbenchError(f"table: no variant matches --baseline {baseline_spec}; variants: "
                                + "; ".join(v["label"] for v in variants))
        baseline = hits[0] if hits else 0
    claim = exp.get("claim") if isinstance(exp.get("claim"), dict) else None
    refs = list((claim or {}).get("figures") or exp.get("reference") or [])  # reference: runs from before claims
    header, rows, records = build_rows(variants, metric, baseline, refs)
    mode = next((r["results"].get("metric_mode") for r in runs if r["results"].get("metric_mode")), None)
    verdicts, regimes = [], []
    if claim:
        verdicts = claims_mod.evaluate(claim, variants, spec or {}, matches)
        for base_label in dict.fromkeys(c["baseline"] for c in verdicts):
            base = next((v for v in variants if v["label"] == base_label), None)
            if base is not None:
                facts = claims_mod.regime(base, metric, mode or "min")
                ok, line = claims_mod.regime_verdict(claim.get("kind", ""), facts)
                regimes.append({"baseline": base_label, "in_regime": ok, "line": line, **facts})
        claims_mod.out_of_regime(verdicts, regimes)
    datasets = sorted({str(r["results"].get("dataset") or _select(r["cfg"], "dataset.name")) for r in runs})
    from_override = next((o.split("=", 1)[1] for r in runs for o in r["overrides"] if o.startswith("experiment=")), None)
    name = name or exp.get("name") or from_override or Path(dirs[0]).resolve().name
    better = {"max": "higher is better", "min": "lower is better"}.get(mode or "", "")
    caption = (f"{name}: {', '.join(datasets)}, {metric}" + (f" ({better})" if better else "")
               + f"; mean ± std over seeds; {len(runs)} runs")
    md = (claim_markdown(claim, verdicts, regimes) if claim else "") + f"**{caption}**\n\n" + to_markdown(header, rows) + "\n"
    bad = [r for v in variants for r in v["runs"] if r["results"].get("status") != "ok"]
    if bad:
        md += "\nRuns that did not finish ok (not in the means):\n\n"
        for r in bad:
            err = " ".join(str(r["results"].get("error") or "").split())[:200]
            md += f"- `{r['dir']}` ({' '.join(r['overrides'])}): {r['results'].get('status')}" + (f": {err}" if err else "") + "\n"
    out_dir = Path(out_dir) if out_dir is not None else Path(dirs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": out_dir / "table.md", "csv": out_dir / "table.csv", "tex": out_dir / "table.tex"}
    files["md"].write_text(md)
    files["csv"].write_text(to_csv([{"row": "comparison", **c} for c in verdicts] + records))
    files["tex"].write_text((claim_latex(verdicts) if verdicts else "") + to_latex(header, rows, caption))
    if figure:
        files["png"] = plot_curves(variants, metric, baseline, out_dir / "curves.png", caption)
    return {"markdown": md, "records": records, "claims": verdicts, "regimes": regimes, "files": files, "baseline": baseline, "metric": metric,
            "variants": [v["label"] for v in variants]}


def cfg_from_overrides(record: dict) -> dict:
    """A config-shaped dict from a table.csv row's ``overrides`` (for matching an older table's rows)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg: dict = {}
    parser = OverridesParser.create()
    for o in (record.get("overrides") or "").split():
        ov = parser.parse_override(o)
        key, val = ov.key_or_group.lstrip("+~"), ov.value()
        node = cfg
        parts = key.split(".")
        if len(parts) == 1 and key == "regularizer":
            cfg["regularizer"] = {r: {} for r in (val or [])}
            continue
        if len(parts) == 1:  # a group choice: cell=lstm
            cfg.setdefault(key, {})["name"] = val
            continue
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = val
    return cfg


def summary_main(results_dir: Path) -> str:
    """``--summary``: the README's one-table summary of every page's claim and verdict."""
    from . import summary as summary_mod
    from ..config import CONF_DIR
    from omegaconf import OmegaConf

    claims = {}
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        exp = (OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}).get("experiment") or {}
        if exp.get("claim"):
            claims[path.stem] = {"claim": exp["claim"], "baseline": exp.get("baseline") or {}}
    return summary_mod.summary(results_dir, claims, _num, matches, cfg_from_overrides)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line via the CLI's RnnbenchError handling
        raise RnnbenchError(f"table: {message} (see rnnbench table --help)")


def main(argv: Optional[list[str]] = None) -> int:
    ap = _Parser(prog="rnnbench table",
                                 description="Comparison table (Markdown on stdout; table.md/.csv/.tex) and "
                                             "curves.png from sweep or run directories.")
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="sweep directories (or single run directories)")
    ap.add_argument("--summary", action="store_true",
                    help="instead: one line per claim of every <experiment>/table.csv under DIR (docs/results)")
    ap.add_argument("--out", "-o", type=Path, default=None, help="where to write the files (default: the first DIR)")
    ap.add_argument("--baseline", nargs="+", default=None, metavar="KEY=VALUE",
                    help="config values that pick the baseline row, e.g. cell=lstm 'regularizer=[]' "
                         "(default: the experiment's baseline, else the sweep's first variant)")
    ap.add_argument("--name", default=None, help="title (default: the experiment's name or the DIR's name)")
    ap.add_argument("--no-figure", action="store_true", help="skip curves.png")
    args = ap.parse_args(argv)
    if args.summary:
        sys.stdout.write(summary_main(Path(args.dirs[0])))
        return 0
    summary = make_table(args.dirs, args.out, _parse_kv(args.baseline) if args.baseline else None, args.name,
                         figure=not args.no_figure)
    sys.stdout.write(summary["markdown"])
    print("\nwrote " + ", ".join(str(p) for p in summary["files"].values()), file=sys.stderr)
    return 0
