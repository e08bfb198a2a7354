"""Quantization-aware training and an integer-only inference path (Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference"; article 002's ``is_quant`` + ``tf.contrib.quantize.create_training_graph``).

Number formats (symmetric, zero-point 0; the layout of TFLite's integer LSTM):

==================  ===========================================  =========================
tensor              format                                       scale
==================  ===========================================  =========================
weights             int8, per output row                         s_w[r] = max|W_r| / 127
layer input x       int8, per tensor                             s_x = EMA(max|x|) / 127
gate pre-activation int16, clamped to the LUT domain [-8, 8)     S_G = 2^-10
σ / tanh outputs    int16 LUT over the 16384 pre-activations     S_A = 2^-15
cell state c        int16                                        S_C = 2^-11
hidden state h      int8                                         S_H = 2^-7
logits (head)       int32                                        S_O = 2^-8
==================  ===========================================  =========================

A matmul accumulates int8·int8 products in int32 (``acc = W_q · x_q``); it is rescaled to the
gate scale by a fixed-point multiplier ``M = s_w s_x / S_G ≈ m0 · 2^-n`` with a 24-bit integer
``m0`` and round-half-up shift: ``g = (acc · m0 + 2^(n-1)) >> n``. The LSTM step is then

    gates = clamp(g_ih + g_hh + b_q)                  b_q = round(b / S_G)
    i, f, o = LUT_σ[gates],  u = LUT_tanh[gates]
    c = clamp(rshift(f·c, 15) + rshift(i·u, 19))      (S_A·S_C -> S_C, S_A·S_A -> S_C)
    h = clamp(rshift(o · LUT_tanh[rshift(c, 1)], 23)) (S_A·S_A -> S_H)

The fake-quantised model (training and :func:`int_only_report`'s reference) computes exactly
these integers, held in float64 (every value < 2^53, so exact), with straight-through
gradients (round: identity; LUT: σ'/tanh'; clamp: zero outside). :func:`int_forward` computes
them with int64 tensors only (no float op after quantising the input), so the two agree up to
nothing but bugs. Before ``quant_delay`` optimizer steps (``set_training_progress``) the model
trains in float (the cells' own fused kernels); the input observers run from the start.

torch's own ``torch.ao.quantization`` FakeQuantize modules are not used: their observers
pick asymmetric scales and round half-to-even, so an integer path could only approximate them,
and ``torch.ao.quantization`` is deprecated in favour of torchao (not a dependency here).
"""
from __future__ import annotations

import logging


from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..cells.base import Cell, FollowsTraining, RecurrentLayer, State
from ..cells.lstm import LSTMCell
from ..cells.rnn import RNNCell
from ..errors import ConfigError
from ..reported import Reported
from .base import Regularizer, cell_name

QMAX8 = 127
QMAX16 = 32767
G_BITS = 10  #: S_G = 2^-10
LUT_LO, LUT_HI = -(8 << G_BITS), (8 << G_BITS) - 1  #: pre-activation domain [-8, 8)
A_BITS = 15  #: S_A = 2^-15
C_BITS = 11  #: S_C = 2^-11
H_BITS = 7  #: S_H = 2^-7
O_BITS = 8  #: S_O = 2^-8
MULT_BITS = 24  #: fixed-point multiplier mantissa (m0 in [2^23, 2^24))
F64 = torch.float64

log = logging.getLogger("rnnbench")


# ----------------------------------------------------------------------------- primitives
class _Exact(torch.autograd.Function):
    """Forward: the exact value ``q``; backward: the gradient of the surrogate ``x`` (STE)."""

    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor) -> Tensor:  # type: ignore[override]
        return q.clone()

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        return g, None


def ste(x: Tensor, q: Tensor) -> Tensor:
    return _Exact.apply(x, q.detach())


def round_half_up(x: Tensor) -> Tensor:
    """``floor(x + 1/2)`` with a straight-through gradient."""
    return ste(x, torch.floor(x.detach() + 0.5))


def qclamp(x: Tensor, lo: int, hi: int) -> Tensor:
    return torch.clamp(x, lo, hi)


class _RoundClamp(torch.autograd.Function):
    """``clamp(floor(x + 1/2), lo, hi)`` in one node: the value and gradient of
    ``qclamp(round_half_up(x))`` (STE through the round, then torch.clamp's backward: the
    gradient passes where the rounded value lies strictly inside (lo, hi)) in one node."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: int, hi: int) -> Tensor:  # type: ignore[override]
        q = torch.floor(x + 0.5)
        ctx.save_for_backward((q > lo).logical_and_(q < hi))
        return q.clamp_(lo, hi)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        inside, = ctx.saved_tensors
        return torch.where(inside, g, g.new_zeros(())), None, None


def round_clamp(x: Tensor, lo: int, hi: int) -> Tensor:
    """``qclamp(round_half_up(x), lo, hi)`` (same values, same gradient)."""
    return _RoundClamp.apply(x, lo, hi)


def rshift_round(x: Tensor, n: int) -> Tensor:
    """``floor(x / 2^n + 1/2)`` — the integer path's ``(x + 2^(n-1)) >> n``."""
    return round_half_up(x * (2.0 ** -n))


def weight_scale(w: Tensor) -> Tensor:
    """Per-row symmetric scale ``max|W_r| / 127`` (float64, detached; 1 for an all-zero row)."""
    a = w.detach().to(F64).abs().amax(dim=1)
    return torch.where(a > 0, a / QMAX8, torch.ones_like(a))


def quantize_weight(w: Tensor) -> tuple[Tensor, Tensor]:
    """``(W_q, s_w)``: integer-valued float64 ``clamp(round(W / s_w))`` (STE) and the row scales."""
    s = weight_scale(w)
    return round_clamp(w.to(F64) / s[:, None], -QMAX8, QMAX8), s


def quantize_multiplier(m: Tensor) -> tuple[Tensor, Tensor]:
    """``m ≈ m0 · 2^-n`` with integer ``m0 ∈ [2^23, 2^24)`` (or 0); returns int64 ``(m0, n)``."""
    m = m.to(F64)
    e = torch.floor(torch.log2(torch.where(m > 0, m, torch.ones_like(m))))
    n = (MULT_BITS - 1 - e).to(torch.int64)
    m0 = torch.floor(m * torch.pow(2.0, n.to(F64)) + 0.5).to(torch.int64)
    if (n < 1).any():
        raise ValueError("qat: rescale multiplier >= 2^22 (a scale is degenerate)")
    return torch.where(m > 0, m0, torch.zeros_like(m0)), torch.where(m > 0, n, torch.ones_like(n))


def fixed_multiplier(m: Tensor) -> Tensor:
    """The float64 value ``m0 · 2^-n`` of :func:`quantize_multiplier` (exact)."""
    m0, n = quantize_multiplier(m)
    return m0.to(F64) * torch.pow(2.0, -n.to(F64))


def quantize_input(x: Tensor, s: Tensor) -> Tensor:
    """int8 ``clamp(round(x · M))`` with ``M`` = the fixed-point 1/s (so an input on another
    int grid, e.g. h at S_H, requantises exactly as the integer path's multiply-shift)."""
    return round_clamp(x.to(F64) * fixed_multiplier(1.0 / s), -QMAX8, QMAX8)


def int_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.t()`` of int8-valued float64 matrices (the int32 accumulation). In float32 when
    every partial sum is an integer below 2^24 (K·127² < 2^24), so exact in any summation order
    and ≈ 3× faster than the float64 GEMM; in float64 otherwise. The result is float64."""
    if a.shape[-1] * QMAX8 * QMAX8 < 2 ** 24:
        return (a.float() @ b.float().t()).to(F64)
    return a @ b.t()


def _lut(fn, k: Tensor) -> Tensor:
    return torch.clamp(torch.floor(fn(k.to(F64) * 2.0 ** -G_BITS) * 2.0 ** A_BITS + 0.5), -QMAX16, QMAX16)


_KEYS = torch.arange(LUT_LO, LUT_HI + 1, dtype=torch.int64)
SIGMOID_LUT = _lut(torch.sigmoid, _KEYS).to(torch.int64)  #: int16 values, index = pre-activation − LUT_LO
TANH_LUT = _lut(torch.tanh, _KEYS).to(torch.int64)


_LUTS: dict = {}  # (which, device, dtype) -> the table in that dtype, made once


class _LutAct(torch.autograd.Function):
    """Forward: the LUT value; backward: the gradient of the surrogate ``fn(g·S_G)/S_A``, i.e.
    ``σ'`` / ``tanh'`` at ``g·S_G`` times ``S_G/S_A`` (powers of two: the same numbers as
    autograd through ``mul, fn, mul``), from ``fn``'s output saved in the forward."""

    @staticmethod
    def forward(ctx, gates: Tensor, which: str) -> Tensor:  # type: ignore[override]
        key = (which, gates.device, gates.dtype)
        if key not in _LUTS:
            _LUTS[key] = (SIGMOID_LUT if which == "sigmoid" else TANH_LUT).to(gates.device, gates.dtype)
        y = (torch.sigmoid if which == "sigmoid" else torch.tanh)(gates * 2.0 ** -G_BITS)
        ctx.which = which
        ctx.save_for_backward(y)
        return _LUTS[key][gates.to(torch.int64) - LUT_LO]

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        y, = ctx.saved_tensors
        bwd = torch.ops.aten.sigmoid_backward if ctx.which == "sigmoid" else torch.ops.aten.tanh_backward
        return bwd(g * 2.0 ** A_BITS, y) * 2.0 ** -G_BITS, None


def lut_act(gates: Tensor, which: str) -> Tensor:
    """σ or tanh of int16 pre-activations (scale S_G, in the LUT domain) -> int16 (scale S_A).

    Forward: the LUT value (exactly what the integer path reads); backward: σ'/tanh'."""
    return _LutAct.apply(gates, which)


class ActObserver(nn.Module):
    """EMA of ``max|x|`` over training batches: ``a <- a + (1 − decay)(max|x| − a)``; scale a/127."""

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("amax", torch.zeros((), dtype=F64))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def observe(self, x: Tensor) -> None:
        """Update in training; in eval only the first batch calibrates a never-trained observer."""
        if not self.training and bool(self.initialized):
            return
        m = x.detach().abs().amax().to(F64)
        if not bool(self.initialized):
            self.amax.copy_(m)
            self.initialized.fill_(True)
        else:
            self.amax.add_((1 - self.decay) * (m - self.amax))

    def scale(self) -> Tensor:
        a = self.amax
        return torch.where(a > 0, a / QMAX8, torch.ones_like(a))


# ----------------------------------------------------------------------------- QAT modules
class _Progress(FollowsTraining):
    """Quant-delay switch. The state is also a buffer (``qat_enabled``), so a checkpoint loaded
    into a freshly built model evaluates in the mode it was saved in."""

    quant_delay: int = 0
    _enabled: bool = True

    def _init_progress(self, quant_delay: int) -> None:
        self.quant_delay = int(quant_delay)
        self._enabled = self.quant_delay <= 0
        self.register_buffer("qat_enabled", torch.tensor(self._enabled))  # type: ignore[attr-defined]
        self.register_load_state_dict_post_hook(  # type: ignore[attr-defined]
            lambda mod, keys: setattr(mod, "_enabled", bool(mod.qat_enabled)))

    @property
    def quant_enabled(self) -> bool:
        return self._enabled

    def progress_state(self) -> Optional[str]:
        return "qat_enabled"

    def set_training_progress(self, step: int, total_steps: int) -> None:
        """Fake quantisation starts once ``step >= quant_delay`` (called by the trainer)."""
        on = step >= self.quant_delay
        if on != self._enabled:
            self._enabled = on
            self.qat_enabled.fill_(on)  # type: ignore[attr-defined]


class QATCell(_Progress, Cell):
    """Wraps a float :class:`LSTMCell` or :class:`RNNCell` (``float_cell``, whose parameters and
    parametrizations it uses); runs the fake-quantised integer step of the module doc once
    quantisation is enabled, the float cell (fused kernel included) before."""

    def __init__(self, cell: Cell, quant_delay: int = 0, observer_decay: float = 0.99) -> None:
        if not isinstance(cell, (LSTMCell, RNNCell)):
            raise ConfigError(f"regularizer qat cannot apply to cell {cell_name(cell)}: integer LSTM/RNN "
                              "steps exist for cells lstm and rnn only")
        super().__init__(cell.input_size, cell.hidden_size, fused=cell.fused, name=cell_name(cell))
        self.float_cell = cell
        self.num_states = cell.num_states
        self.is_lstm = isinstance(cell, LSTMCell)
        self._init_progress(quant_delay)
        self.x_obs = ActObserver(observer_decay)
        self._hh: Optional[tuple[Tensor, Tensor]] = None  # (W_hh_q, multiplier) of this sequence

    @property  # type: ignore[override]
    def fused(self) -> bool:
        return bool(self.__dict__.get("_fused", True)) and not self.quant_enabled

    @fused.setter
    def fused(self, v: bool) -> None:
        self.__dict__["_fused"] = bool(v)

    # biases at the gate scale (LSTM folds forget_bias into b_ih, as the float cell)
    def _bias(self) -> Tensor:
        c = self.float_cell
        b = c._bias_ih() + c.bias_hh if self.is_lstm else c.bias_ih + c.bias_hh
        return round_half_up(b.to(F64) * 2.0 ** G_BITS)

    def own_path(self) -> Optional[str]:
        return "qat" if self.quant_enabled else None  # the fake-quant step loop, else the float cell's path

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        self.x_obs.observe(x)
        return None if self.quant_enabled else self.float_cell.native_forward(x, state)

    def sequence_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        if self.quant_enabled:
            return None  # the fake-quant step loop
        self.x_obs.observe(x)
        return self.float_cell.sequence_forward(x, state)

    def begin_sequence(self, batch: int) -> None:
        self.float_cell.begin_sequence(batch)

    def end_sequence(self) -> None:
        self.float_cell.end_sequence()

    def project_input(self, x: Tensor) -> Tensor:
        self.x_obs.observe(x)
        if not self.quant_enabled:
            return self.float_cell.project_input(x)
        s_x = self.x_obs.scale()
        xq = quantize_input(x, s_x)
        wq, s_w = quantize_weight(self.float_cell.weight_ih)
        acc = int_mm(xq, wq)  # the int32 accumulation
        self._hh = self._quantized_hh()  # once per sequence, like a cached parametrization
        return round_half_up(acc * fixed_multiplier(s_w * s_x * 2.0 ** G_BITS)) + self._bias()

    def _quantized_hh(self) -> tuple[Tensor, Tensor]:
        wq, s_w = quantize_weight(self.float_cell.weight_hh)
        return wq, fixed_multiplier(s_w * 2.0 ** (G_BITS - H_BITS))

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        if not self.quant_enabled:
            return self.float_cell.step(xp, state)
        dtype = state[0].dtype
        hq = round_clamp(state[0].to(F64) * 2.0 ** H_BITS, -QMAX8, QMAX8)
        wq, mult = self._hh if self._hh is not None else self._quantized_hh()
        gates = qclamp(xp + round_half_up(int_mm(hq, wq) * mult), LUT_LO, LUT_HI)
        if self.is_lstm:
            cq = round_clamp(state[1].to(F64) * 2.0 ** C_BITS, -QMAX16, QMAX16)
            gi, gf, gg, go = gates.chunk(4, 1)
            i, f, o = lut_act(gi, "sigmoid"), lut_act(gf, "sigmoid"), lut_act(go, "sigmoid")
            u = lut_act(gg, "tanh")
            cq = qclamp(rshift_round(f * cq, A_BITS) + rshift_round(i * u, 2 * A_BITS - C_BITS), -QMAX16, QMAX16)
            tc = lut_act(round_clamp(cq * 2.0 ** (G_BITS - C_BITS), LUT_LO, LUT_HI), "tanh")
            hq = round_clamp(o * tc * 2.0 ** (H_BITS - 2 * A_BITS), -QMAX8, QMAX8)
            h = (hq * 2.0 ** -H_BITS).to(dtype)
            return h, (h, (cq * 2.0 ** -C_BITS).to(dtype))
        t = lut_act(gates, "tanh")
        hq = round_clamp(t * 2.0 ** (H_BITS - A_BITS), -QMAX8, QMAX8)
        h = (hq * 2.0 ** -H_BITS).to(dtype)
        return h, (h,)

    def extra_loss(self) -> Optional[Tensor]:
        return self.float_cell.extra_loss()

    def stats(self) -> dict[str, float]:
        return self.float_cell.stats()


class QATLinear(_Progress, nn.Module):
    """``nn.Linear`` with int8 per-row weights, an int8 input (EMA observer), an int32
    accumulator and int32 output at S_O = 2^-8:
    ``y = round(acc · s_w s_in / S_O) · S_O``, ``acc = W_q x_q + round(b / (s_w s_in))``.
    Keeps the float module's ``weight``/``bias`` Parameters (names and tying unchanged)."""

    def __init__(self, lin: nn.Linear, quant_delay: int = 0, observer_decay: float = 0.99) -> None:
        super().__init__()
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight = lin.weight
        self.bias = lin.bias
        self._init_progress(quant_delay)
        self.x_obs = ActObserver(observer_decay)

    def forward(self, x: Tensor) -> Tensor:
        self.x_obs.observe(x)
        if not self.quant_enabled:
            return nn.functional.linear(x, self.weight, self.bias)
        s_in = self.x_obs.scale()
        xq = quantize_input(x, s_in)
        wq, s_w = quantize_weight(self.weight)
        acc = int_mm(xq, wq)
        if self.bias is not None:
            acc = acc + round_half_up(self.bias.to(F64) / (s_w * s_in))
        yq = round_half_up(acc * fixed_multiplier(s_w * s_in * 2.0 ** O_BITS))
        return (yq * 2.0 ** -O_BITS).to(x.dtype)


class QAT(Regularizer):
    """Swaps every LSTM/RNN cell for a :class:`QATCell` and every ``nn.Linear`` for a
    :class:`QATLinear` (as ``torch.ao.quantization.prepare_qat`` swaps modules)."""

    name = "qat"
    order = 40
    reported = (Reported("int_agreement", "int-only agreement"), Reported("int_acc", "int-only acc"),
                Reported("fq_acc"))

    def __init__(self, quant_delay: int = 0, observer_decay: float = 0.99, linear: bool = True) -> None:
        if quant_delay < 0:
            raise ConfigError(f"regularizer.qat.quant_delay must be >= 0, got {quant_delay}")
        self.quant_delay = int(quant_delay)
        self.observer_decay = float(observer_decay)
        self.linear = bool(linear)

    def final_report(self, model: nn.Module, task: Any, eval_batch_size: int,
                     max_eval_batches: Optional[int]) -> dict[str, float]:
        """End of a run: integer-only inference vs the fake-quantised model on the test split
        (one-direction classifiers; other models report nothing)."""
        if getattr(getattr(task, "spec", None), "kind", None) != "classification":
            return {}
        try:
            rep = int_only_report(model, task, "test", eval_batch_size, max_eval_batches)
        except ConfigError as e:
            log.warning("qat: no integer-only report: %s", e)
            return {}
        return {"int_agreement": rep["int_agreement"], "int_acc": rep["int_acc"], "fq_acc": rep["fq_acc"]}

    def apply(self, model: nn.Module) -> None:
        layers = [m for m in model.modules() if isinstance(m, RecurrentLayer)]
        if not layers:
            raise ConfigError("regularizer qat needs a model with recurrent layers (found none)")
        for layer in layers:
            layer.cell = QATCell(layer.cell, self.quant_delay, self.observer_decay)
        if self.linear:
            for parent in list(model.modules()):
                for n, child in list(parent.named_children()):
                    if type(child) is nn.Linear:
                        setattr(parent, n, QATLinear(child, self.quant_delay, self.observer_decay))


# ----------------------------------------------------------------------------- integer-only path
def _fixed(m: Tensor) -> tuple[Tensor, Tensor]:
    return quantize_multiplier(m)


def _mul_shift(acc: Tensor, m0: Tensor, n: Tensor) -> Tensor:
    """Integer ``(acc · m0 + 2^(n-1)) >> n`` (int64; |acc| < 2^29 keeps it exact)."""
    return (acc * m0 + (1 << (n - 1))) >> n


def _shift(x: Tensor, n: int) -> Tensor:
    return (x + (1 << (n - 1))) >> n


def _check_int32(t: Tensor, what: str) -> Tensor:
    if t.abs().max().item() >= 2 ** 29:
        raise OverflowError(f"int path: {what} accumulator exceeds 2^29")
    return t


def export_int(model: nn.Module) -> dict[str, Any]:
    """Integer parameters of a QAT classifier: per layer int8 weights, int32 biases, (m0, n)."""
    stack = getattr(model, "rnn", None)
    head = getattr(model, "head", None)
    if stack is None or not isinstance(head, QATLinear) or getattr(stack, "bidirectional", False):
        raise ConfigError("int_only: needs a unidirectional classifier (model.rnn, model.head) built with "
                          "regularizer=[qat]")
    layers = []
    with torch.no_grad():
        for layer in stack.layers:
            cell = layer.cell
            if not isinstance(cell, QATCell) or layer.state_hooks or layer.reverse:
                raise ConfigError("int_only: every layer must be a plain QAT lstm/rnn layer")
            s_x = cell.x_obs.scale()
            wi, si = quantize_weight(cell.float_cell.weight_ih)
            wh, sh = quantize_weight(cell.float_cell.weight_hh)
            layers.append(dict(lstm=cell.is_lstm, s_x=s_x, x_mult=fixed_multiplier(1.0 / s_x),
                               w_ih=wi.to(torch.int64), w_hh=wh.to(torch.int64),
                               b=cell._bias().to(torch.int64),
                               m_ih=_fixed(si * s_x * 2.0 ** G_BITS),
                               m_hh=_fixed(sh * 2.0 ** (G_BITS - H_BITS)),
                               m_req=_fixed(torch.tensor(2.0 ** -H_BITS, dtype=F64) / s_x)))
        s_in = head.x_obs.scale()
        wq, s_w = quantize_weight(head.weight)
        b = (round_half_up(head.bias.to(F64) / (s_w * s_in)).to(torch.int64) if head.bias is not None
             else torch.zeros(wq.shape[0], dtype=torch.int64))
        out = dict(w=wq.to(torch.int64), b=b, m_out=_fixed(s_w * s_in * 2.0 ** O_BITS),
                   m_in=_fixed(torch.tensor(2.0 ** -H_BITS, dtype=F64) / s_in))
    cpu = lambda v: v.cpu() if isinstance(v, Tensor) else tuple(cpu(t) for t in v) if isinstance(v, tuple) else v
    layers = [{k: cpu(v) for k, v in L.items()} for L in layers]
    return {"layers": layers, "head": {k: cpu(v) for k, v in out.items()}}


def int_forward(params: dict[str, Any], x: Tensor) -> Tensor:
    """Integer-only inference ``x [B, T, I] float -> logits int [B, C]`` (scale S_O).

    The only float op quantises the input: ``x_q = clamp(round(x · M))``, M ≈ 1/s_x; everything after
    is int64 arithmetic on int8/int16/int32 values: matmuls, fixed-point rescales, shifts, LUTs."""
    sig, tnh = SIGMOID_LUT, TANH_LUT
    L0 = params["layers"][0]
    x = x.transpose(0, 1).to(F64) * L0["x_mult"]  # the same op as quantize_input (fixed-point 1/s_x)
    seq = torch.clamp(torch.floor(x + 0.5), -QMAX8, QMAX8).to(torch.int64)
    h = None
    for k, L in enumerate(params["layers"]):
        if k > 0:  # requantise h (S_H) to this layer's input scale
            seq = torch.clamp(_mul_shift(seq, *L["m_req"]), -QMAX8, QMAX8)
        T, B, _ = seq.shape
        H = L["w_hh"].shape[1]
        xp = _mul_shift(_check_int32(seq @ L["w_ih"].t(), "input"), *L["m_ih"]) + L["b"]
        h = torch.zeros(B, H, dtype=torch.int64)
        c = torch.zeros(B, H, dtype=torch.int64)
        outs = []
        for t in range(T):
            acc = _check_int32(h @ L["w_hh"].t(), "recurrent")
            gates = torch.clamp(xp[t] + _mul_shift(acc, *L["m_hh"]), LUT_LO, LUT_HI) - LUT_LO
            if L["lstm"]:
                gi, gf, gg, go = gates.chunk(4, 1)
                i, f, o, u = sig[gi], sig[gf], sig[go], tnh[gg]
                c = torch.clamp(_shift(f * c, A_BITS) + _shift(i * u, 2 * A_BITS - C_BITS), -QMAX16, QMAX16)
                tc = tnh[torch.clamp(_shift(c, C_BITS - G_BITS), LUT_LO, LUT_HI) - LUT_LO]
                h = torch.clamp(_shift(o * tc, 2 * A_BITS - H_BITS), -QMAX8, QMAX8)
            else:
                h = torch.clamp(_shift(tnh[gates], A_BITS - H_BITS), -QMAX8, QMAX8)
            outs.append(h)
        seq = torch.stack(outs, 0)
    hd = params["head"]
    xin = torch.clamp(_mul_shift(h, *hd["m_in"]), -QMAX8, QMAX8)
    acc = _check_int32(xin @ hd["w"].t() + hd["b"], "head")
    return _mul_shift(acc, *hd["m_out"])


@torch.no_grad()
def int_only_report(model: nn.Module, task: Any, split: str = "test", batch_size: int = 1000,
                    max_batches: Optional[int] = None) -> dict[str, float]:
    """Integer-only predictions vs the fake-quantised model on ``task.eval_batches(split)``.

    Returns ``int_agreement`` (fraction of examples where both argmaxes agree), ``int_acc``
    and ``fq_acc`` (accuracies of the integer path and of the fake-quant model), ``n``."""
    was_training = model.training
    model.eval()
    params = export_int(model)  # on the CPU: integer matmuls are a CPU op in torch
    device = next(model.parameters()).device
    agree = int_ok = fq_ok = n = 0
    for b, (x, y) in enumerate(task.eval_batches(split, batch_size)):
        if max_batches is not None and b >= max_batches:
            break
        p_fq = model(x.to(device)).argmax(-1).cpu()
        p_int = int_forward(params, x.cpu()).argmax(-1)
        y = y.cpu()
        agree += (p_fq == p_int).sum().item()
        int_ok += (p_int == y).sum().item()
        fq_ok += (p_fq == y).sum().item()
        n += y.numel()
    model.train(was_training)
    return {"int_agreement": agree / max(n, 1), "int_acc": int_ok / max(n, 1), "fq_acc": fq_ok / max(n, 1),
            "n": float(n)}
