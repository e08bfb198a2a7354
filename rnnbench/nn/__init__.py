"""rnnbench's cells as drop-in ``torch.nn.LSTM``-style modules, for your own models.

    from rnnbench import nn as rnn
    lstm = rnn.VCLSTM(input_size=32, hidden_size=128, num_layers=2, bidirectional=True,
                      batch_first=True, zoneout=(0.5, 0.05), lam=2.0)
    output, (h_n, c_n) = lstm(x)            # x [B, T, 32] or a PackedSequence

Every module takes ``torch.nn.LSTM``'s arguments (``input_size, hidden_size, num_layers=1,
bias=True, batch_first=False, dropout=0.0, bidirectional=False``, ``device``, ``dtype``), the
cell's options and the regularizers as keyword arguments, and runs on the same paths as the CLI.
"""
from .base import RecurrentModule, regularizer_config
from .modules import GRU, LSTM, MLSTM, MRNN, RNN, VCGRU, VCLSTM, VCRNN, DeltaRNN

MODULES = {"lstm": LSTM, "gru": GRU, "rnn": RNN, "vclstm": VCLSTM, "vcgru": VCGRU, "vcrnn": VCRNN,
           "mlstm": MLSTM, "mrnn": MRNN, "delta_rnn": DeltaRNN}

__all__ = ["LSTM", "GRU", "RNN", "VCLSTM", "VCGRU", "VCRNN", "MLSTM", "MRNN", "DeltaRNN", "RecurrentModule",
           "regularizer_config", "MODULES"]
