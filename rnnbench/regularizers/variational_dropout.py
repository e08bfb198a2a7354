"""Variational (locked) dropout (Gal & Ghahramani 2016; AWD-LSTM's ``LockedDropout``; article
002's ``VariationalDropout``) and embedding dropout (AWD-LSTM's ``embedded_dropout``).

    y_t = x_t ⊙ m / (1 − p),   m ~ Bernoulli(1 − p)^{B×F}, the same m for every step t

One mask per sequence (per call), shared over time, independent across batch items and
features. Where it acts on a model's :class:`~rnnbench.cells.RNNStack` (each one):

* ``input``:  the input of the first layer (forward pre-hook on ``stack.layers[0]``),
* ``hidden``: the input of every later layer, i.e. between layers (pre-hooks on ``layers[i>0]``),
* ``output``: the stack's output (forward hook on the stack).

``embedding`` (AWD-LSTM ``dropoute``): whole rows of every ``nn.Embedding`` are dropped,
``E'[v] = E[v] · m_v / (1 − p)``, ``m_v ~ Bernoulli(1 − p)`` once per call — applied to the
looked-up vectors by a forward hook, so tied output weights are untouched. A model without an
embedding fails with ``embedding > 0`` unless ``embedding_if_present`` (AWD's default).
Eval: identity everywhere. Tensors are time-major ``[T, B, F]``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..cells.stack import RNNStack
from ..errors import ConfigError
from .base import Regularizer


def locked_mask(x: Tensor, p: float) -> Tensor:
    """A ``[1, B, F]`` mask of Bernoulli(1 − p) / (1 − p) for a time-major ``x [T, B, F]``."""
    keep = 1.0 - p
    u = torch.rand((1,) + tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
    return (u >= p).to(x.dtype).mul_(1.0 / keep)


class LockedDropout(nn.Module):
    """``x [T, B, F] -> x ⊙ m`` with one ``[1, B, F]`` mask for all T steps (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * locked_mask(x, self.p)


class EmbeddingDropout(nn.Module):
    """Drop whole embedding rows: ``out[..., :] *= m[ids] / (1 − p)``, ``m ~ Bernoulli(1 − p)^V``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def hook(self, emb: nn.Embedding, args: tuple, out: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return out
        keep = 1.0 - self.p
        m = out.new_empty(emb.num_embeddings).bernoulli_(keep).div_(keep)
        return out * m[args[0]].unsqueeze(-1)


def _check_p(p: float, what: str) -> float:
    if not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"regularizer.variational_dropout.{what} must be in [0, 1), got {p}")
    return float(p)


class VariationalDropout(Regularizer):
    name = "variational_dropout"
    order = 20

    def __init__(self, input: float = 0.0, hidden: float = 0.0, output: float = 0.0,
                 embedding: float = 0.0, embedding_if_present: bool = False) -> None:
        self.input = _check_p(input, "input")
        self.hidden = _check_p(hidden, "hidden")
        self.output = _check_p(output, "output")
        self.embedding = _check_p(embedding, "embedding")
        self.embedding_if_present = bool(embedding_if_present)

    @staticmethod
    def _pre_hook(drop: LockedDropout):
        def hook(module: nn.Module, args: tuple) -> Optional[tuple]:
            return (drop(args[0]),) + tuple(args[1:])
        return hook

    @staticmethod
    def _post_hook(drop: LockedDropout):
        def hook(module: nn.Module, args: tuple, out: Any) -> Any:
            y, state = out
            return drop(y), state
        return hook

    def apply(self, model: nn.Module) -> None:
        stacks = [m for m in model.modules() if isinstance(m, RNNStack)]
        if not stacks:
            raise ConfigError(f"regularizer {self.name} needs a model with an RNNStack "
                              f"(found none in {type(model).__name__})")
        for k, stack in enumerate(stacks):
            for i, layer in enumerate(stack.layers):
                p = self.input if i == 0 else self.hidden
                if p > 0:
                    drop = LockedDropout(p)
                    layer.add_module("locked_dropout_in", drop)
                    layer.register_forward_pre_hook(self._pre_hook(drop))
            if self.output > 0:
                drop = LockedDropout(self.output)
                stack.add_module("locked_dropout_out", drop)
                stack.register_forward_hook(self._post_hook(drop))
        if self.embedding > 0:
            embs = [m for m in model.modules() if isinstance(m, nn.Embedding)]
            if not embs and not self.embedding_if_present:
                raise ConfigError(f"regularizer {self.name}.embedding={self.embedding} needs a model with an "
                                  f"nn.Embedding ({type(model).__name__} has none); set it to 0")
            for emb in embs:
                d = EmbeddingDropout(self.embedding)
                emb.add_module("embedding_dropout", d)
                emb.register_forward_hook(d.hook)
