"""Variable Computation RNNs: VC-LSTM (article 000), VC-RNN and VC-GRU (Jernite et al. 2017,
"Variable Computation in Recurrent Neural Networks", arXiv 1611.06188).

At every step a scalar scheduler decides how much of the state to update::

    m_t = σ(w_m · [x_t, h_{t-1}] + b_m)                                    (scalar per example)
    (e_t)_i = Thres_ε(σ(λ (m_t D − i)))        i = o, …, D − 1 + o         (hidden dims, D = H)
    (e^x_t)_j = Thres_ε(σ(λ (m_t I − j)))      j = o, …, I − 1 + o         (input dims)
    x̄ = e^x ⊙ x_t,  h̄ = e ⊙ h_{t-1},  c̄ = e ⊙ c_{t-1}
    h̃_t, c̃_t = base cell (LSTM / Elman RNN / GRU) on x̄, h̄ (, c̄)
    h_t = e ⊙ h̃_t + (1 − e) ⊙ h_{t-1}    (same for c; computed as ``lerp``, exact at e ∈ {0, 1})

so only the leading ≈ ⌈m_t D⌉ dims change (a soft edge of a few dims when the threshold is
soft) and the rest are carried over exactly. The index offset ``o`` is 0 as in the article's
code (``range(n_units)``) — then m_t = 1 reaches every dim — or 1 as in the paper's formula.

Two thresholds:

* ``threshold="hard"`` — the article's code: e = 1[σ(λ(mD − i)) > 1 − ε] (``relu(sign(·))``);
  no gradient reaches the scheduler through the mask (only through the penalty).
* ``threshold="soft"`` — the paper's Thres_ε: values below ε snap to 0, above 1 − ε to 1,
  values in between pass unchanged, so the edge dims carry a gradient to m_t.

Paper extras: the sharpness λ can follow a schedule over training (``lam_schedule`` linear or
exp from ``lam`` to ``lam_final``; the trainer calls :meth:`set_training_progress`; the current
λ is a buffer, ``lam_now``, so a checkpoint evaluates with the λ it was saved at), and a
computation penalty ``penalty · mean_b((mean_t m_t − m̄)²)`` pulls the average m_t toward the
target m̄ (``target_m``); it is returned by :meth:`extra_loss` and added to the loss.
:meth:`stats` reports ``mean_m`` and ``compute_fraction`` (the fraction of hidden units updated,
e > 0, per step — the computation the cell actually spends), averaged since the last call.

Execution: every step is one matmul ``[x̄, h̄] @ W`` (input and recurrent weights stacked once
per sequence) and both masks come from one ``m·zs + zo`` op. With no per-step hook but zoneout,
VC-LSTM, VC-GRU and VC-RNN run ``VCLSTMSequenceFn`` / ``VCGRUSequenceFn`` (:mod:`rnnbench.cells.kernels.vc`)
/ ``VCRNNSequenceFn`` (:mod:`rnnbench.cells.kernels.vcrnn`): hand-written forward + BPTT, same
function, gradchecked, zoneout's masks inside; their loops compiled in ``kernels/native/vc.cpp`` /
``vcrnn.cpp`` where they build; the state lives in one ``[x, 1, h(, c)]`` buffer so the mask,
masking ``[x, 1, h]``, the bias-free GEMM and the state lerp are one op each, and the soft
threshold is applied in z-space, see ``kernels.vc._mask_``. A VC cell with any other per-step hook
uses the generic :meth:`step` under autograd (its soft mask also in z-space:
σ(z + 10³⁰·hardshrink(z, κ))).
"""
from __future__ import annotations

from abc import abstractmethod

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..reported import Reported
from ..config import CellConf, NONNEG, POSITIVE, Range, RANGES, REAL, register_schema, UNIT
from .base import Cell, Mix, State
from .kernels.vc import _SNAP, VCGRUSequenceFn, VCLSTMSequenceFn
from .kernels.vcrnn import VCRNNSequenceFn


def _keep_lam_if_missing(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """A checkpoint saved before λ was a buffer: keep the cell's current λ."""
    state_dict.setdefault(prefix + "lam_now", module.lam_now.detach().clone())


class VCCell(Cell):
    """Shared scheduler, masks, λ schedule, penalty and statistics of the VC cells."""

    gates = 1
    num_states = 1
    reported = (Reported("mean_m"), Reported("compute_fraction", "compute fraction", result=True))
    #: for the regularizers: the base cell's matrices (the scheduler vectors stay plain)
    regularizer_weights = {"input": ("weight_ih",), "recurrent": ("weight_hh",)}

    def __init__(self, input_size: int, hidden_size: int, lam: float = 1.0, eps: float = 0.1,
                 threshold: str = "soft", lam_schedule: str = "constant", lam_final: Optional[float] = None,
                 target_m: float = 0.5, penalty: float = 0.0, index_offset: int = 0, mask_input: bool | str = True,
                 m_bias_init: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        if threshold not in ("soft", "hard"):
            raise ValueError(f"threshold must be soft or hard, not {threshold!r}")
        if lam_schedule not in ("constant", "linear", "exp"):
            raise ValueError(f"lam_schedule must be constant, linear or exp, not {lam_schedule!r}")
        if not 0.0 < eps < 0.5:
            raise ValueError("eps must lie in (0, 0.5)")
        self.lam0 = float(lam)
        self.lam = float(lam)
        self.lam_final = float(lam_final) if lam_final is not None else float(lam)
        self.lam_schedule = lam_schedule
        if lam_schedule != "constant":
            # a scheduled λ is part of the function: it travels with the weights (state_dict), so a
            # checkpoint evaluates with the λ it was saved at; checkpoints without it keep the current λ
            self.register_buffer("lam_now", torch.tensor(self.lam, dtype=torch.float64))
            self.register_load_state_dict_pre_hook(_keep_lam_if_missing)
            self.register_load_state_dict_post_hook(lambda mod, keys: setattr(mod, "lam", float(mod.lam_now)))
        self.eps = float(eps)
        self.threshold = threshold
        self.target_m = float(target_m)
        self.penalty = float(penalty)
        self.index_offset = int(index_offset)
        if mask_input == "auto":  # resolved by input_options from the model's input; alone: dense input
            mask_input = True
        if not isinstance(mask_input, bool):
            raise ValueError(f"mask_input must be true, false or auto, not {mask_input!r}")
        self.mask_input = mask_input
        self.m_bias_init = float(m_bias_init)
        H, I, G = hidden_size, input_size, self.gates
        # scheduler m_t = σ(w_mx·x + w_mh·h + b_m), the article's w_m_x, w_m_h, b_m
        self.w_mx = nn.Parameter(torch.empty(I, 1))
        self.w_mh = nn.Parameter(torch.empty(H, 1))
        self.b_m = nn.Parameter(torch.zeros(1))
        # base-cell weights in the torch.nn layout (so weight norm / drop find the same names)
        self.weight_ih = nn.Parameter(torch.empty(G * H, I))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H))
        self.bias_ih = nn.Parameter(torch.empty(G * H))
        self.bias_hh = nn.Parameter(torch.empty(G * H))
        self.register_buffer("idx_h", torch.arange(H, dtype=torch.float32) + self.index_offset, persistent=False)
        self.register_buffer("idx_x", torch.arange(I, dtype=torch.float32) + self.index_offset, persistent=False)
        self._wt = self._w = self._b = None  # a sequence's weights (project_input, _step_weights)
        self._ms: list[Tensor] = []  # m_t of the running forward, [B, 1] each
        self._pen_terms: list[Tensor] = []  # [T, B] blocks of m_t awaiting extra_loss()
        self._sum_m = 0.0
        self._sum_frac = 0.0
        self._n = 0
        self.initialize()

    @classmethod
    def input_options(cls, cell_cfg: Any, one_hot_input: bool) -> dict[str, Any]:
        """``mask_input: auto``: mask dense inputs, not one-hot symbols (masking dim i deletes symbol i)."""
        if "mask_input" in cell_cfg and cell_cfg["mask_input"] == "auto":
            return {"mask_input": not one_hot_input}
        return {}

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.w_mx, self.w_mh):
            nn.init.uniform_(p, -k, k)
        nn.init.constant_(self.b_m, self.m_bias_init)

    # -- λ schedule --------------------------------------------------------------------------
    def set_training_progress(self, step: int, total_steps: int) -> None:
        """Move λ along its schedule: ``p = step / total_steps`` from ``lam`` to ``lam_final``."""
        p = min(max(step / max(total_steps, 1), 0.0), 1.0)
        if self.lam_schedule == "linear":
            self.lam = self.lam0 + (self.lam_final - self.lam0) * p
        elif self.lam_schedule == "exp":
            self.lam = self.lam0 * (self.lam_final / self.lam0) ** p
        else:
            self.lam = self.lam0
        if self.lam_schedule != "constant":
            self.lam_now.fill_(self.lam)

    def progress_state(self) -> Optional[str]:
        return "lam_now" if self.lam_schedule != "constant" else None

    # -- masks -------------------------------------------------------------------------------
    def units_updated(self, m: Tensor) -> Tensor:
        """How many hidden dims have e_i > 0 for scheduler values ``m`` (any shape), in closed
        form: soft — σ(λ(mD − i)) ≥ ε ⇔ i ≤ mD + κ/λ; hard — σ(·) > 1 − ε ⇔ i < mD − κ/λ,
        with κ = log((1 − ε)/ε) and i = o, …, D − 1 + o."""
        D, o = self.hidden_size, self.index_offset
        k = math.log((1.0 - self.eps) / self.eps) / self.lam
        if self.threshold == "hard":
            n = torch.ceil(m * D - k) - o
        else:
            n = torch.floor(m * D + k) - o + 1
        return n.clamp(0, D)

    def mask(self, m: Tensor, idx: Tensor) -> Tensor:
        """``e_i = Thres_ε(σ(λ(m·D − i)))`` for ``m [B, 1]`` → ``[B, D]`` (hard or soft)."""
        D = idx.shape[0]
        s = torch.sigmoid((m * D - idx.to(m.dtype)) * self.lam)
        if self.threshold == "hard":
            return (s > 1.0 - self.eps).to(m.dtype)
        return torch.where(s > 1.0 - self.eps, 1.0, torch.where(s < self.eps, 0.0, s))

    # -- the fused per-step path ----------------------------------------------------------------
    @abstractmethod
    def _prepare(self) -> Tensor:
        """The stacked weight ``[G·H, I + 1 + H]`` whose row r reads ``[x̄, 1, h̄]`` (the bias a
        column; gate rows in the kernel's order): built by contiguous cats along the columns, so
        its backward is views (a transpose or a cat of row slices here costs ≈ 1 ms per sequence
        forward and backward); subclasses."""

    def _step_weights(self) -> tuple[Tensor, Tensor]:
        """The step loop's ``W [(I + H), G·H]`` and bias from :meth:`_prepare`'s weight (once per
        sequence; the whole-sequence kernels read the stacked weight itself)."""
        if self._w is None:
            I = self.input_size
            self._w, self._b = torch.cat([self._wt[:, :I], self._wt[:, I + 1:]], 1).t(), self._wt[:, I]
        return self._w, self._b

    def project_input(self, x: Tensor) -> Tensor:
        """``[x, w_mx·x + b_m]`` for all steps (x itself is needed per step: its mask depends on
        m_t and so on h_{t-1}). Also prepares, once per sequence, the stacked weight of the
        single per-step matmul ``[x̄, h̄] @ W`` and the mask constants for the current λ."""
        self._wt, self._w, self._b = self._prepare(), None, None
        I, H = self.input_size, self.hidden_size
        dt, dev = x.dtype, x.device
        D = torch.cat([torch.full((I,), float(I)), torch.full((H,), float(H))]).to(dev, dt)
        idx = torch.cat([self.idx_x, self.idx_h]).to(dev, dt)
        if not self.mask_input:  # the input dims keep e = 1: z = +∞-like constant
            D[:I], idx[:I] = 0.0, -1e9
        self._zs, self._zo = D * self.lam, idx * (-self.lam)
        self._kappa = math.log((1.0 - self.eps) / self.eps)  # σ(z) > 1 − ε  ⇔  z > κ
        return torch.cat([x, torch.addmm(self.b_m, x.reshape(-1, x.shape[-1]), self.w_mx)
                          .reshape(*x.shape[:-1], 1)], -1)

    def masked_xh(self, xp: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """m_t, both masks at once (``[x-dims, h-dims]``), and ``[x̄, h̄] = e ⊙ [x, h]``."""
        I = self.input_size
        m = torch.sigmoid(torch.addmm(xp[:, I:], h, self.w_mh))
        self._ms.append(m)
        z = torch.addcmul(self._zo, m, self._zs)  # λ (m·D − i) for every x and h dim
        if self.threshold == "hard":
            e = (z > self._kappa).to(z.dtype)
        else:  # Thres_ε(σ(z)) in z-space as in kernels.vc._mask_ (no gradient outside the band)
            e = torch.sigmoid(torch.add(z, nn.functional.hardshrink(z, self._kappa), alpha=_SNAP))
        xh = torch.cat([xp[:, :I], h], 1) * e
        return xh, e[:, I:]

    # -- bookkeeping ---------------------------------------------------------------------------
    def begin_sequence(self, batch: int) -> None:
        self.end_sequence()  # fold steps run outside a layer (e.g. a model calling step directly)

    def end_sequence(self) -> None:
        """Fold the recorded m_t into the running statistics (and the penalty terms)."""
        self._wt = self._w = self._b = None  # per-sequence weights: drop the graph (and keep deepcopy working)
        if not self._ms:
            return
        M = torch.cat(self._ms, 1)  # [B, T]
        self._ms = []
        with torch.no_grad():  # tensors, no host sync per forward; stats() reads them out
            md = M.detach()
            self._sum_m = self._sum_m + md.sum()
            self._sum_frac = self._sum_frac + self.units_updated(md).sum() / self.hidden_size
            self._n += md.numel()
        if self.penalty > 0 and self.training and M.requires_grad:
            self._pen_terms.append(M)

    #: the whole-sequence kernel (:mod:`rnnbench.cells.kernels.vc`, ``.vcrnn``): ``apply(xp, *state,
    #: wt, w_mh, zs, zo, meta, *keep factors) -> (y, *state, M)`` (``wt`` from :meth:`_prepare`)
    sequence_fn: Any = None

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """No per-step hook but zoneout (``mix``): the whole sequence through :attr:`sequence_fn`
        (same function)."""
        if self.compile or self.sequence_fn is None:
            return None
        self.begin_sequence(x.shape[1])
        xp = self.project_input(x)
        ks = mix() if mix is not None else (None,) * self.num_states  # drawn after the weights, as the loop does
        meta = (self.input_size, self.threshold == "hard", self.eps, self._kappa, x.requires_grad)
        y, *new, M = self.sequence_fn.apply(xp, *state, self._wt, self.w_mh, self._zs, self._zo, meta, *ks)
        self._ms = list(M.unbind(0))
        self.end_sequence()
        return y, tuple(new)

    def extra_loss(self) -> Optional[Tensor]:
        """``penalty · mean_b((mean_t m_t − m̄)²)`` over the forwards since the last call."""
        self.end_sequence()
        if not self._pen_terms:
            return None
        terms, self._pen_terms = self._pen_terms, []
        if len({t.shape[0] for t in terms}) == 1:
            M = torch.cat(terms, 1)
            return self.penalty * ((M.mean(1) - self.target_m) ** 2).mean()
        return self.penalty * torch.stack([((t.mean(1) - self.target_m) ** 2).mean() for t in terms]).mean()

    def stats(self) -> dict[str, float]:
        """``mean_m`` and ``compute_fraction`` averaged over all steps since the last call."""
        self.end_sequence()
        if self._n == 0:
            return {}
        out = {"mean_m": float(self._sum_m) / self._n, "compute_fraction": float(self._sum_frac) / self._n}
        self._sum_m, self._sum_frac, self._n = 0.0, 0.0, 0
        return out


class VCLSTMCell(VCCell):
    """VC-LSTM (article 000): an ``nn.LSTM``-layout LSTM (gates i, f, g, o) on x̄, h̄, c̄::

        i, f, g, o = split(W_ih x̄ + b_ih + W_hh h̄ + b_hh)
        c̃ = σ(f + forget_bias) ⊙ c̄ + σ(i) ⊙ tanh(g);   h̃ = σ(o) ⊙ tanh(c̃)
        c_t = e ⊙ c̃ + (1 − e) ⊙ c_{t-1};   h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}

    Internally the gate rows are reordered to o, i, f, g once per sequence, so one sigmoid
    covers three gates (and, in the backward, the three gates ∂c̃ reaches are adjacent);
    parameters keep the ``nn.LSTM`` layout.
    """

    gates = 4
    num_states = 2
    flop_model = (4, 4, 30)  # LSTM on the masked x, h (full GEMMs) + two masks and two lerps
    compiled_kernel = True  # VCLSTMSequenceFn's loop is C++ where it builds (kernels/native/vc.cpp)
    takes_state_mix = True  # zoneout runs inside VCLSTMSequenceFn
    sequence_fn = VCLSTMSequenceFn

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0, **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        self.forget_bias = float(forget_bias)

    def _prepare(self) -> Tensor:
        H = self.hidden_size
        b = self.bias_ih + self.bias_hh
        if self.forget_bias:
            b = b + torch.cat([b.new_zeros(H), b.new_full((H,), self.forget_bias), b.new_zeros(2 * H)])
        w = torch.cat([self.weight_ih, b.unsqueeze(1), self.weight_hh], 1)
        # gate rows i, f, g, o -> o, i, f, g: a roll (its backward one roll; a cat of row slices
        # zero-fills and adds three full-size gradients, an index permutation accumulates)
        return w.view(4, H, -1).roll(1, 0).view(4 * H, -1)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h, c = state
        xh, e = self.masked_xh(xp, h)
        w, b = self._step_weights()
        gates = torch.addmm(b, xh, w)  # o, i, f, g
        sg = torch.sigmoid(gates[:, :3 * H])
        ct = torch.addcmul(sg[:, 2 * H:] * (c * e), sg[:, H:2 * H], torch.tanh(gates[:, 3 * H:]))
        ht = sg[:, :H] * torch.tanh(ct)
        c = torch.lerp(c, ct, e)
        h = torch.lerp(h, ht, e)
        return h, (h, c)



class VCRNNCell(VCCell):
    """VC-RNN (Jernite et al. 2017): h̃ = tanh(W_ih x̄ + b_ih + W_hh h̄ + b_hh); h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}."""

    gates = 1
    flop_model = (1, 1, 20)
    compiled_kernel = True  # VCRNNSequenceFn's loop is C++ where it builds (kernels/native/vcrnn.cpp)
    takes_state_mix = True  # zoneout runs inside VCRNNSequenceFn
    sequence_fn = VCRNNSequenceFn

    def _prepare(self) -> Tensor:
        return torch.cat([self.weight_ih, (self.bias_ih + self.bias_hh).unsqueeze(1), self.weight_hh], 1)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h = state[0]
        xh, e = self.masked_xh(xp, h)
        w, b = self._step_weights()
        h = torch.lerp(h, torch.tanh(torch.addmm(b, xh, w)), e)
        return h, (h,)



class VCGRUCell(VCCell):
    """VC-GRU (Jernite et al. 2017): an ``nn.GRU``-layout GRU (gates r, z, n) on x̄, h̄::

        r = σ(W_ir x̄ + b_ir + W_hr h̄ + b_hr);  z = σ(W_iz x̄ + b_iz + W_hz h̄ + b_hz)
        n = tanh(W_in x̄ + b_in + r ⊙ (W_hn h̄ + b_hn));  h̃ = (1 − z) ⊙ n + z ⊙ h̄
        h_t = e ⊙ h̃ + (1 − e) ⊙ h_{t-1}

    One matmul per step: ``[x̄, h̄]`` times the block matrix ``[[W_ir W_iz W_in 0], [W_hr W_hz 0 W_hn]]``.
    """

    gates = 3
    flop_model = (3, 3, 30)
    compiled_kernel = True  # VCGRUSequenceFn's loop is C++ where it builds (kernels/native/vc.cpp)
    takes_state_mix = True  # zoneout runs inside VCGRUSequenceFn
    sequence_fn = VCGRUSequenceFn

    def _prepare(self) -> Tensor:
        H = self.hidden_size
        wi, wh = self.weight_ih, self.weight_hh
        x_cols = torch.cat([wi, wi.new_zeros(H, self.input_size)], 0)  # [4H, I]
        h_cols = torch.cat([wh[:2 * H], wh.new_zeros(H, H), wh[2 * H:]], 0)  # [4H, H]
        b = torch.cat([self.bias_ih[:2 * H] + self.bias_hh[:2 * H], self.bias_ih[2 * H:], self.bias_hh[2 * H:]])
        return torch.cat([x_cols, b.unsqueeze(1), h_cols], 1)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        h = state[0]
        xh, e = self.masked_xh(xp, h)
        w, b = self._step_weights()
        g = torch.addmm(b, xh, w)  # [r, z, n_x, n_h]
        rz = torch.sigmoid(g[:, :2 * H])
        n = torch.tanh(torch.addcmul(g[:, 2 * H:3 * H], rz[:, :H], g[:, 3 * H:]))
        ht = torch.lerp(n, xh[:, self.input_size:], rz[:, H:])  # (1 − z) n + z h̄
        h = torch.lerp(h, ht, e)
        return h, (h,)



# ----------------------------------------------------------------------------- options
@dataclass
class VCCellConf(CellConf):
    """Options shared by the Variable Computation cells (article 000, Jernite et al. 2017)."""
    lam: float = 1.0  #: sharpness λ of the mask σ(λ(m·D − i)) (start value when scheduled)
    lam_schedule: str = "constant"  #: constant | linear | exp — λ from ``lam`` to ``lam_final`` over training
    lam_final: Optional[float] = None  #: λ at the end of training (None: ``lam``)
    eps: float = 0.1  #: Thres_ε: mask values within ε of 0 / 1 snap to 0 / 1
    threshold: str = "soft"  #: soft (paper: gradients reach m_t) | hard (article's code)
    target_m: float = 0.5  #: m̄, the target mean of m_t for the computation penalty
    penalty: float = 0.0  #: weight of penalty·mean_b((mean_t m_t − m̄)²) added to the loss
    index_offset: int = 0  #: i runs over o..D−1+o: 0 as the article's code, 1 as the paper's formula
    #: also mask the input dims (separate mask with D = n_in): true | false | auto — auto masks dense
    #: inputs (pixels, embeddings, a lower layer's h: the paper's "first d dims of x_t") and leaves
    #: one-hot symbol inputs unmasked (seq2seq/attention on addition), where masking dim i deletes symbol i
    mask_input: Any = "auto"
    m_bias_init: float = 0.0  #: initial scheduler bias b_m (> 0: start near full computation, m_t ≈ σ(b_m))


@dataclass
class VCLSTMCellConf(VCCellConf):
    _target_: str = "rnnbench.cells.vc.VCLSTMCell"
    name: str = "vclstm"
    forget_bias: float = 0.0  #: added inside the forget-gate sigmoid


@dataclass
class VCRNNCellConf(VCCellConf):
    _target_: str = "rnnbench.cells.vc.VCRNNCell"
    name: str = "vcrnn"


@dataclass
class VCGRUCellConf(VCCellConf):
    _target_: str = "rnnbench.cells.vc.VCGRUCell"
    name: str = "vcgru"


# article 000: λ sharpens the mask (0 would flatten it), Thres_ε snaps within ε of 0 and 1
RANGES[VCCellConf] = {"lam": POSITIVE, "lam_final": POSITIVE, "eps": Range(0, 0.5, True, True), "target_m": UNIT,
                      "penalty": NONNEG, "index_offset": Range(0, 1), "m_bias_init": REAL}
register_schema("cell", "vclstm", VCLSTMCellConf, ranges={"forget_bias": REAL})
register_schema("cell", "vcrnn", VCRNNCellConf)
register_schema("cell", "vcgru", VCGRUCellConf)
