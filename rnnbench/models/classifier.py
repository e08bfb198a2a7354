"""Sequence classifier (articles 001, 003 §2): recurrent layer(s) -> last output -> linear.

With ``bidirectional=True`` the last step's output is ``[h_fw(T), h_bw(T)]`` — the forward
state after the whole sequence and the backward state after reading only the last step, as
TF's ``static_bidirectional_rnn`` output ``outputs[-1]`` used in article 003.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..cells import RNNStack, cell_factory
from ..tasks.base import TaskSpec


class Classifier(nn.Module):
    def __init__(self, spec: TaskSpec, cell: Any, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, **_: Any) -> None:
        super().__init__()
        self.rnn = RNNStack(cell_factory(cell), spec.input_size, hidden_size, num_layers, bidirectional, dropout)
        self.head = nn.Linear(self.rnn.output_size, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x [B, T, I] -> logits [B, C]
        y, _ = self.rnn(x.transpose(0, 1))
        return self.head(y[-1])
