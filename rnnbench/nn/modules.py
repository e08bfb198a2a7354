"""The nine drop-in modules, one per cell. Each takes ``torch.nn.LSTM``'s arguments, the cell's own
options and the regularizers as keyword arguments (see :class:`~rnnbench.nn.base.RecurrentModule`)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..cells import (DeltaRNNCell, GRUCell, LSTMCell, MLSTMCell, MRNNCell, RNNCell, VCGRUCell, VCLSTMCell,
                     VCRNNCell)
from .base import RecurrentModule

TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class TorchLayout(RecurrentModule):
    """Cells in ``torch.nn.LSTM``'s parameter layout: weights copy over from a torch module."""

    @torch.no_grad()
    def copy_from_torch(self, module: nn.RNNBase) -> "TorchLayout":
        """Copy ``module``'s ``weight_ih_l{k}[_reverse]`` ... into the matching cells (same sizes)."""
        if (module.num_layers, module.bidirectional) != (self.num_layers, self.bidirectional):
            raise ValueError("copy_from_torch: num_layers and bidirectional must match")
        for i, cell in enumerate(self.cells()):
            suffix = f"_l{i // self.num_directions}" + ("_reverse" if i % self.num_directions else "")
            for name in TORCH_NAMES:
                if parametrize.is_parametrized(cell, name):
                    raise ValueError("copy_from_torch: copy the weights before a regularizer parametrizes them")
                src = getattr(module, name + suffix, None)
                if src is None:  # torch's bias=False
                    getattr(cell, name).zero_()
                else:
                    getattr(cell, name).copy_(src)
        return self


class LSTM(TorchLayout):
    """LSTM (Hochreiter & Schmidhuber 1997), the function of ``torch.nn.LSTM``::

        i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
        c_t = σ(f + forget_bias) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)

    Options: ``forget_bias`` (a constant inside the forget sigmoid, TF's), ``fused`` (default
    True: ``torch._VF.lstm`` when no per-step hook needs the loop; False: the hand-written BPTT),
    ``recurrent_init`` (``orthogonal``). Returns ``(output, (h_n, c_n))``.
    """

    cell_class, cell_name = LSTMCell, "lstm"


class GRU(TorchLayout):
    """GRU (Cho et al. 2014), the function of ``torch.nn.GRU``::

        r = σ(W_ir x + b_ir + W_hr h + b_hr);  z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Options: ``fused``, ``recurrent_init``. Returns ``(output, h_n)``.
    """

    cell_class, cell_name = GRUCell, "gru"


class RNN(TorchLayout):
    """Elman RNN (Elman 1990), ``torch.nn.RNN`` with tanh: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    ``nonlinearity`` must be ``tanh`` (the cell has no ReLU form). Returns ``(output, h_n)``.
    """

    cell_class, cell_name = RNNCell, "rnn"

    def __init__(self, *args: Any, nonlinearity: str = "tanh", **kw: Any) -> None:
        if nonlinearity != "tanh":
            raise ValueError(f"rnnbench.nn.RNN has only the tanh nonlinearity, not {nonlinearity!r}")
        super().__init__(*args, **kw)


class VCModule(RecurrentModule):
    """Variable-computation modules: the fraction of the state their cells update."""

    def compute_fraction(self) -> Optional[float]:
        """Fraction of hidden units updated per step, averaged over the steps run since the last
        call of this or :meth:`stats` (which also gives ``mean_m``); None before any forward."""
        return self.stats().get("compute_fraction")

    def set_training_progress(self, step: int, total_steps: int) -> None:
        """Move λ along ``lam_schedule`` (call it every step, as the trainer does)."""
        for cell in self.cells():
            cell.set_training_progress(step, total_steps)


_VC_DOC = """

    A scalar scheduler picks, per step, how much of the state to update (Jernite et al. 2017,
    "Variable Computation in Recurrent Neural Networks", arXiv 1611.06188)::

        m_t = σ(w_m · [x_t, h_{t-1}] + b_m)
        (e_t)_i = Thres_ε(σ(λ (m_t D − i)))        over the hidden dims (and the input dims)
        h_t = e ⊙ h̃_t + (1 − e) ⊙ h_{t-1}         h̃_t: the base cell on e ⊙ x_t, e ⊙ h_{t-1}

    Options: ``lam``, ``lam_schedule``/``lam_final``, ``eps``, ``threshold`` (``soft`` | ``hard``),
    ``penalty``/``target_m`` (the computation penalty, from :meth:`extra_loss`), ``index_offset``,
    ``mask_input``, ``m_bias_init``. :meth:`compute_fraction` reports the computation spent.
    """


class VCLSTM(VCModule):
    __doc__ = "Variable Computation LSTM (article 000): an LSTM whose c and h update only e's dims." + _VC_DOC
    cell_class, cell_name = VCLSTMCell, "vclstm"


class VCGRU(VCModule):
    __doc__ = "Variable Computation GRU (Jernite et al. 2017): a GRU updating only e's dims." + _VC_DOC
    cell_class, cell_name = VCGRUCell, "vcgru"


class VCRNN(VCModule):
    __doc__ = "Variable Computation RNN (Jernite et al. 2017): an Elman RNN updating only e's dims." + _VC_DOC
    cell_class, cell_name = VCRNNCell, "vcrnn"


class MLSTM(RecurrentModule):
    """Multiplicative LSTM (Krause, Lu, Murray & Renals 2016, arXiv 1609.07959)::

        m_t = (W_mx x_t) ⊙ (W_mh h_{t-1});  ĥ_t = W_hm m_t + W_hx x_t
        i, f, o = σ(W_*x x_t + W_*m m_t);  c_t = f ⊙ c_{t-1} + i ⊙ ĥ_t;  h_t = tanh(c_t ⊙ o_t)

    Options: ``forget_bias``, ``factor_bias`` (a learnable bias on W_mx x). Returns ``(output, (h_n, c_n))``.
    """

    cell_class, cell_name = MLSTMCell, "mlstm"


class MRNN(RecurrentModule):
    """Multiplicative RNN (Sutskever, Martens & Hinton 2011)::

        m_t = (W_mx x_t) ⊙ (W_mh h_{t-1});  h_t = tanh(W_hm m_t + W_hx x_t + b)

    Options: ``factor_bias``. Returns ``(output, h_n)``.
    """

    cell_class, cell_name = MRNNCell, "mrnn"


class DeltaRNN(RecurrentModule):
    """Delta-RNN (Ororbia, Mikolov & Reitter 2017, arXiv 1703.08864)::

        d1 = α ⊙ (V h_{t-1}) ⊙ (W x_t);  d2 = β1 ⊙ (V h_{t-1}) + β2 ⊙ (W x_t)
        z_t = tanh(d1 + d2 + b_z);  r_t = σ(W x_t + b_r);  h_t = Φ((1 − r_t) ⊙ z_t + r_t ⊙ h_{t-1})

    Options: ``outer_activation`` (Φ: ``tanh`` | ``identity`` | ``relu``), ``alpha_init``,
    ``beta1_init``, ``beta2_init``. Returns ``(output, h_n)``.
    """

    cell_class, cell_name = DeltaRNNCell, "delta_rnn"
