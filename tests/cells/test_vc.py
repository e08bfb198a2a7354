"""VC structure: saturated m_t == the base cell; small m_t changes only the leading dims; the soft
threshold passes gradient to the scheduler, the hard one (article mode) does not; penalty, λ schedule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rnnbench.cells import RecurrentLayer
from cellutil import make_cell

BASE = {"vclstm": nn.LSTM, "vcrnn": nn.RNN, "vcgru": nn.GRU}


def _set_scheduler(cell, b_m: float) -> None:
    with torch.no_grad():
        cell.w_mx.zero_()
        cell.w_mh.zero_()
        cell.b_m.fill_(b_m)


@pytest.mark.parametrize("threshold", ["soft", "hard"])
@pytest.mark.parametrize("name", ["vclstm", "vcrnn", "vcgru"])
def test_saturated_scheduler_equals_base_cell(name, threshold):
    I, H = 5, 7
    cell = make_cell(name, I, H, (f"threshold={threshold}", "lam=5.0"))
    _set_scheduler(cell, 60.0)  # m_t = σ(60) == 1.0 in float64
    ref = BASE[name](I, H).double()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, n + "_l0").copy_(getattr(cell, n))
    x = torch.randn(6, 3, I, dtype=torch.float64)
    y, _ = RecurrentLayer(cell)(x)
    y_ref, _ = ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    assert cell.stats()["compute_fraction"] == 1.0


@pytest.mark.parametrize("threshold", ["soft", "hard"])
@pytest.mark.parametrize("name", ["vclstm", "vcrnn", "vcgru"])
def test_small_m_updates_only_leading_dims(name, threshold):
    I, H, lam, eps = 4, 16, 2.0, 0.1
    cell = make_cell(name, I, H, (f"threshold={threshold}", f"lam={lam}", f"eps={eps}"))
    m = 0.4
    _set_scheduler(cell, math.log(m / (1 - m)))
    # dims i with σ(λ(mD − i)) ≥ ε may change (soft edge); the rest must be carried exactly
    i = np.arange(H)
    s = 1 / (1 + np.exp(-lam * (m * H - i)))
    moving = (s > 1 - eps) if threshold == "hard" else (s >= eps)
    k = int(moving.sum())
    assert 0 < k < H and moving[:k].all()
    x = torch.randn(5, 3, I, dtype=torch.float64)
    h0 = torch.randn(3, H, dtype=torch.float64)
    state = (h0, torch.randn(3, H, dtype=torch.float64)) if name == "vclstm" else (h0,)
    prev = state
    for t in range(x.shape[0]):
        h, new = cell(x[t], prev)
        for a, b in zip(prev, new):
            assert torch.equal(a[:, k:], b[:, k:]), "dims past the mask edge must be carried exactly"
            assert (a[:, :k] != b[:, :k]).all(), "the leading dims must be updated"
        prev = new


def test_soft_threshold_passes_gradient_to_scheduler_hard_does_not():
    I, H = 4, 12
    x = torch.randn(5, 3, I, dtype=torch.float64)
    grads = {}
    for threshold in ("soft", "hard"):
        cell = make_cell("vclstm", I, H, (f"threshold={threshold}", "lam=1.0", "penalty=0.0"))
        y, _ = RecurrentLayer(cell)(x)
        y.pow(2).sum().backward()
        grads[threshold] = [0.0 if p.grad is None else p.grad.abs().sum().item() for p in (cell.w_mx, cell.w_mh, cell.b_m)]
        assert cell.weight_hh.grad.abs().sum() > 0
    assert all(g > 1e-8 for g in grads["soft"]), grads
    assert all(g == 0.0 for g in grads["hard"]), grads


def test_hard_threshold_is_the_articles_code():
    """e = relu(sign(σ(λ(mD − i)) − (1 − ε))) with i = 0..D−1 (the article's TF code)."""
    cell = make_cell("vclstm", 3, 10, ("threshold=hard", "lam=1.5", "eps=0.1"))
    m = torch.tensor([[0.05], [0.37], [0.5], [0.93], [1.0]], dtype=torch.float64)
    e = cell.mask(m, cell.idx_h).numpy()
    a = m.numpy() * 10 - np.arange(10)[None, :]
    ref = np.maximum(np.sign(1 / (1 + np.exp(-1.5 * a)) - 0.9), 0)
    np.testing.assert_array_equal(e, ref)


def test_penalty_is_added_and_pulls_toward_target():
    I, H, target, w = 3, 6, 0.2, 0.7
    cell = make_cell("vcrnn", I, H, (f"target_m={target}", f"penalty={w}"))
    cell.train()
    layer = RecurrentLayer(cell)
    x = torch.randn(5, 4, I, dtype=torch.float64)
    layer(x)
    # the reference: recompute m_t with NumPy from the same parameters and states
    with torch.no_grad():
        hs = [torch.zeros(4, H, dtype=torch.float64)]
        for t in range(5):
            hs.append(cell(x[t], (hs[-1],))[0])
        cell.stats(), cell.extra_loss()  # discard the bookkeeping of these extra steps
    Xn, Hn = x.numpy(), torch.stack(hs[:-1]).numpy()
    m = 1 / (1 + np.exp(-(Xn @ cell.w_mx.detach().numpy() + Hn @ cell.w_mh.detach().numpy()
                          + cell.b_m.item())))[..., 0]  # [T, B]
    expect = w * np.mean((m.mean(0) - target) ** 2)
    layer(x)
    loss = cell.extra_loss()
    assert loss is not None and loss.requires_grad
    np.testing.assert_allclose(loss.item(), expect, rtol=1e-10)
    assert cell.extra_loss() is None  # consumed
    # a few steps on the penalty alone move mean m toward the target
    opt = torch.optim.SGD(cell.parameters(), lr=1.0)
    first = None
    for _ in range(20):
        layer(x)
        loss = cell.extra_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def test_no_penalty_when_disabled_or_eval():
    cell = make_cell("vclstm", 3, 4, ("penalty=1.0",))
    cell.eval()
    RecurrentLayer(cell)(torch.randn(3, 2, 3, dtype=torch.float64))
    assert cell.extra_loss() is None
    cell2 = make_cell("vclstm", 3, 4, ("penalty=0.0",))
    RecurrentLayer(cell2)(torch.randn(3, 2, 3, dtype=torch.float64))
    assert cell2.extra_loss() is None


@pytest.mark.parametrize("schedule,mid", [("constant", 1.0), ("linear", 5.5), ("exp", math.sqrt(10.0))])
def test_lambda_schedule(schedule, mid):
    cell = make_cell("vclstm", 3, 4, ("lam=1.0", f"lam_schedule={schedule}", "lam_final=10.0"))
    cell.set_training_progress(0, 100)
    assert cell.lam == pytest.approx(1.0)
    cell.set_training_progress(50, 100)
    assert cell.lam == pytest.approx(mid)
    cell.set_training_progress(100, 100)
    assert cell.lam == pytest.approx(10.0 if schedule != "constant" else 1.0)


@pytest.mark.parametrize("name", ["vclstm", "vcgru", "vcrnn"])
def test_scheduled_lambda_travels_with_the_state_dict(name):
    """A checkpoint evaluates with the λ it was saved at: a fresh cell loading it gets that λ and
    the same outputs; a constant λ adds nothing to the state_dict; a checkpoint from before the
    buffer (no ``lam_now``) loads and keeps the cell's current λ."""
    opts = ("lam=1.0", "lam_schedule=linear", "lam_final=10.0")
    cell = make_cell(name, 3, 4, opts)
    cell.set_training_progress(30, 100)
    assert cell.lam == pytest.approx(3.7) and float(cell.lam_now) == pytest.approx(3.7)
    fresh = make_cell(name, 3, 4, opts, seed=1)
    assert fresh.lam == 1.0
    fresh.load_state_dict(cell.state_dict())
    assert fresh.lam == pytest.approx(3.7)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(RecurrentLayer(fresh)(x)[0], RecurrentLayer(cell)(x)[0], rtol=0, atol=0)
    old = {k: v for k, v in cell.state_dict().items() if k != "lam_now"}
    fresh2 = make_cell(name, 3, 4, opts, seed=1)
    fresh2.set_training_progress(100, 100)
    fresh2.load_state_dict(old)
    assert fresh2.lam == pytest.approx(10.0)
    assert "lam_now" not in make_cell(name, 3, 4).state_dict()


def test_stack_aggregates_stats_and_penalty():
    from rnnbench.cells import RNNStack, cell_factory
    from cellutil import cell_cfg

    stack = RNNStack(cell_factory(cell_cfg("vclstm", ("penalty=0.1",))), 3, 5, num_layers=2, bidirectional=True)
    y, _ = stack(torch.randn(4, 2, 3))
    st = stack.stats()
    assert set(st) == {"mean_m", "compute_fraction"} and 0 < st["compute_fraction"] <= 1
    loss = stack.extra_loss()
    assert loss is not None and loss.ndim == 0
    loss.backward()
    assert stack.layers[0].fw.cell.b_m.grad is not None


@pytest.mark.parametrize("threshold,offset,lam", [("soft", 0, 1.0), ("soft", 1, 0.3), ("hard", 0, 2.0), ("hard", 1, 5.0)])
def test_compute_fraction_counts_updated_units(threshold, offset, lam):
    """The closed-form count behind ``compute_fraction`` == counting e_i > 0 from the NumPy mask."""
    H, eps = 20, 0.1
    cell = make_cell("vcrnn", 3, H, (f"threshold={threshold}", f"index_offset={offset}", f"lam={lam}"))
    m = np.random.default_rng(0).uniform(0, 1, size=500)
    i = np.arange(H) + offset
    s = 1 / (1 + np.exp(-lam * (m[:, None] * H - i[None, :])))
    e = (s > 1 - eps).astype(float) if threshold == "hard" else np.where(s > 1 - eps, 1.0, np.where(s < eps, 0.0, s))
    got = cell.units_updated(torch.tensor(m, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(got, (e > 0).sum(1))


def _mask_inputs(net) -> list[bool]:
    from rnnbench.cells.vc import VCCell

    return [m.mask_input for m in net.modules() if isinstance(m, VCCell)]


@pytest.mark.parametrize("name", ["vclstm", "vcrnn", "vcgru"])
def test_mask_input_auto_masks_dense_inputs_not_one_hot_symbols(name):
    """``mask_input: auto``: cells reading one-hot symbols (the seq2seq encoder's and decoder's first
    layer, the additive-attention decoder's [symbol, context]) keep every input dim; dense inputs
    (pixels, embeddings, a lower layer's h, window attention's projection) are masked. An explicit
    true / false is kept everywhere."""
    from rnnbench.models.attention import AttentionSeq2Seq
    from rnnbench.models.classifier import Classifier
    from rnnbench.models.lm import LanguageModel
    from rnnbench.models.seq2seq import Seq2Seq
    from rnnbench.tasks.base import TaskSpec
    from cellutil import cell_cfg

    auto = cell_cfg(name)
    assert auto["mask_input"] == "auto"  # the shipped default
    s2s = TaskSpec("seq2seq", 12, 12, 7, 4)
    net = Seq2Seq(s2s, auto, hidden_size=6, num_layers=2)
    # encoder layers 0, 1, then decoder layers 0, 1
    assert _mask_inputs(net) == [False, True, False, True]
    assert _mask_inputs(AttentionSeq2Seq(s2s, auto, hidden_size=6, attention="additive")) == [False, False]
    assert _mask_inputs(AttentionSeq2Seq(s2s, auto, hidden_size=6, attention="window", attn_length=3)) == [True, True]
    assert _mask_inputs(Classifier(TaskSpec("classification", 5, 3, 6), auto, hidden_size=6, bidirectional=True)) == [True, True]
    assert _mask_inputs(LanguageModel(TaskSpec("lm", 10, 10), auto, hidden_size=6, embedding_size=4)) == [True]
    for forced in (True, False):
        cfg = cell_cfg(name, (f"mask_input={str(forced).lower()}",))
        assert _mask_inputs(Seq2Seq(s2s, cfg, hidden_size=6, num_layers=2)) == [forced] * 4
    from rnnbench.cells.vc import VCRNNCell

    with pytest.raises(ValueError, match="mask_input"):
        VCRNNCell(3, 4, mask_input="sometimes")


def test_unmasked_one_hot_input_reaches_every_symbol():
    """Why auto exists: with m_t ≈ 0.5 a masked one-hot input zeroes the symbols past ⌈m·I⌉, so two
    different high-index symbols give the same state; unmasked, they differ."""
    I, H = 12, 8
    out = {}
    for mask in (True, False):
        cell = make_cell("vcrnn", I, H, (f"mask_input={str(mask).lower()}", "threshold=hard"), seed=3)
        _set_scheduler(cell, 0.0)  # m = 0.5 for every input
        x = torch.zeros(1, 2, I, dtype=torch.float64)  # [T=1, B=2, I]: two examples
        x[0, 0, I - 1] = 1.0  # symbol 11
        x[0, 1, I - 2] = 1.0  # symbol 10
        y, _ = RecurrentLayer(cell)(x)
        out[mask] = y[0]
    assert torch.equal(out[True][0], out[True][1])
    assert not torch.allclose(out[False][0], out[False][1])


@pytest.mark.parametrize("name", ["vclstm", "vcgru"])
def test_verify_numpy_seq2seq_resolves_auto_per_layer(name):
    """verify's NumPy seq2seq (2 layers, greedy decoding) == the torch model at 1e-10 with
    ``mask_input: auto`` — so the NumPy side leaves layer 0's one-hot input unmasked and masks
    layer 1's, as the model does (a wrong resolution changes the logits by ~1e-2)."""
    import torch.nn.functional as F

    from rnnbench.models.seq2seq import Seq2Seq
    from rnnbench.tasks.base import TaskSpec
    from rnnbench.verify import numpy_ref
    from cellutil import cell_cfg

    torch.manual_seed(0)
    cfg = cell_cfg(name)
    net = Seq2Seq(TaskSpec("seq2seq", 12, 12, 7, 4), cfg, hidden_size=10, num_layers=2).double()
    x = F.one_hot(torch.randint(0, 12, (6, 7)), 12).double()
    with torch.no_grad():
        logits = net(x).numpy()
    arrays = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    ctx = numpy_ref.Context(numpy_ref.Params(arrays), dict(cfg), {}, out_len=4)
    scores, _ = numpy_ref.seq2seq_forward(ctx, {"num_layers": 2}, x.numpy())
    np.testing.assert_allclose(scores, logits, rtol=1e-10, atol=1e-10)
    for wrong in (True, False):  # either fixed setting disagrees: the test can fail
        ctx = numpy_ref.Context(numpy_ref.Params(arrays), {**dict(cfg), "mask_input": wrong}, {}, out_len=4)
        assert np.abs(numpy_ref.seq2seq_forward(ctx, {"num_layers": 2}, x.numpy())[0] - logits).max() > 1e-4


@pytest.mark.parametrize("x_grad", [True, False], ids=["x-grad", "x-data"])
@pytest.mark.parametrize("threshold", ["soft", "hard"])
@pytest.mark.parametrize("name", ["vclstm", "vcgru", "vcrnn"])
def test_sequence_kernel_equals_the_step_loop(name, threshold, x_grad):
    """The whole-sequence kernel (no hook) == the per-step loop (an identity hook): outputs, final
    states, every gradient (the penalty's through M included), the penalty and the stats; with an
    input that needs no gradient too (the hard kernels then skip ∂x)."""
    T, B, I, H = 6, 3, 4, 8
    torch.manual_seed(4)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = 0.5 * torch.randn(B, H, dtype=torch.float64)
    w_out = torch.randn(T, B, H, dtype=torch.float64)
    runs, paths = [], []
    for hooked in (False, True):
        cell = make_cell(name, I, H, (f"threshold={threshold}", "lam=0.7", "penalty=0.8", "target_m=0.3"), seed=2)
        cell.train()
        with torch.no_grad():  # m_t spread over (0, 1): the masks have soft edges
            cell.w_mh.mul_(3.0)
            cell.w_mx.mul_(3.0)
        layer = RecurrentLayer(cell)
        if hooked:
            layer.state_hooks.append(lambda prev, new, lay: new)
        paths.append(layer.path())
        xs = x.clone().requires_grad_(x_grad)
        st = tuple(s.clone().requires_grad_() for s in ((h0, h0.flip(0)) if name == "vclstm" else (h0,)))
        y, fin = layer(xs, st)
        pen = cell.extra_loss()
        loss = (y * w_out).sum() + sum((1.5 + i) * s.square().sum() for i, s in enumerate(fin)) + pen
        loss.backward()
        runs.append([y, *fin, pen, *[xs.grad] * x_grad, *(s.grad for s in st), *(p.grad for p in cell.parameters())])
        runs[-1].append(cell.stats())
    assert paths == ["sequence", "loop"]
    (*seq, st_seq), (*loop, st_loop) = runs
    for a, b in zip(seq, loop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert st_seq.keys() == st_loop.keys() == {"mean_m", "compute_fraction"}
    for k in st_seq:
        assert st_seq[k] == pytest.approx(st_loop[k], rel=1e-12)
    assert 0.0 < st_seq["compute_fraction"] < 1.0
