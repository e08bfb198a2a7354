"""``cell.recurrent_init``: ``orthogonal`` makes every H×H gate block of each recurrent matrix
orthogonal (checked as QᵀQ = I, independently of how it was drawn); ``default`` leaves the
cell's own initialisation (and its random stream) unchanged."""
from __future__ import annotations

import pytest
import torch

from cellutil import CELLS, make_cell

RECURRENT = {  # which matrices act on h_{t-1} (or on the factor m_t), by cell
    "lstm": {"weight_hh"}, "gru": {"weight_hh"}, "rnn": {"weight_hh"}, "delta_rnn": {"weight_hh"},
    "vclstm": {"weight_hh"}, "vcgru": {"weight_hh"}, "vcrnn": {"weight_hh"},
    "mlstm": {"weight_mh", "weight_m"}, "mrnn": {"weight_mh", "weight_hm"},
}


def _blocks(w: torch.Tensor):
    H = w.shape[1]
    return [w[r:r + H] for r in range(0, w.shape[0], H)]


def test_every_cell_is_listed():
    assert set(CELLS) == set(RECURRENT)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_orthogonal_recurrent_init(name):
    H = 6
    cell = make_cell(name, 3, H, ("recurrent_init=orthogonal",))
    assert set(cell.matrix_names("recurrent")) == RECURRENT[name]
    mats = [getattr(cell, n) for n in RECURRENT[name]]
    for w in mats:
        assert w.shape[0] % H == 0 and w.shape[1] == H
        for b in _blocks(w.detach()):
            torch.testing.assert_close(b @ b.T, torch.eye(H, dtype=b.dtype), atol=1e-6, rtol=0)  # drawn in float32
    default = make_cell(name, 3, H, ("recurrent_init=default",))
    for n in RECURRENT[name]:  # U(−k, k) blocks are not orthogonal
        b = _blocks(getattr(default, n).detach())[0]
        assert not torch.allclose(b @ b.T, torch.eye(H, dtype=b.dtype), atol=0.1)
    # the other parameters are untouched by the option (same seed, same draws)
    for (n, p), (_, q) in zip(cell.named_parameters(), default.named_parameters()):
        if n not in RECURRENT[name]:
            assert torch.equal(p, q), n


def test_bad_recurrent_init_is_refused():
    from rnnbench.cells.rnn import RNNCell

    with pytest.raises(ValueError, match="recurrent_init"):
        RNNCell(3, 4, recurrent_init="identity")


def test_shipped_defaults_are_the_cells_own_init():
    """Every cell config ships ``recurrent_init: default`` (the papers' / torch.nn's init); the
    multiplicative cells ship the papers' form (no factor bias)."""
    from cellutil import cell_cfg

    for name in CELLS:
        assert cell_cfg(name).recurrent_init == "default", name
    assert cell_cfg("mlstm").factor_bias is None and cell_cfg("mrnn").factor_bias is None
