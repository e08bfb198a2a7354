"""What every task provides to the trainer: data batches and the loss/metrics of a model on them.

Tasks own the data and the objective; models know nothing of either (nanoGPT style).
Batch order is a pure function of ``(seed, epoch)`` so a resumed run sees the same batches.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from ..errors import DataError


@dataclass
class TaskSpec:
    """Shapes a model needs: ``kind`` is classification | seq2seq | lm."""
    kind: str
    input_size: int  #: features per step (one-hot size for seq2seq, vocabulary for lm)
    num_classes: int  #: output classes per prediction (vocabulary for seq2seq / lm)
    seq_len: int = 0
    out_len: int = 0  #: seq2seq answer length


@dataclass
class EvalSums:
    """Running sums for a split's metrics (divided out by :meth:`metrics`)."""
    loss: float = 0.0
    correct: float = 0.0
    count: int = 0  #: predictions (characters / images)
    seq_correct: float = 0.0
    seq_count: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, loss_sum: float, correct: float, count: int, seq_correct: float = 0.0,
            seq_count: int = 0) -> None:
        self.loss += loss_sum
        self.correct += correct
        self.count += count
        self.seq_correct += seq_correct
        self.seq_count += seq_count


class Task(ABC):
    """Base class. Subclasses set ``name``, ``spec``, ``metric`` and the data. (The dataset's
    default model is the config's: ``conf/model/by_dataset/<dataset>.yaml``.)"""

    name: str = "task"
    metric: str = "acc"  #: the metric that picks the best checkpoint
    metric_mode: str = "max"  #: max | min
    spec: TaskSpec

    @classmethod
    def run_options(cls, cfg: Any) -> dict[str, Any]:
        """Constructor options :func:`~rnnbench.tasks.build_task` takes from the run's config
        beside the ``dataset`` node: by default where the data lives (``data.root``,
        ``data.download``); a generated dataset takes the run's seed instead."""
        return {"root": cfg.data.root, "download": cfg.data.download}

    # data ------------------------------------------------------------------------------------
    @abstractmethod
    def num_train_batches(self, batch_size: int) -> int:
        """Batches in one training epoch."""

    @abstractmethod
    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Any]:
        """The training batches of ``epoch`` (order: a pure function of seed and epoch)."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[Any]:
        """The batches of ``split`` (valid | test | train) in a fixed order."""

    def num_examples(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    # objective -------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, state: Any = None) -> tuple[Tensor, Any]:
        """Training loss (mean cross-entropy in nats) and the state to carry to the next batch."""

    @abstractmethod
    def evaluate_batch(self, model: torch.nn.Module, batch: Any, sums: EvalSums, state: Any = None) -> Any:
        """Add one batch's loss sum and correct counts to ``sums``; return the carried state."""

    def metrics(self, sums: EvalSums) -> dict[str, float]:
        loss = sums.loss / max(sums.count, 1)
        return {"loss": loss, "acc": sums.correct / max(sums.count, 1)}

    def state_dict(self) -> dict:
        """Anything a run must save to be reproducible (e.g. pmnist's permutation)."""
        return {}

    def to(self, device: torch.device) -> "Task":
        return self


class TensorTask(Task):
    """A task whose splits are in-memory tensors ``self.data[split] = (inputs, targets)``.

    Training batches follow :func:`epoch_permutation`; ``encode_inputs`` turns stored inputs
    into what the model reads (one-hot, pixels in [0, 1], ...)."""

    data: dict[str, tuple[Tensor, Tensor]]

    def encode_inputs(self, x: Tensor) -> Tensor:
        return x

    def num_train_batches(self, batch_size: int) -> int:
        return -(-len(self.data["train"][0]) // batch_size)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.data["train"]
        perm = epoch_permutation(len(x), seed, epoch)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            yield self.encode_inputs(x[idx]), y[idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.data[split]
        for i in range(0, len(x), batch_size):
            yield self.encode_inputs(x[i:i + batch_size]), y[i:i + batch_size]


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The training order of ``epoch``: a pure function of (seed, epoch), so resume is exact."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, expected_sha256: str, how_to_fix: str) -> None:
    """Raise a one-line :class:`DataError` if ``path`` is missing or its hash is wrong."""
    if not path.is_file():
        raise DataError(f"missing data file {path}; {how_to_fix}")
    got = sha256(path)
    if got != expected_sha256:
        raise DataError(f"corrupt data file {path} (sha256 {got[:12]}..., expected {expected_sha256[:12]}...); "
                        f"delete it and {how_to_fix}")


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))


def resolve_limit(n: int, limit: Optional[int]) -> int:
    return n if limit is None else max(1, min(n, int(limit)))
