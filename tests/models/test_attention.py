"""Attention seq2seq (article 003 §3): the torch model against the article's own NumPy code
(the 22 TF parameters), and against verify's NumPy implementation step by step, in float64."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from testutil import CONF, compose

from rnnbench.errors import ConfigError
from rnnbench.models.attention import AttentionSeq2Seq
from rnnbench.tasks.base import TaskSpec
from rnnbench.verify import numpy_ref

SPEC = TaskSpec("seq2seq", 12, 12, 7, 4)
CELLS = {"rnn": "rnnbench.cells.rnn.RNNCell", "lstm": "rnnbench.cells.lstm.LSTMCell",
         "gru": "rnnbench.cells.gru.GRUCell"}


ALL_CELLS = sorted(p.stem for p in CONF.joinpath("cell").glob("*.yaml"))  # every cell the config offers


@functools.lru_cache(maxsize=None)
def _composed_cell(cell: str) -> str:
    return OmegaConf.to_yaml(compose([f"cell={cell}"]).cell, resolve=True)


def cell_cfg(cell: str) -> dict:
    if cell in CELLS:
        return {"_target_": CELLS[cell], "name": cell}
    return OmegaConf.to_container(OmegaConf.create(_composed_cell(cell)))


def make(cell: str = "rnn", attention: str = "window", hidden: int = 10, seed: int = 0, **kw) -> AttentionSeq2Seq:
    torch.manual_seed(seed)
    m = AttentionSeq2Seq(SPEC, cell_cfg(cell), hidden_size=hidden, attention=attention, **kw)
    with torch.no_grad():  # larger weights than the default init, so attention is far from uniform
        for p in m.parameters():
            p.mul_(3.0)
    return m.double().eval()


def data(batch: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.one_hot(torch.randint(0, 12, (batch, 7), generator=g), 12).double()
    y = F.one_hot(torch.randint(0, 12, (batch, 4), generator=g), 12).double()
    return x, y


def article_attention(param: list[np.ndarray], X: np.ndarray, n_hidden: int, input_digits: int = 7,
                      output_digits: int = 4) -> np.ndarray:
    """Article 003 §3's NumPy recomputation, transcribed (TF variables in GLOBAL_VARIABLES order)."""
    def softmax(score):
        return np.exp(score) / np.sum(np.exp(score), axis=1, keepdims=True)

    def one_hot(score):
        return np.eye(score.shape[1])[np.argmax(score, axis=1)]

    N = X.shape[0]
    w1_en, c1_en, w2_en, c2_en, attn_k, attn_v, attn_w, attn_c, w3_en, c3_en, w4_en, c4_en = param[:12]
    state = np.zeros([N, n_hidden])
    attns = np.zeros([N, n_hidden])
    attn_states = np.zeros([N, input_digits, n_hidden])

    def my_attention(state, attn_states):
        hidden_features = np.dot(attn_states, attn_k[0, 0])
        y = np.dot(state, attn_w) + attn_c
        y = np.expand_dims(y, 1)
        s = np.sum(attn_v * np.tanh(hidden_features + y), axis=2)
        a = softmax(s)
        return np.sum(np.expand_dims(a, 2) * attn_states, axis=1)

    for i in range(input_digits):
        inputs = np.dot(np.hstack((X[:, i, :], attns)), w1_en) + c1_en
        output = np.tanh(np.dot(np.hstack((inputs, state)), w2_en) + c2_en)
        state = output
        attns = my_attention(state, attn_states)
        output = np.dot(np.hstack((output, attns)), w3_en) + c3_en
        attn_states = np.hstack((attn_states[:, 1:, :], np.expand_dims(output, 1)))
    score = np.dot(output, w4_en) + c4_en
    outputs = [softmax(score)]
    outhots = [one_hot(score)]
    w1_de, c1_de, w2_de, c2_de, attn_k, attn_v, attn_w, attn_c, w3_de, c3_de = param[12:]
    for i in range(1, output_digits):
        inputs = np.dot(np.hstack((outhots[-1], attns)), w1_de) + c1_de
        output = np.tanh(np.dot(np.hstack((inputs, state)), w2_de) + c2_de)
        state = output
        attns = my_attention(state, attn_states)
        output = np.dot(np.hstack((output, attns)), w3_de) + c3_de
        attn_states = np.hstack((attn_states[:, 1:, :], np.expand_dims(output, 1)))
        score = np.dot(output, w4_en) + c4_en
        outputs.append(softmax(score))
        outhots.append(one_hot(score))
    return np.transpose(outputs, [1, 0, 2])


def tf_params(m: AttentionSeq2Seq) -> list[np.ndarray]:
    """Our parameters in TF's layout: kernels [in, out], BasicRNNCell kernel = [W_ih; W_hh]ᵀ, bias b_ih + b_hh."""
    def n(t):
        return t.detach().numpy()

    out = []
    for part in (m.encoder, m.decoder):
        c = part.layer.cell
        att = part.attention
        out += [n(part.in_proj.weight.T), n(part.in_proj.bias),
                np.vstack([n(c.weight_ih.T), n(c.weight_hh.T)]), n(c.bias_ih + c.bias_hh),
                n(att.attn_k.weight.T)[None, None], n(att.attn_v), n(att.attn_q.weight.T), n(att.attn_q.bias),
                n(part.out_proj.weight.T), n(part.out_proj.bias)]
        if part is m.encoder:
            out += [n(m.head.weight.T), n(m.head.bias)]
    return out


def test_window_model_equals_article_numpy_code():
    m = make("rnn", "window", hidden=10)
    params = tf_params(m)
    assert len(params) == 22  # "パラメーターが22個必要"
    x, _ = data(8)
    with torch.no_grad():
        probs = torch.softmax(m(x), -1).numpy()
    ref = article_attention(params, x.numpy(), n_hidden=10)
    np.testing.assert_allclose(probs, ref, rtol=1e-10, atol=1e-12)


def _np_trace(m: AttentionSeq2Seq, cell: str, attention: str, x: torch.Tensor, attn_length: int = 7):
    arrays = {k: v.detach().numpy().astype(np.float64) for k, v in m.state_dict().items()}
    params = numpy_ref.Params(arrays)
    ctx = numpy_ref.Context(params, cell_cfg(cell), {}, out_len=4)
    trace: list = []
    scores, _ = numpy_ref.attention_forward(ctx, {"attention": attention, "attn_length": attn_length},
                                            x.numpy(), trace=trace)
    assert params.unused() == []
    return scores, trace


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("attention", ["window", "additive"])
def test_numpy_equals_torch_step_by_step(cell, attention):
    m = make(cell, attention, hidden=9, attn_length=5)
    m.record_trace = True
    x, _ = data(5)
    with torch.no_grad():
        logits = m(x).numpy()
    scores, trace = _np_trace(m, cell, attention, x, attn_length=5)
    n_steps = 7 + 3 if attention == "window" else 1 + 3
    assert len(m.trace) == len(trace) == n_steps
    for t, (a, b) in enumerate(zip(m.trace, trace)):
        for k in ("h", "alpha", "out"):
            np.testing.assert_allclose(a[k].numpy(), b[k], rtol=1e-11, atol=1e-12, err_msg=f"step {t} {k}")
        assert np.allclose(b["alpha"].sum(-1), 1.0)
    np.testing.assert_allclose(logits, scores, rtol=1e-11, atol=1e-12)
    # the attention weights are not trivially uniform (the comparison means something)
    assert max(float(np.ptp(s["alpha"], axis=-1).max()) for s in trace) > 0.05


def test_window_sees_only_the_last_attn_length_outputs():
    """α_t has attn_length entries; with attn_length=1 the read-out is the previous output itself."""
    m = make("lstm", "window", hidden=8, attn_length=1)
    m.record_trace = True
    x, _ = data(3)
    with torch.no_grad():
        m(x)
    assert all(s["alpha"].shape == (3, 1) for s in m.trace)
    np.testing.assert_allclose(m.trace[0]["alpha"].numpy(), 1.0)
    # window of one: step t attends to o_{t-1} with weight 1 -> a_t = o_{t-1}
    enc = m.encoder
    with torch.no_grad():
        carry = enc.init_carry(3, x)
        o0, carry, _, _ = enc(x[:, 0], carry)
        _, carry, _, _ = enc(x[:, 1], carry)
    np.testing.assert_allclose(carry[1].numpy(), o0.numpy(), rtol=1e-12)


def test_window_length_changes_the_output():
    x, _ = data(4)
    with torch.no_grad():
        a = make("rnn", "window", attn_length=7)(x)
        b = make("rnn", "window", attn_length=3)(x)  # same seed: same parameters
    assert not torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("attention", ["window", "additive"])
def test_teacher_forcing_matches_greedy_on_its_own_predictions(attention):
    """First output from the encoder alone; feeding the greedy answer as y reproduces greedy logits;
    a different y changes the later steps only."""
    m = make("gru", attention, hidden=8)
    x, _ = data(6)
    with torch.no_grad():
        greedy = m(x)
        y_own = F.one_hot(greedy.argmax(-1), 12).double()
        forced = m(x, y_own)
        y_other = F.one_hot((greedy.argmax(-1) + 1) % 12, 12).double()
        other = m(x, y_other)
    torch.testing.assert_close(forced, greedy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(other[:, 0], greedy[:, 0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(other[:, 1:], greedy[:, 1:])


def test_gradients_reach_every_parameter():
    for attention in ("window", "additive"):
        m = make("lstm", attention, hidden=6).train()
        x, y = data(4)
        F.cross_entropy(m(x, y).reshape(-1, 12), y.argmax(-1).reshape(-1)).backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == [], missing


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="model.attention"):
        make("rnn", "dot")
    with pytest.raises(ConfigError, match="num_layers"):
        AttentionSeq2Seq(SPEC, {"_target_": CELLS["rnn"], "name": "rnn"}, num_layers=2)


def test_zoneout_expectation_is_used_in_the_step_loop():
    """Regularizer hooks reach the per-step loop: zoneout z_h=z_c=0.9 at eval changes the output,
    and NumPy (z·prev + (1−z)·new) agrees."""
    from rnnbench.regularizers import apply_regularizers

    m = make("lstm", "window", hidden=7)
    x, _ = data(3)
    with torch.no_grad():
        plain = m(x)
    apply_regularizers(m, OmegaConf.create({"zoneout": {"z_h": 0.9, "z_c": 0.9}}))
    m.eval()
    with torch.no_grad():
        zoned = m(x)
    assert not torch.allclose(plain, zoned)
    arrays = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    ctx = numpy_ref.Context(numpy_ref.Params(arrays), {"name": "lstm"}, {"zoneout": {"z_h": 0.9, "z_c": 0.9}},
                            out_len=4)
    scores, _ = numpy_ref.attention_forward(ctx, {"attention": "window", "attn_length": 7}, x.numpy())
    np.testing.assert_allclose(zoned.numpy(), scores, rtol=1e-10, atol=1e-12)


def test_config_composes_with_attention_choice():
    cfg = compose(["model=attention_seq2seq", "model.attention=additive", "model.attn_length=5"])
    assert cfg.model._target_.endswith("AttentionSeq2Seq") and cfg.model.attention == "additive"


def test_vc_penalty_and_stats_are_exposed_like_rnnstack():
    cfg = dict(cell_cfg("vclstm"), penalty=0.5, target_m=0.0)
    torch.manual_seed(0)
    m = AttentionSeq2Seq(SPEC, cfg, hidden_size=6, attention="additive").train()
    x, y = data(3)
    m(x.float(), y.float())
    pen = m.extra_loss()
    assert pen is not None and float(pen.detach()) > 0  # m_t > 0 = target: a positive penalty
    st = m.stats()
    assert 0.0 < st["compute_fraction"] <= 1.0 and 0.0 < st["mean_m"] < 1.0
