"""Tasks (config group ``dataset``): data plus the objective and metrics."""
from __future__ import annotations

from typing import Any

from .base import EvalSums, Task, TaskSpec


def build_task(cfg: Any) -> Task:
    """Instantiate ``cfg.dataset`` (``_target_``) with the run's seed and ``data.root``."""
    from ..errors import instantiate

    kw: dict[str, Any] = {}
    target = str(cfg.dataset._target_)
    if target.endswith("AdditionTask"):
        kw["seed"] = cfg.seed
    else:
        kw["root"] = cfg.data.root
        kw["download"] = cfg.data.download
    return instantiate(cfg.dataset, **kw)


__all__ = ["Task", "TaskSpec", "EvalSums", "build_task"]
