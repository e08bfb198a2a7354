"""Models (config group ``model``): classifier, bidirectional classifier, seq2seq, attention seq2seq, LM."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..tasks.base import TaskSpec

KIND_OF_MODEL = {"classifier": "classification", "bidir_classifier": "classification", "seq2seq": "seq2seq",
                 "attention_seq2seq": "seq2seq", "lm": "lm"}


def build_model(model_cfg: Any, cell_cfg: Any, spec: TaskSpec) -> nn.Module:
    """Instantiate ``model_cfg`` (``_target_``) for a task's shapes with the given cell config."""
    from ..config import instantiate

    name = str(model_cfg.name)
    want = KIND_OF_MODEL.get(name)
    if want is not None and want != spec.kind:
        raise ConfigError(f"model={name} does not fit a {spec.kind} task; use one of "
                          + ", ".join(k for k, v in KIND_OF_MODEL.items() if v == spec.kind))
    return instantiate(model_cfg, spec=spec, cell=cell_cfg, _recursive_=False)
