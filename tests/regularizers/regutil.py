"""Helpers for the regularizer tests (imported as ``regutil``): tiny models built from the real cell configs."""
from __future__ import annotations

import functools
from pathlib import Path


CONF = Path(__file__).resolve().parents[2] / "conf"
CELLS = sorted(p.stem for p in (CONF / "cell").glob("*.yaml"))
REGULARIZERS = sorted(p.stem for p in (CONF / "regularizer").glob("*.yaml"))


def compose_cfg(overrides: list[str]):
    from testutil import compose

    return compose(overrides)


@functools.lru_cache(maxsize=None)
def _cell_cfg(name: str):
    return compose_cfg([f"cell={name}"]).cell


def cell_cfg(name: str, **over):
    """The composed ``conf/cell/<name>.yaml`` node (a copy), with overrides."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_container(_cell_cfg(name)))
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def classifier(cell: str = "lstm", hidden: int = 8, layers: int = 1, inp: int = 5, classes: int = 3,
               bidirectional: bool = False, **cell_over):
    from rnnbench.models.classifier import Classifier
    from rnnbench.tasks.base import TaskSpec

    return Classifier(TaskSpec("classification", inp, classes, 7), cell_cfg(cell, **cell_over), hidden_size=hidden,
                      num_layers=layers, bidirectional=bidirectional)


def lm(cell: str = "lstm", vocab: int = 11, hidden: int = 8, layers: int = 2, emb: int = 6):
    from rnnbench.models.lm import LanguageModel
    from rnnbench.tasks.base import TaskSpec

    return LanguageModel(TaskSpec("lm", vocab, vocab), cell_cfg(cell), hidden_size=hidden, num_layers=layers,
                         embedding_size=emb)


def five_sigma(p: float, n: int) -> float:
    """5 standard deviations of a Bernoulli(p) mean over n draws (false-alarm rate ~6e-7)."""
    return 5.0 * (p * (1 - p) / n) ** 0.5
