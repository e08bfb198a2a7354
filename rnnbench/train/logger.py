"""Run outputs: ``metrics.jsonl`` (one JSON object per evaluation), TensorBoard scalars and hparams."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ..rundir import append_text, metrics_line, read_metrics, write_text


class MetricsLog:
    """Append-only ``metrics.jsonl``. ``truncate_after(step)`` drops lines a resumed run will redo."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict) -> None:
        append_text(self.path, metrics_line(record))

    def read(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_after(self, step: int, epoch: int) -> None:
        # eval-point rows of the current epoch sit at fractional epochs < epoch + 1 (train.eval_every)
        keep = [r for r in self.read() if r["step"] <= step and r["epoch"] < epoch + 1]
        write_text(self.path, "".join(metrics_line(r) for r in keep))


class Board:
    """TensorBoard writer (no-op if tensorboard is unavailable)."""

    def __init__(self, logdir: Path, purge_step: Optional[int] = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.w = SummaryWriter(str(logdir), purge_step=purge_step)
        except Exception:  # pragma: no cover - tensorboard missing
            self.w = None

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.w is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.w.add_scalar(f"{prefix}/{k}", v, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Write hparams + final metrics into this run's own event file (for the HParams dashboard)."""
        if self.w is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary

        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        exp, ssi, sei = hp_summary(clean, metrics)
        fw = self.w._get_file_writer()
        fw.add_summary(exp)
        fw.add_summary(ssi)
        fw.add_summary(sei)
        for k, v in metrics.items():
            self.w.add_scalar(k, v)

    def close(self) -> None:
        if self.w is not None:
            self.w.flush()
            self.w.close()
