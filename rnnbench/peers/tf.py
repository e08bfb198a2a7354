"""The articles' own TensorFlow cells, for ``rnnbench bench --peer tf``: article 000's VCLSTM
(hard threshold) and article 001's weight-normalised LSTM, written from the seeds' TF 1.x code
in TF 2 and run in one ``tf.function`` (the sequence loop unrolled at trace time, as the
articles' graphs are). TensorFlow is optional: ``pip install tensorflow-cpu`` into the venv.

Each peer's batch is what a bench row's is: forward over ``x [T, B, I]``, the sum of every
step's ``h`` as the loss, the gradients of every variable (not of ``x``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np


def _tensorflow() -> Any:
    """TensorFlow, imported after torch's compiler stack: with TF's libraries loaded first, a later
    import of triton's C extension (torch._dynamo's, on torch.compile or an optimizer's construction)
    kills the process with a segfault (torch 2.14.1, tensorflow 2.21.0)."""
    import torch._dynamo  # noqa: F401  (imports triton where it is installed)
    import tensorflow

    return tensorflow


def unavailable() -> Optional[str]:
    """None when TensorFlow imports, else why not (one line)."""
    try:
        _tensorflow()
    except Exception as e:  # ImportError, or a broken install raising something else
        return f"tensorflow is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); " \
               "pip install tensorflow-cpu into this venv"
    return None


def set_threads(n: int) -> None:
    """TF's intra- and inter-op pools to ``n`` threads (only before TF's runtime starts)."""
    tf = _tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # already initialised: keep what it has
        pass


# ----------------------------------------------------------------------------- article 000
def vclstm_step(tf, x, h, c, v: dict, lam: float, eps: float, n_in: int, n_units: int, batch_size: int):
    """Article 000's ``VCLSTM`` step, op for op (its variables passed in ``v``)."""
    m = tf.sigmoid(tf.add(tf.add(tf.matmul(x, v["w_m_x"]), tf.matmul(h, v["w_m_h"])), v["b_m"]))
    a_h = m * n_units
    b_h = tf.convert_to_tensor(np.array(range(n_units)), dtype=tf.float32)
    b_h = tf.tile(tf.expand_dims(b_h, axis=0), [batch_size, 1])
    e_h = tf.sigmoid(lam * (a_h - b_h)) - (1 - eps)
    e_h = tf.nn.relu(tf.sign(e_h))
    h_bar = h * e_h
    c_bar = c * e_h
    a_x = m * n_in
    b_x = tf.convert_to_tensor(np.array(range(n_in)), dtype=tf.float32)
    b_x = tf.tile(tf.expand_dims(b_x, axis=0), [batch_size, 1])
    e_x = tf.sigmoid(lam * (a_x - b_x)) - (1 - eps)
    e_x = tf.nn.relu(tf.sign(e_x))
    x_bar = x * e_x
    i, f, o, g = tf.split(tf.add(tf.add(tf.matmul(x_bar, v["w_x"]), tf.matmul(h_bar, v["w_h"])), v["b"]), 4, axis=1)
    i = tf.nn.sigmoid(i)
    f = tf.nn.sigmoid(f)
    o = tf.nn.sigmoid(o)
    g = tf.nn.tanh(g)
    c_tilde = tf.add(tf.multiply(f, c_bar), tf.multiply(i, g))
    h_tilde = tf.multiply(o, tf.nn.tanh(c_tilde))
    c = tf.add(tf.multiply(e_h, c_tilde), tf.multiply((1 - e_h), c))
    h = tf.add(tf.multiply(e_h, h_tilde), tf.multiply((1 - e_h), h))
    return h, c


def vclstm_variables(I: int, H: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    k = 1.0 / np.sqrt(H)
    u = lambda *s: rng.uniform(-k, k, s).astype(np.float32)  # noqa: E731
    return {"w_m_x": u(I, 1), "w_m_h": u(H, 1), "b_m": np.zeros(1, np.float32),
            "w_x": u(I, 4 * H), "w_h": u(H, 4 * H), "b": u(4 * H)}


def vclstm_from_torch(cell) -> dict[str, np.ndarray]:
    """Article 000's variables from our ``VCLSTMCell`` (gate order i, f, g, o → i, f, o, g)."""
    H = cell.hidden_size
    order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    n = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return {"w_m_x": n(cell.w_mx), "w_m_h": n(cell.w_mh), "b_m": n(cell.b_m),
            "w_x": n(cell.weight_ih)[order].T.copy(), "w_h": n(cell.weight_hh)[order].T.copy(),
            "b": (n(cell.bias_ih) + n(cell.bias_hh))[order]}


def vclstm_forward(tf, x, v: dict, lam: float = 1.0, eps: float = 0.1):
    """Every step's ``h`` (``[T, B, H]``) of article 000's VCLSTM over ``x [T, B, I]`` from zero state."""
    T, B, I = x.shape
    H = v["w_h"].shape[0]
    h = tf.zeros([B, H], tf.float32)
    c = tf.zeros([B, H], tf.float32)
    out = []
    for t in range(T):
        h, c = vclstm_step(tf, x[t], h, c, v, lam, eps, I, H, B)
        out.append(h)
    return tf.stack(out)


# ----------------------------------------------------------------------------- article 001
def wn_lstm_variables(I: int, H: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Article 001's initialisers: v ~ truncated N(0, 0.05), g = 0.1, b = 0."""
    tn = lambda *s: np.clip(rng.normal(0, 0.05, s), -0.1, 0.1).astype(np.float32)  # noqa: E731
    return {"w_x": tn(I, 4 * H), "g_x": np.full(4 * H, 0.1, np.float32), "w_h": tn(H, 4 * H),
            "g_h": np.full(4 * H, 0.1, np.float32), "b": np.zeros(4 * H, np.float32)}


def wn_lstm_forward(tf, x, v: dict, forget_bias: float = 0.0):
    """Every step's ``h`` of article 001's ``inference`` LSTM (the norm taken inside the loop, as
    there) over ``x [T, B, I]``."""
    T, B, _ = x.shape
    H = v["w_h"].shape[0]
    h = tf.zeros([B, H], tf.float32)
    c = tf.zeros([B, H], tf.float32)
    out = []
    for t in range(T):
        v_norm_x = tf.nn.l2_normalize(v["w_x"], axis=[0])
        w_x = v["g_x"] * v_norm_x
        t_x = tf.matmul(x[t], w_x)
        v_norm_h = tf.nn.l2_normalize(v["w_h"], axis=[0])
        w_h = v["g_h"] * v_norm_h
        t_h = tf.matmul(h, w_h)
        i, f, o, g = tf.split(tf.add(tf.add(t_x, t_h), v["b"]), 4, axis=1)
        i = tf.nn.sigmoid(i)
        f = tf.nn.sigmoid(f + forget_bias)
        o = tf.nn.sigmoid(o)
        g = tf.nn.tanh(g)
        c = tf.add(tf.multiply(f, c), tf.multiply(i, g))
        h = tf.multiply(o, tf.nn.tanh(c))
        out.append(h)
    return tf.stack(out)


# ----------------------------------------------------------------------------- bench rows
@dataclass(frozen=True)
class Peer:
    name: str  #: the bench row's cell column
    article: str
    ours: tuple[str, str]  #: (cell, regularizer) of our row that computes the same function
    flops_cell: str  #: whose FLOP model counts the row
    variables: Callable[[int, int, np.random.Generator], dict]
    forward: Callable[..., Any]


PEERS = [
    Peer("tf_vclstm", "000", ("vclstm[threshold=hard]", "none"), "vclstm", vclstm_variables, vclstm_forward),
    Peer("tf_wn_lstm", "001", ("lstm", "weight_norm"), "lstm", wn_lstm_variables, wn_lstm_forward),
]


def batch_fn(peer: Peer, T: int, B: int, I: int, H: int, seed: int = 0) -> Callable[[], None]:
    """One bench batch of ``peer``: forward, sum of the outputs, gradients of its variables."""
    tf = _tensorflow()

    rng = np.random.default_rng(seed)
    v = {k: tf.Variable(a) for k, a in peer.variables(I, H, rng).items()}
    x = tf.constant(rng.standard_normal((T, B, I)).astype(np.float32))

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(peer.forward(tf, x, v))
        return tape.gradient(loss, list(v.values()))

    def run() -> None:
        out = grads(x)
        out[0].numpy()  # wait for the result

    return run
