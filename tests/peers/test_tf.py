"""The TF peers of ``rnnbench bench --peer tf`` compute what the rows they are compared with
compute: article 000's VCLSTM equals our ``vclstm`` with ``threshold=hard``, article 001's WN-LSTM
our ``lstm`` with ``weight_norm``, given the same weights (float32). Skipped where TensorFlow is
not importable (it is not a dependency)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from rnnbench.peers import tf as peer_tf

pytestmark = pytest.mark.skipif(peer_tf.unavailable() is not None, reason="tensorflow is not importable")

def _ours(cell: str, reg=None, I=5, H=7, **over):
    """A one-layer stack of the real ``conf/cell/<cell>.yaml`` with ``over`` set, as bench builds it."""
    from rnnbench.cells import RNNStack
    from rnnbench.config import instantiate
    from rnnbench.regularizers import apply_regularizers
    from testutil import compose

    torch.manual_seed(0)
    cfg = compose([f"cell={cell}", *(f"cell.{k}={v}" for k, v in over.items())]).cell
    model = RNNStack(lambda i, h: instantiate(cfg, input_size=i, hidden_size=h), I, H)
    if reg:
        apply_regularizers(model, reg)
    return model


def test_article_000_vclstm_equals_ours_with_the_hard_threshold():
    import tensorflow as tf

    model = _ours("vclstm", threshold="hard", lam=1.0, eps=0.1, index_offset=0)
    cell = model.recurrent_layers()[0].cell
    with torch.no_grad():
        cell.b_m.fill_(0.3)  # m away from 0: a mix of updated and kept units
    x = torch.randn(6, 4, 5)
    with torch.no_grad():
        ours = model(x)[0].numpy()
    v = {k: tf.constant(a) for k, a in peer_tf.vclstm_from_torch(cell).items()}
    theirs = peer_tf.vclstm_forward(tf, tf.constant(x.numpy()), v).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_article_001_wn_lstm_equals_ours_with_weight_norm():
    import tensorflow as tf

    model = _ours("lstm", {"weight_norm": {"init": "article"}})
    cell = model.recurrent_layers()[0].cell
    H = cell.hidden_size
    order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # i, f, g, o → the article's i, f, o, g
    par = cell.parametrizations
    n = lambda t: t.detach().numpy()  # noqa: E731
    v = {"w_x": n(par.weight_ih.original1)[order].T.copy(), "g_x": n(par.weight_ih.original0)[order, 0],
         "w_h": n(par.weight_hh.original1)[order].T.copy(), "g_h": n(par.weight_hh.original0)[order, 0],
         "b": (n(cell.bias_ih) + n(cell.bias_hh))[order]}
    x = torch.randn(6, 4, 5)
    with torch.no_grad():
        ours = model(x)[0].numpy()
    theirs = peer_tf.wn_lstm_forward(tf, tf.constant(x.numpy()), {k: tf.constant(a) for k, a in v.items()}).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("peer", peer_tf.PEERS, ids=lambda p: p.name)
def test_a_peer_batch_runs(peer):
    fn = peer_tf.batch_fn(peer, 5, 3, 4, 6)
    fn()
    fn()


def test_torch_compiler_stack_imports_after_the_peer():
    """With TensorFlow loaded first, importing triton's C extension (torch._dynamo, as an optimizer's
    construction does) killed the process with a segfault: the peer module loads torch's stack first."""
    code = ("from rnnbench.peers import tf; assert tf.unavailable() is None; import torch; "
            "torch.optim.Adam(torch.nn.Linear(2, 2).parameters()); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
