"""Recurrent cells (one step each) and the layers/stacks that run them over time.

Importing the package imports every module in it: a cell module registers its config schema
when it is imported (``config.register_schema`` at its end), so a new ``cells/<name>.py`` needs no
line here or anywhere else."""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import Cell, RecurrentLayer, State
# in this order: the cells' schemas register as they are imported, and that order is the registry's
from .lstm import LSTMCell  # isort: skip
from .gru import GRUCell  # isort: skip
from .rnn import RNNCell  # isort: skip
from .vc import VCCell, VCGRUCell, VCLSTMCell, VCRNNCell  # isort: skip
from .multiplicative import MLSTMCell, MRNNCell  # isort: skip
from .delta_rnn import DeltaRNNCell  # isort: skip
from .stack import Bidirectional, RNNStack, cell_factory, map_state

__all__ = ["Cell", "RecurrentLayer", "State", "LSTMCell", "RNNCell", "GRUCell", "VCCell", "VCLSTMCell",
           "VCRNNCell", "VCGRUCell", "MLSTMCell", "MRNNCell", "DeltaRNNCell", "RNNStack", "Bidirectional",
           "cell_factory", "map_state"]

for _m in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_m.name}")
