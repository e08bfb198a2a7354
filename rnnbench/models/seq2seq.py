"""Encoder-decoder (article 003 §1, the Keras addition example).

The encoder reads the question; the first answer step is read out from the encoder's final
state (``score_0 = V h_enc + b``); each later decoder step takes the previous answer symbol as
one-hot input — the true one in training (teacher forcing), the model's own argmax otherwise
(greedy decoding, used for every reported metric).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import RNNStack, cell_factory
from ..tasks.base import TaskSpec


class Seq2Seq(nn.Module):
    def __init__(self, spec: TaskSpec, cell: Any, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, **_: Any) -> None:
        super().__init__()
        self.out_len = spec.out_len
        self.vocab = spec.num_classes
        make = cell_factory(cell)
        self.encoder = RNNStack(make, spec.input_size, hidden_size, num_layers, False, dropout, one_hot_input=True)
        self.decoder = RNNStack(make, spec.num_classes, hidden_size, num_layers, False, dropout, one_hot_input=True)
        self.head = nn.Linear(hidden_size, spec.num_classes)

    def forward(self, x: Tensor, y_onehot: Optional[Tensor] = None) -> Tensor:
        """x [B, T_in, V] one-hot; y_onehot [B, T_out, V] for teacher forcing. -> logits [B, T_out, V]."""
        enc, state = self.encoder(x.transpose(0, 1))
        first = self.head(enc[-1])
        if y_onehot is not None:  # teacher forcing: all decoder inputs known, one sequence call
            dec, _ = self.decoder(y_onehot[:, :-1].transpose(0, 1), state)
            return torch.cat([first[:, None], self.head(dec).transpose(0, 1)], 1)
        logits = [first]
        for _ in range(1, self.out_len):
            inp = F.one_hot(logits[-1].argmax(-1), self.vocab).to(x.dtype)
            dec, state = self.decoder(inp[None], state)
            logits.append(self.head(dec[0]))
        return torch.stack(logits, 1)
