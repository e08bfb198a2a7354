"""Tasks (config group ``dataset``): data plus the objective and metrics."""
from __future__ import annotations

from typing import Any

from .base import EvalSums, Task, TaskSpec


def build_task(cfg: Any) -> Task:
    """Instantiate ``cfg.dataset`` (``_target_``) with the run's seed and ``data.root``."""
    from hydra.utils import get_class

    from ..config import instantiate

    cls = get_class(str(cfg.dataset._target_))
    return instantiate(cfg.dataset, **cls.run_options(cfg))


__all__ = ["Task", "TaskSpec", "EvalSums", "build_task"]
