"""Character language model: embedding -> stacked recurrent layers -> linear over the vocabulary."""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

from ..cells import RNNStack, cell_factory
from ..tasks.base import TaskSpec


class LanguageModel(nn.Module):
    def __init__(self, spec: TaskSpec, cell: Any, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, embedding_size: int = 128, tie_weights: bool = False, **_: Any) -> None:
        super().__init__()
        self.embedding = nn.Embedding(spec.num_classes, embedding_size)
        self.rnn = RNNStack(cell_factory(cell), embedding_size, hidden_size, num_layers, False, dropout)
        self.output_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.rnn.output_size, spec.num_classes)
        if tie_weights:
            if embedding_size != self.rnn.output_size:
                from ..errors import ConfigError
                raise ConfigError("model.tie_weights needs model.embedding_size == model.hidden_size")
            self.head.weight = self.embedding.weight

    def forward(self, x: Tensor, state: Optional[list] = None) -> tuple[Tensor, list]:
        """x [B, T] symbol ids -> logits [B, T, V], new state."""
        emb = self.embedding(x.t())  # [T, B, E]
        y, state = self.rnn(emb, state)
        return self.head(self.output_dropout(y)).transpose(0, 1), state
