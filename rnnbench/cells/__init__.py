"""Recurrent cells (one step each) and the layers/stacks that run them over time."""
from .base import Cell, RecurrentLayer, State
from .delta_rnn import DeltaRNNCell
from .gru import GRUCell
from .lstm import LSTMCell
from .multiplicative import MLSTMCell, MRNNCell
from .rnn import RNNCell
from .stack import Bidirectional, RNNStack, cell_factory, map_state
from .vc import VCCell, VCGRUCell, VCLSTMCell, VCRNNCell

__all__ = ["Cell", "RecurrentLayer", "State", "LSTMCell", "RNNCell", "GRUCell", "VCCell", "VCLSTMCell",
           "VCRNNCell", "VCGRUCell", "MLSTMCell", "MRNNCell", "DeltaRNNCell", "RNNStack", "Bidirectional",
           "cell_factory", "map_state"]
