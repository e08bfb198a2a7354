"""Learning curves of one run (``curves.png``) from its ``metrics.jsonl``."""
from __future__ import annotations

from pathlib import Path

from ..rundir import read_metrics

PRIMARY = ("bpc", "acc")


def plot_run_curves(run_dir: str | Path) -> Path | None:
    """Draw loss and the task's metric per epoch for train/valid; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        return None
    metric = next((m for m in PRIMARY if any(m in r for r in rows if r["split"] == "valid")), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5, 3.6), squeeze=False)
    for split, style in (("train", "-"), ("valid", "--")):
        pts = [(r["epoch"], r) for r in rows if r["split"] == split]
        if not pts:
            continue
        axes[0, 0].plot([e for e, _ in pts], [r["loss"] for _, r in pts], style, marker="o", label=split)
        if metric and all(metric in r for _, r in pts):
            axes[0, 1].plot([e for e, _ in pts], [r[metric] for _, r in pts], style, marker="o", label=split)
    axes[0, 0].set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
    if metric:
        axes[0, 1].set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
