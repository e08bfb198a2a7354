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
        self.scalars_flat({f"{prefix}/{k}": v for k, v in values.items()}, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """This run's hyperparameters (a session start with its end) and its final ``metrics`` as
        scalars at ``step``, for the HParams dashboard. No experiment description: TensorBoard
        takes the first one it finds for every run in the log dir, so a run's own would hide the
        other runs' hyperparameters and metrics; without one it infers them from all runs (every
        hyperparameter with whether it differs, every scalar tag as a metric)."""
        if self.w is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary

        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        _, ssi, sei = hp_summary(clean, {})
        fw = self.w._get_file_writer()
        fw.add_summary(ssi)
        fw.add_summary(sei)
        self.scalars_flat(metrics, step)

    def scalars_flat(self, values: dict[str, float], step: int) -> None:
        """Scalars whose names carry their own section (``test/acc``)."""
        if self.w is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.w.add_scalar(k, v, step)

    def close(self) -> None:
        if self.w is not None:
            self.w.flush()
            self.w.close()
