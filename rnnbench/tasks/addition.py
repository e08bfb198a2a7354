"""Three-digit addition as seq2seq (article 003; the Keras ``addition_rnn`` example).

Question ``"24+654"`` right-padded with spaces to 7 one-hot steps over the 12 symbols
``0123456789+ ``; answer ``"678"`` right-padded to 4 steps. Operand pairs are drawn without
replacement from 0..max_value², so train/valid/test are disjoint. Generated from a seed: no
download. Metrics: per-character accuracy over the 4 answer steps (``acc``, as the article),
whole-answer accuracy (``seq_acc``) and mean cross-entropy (``loss``), all with greedy decoding.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import EvalSums, TaskSpec, TensorTask, resolve_limit

SYMBOLS = "0123456789+ "
CHAR_TO_ID = {c: i for i, c in enumerate(SYMBOLS)}


def encode(text: str, length: int) -> list[int]:
    return [CHAR_TO_ID[c] for c in text.ljust(length)]


def decode(ids: Any) -> str:
    return "".join(SYMBOLS[int(i)] for i in ids)


def make_split_pairs(n_total: int, max_value: int, seed: int) -> np.ndarray:
    """``n_total`` distinct (a, b) pairs, uniformly without replacement."""
    space = (max_value + 1) ** 2
    if n_total > space:
        raise ValueError(f"cannot draw {n_total} distinct pairs from {space}")
    rng = np.random.default_rng(seed)
    flat = rng.choice(space, size=n_total, replace=False)
    return np.stack([flat // (max_value + 1), flat % (max_value + 1)], 1)


class AdditionTask(TensorTask):
    name = "addition"
    metric = "acc"

    @classmethod
    def run_options(cls, cfg: Any) -> dict[str, Any]:
        """Generated data: the run's seed (unless ``data_seed``) draws the problems; no files."""
        return {"seed": cfg.seed}

    def __init__(self, seed: int = 0, n_train: int = 50000, n_valid: int = 5000, n_test: int = 5000,
                 max_value: int = 999, reverse: bool = False, data_seed: Optional[int] = None,
                 limit: Optional[int] = None, **_: Any) -> None:
        digits = len(str(max_value))
        self.in_len = 2 * digits + 1
        self.out_len = digits + 1
        self.reverse = reverse
        if n_train + n_valid + n_test > (max_value + 1) ** 2:
            raise ConfigError(f"dataset.max_value={max_value} gives {(max_value + 1) ** 2} distinct operand pairs, "
                              f"fewer than n_train + n_valid + n_test = {n_train + n_valid + n_test}; "
                              "raise dataset.max_value or lower the split sizes")
        pairs = make_split_pairs(n_train + n_valid + n_test, max_value, seed if data_seed is None else data_seed)
        self.pairs = {"train": pairs[:n_train], "valid": pairs[n_train:n_train + n_valid],
                      "test": pairs[n_train + n_valid:]}
        self.pairs["train"] = self.pairs["train"][:resolve_limit(n_train, limit)]
        self.data = {k: self._encode(v) for k, v in self.pairs.items()}
        self.spec = TaskSpec("seq2seq", len(SYMBOLS), len(SYMBOLS), self.in_len, self.out_len)

    def _encode(self, pairs: np.ndarray) -> tuple[Tensor, Tensor]:
        qs, ans = [], []
        for a, b in pairs:
            q = f"{a}+{b}".ljust(self.in_len)
            if self.reverse:
                q = q[::-1]
            qs.append([CHAR_TO_ID[c] for c in q])
            ans.append(encode(str(a + b), self.out_len))
        x = torch.tensor(qs, dtype=torch.long)
        y = torch.tensor(ans, dtype=torch.long)
        return x, y

    def question(self, x_ids: Tensor) -> str:
        q = decode(x_ids)
        return q[::-1] if self.reverse else q

    def one_hot(self, ids: Tensor) -> Tensor:
        return F.one_hot(ids, len(SYMBOLS)).float()

    encode_inputs = one_hot  # batches carry the one-hot question

    # objective -------------------------------------------------------------------------------
    def loss(self, model, batch, state=None):
        x, y = batch
        logits = model(x, self.one_hot(y))  # teacher forcing
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), None

    def evaluate_batch(self, model, batch, sums: EvalSums, state=None):
        x, y = batch
        logits = model(x)  # greedy decoding
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        pred = logits.argmax(-1)
        ok = pred == y
        sums.add(nll.item(), ok.sum().item(), y.numel(), ok.all(1).sum().item(), y.shape[0])
        return None

    def metrics(self, sums: EvalSums) -> dict[str, float]:
        m = super().metrics(sums)
        m["seq_acc"] = sums.seq_correct / max(sums.seq_count, 1)
        return m
