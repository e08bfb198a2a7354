"""AWD-LSTM regularization (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM
Language Models"; article 002): weight drop on the recurrent matrices + locked dropout on the
input, between layers and on the output + embedding dropout, with the defaults of the
reference ``main.py``: ``wdrop=0.5, dropouti=0.65, dropouth=0.3, dropout=0.4, dropoute=0.1``.

Embedding dropout applies where the model has an ``nn.Embedding`` (the LM) and is skipped
otherwise (classifiers, seq2seq), so ``regularizer=awd`` works on every model.
"""
from __future__ import annotations

from torch import nn

from .base import Regularizer
from .variational_dropout import VariationalDropout
from .weight_drop import WeightDrop


class AWD(Regularizer):
    name = "awd"
    order = 10

    def __init__(self, wdrop: float = 0.5, dropouti: float = 0.65, dropouth: float = 0.3,
                 dropout: float = 0.4, dropoute: float = 0.1, use_vd: bool = False) -> None:
        self.weight_drop = WeightDrop(p=wdrop, use_vd=use_vd)
        self.variational_dropout = VariationalDropout(input=dropouti, hidden=dropouth, output=dropout,
                                                      embedding=dropoute, embedding_if_present=True)

    def apply(self, model: nn.Module) -> None:
        self.weight_drop.apply(model)
        self.variational_dropout.apply(model)

    def after_step(self, model: nn.Module) -> None:
        self.weight_drop.after_step(model)
