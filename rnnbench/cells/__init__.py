"""Recurrent cells (one step each) and the layers/stacks that run them over time."""
from .base import Cell, RecurrentLayer, State
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell
from .stack import Bidirectional, RNNStack, cell_factory, map_state

__all__ = ["Cell", "RecurrentLayer", "State", "LSTMCell", "RNNCell", "GRUCell", "RNNStack",
           "Bidirectional", "cell_factory", "map_state"]
