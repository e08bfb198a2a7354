"""An independent forward pass in plain NumPy (float64) — article 003's recomputation, for every
cell, model and eval-time regularizer. This module must not import torch (a test checks it).

Everything is a small registry so it is easy to extend and impossible to pass silently:

* :data:`CELLS` — cell name -> NumPy cell (``step(x, state) -> (h, state)``, nn.LSTM layouts);
* :data:`PARAM_TRANSFORMS` — how a regularizer's parametrizations fold into plain weights
  (weight norm ``w = g·v/‖v‖``; weight drop is the identity at eval);
* :data:`REGULARIZERS` — what each regularizer does at eval (zoneout: the expectation
  ``s_t = z·s_{t-1} + (1−z)·s̃_t``; dropouts: identity; qat: the fake-quantised integer step);
* :data:`MODELS` — model name -> forward returning softmax probabilities.

A cell, model or regularizer without an entry raises :class:`VerifyUnsupported`
("verify has no NumPy implementation for cell X"), and every saved tensor must be consumed by the
forward pass (:meth:`Params.unused`), so a new parameter cannot be ignored unnoticed.

Metrics follow article 003: ``p = softmax(score)``, ``acc = mean(argmax p == label)``,
``loss_clip = −mean(Σ log(clip(p, 1e-10, 1)) · Y)`` (the max is subtracted inside the softmax for
overflow safety — the same value). The compared ``loss`` is the same without the clip
(log-softmax): the framework's cross-entropy does not clip, and a trained model puts p < 1e-10
on some true labels, which the clip caps at 23.03 nats.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

Array = np.ndarray
NpState = tuple[Array, ...]


class VerifyUnsupported(Exception):
    """A cell, model or regularizer that this NumPy implementation does not cover."""


# ----------------------------------------------------------------------------- parameters
class Params:
    """Flat ``name -> float64 array`` view with a prefix; records which names were read."""

    def __init__(self, arrays: Mapping[str, Array], prefix: str = "", used: Optional[set] = None) -> None:
        self._arrays = arrays
        self.prefix = prefix
        self._used = used if used is not None else set()

    def __getitem__(self, name: str) -> Array:
        key = self.prefix + name
        if key not in self._arrays:
            raise VerifyUnsupported(f"saved parameters have no {key!r} (have e.g. "
                                    f"{', '.join(sorted(k for k in self._arrays if k.startswith(self.prefix))[:6])})")
        self._used.add(key)
        return self._arrays[key]

    def has(self, name: str) -> bool:
        return self.prefix + name in self._arrays

    def sub(self, prefix: str) -> "Params":
        return Params(self._arrays, self.prefix + prefix, self._used)

    def unused(self) -> list[str]:
        return sorted(set(self._arrays) - self._used)


def _norm_rows(v: Array) -> Array:
    """‖v_r‖ over every axis but 0, kept for broadcasting (torch weight_norm with dim=0)."""
    return np.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(1)).reshape((-1,) + (1,) * (v.ndim - 1))


def fold_weight_norm(g: Array, v: Array) -> Array:
    """Weight normalization (Salimans & Kingma 2016; article 001): ``w_r = g_r · v_r / ‖v_r‖``."""
    return g * v / _norm_rows(v)


PARAM_RE = re.compile(r"^(?P<owner>.*?)parametrizations\.(?P<name>\w+)\.original(?P<idx>\d*)$")


def fold_parametrizations(arrays: Mapping[str, Array], regularizers: Mapping[str, Any]) -> dict[str, Array]:
    """Replace ``X.parametrizations.W.original*`` by the eval-time weight ``X.W``.

    Two originals (``original0`` = g, ``original1`` = v) are weight norm's split; a single
    ``original`` is a weight whose parametrizations are all identities at eval (weight drop).
    Any other layout, or a parametrization no configured regularizer explains, is refused.
    """
    out: dict[str, Array] = {}
    groups: dict[tuple[str, str], dict[str, Array]] = {}
    for k, a in arrays.items():
        m = PARAM_RE.match(k)
        if m is None:
            out[k] = a
        else:
            groups.setdefault((m["owner"], m["name"]), {})[m["idx"]] = a
    for (owner, name), parts in groups.items():
        if set(parts) == {"0", "1"}:
            if "weight_norm" not in regularizers:
                raise VerifyUnsupported(f"{owner}{name} has a g/v parametrization but regularizer weight_norm is "
                                        "not configured; verify has no NumPy implementation for it")
            out[owner + name] = fold_weight_norm(parts["0"], parts["1"])
        elif set(parts) == {""}:
            if not ({"weight_drop", "awd", "awd_char"} & set(regularizers)):
                raise VerifyUnsupported(f"{owner}{name} is parametrized but no configured regularizer "
                                        "(weight_drop/awd) explains it; verify has no NumPy implementation for it")
            out[owner + name] = parts[""]
        else:
            raise VerifyUnsupported(f"verify has no NumPy implementation for the parametrization of {owner}{name} "
                                    f"(originals {sorted(parts)})")
    return out


# ----------------------------------------------------------------------------- primitives
def sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax(score: Array, axis: int = -1) -> Array:
    """Article 003's ``exp(s)/Σexp(s)`` (max subtracted first: same value, no overflow)."""
    e = np.exp(score - score.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def one_hot_argmax(score: Array) -> Array:
    """Article 003's ``one_hot``: ``eye(V)[argmax(score)]``."""
    return np.eye(score.shape[-1])[np.argmax(score, axis=-1)]


def linear(p: Params, x: Array) -> Array:
    """``x Wᵀ + b`` with torch ``nn.Linear`` layout (``weight [out, in]``, optional ``bias``)."""
    y = x @ p["weight"].T
    return y + p["bias"] if p.has("bias") else y


# ----------------------------------------------------------------------------- cells
class NpCell(ABC):
    """One step ``h_t, s_t = cell(x_t, s_{t-1})`` on ``x [B, I]``; ``s`` a tuple, ``s[0] = h``."""

    num_states = 1

    hidden_from = "weight_hh"  #: a [*, H] parameter that gives the hidden size

    def __init__(self, p: Params, cfg: Mapping[str, Any], progress: Optional[float] = None) -> None:
        self.p = p
        self.cfg = cfg
        self.progress = progress  #: training progress step/total at the end of training (λ schedules)
        self.hidden_size = int(p[self.hidden_from].shape[1])

    def init_state(self, batch: int) -> NpState:
        return tuple(np.zeros((batch, self.hidden_size)) for _ in range(self.num_states))

    @abstractmethod
    def step(self, x: Array, state: NpState) -> tuple[Array, NpState]:
        """One step in NumPy float64 (each cell's equations)."""


class NpRNN(NpCell):
    """Elman / TF BasicRNNCell: ``h_t = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    def step(self, x, state):
        p = self.p
        h = np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + state[0] @ p["weight_hh"].T + p["bias_hh"])
        return h, (h,)


class NpLSTM(NpCell):
    """nn.LSTM (gate order i, f, g, o) with ``forget_bias`` added inside the forget sigmoid:
    ``c = σ(f + fb) c + σ(i) tanh(g)``, ``h = σ(o) tanh(c)``."""

    num_states = 2

    def step(self, x, state):
        p = self.p
        h, c = state
        z = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f + float(self.cfg.get("forget_bias", 0.0) or 0.0)) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, (h, c)


class NpGRU(NpCell):
    """nn.GRU (gate order r, z, n): ``r = σ(..)``, ``z = σ(..)``, ``n = tanh(W_in x + b_in +
    r ⊙ (W_hn h + b_hn))``, ``h = (1 − z) n + z h``."""

    def step(self, x, state):
        p = self.p
        h = state[0]
        xr, xz, xn = np.split(x @ p["weight_ih"].T + p["bias_ih"], 3, axis=1)
        hr, hz, hn = np.split(h @ p["weight_hh"].T + p["bias_hh"], 3, axis=1)
        r = sigmoid(xr + hr)
        z = sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h
        return h, (h,)


class NpVC(NpCell):
    """Variable Computation cells (article 000; Jernite et al. 2017, arXiv 1611.06188)::

        m = σ(x·w_mx + h·w_mh + b_m)                           (one scalar per example)
        e_i = Thres_ε(σ(λ(m·D − i)))   i = o..D−1+o            (hard: 1[σ > 1−ε]; soft: snap within ε)
        x̄ = e^x ⊙ x (mask over the I input dims, if mask_input; auto: unless x is one-hot),  h̄ = e ⊙ h,  c̄ = e ⊙ c
        h̃ (, c̃) = base cell on x̄, h̄ (, c̄);   h = e ⊙ h̃ + (1 − e) ⊙ h  (same for c)

    λ at evaluation: ``lam`` (constant), else the checkpoint's saved ``lam_now`` (older checkpoints:
    the schedule's value at the step the run evaluated at)."""

    def lam(self) -> float:
        cfg = self.cfg
        lam0 = float(cfg.get("lam", 1.0))
        final = cfg.get("lam_final")
        final = lam0 if final is None else float(final)
        kind = str(cfg.get("lam_schedule", "constant"))
        if kind == "constant":
            return lam0
        if self.p.has("lam_now"):  # saved with the weights: the λ the checkpoint was evaluated with
            return float(self.p["lam_now"])
        if self.progress is None:
            raise VerifyUnsupported(f"cell {cfg.get('name')}: lam_schedule={kind} needs the run's training progress")
        p = min(max(self.progress, 0.0), 1.0)
        return lam0 + (final - lam0) * p if kind == "linear" else lam0 * (final / lam0) ** p

    def mask(self, m: Array, D: int) -> Array:
        eps = float(self.cfg.get("eps", 0.1))
        idx = np.arange(D) + int(self.cfg.get("index_offset", 0))
        s = sigmoid(self.lam() * (m * D - idx))
        if str(self.cfg.get("threshold", "soft")) == "hard":
            return (s > 1.0 - eps).astype(np.float64)
        return np.where(s > 1.0 - eps, 1.0, np.where(s < eps, 0.0, s))

    def gates(self, x: Array, h: Array) -> tuple[Array, Array, Array]:
        """(x̄, h̄, e)."""
        p = self.p
        m = sigmoid(x @ p["w_mx"] + h @ p["w_mh"] + p["b_m"])  # [B, 1]
        e = self.mask(m, self.hidden_size)
        if bool(self.cfg.get("mask_input", True)):
            x = x * self.mask(m, x.shape[1])
        return x, h * e, e


class NpVCRNN(NpVC):
    def step(self, x, state):
        p, h = self.p, state[0]
        xb, hb, e = self.gates(x, h)
        ht = np.tanh(xb @ p["weight_ih"].T + p["bias_ih"] + hb @ p["weight_hh"].T + p["bias_hh"])
        h = e * ht + (1 - e) * h
        return h, (h,)


class NpVCLSTM(NpVC):
    num_states = 2

    def step(self, x, state):
        p, (h, c) = self.p, state
        xb, hb, e = self.gates(x, h)
        i, f, g, o = np.split(xb @ p["weight_ih"].T + p["bias_ih"] + hb @ p["weight_hh"].T + p["bias_hh"], 4, 1)
        ct = sigmoid(f + float(self.cfg.get("forget_bias", 0.0) or 0.0)) * (e * c) + sigmoid(i) * np.tanh(g)
        ht = sigmoid(o) * np.tanh(ct)
        c = e * ct + (1 - e) * c
        h = e * ht + (1 - e) * h
        return h, (h, c)


class NpVCGRU(NpVC):
    def step(self, x, state):
        p, h = self.p, state[0]
        xb, hb, e = self.gates(x, h)
        xr, xz, xn = np.split(xb @ p["weight_ih"].T + p["bias_ih"], 3, 1)
        hr, hz, hn = np.split(hb @ p["weight_hh"].T + p["bias_hh"], 3, 1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        ht = (1 - z) * n + z * hb
        h = e * ht + (1 - e) * h
        return h, (h,)


def _factor(p: Params, wx: Array, H: int) -> Array:
    """The input factor ``W_mx x (+ b_m)`` of mRNN/mLSTM; ``bias_m`` exists with ``cell.factor_bias``."""
    return wx[:, :H] + p["bias_m"] if p.has("bias_m") else wx[:, :H]


class NpMRNN(NpCell):
    """mRNN (Sutskever et al. 2011; article 004): ``m = (W_mx x + b_m) ⊙ (W_mh h)``,
    ``h = tanh(W_hm m + W_hx x + b)``; ``weight_ix = [W_mx; W_hx]``."""

    hidden_from = "weight_mh"

    def step(self, x, state):
        p, H = self.p, self.hidden_size
        wx = x @ p["weight_ix"].T
        m = _factor(p, wx, H) * (state[0] @ p["weight_mh"].T)
        h = np.tanh(m @ p["weight_hm"].T + wx[:, H:] + p["bias"])
        return h, (h,)


class NpMLSTM(NpCell):
    """mLSTM (Krause et al. 2016; article 004): ``m = (W_mx x + b_m) ⊙ (W_mh h)``; ``ĥ = W_hm m + W_hx x + b_h``;
    ``i, f, o = σ(W_*x x + W_*m m + b_*)``; ``c = f c + i ĥ``; ``h = tanh(c ⊙ o)``.
    ``weight_ix = [W_mx; W_hx; W_ix; W_fx; W_ox]``, ``weight_m = [W_hm; W_im; W_fm; W_om]``,
    ``bias = [b_h; b_i; b_f; b_o]``."""

    num_states = 2
    hidden_from = "weight_mh"

    def step(self, x, state):
        p, H = self.p, self.hidden_size
        h, c = state
        wx = x @ p["weight_ix"].T
        m = _factor(p, wx, H) * (h @ p["weight_mh"].T)
        pre = wx[:, H:] + m @ p["weight_m"].T + p["bias"]
        hhat, i, f, o = pre[:, :H], sigmoid(pre[:, H:2 * H]), sigmoid(pre[:, 2 * H:3 * H]), sigmoid(pre[:, 3 * H:])
        c = f * c + i * hhat
        h = np.tanh(c * o)
        return h, (h, c)


class NpDeltaRNN(NpCell):
    """Delta-RNN (Ororbia et al. 2017; article 004): ``d1 = α ⊙ Vh ⊙ Wx``, ``d2 = β1 ⊙ Vh + β2 ⊙ Wx``,
    ``z = tanh(d1 + d2 + b_z)``, ``r = σ(Wx + b_r)``, ``h = Φ((1 − r) ⊙ z + r ⊙ h)``."""

    OUTER = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), "identity": lambda v: v}

    def step(self, x, state):
        p, h = self.p, state[0]
        phi = str(self.cfg.get("outer_activation", "tanh"))
        if phi not in self.OUTER:
            raise VerifyUnsupported(f"verify has no NumPy implementation for delta_rnn outer_activation {phi}")
        wx, vh = x @ p["weight_ih"].T, h @ p["weight_hh"].T
        z = np.tanh(p["alpha"] * vh * wx + p["beta1"] * vh + p["beta2"] * wx + p["bias_z"])
        r = sigmoid(wx + p["bias_r"])
        h = self.OUTER[phi]((1 - r) * z + r * h)
        return h, (h,)


#: cell name (``cfg.cell.name``) -> NumPy cell class
CELLS: dict[str, Callable[..., NpCell]] = {
    "rnn": NpRNN,
    "lstm": NpLSTM,
    "gru": NpGRU,
    "vcrnn": NpVCRNN,
    "vclstm": NpVCLSTM,
    "vcgru": NpVCGRU,
    "mrnn": NpMRNN,
    "mlstm": NpMLSTM,
    "delta_rnn": NpDeltaRNN,
}


class NpZoneout(NpCell):
    """Zoneout at evaluation (Krueger et al. 2016): ``s_t = z·s_{t-1} + (1 − z)·s̃_t`` per slot
    (z_h for h, z_c for c)."""

    def __init__(self, inner: NpCell, zs: tuple[float, ...]) -> None:
        self.inner = inner
        self.zs = zs
        self.num_states = inner.num_states
        self.hidden_size = inner.hidden_size

    def init_state(self, batch):
        return self.inner.init_state(batch)

    def step(self, x, state):
        _, new = self.inner.step(x, state)
        out = tuple(n if i >= len(self.zs) or self.zs[i] == 0 else self.zs[i] * p + (1 - self.zs[i]) * n
                    for i, (p, n) in enumerate(zip(state, new)))
        return out[0], out


# ----------------------------------------------------------------------------- QAT (article 002)
QMAX8, QMAX16 = 127, 32767
G_BITS, A_BITS, C_BITS, H_BITS, O_BITS, MULT_BITS = 10, 15, 11, 7, 8, 24
LUT_LO, LUT_HI = -(8 << G_BITS), (8 << G_BITS) - 1


def _round(x: Array) -> Array:
    """Round half up, ``floor(x + 1/2)``."""
    return np.floor(x + 0.5)


def _fixed_multiplier(m: Array) -> Array:
    """``m`` as the fixed-point ``m0 · 2^-n`` with a 24-bit mantissa (the integer path's rescale)."""
    m = np.asarray(m, dtype=np.float64)
    safe = np.where(m > 0, m, 1.0)
    n = MULT_BITS - 1 - np.floor(np.log2(safe))
    m0 = np.floor(safe * 2.0 ** n + 0.5)
    return np.where(m > 0, m0 * 2.0 ** -n, 0.0)


def _qweight(w: Array) -> tuple[Array, Array]:
    """int8 per-row weights ``clamp(round(W_r / s_r))``, ``s_r = max|W_r| / 127``."""
    a = np.abs(w).max(axis=1)
    s = np.where(a > 0, a / QMAX8, 1.0)
    return np.clip(_round(w / s[:, None]), -QMAX8, QMAX8), s


def _qinput(x: Array, s: float) -> Array:
    return np.clip(_round(x * _fixed_multiplier(1.0 / s)), -QMAX8, QMAX8)


def _obs_scale(p: Params) -> float:
    """An input observer's scale ``EMA(max|x|) / 127`` (the saved ``amax``)."""
    a = float(p["amax"])
    if not bool(p["initialized"]):
        raise VerifyUnsupported(f"qat observer {p.prefix}amax was never calibrated; verify has no NumPy "
                                "implementation of eval-time calibration")
    return a / QMAX8 if a > 0 else 1.0


def _lut(kind: str, g: Array) -> Array:
    """σ / tanh of int16 pre-activations at 2^-10, as an int16 value at 2^-15 (the LUT's entry)."""
    fn = sigmoid if kind == "sigmoid" else np.tanh
    return np.clip(np.floor(fn(g * 2.0 ** -G_BITS) * 2.0 ** A_BITS + 0.5), -QMAX16, QMAX16)


def _rshift(x: Array, n: int) -> Array:
    return _round(x * 2.0 ** -n)


class NpQATCell(NpCell):
    """The fake-quantised integer LSTM / RNN step of ``rnnbench.regularizers.qat`` (TFLite's
    integer LSTM layout): int8 x (observer scale), int8 per-row weights, int16 gates at 2^-10,
    LUT σ/tanh at 2^-15, c int16 at 2^-11, h int8 at 2^-7; values held as exact float64 integers."""

    def __init__(self, inner: NpCell, obs: Params, is_lstm: bool) -> None:
        self.inner, self.p, self.is_lstm = inner, inner.p, is_lstm
        self.num_states = inner.num_states
        self.hidden_size = inner.hidden_size
        self.s_x = _obs_scale(obs)
        fb = float(inner.cfg.get("forget_bias", 0.0) or 0.0) if is_lstm else 0.0
        b = self.p["bias_ih"] + self.p["bias_hh"]
        if fb:
            H = self.hidden_size
            b = b.copy()
            b[H:2 * H] += fb
        self.b_q = _round(b * 2.0 ** G_BITS)

    def step(self, x, state):
        p = self.p
        wq, s_w = _qweight(p["weight_ih"])
        xp = _round((_qinput(x, self.s_x) @ wq.T) * _fixed_multiplier(s_w * self.s_x * 2.0 ** G_BITS)) + self.b_q
        hq = np.clip(_round(state[0] * 2.0 ** H_BITS), -QMAX8, QMAX8)
        wq, s_w = _qweight(p["weight_hh"])
        gates = np.clip(xp + _round((hq @ wq.T) * _fixed_multiplier(s_w * 2.0 ** (G_BITS - H_BITS))), LUT_LO, LUT_HI)
        if self.is_lstm:
            cq = np.clip(_round(state[1] * 2.0 ** C_BITS), -QMAX16, QMAX16)
            gi, gf, gg, go = np.split(gates, 4, axis=1)
            i, f, o, u = _lut("sigmoid", gi), _lut("sigmoid", gf), _lut("sigmoid", go), _lut("tanh", gg)
            cq = np.clip(_rshift(f * cq, A_BITS) + _rshift(i * u, 2 * A_BITS - C_BITS), -QMAX16, QMAX16)
            tc = _lut("tanh", np.clip(_rshift(cq, C_BITS - G_BITS), LUT_LO, LUT_HI))
            hq = np.clip(_rshift(o * tc, 2 * A_BITS - H_BITS), -QMAX8, QMAX8)
            h = hq * 2.0 ** -H_BITS
            return h, (h, cq * 2.0 ** -C_BITS)
        hq = np.clip(_rshift(_lut("tanh", gates), A_BITS - H_BITS), -QMAX8, QMAX8)
        h = hq * 2.0 ** -H_BITS
        return h, (h,)


def qat_linear(p: Params, x: Array) -> Array:
    """Fake-quantised ``nn.Linear``: int8 x and per-row W, int32 accumulator, output at 2^-8."""
    s_in = _obs_scale(p.sub("x_obs."))
    wq, s_w = _qweight(p["weight"])
    acc = _qinput(x, s_in) @ wq.T
    if p.has("bias"):
        acc = acc + _round(p["bias"] / (s_w * s_in))
    return _round(acc * _fixed_multiplier(s_w * s_in * 2.0 ** O_BITS)) * 2.0 ** -O_BITS


# ----------------------------------------------------------------------------- context
@dataclass
class Context:
    """What a model forward needs: parameters, the cell config, regularizer options."""
    params: Params
    cell_cfg: Mapping[str, Any]
    regularizers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    qat_enabled: bool = True  #: False while a QAT run is still inside its quant_delay (float phase)
    out_len: int = 0  #: seq2seq answer length
    progress: Optional[float] = None  #: step/total at the end of training (VC λ schedules)

    def qat_on(self, p: Params) -> bool:
        """Is the QAT module under ``p`` fake-quantising? Its saved ``qat_enabled`` buffer says; older
        checkpoints without it fall back to :attr:`qat_enabled`."""
        if "qat" not in self.regularizers:
            return False
        return bool(p["qat_enabled"]) if p.has("qat_enabled") else self.qat_enabled

    def cell(self, prefix: str, one_hot_input: bool = False) -> NpCell:
        """The NumPy cell whose parameters live under ``prefix`` (``....cell.``), regularizers applied.
        ``one_hot_input``: the cell reads one-hot symbols (VC ``mask_input: auto`` leaves them unmasked)."""
        name = str(self.cell_cfg.get("name"))
        if name not in CELLS:
            raise VerifyUnsupported(f"verify has no NumPy implementation for cell {name}")
        p = self.params.sub(prefix)
        qat_on = self.qat_on(p)
        if "qat" in self.regularizers:
            obs = p.sub("x_obs.")
            p = p.sub("float_cell.")
        cfg = dict(self.cell_cfg)
        if cfg.get("mask_input") == "auto":
            cfg["mask_input"] = not one_hot_input
        cell = CELLS[name](p, cfg, self.progress)
        if qat_on:
            if name not in ("lstm", "rnn"):
                raise VerifyUnsupported(f"verify has no NumPy implementation for qat on cell {name}")
            cell = NpQATCell(cell, obs, name == "lstm")
        elif "qat" in self.regularizers:
            obs["amax"], obs["initialized"]  # consumed: float phase, the observer is unused
        z = self.regularizers.get("zoneout")
        if z is not None:
            zs = (float(z.get("z_h", 0.0)), float(z.get("z_c", 0.0)))[:cell.num_states]
            cell = NpZoneout(cell, zs)
        return cell

    def linear(self, prefix: str, x: Array) -> Array:
        p = self.params.sub(prefix)
        if "qat" in self.regularizers and bool(self.regularizers["qat"].get("linear", True)):
            if self.qat_on(p):
                return qat_linear(p, x)
            p["x_obs.amax"], p["x_obs.initialized"]  # consumed: float phase, the observer is unused
        return linear(p, x)


def check_regularizers(regularizers: Mapping[str, Any]) -> None:
    for name in regularizers:
        if name not in REGULARIZERS:
            raise VerifyUnsupported(f"verify has no NumPy implementation for regularizer {name}")


#: regularizer -> what it is at eval time (documentation + the supported set). Their effects are
#: applied in :func:`fold_parametrizations` and :meth:`Context.cell` / :meth:`Context.linear`.
REGULARIZERS: dict[str, str] = {
    "weight_norm": "folded: w = g·v/‖v‖",
    "weight_drop": "identity at eval",
    "variational_dropout": "identity at eval",
    "awd": "identity at eval (weight drop + locked/embedding dropout)",
    "awd_char": "identity at eval (awd at its character-level rates)",
    "zoneout": "expectation: s = z·s_prev + (1−z)·s_new",
    "qat": "fake-quantised int8 step and linear layers",
}


# ----------------------------------------------------------------------------- layers and stacks
def run_layer(cell: NpCell, x: Array, state: Optional[NpState] = None, reverse: bool = False
              ) -> tuple[Array, NpState]:
    """``x [T, B, I]`` -> outputs ``[T, B, H]`` indexed by input time, final state."""
    T, B = x.shape[0], x.shape[1]
    state = cell.init_state(B) if state is None else state
    ys: list[Optional[Array]] = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        ys[t], state = cell.step(x[t], state)
    return np.stack(ys, 0), state  # type: ignore[arg-type]


def run_stack(ctx: Context, prefix: str, x: Array, num_layers: int, bidirectional: bool = False,
              states: Optional[list] = None, one_hot_input: bool = False) -> tuple[Array, list]:
    """``RNNStack`` (``prefix`` = ``....``): layer i reads layer i−1's output; a bidirectional
    layer concatenates ``[fw_t, bw_t]`` (article 003 §2, ``static_bidirectional_rnn``).
    ``one_hot_input``: x is one-hot symbols (read by layer 0 only)."""
    states = list(states) if states is not None else [None] * num_layers
    new = []
    for i in range(num_layers):
        lp = f"{prefix}layers.{i}."
        oh = one_hot_input and i == 0
        if bidirectional:
            s_fw, s_bw = states[i] if states[i] is not None else (None, None)
            y_fw, s_fw = run_layer(ctx.cell(lp + "fw.cell.", oh), x, s_fw)
            y_bw, s_bw = run_layer(ctx.cell(lp + "bw.cell.", oh), x, s_bw, reverse=True)
            x = np.concatenate([y_fw, y_bw], -1)
            new.append((s_fw, s_bw))
        else:
            x, s = run_layer(ctx.cell(lp + "cell.", oh), x, states[i])
            new.append(s)
    return x, new


# ----------------------------------------------------------------------------- models
def classifier_forward(ctx: Context, model_cfg: Mapping[str, Any], x: Array, state: Any = None) -> tuple[Array, Any]:
    """Articles 001/003 §2: ``score = V y_T + b`` on the last output of the (bi)directional stack."""
    y, _ = run_stack(ctx, "rnn.", np.transpose(x, (1, 0, 2)), int(model_cfg.get("num_layers", 1)),
                     bool(model_cfg.get("bidirectional", False)))
    return ctx.linear("head.", y[-1]), None


def seq2seq_forward(ctx: Context, model_cfg: Mapping[str, Any], x: Array, state: Any = None) -> tuple[Array, Any]:
    """Article 003 §1: encoder over x; ``score_0 = V h_enc + b``; then greedy: the decoder reads
    ``one_hot(argmax score_{t-1})`` from the encoder's final state on."""
    L = int(model_cfg.get("num_layers", 1))
    enc, st = run_stack(ctx, "encoder.", np.transpose(x, (1, 0, 2)), L, one_hot_input=True)
    scores = [ctx.linear("head.", enc[-1])]
    for _ in range(1, ctx.out_len):
        dec, st = run_stack(ctx, "decoder.", one_hot_argmax(scores[-1])[None], L, states=st, one_hot_input=True)
        scores.append(ctx.linear("head.", dec[0]))
    return np.stack(scores, 1), None


def _additive_attention(ctx: Context, prefix: str, memory: Array, query: Array,
                        keys: Optional[Array] = None) -> tuple[Array, Array]:
    """``α = softmax_j(Σ v ⊙ tanh(K m_j + Q q + c))``, read-out ``Σ_j α_j m_j`` (TF's attention)."""
    p = ctx.params.sub(prefix)
    keys = ctx.linear(prefix + "attn_k.", memory) if keys is None else keys
    y = ctx.linear(prefix + "attn_q.", query)[:, None]
    a = softmax(np.sum(p["attn_v"] * np.tanh(keys + y), axis=2), axis=1)
    return np.sum(a[..., None] * memory, axis=1), a


def window_attention_step(ctx: Context, prefix: str, cell: NpCell, x: Array, carry: tuple
                          ) -> tuple[Array, tuple, Array, Array]:
    """One ``AttentionCellWrapper`` step (article 003 §3's loop body)::

        inputs = [x, attns] W1 + c1;  output, state = cell(inputs, state)
        attns  = attention(state, attn_states);  output = [output, attns] W3 + c3
        attn_states = [attn_states[:, 1:], output]
    """
    state, attns, window = carry
    inputs = ctx.linear(prefix + "in_proj.", np.concatenate([x, attns], 1))
    h, state = cell.step(inputs, state)
    attns, a = _additive_attention(ctx, prefix + "attention.", window, np.concatenate(state, 1))
    out = ctx.linear(prefix + "out_proj.", np.concatenate([h, attns], 1))
    window = np.concatenate([window[:, 1:], out[:, None]], 1)
    return out, (state, attns, window), h, a


def attention_forward(ctx: Context, model_cfg: Mapping[str, Any], x: Array, state: Any = None,
                      trace: Optional[list] = None) -> tuple[Array, Any]:
    """Article 003 §3 (``attention=window``) or Bahdanau attention (``additive``); greedy decoding."""
    kind = str(model_cfg.get("attention", "window"))
    B, T = x.shape[0], x.shape[1]
    rec = trace.append if trace is not None else (lambda d: None)
    if kind == "window":
        enc_cell = ctx.cell("encoder.layer.cell.")
        dec_cell = ctx.cell("decoder.layer.cell.")
        A = int(ctx.params["encoder.out_proj.weight"].shape[0])
        L = int(model_cfg.get("attn_length", 7))
        carry = (enc_cell.init_state(B), np.zeros((B, A)), np.zeros((B, L, A)))
        out = None
        for t in range(T):
            out, carry, h, a = window_attention_step(ctx, "encoder.", enc_cell, x[:, t], carry)
            rec({"h": h, "alpha": a, "out": out})
        scores = [ctx.linear("head.", out)]
        for _ in range(1, ctx.out_len):
            out, carry, h, a = window_attention_step(ctx, "decoder.", dec_cell, one_hot_argmax(scores[-1]), carry)
            rec({"h": h, "alpha": a, "out": out})
            scores.append(ctx.linear("head.", out))
        return np.stack(scores, 1), None
    if kind == "additive":
        mem, states = run_stack(ctx, "encoder.", np.transpose(x, (1, 0, 2)), 1, one_hot_input=True)
        mem, st = np.transpose(mem, (1, 0, 2)), states[0]
        keys = ctx.linear("attention.attn_k.", mem)
        ctx_vec, a = _additive_attention(ctx, "attention.", mem, np.concatenate(st, 1), keys)
        out = ctx.linear("out_proj.", np.concatenate([mem[:, -1], ctx_vec], 1))
        rec({"h": mem[:, -1], "alpha": a, "out": out})
        scores = [ctx.linear("head.", out)]
        dec_cell = ctx.cell("decoder.cell.", one_hot_input=True)  # reads [one-hot symbol, context]
        for _ in range(1, ctx.out_len):
            ctx_vec, a = _additive_attention(ctx, "attention.", mem, np.concatenate(st, 1), keys)
            h, st = dec_cell.step(np.concatenate([one_hot_argmax(scores[-1]), ctx_vec], 1), st)
            out = ctx.linear("out_proj.", np.concatenate([h, ctx_vec], 1))
            rec({"h": h, "alpha": a, "out": out})
            scores.append(ctx.linear("head.", out))
        return np.stack(scores, 1), None
    raise VerifyUnsupported(f"verify has no NumPy implementation for attention kind {kind}")


def lm_forward(ctx: Context, model_cfg: Mapping[str, Any], x: Array, state: Any = None) -> tuple[Array, Any]:
    """Character LM: embedding rows -> stack (state carried across windows) -> linear head."""
    emb = ctx.params["embedding.weight"][x.T.astype(np.int64)]  # [T, B, E]
    y, state = run_stack(ctx, "rnn.", emb, int(model_cfg.get("num_layers", 1)), states=state)
    return np.transpose(ctx.linear("head.", y), (1, 0, 2)), state


#: model name (``cfg.model.name``) -> forward ``(ctx, model_cfg, x, state) -> (scores, state)``
MODELS: dict[str, Callable[..., tuple[Array, Any]]] = {
    "classifier": classifier_forward,
    "bidir_classifier": classifier_forward,
    "seq2seq": seq2seq_forward,
    "attention_seq2seq": attention_forward,
    "lm": lm_forward,
}


# ----------------------------------------------------------------------------- metrics
@dataclass
class Sums:
    """Running sums of article 003's metrics (and the near-tie allowance)."""
    loss: float = 0.0  #: Σ −log p(label), unclipped (the framework's cross-entropy; compared)
    loss_clip: float = 0.0  #: Σ −log clip(p, 1e-10, 1) (article 003's formula; shown)
    correct: int = 0
    count: int = 0
    seq_correct: int = 0
    seq_count: int = 0
    tie_allowance: int = 0  #: predictions that may differ from float32 argmax because of a near-tie
    seq_tie_allowance: int = 0  #: answers that may differ (seq2seq) because of a near-tie
    #: seq2seq: per answer, whether greedy decoding met a near-tie (in batch order), and the
    #: loss over the answers that did not — the part float32 and float64 decode identically
    tie_answers: list = field(default_factory=list)
    loss_notie: float = 0.0
    count_notie: int = 0

    def metrics(self, kind: str) -> dict[str, float]:
        n = max(self.count, 1)
        m = {"loss": self.loss / n, "loss_clip": self.loss_clip / n, "acc": self.correct / n}
        if kind == "seq2seq":
            m["seq_acc"] = self.seq_correct / max(self.seq_count, 1)
        if kind == "lm":
            m["bpc"] = m["loss"] / math.log(2)
        return m


def add_batch(sums: Sums, kind: str, scores: Array, labels: Array, tie_tol: float = 1e-4) -> None:
    """``p = softmax(score)``; ``acc`` over argmax; article 003's ``loss_clip = −Σ log(clip(p, 1e-10, 1)) · Y``
    and the unclipped ``loss = −Σ log p · Y`` (log-softmax), which is what the framework's
    cross-entropy is: the two differ once a model puts p < 1e-10 on a true label (a trained model
    does), so ``loss`` is the one compared and ``loss_clip`` is shown beside it.

    Near-ties (top-2 scores closer than ``tie_tol``) may flip argmax between float32 and
    float64; in greedy seq2seq a flip at answer step t can change every later step, so it
    allows ``T_out − t`` differing characters (1 otherwise)."""
    probs = softmax(scores, -1)
    V = scores.shape[-1]
    Y = np.eye(V)[labels.astype(np.int64)]
    sums.loss_clip += float(-np.sum(np.log(np.clip(probs, 1e-10, 1.0)) * Y))
    m = scores.max(-1, keepdims=True)
    log_p = scores - (m + np.log(np.exp(scores - m).sum(-1, keepdims=True)))
    sums.loss += float(-np.sum(log_p * Y))
    ok = np.argmax(probs, -1) == labels
    sums.correct += int(ok.sum())
    sums.count += int(ok.size)
    top2 = np.sort(scores, -1)[..., -2:]
    tie = (top2[..., 1] - top2[..., 0]) < tie_tol
    if kind == "seq2seq":
        sums.seq_correct += int(ok.all(1).sum())
        sums.seq_count += int(ok.shape[0])
        T = ok.shape[1]
        first = np.where(tie.any(1), tie.argmax(1), T)
        sums.tie_allowance += int((T - first).sum())
        sums.seq_tie_allowance += int(tie.any(1).sum())
        clean = ~tie.any(1)
        sums.tie_answers.append(~clean)
        sums.loss_notie += float(-np.sum((log_p * Y)[clean]))
        sums.count_notie += int(clean.sum()) * T
    else:
        sums.tie_allowance += int(tie.sum())
