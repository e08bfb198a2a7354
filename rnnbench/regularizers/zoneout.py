"""Zoneout (Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
Activations"; article 004).

Training, for each unit independently:

    h_t = d_h ⊙ h_{t-1} + (1 − d_h) ⊙ ĥ_t,   d_h ~ Bernoulli(z_h)
    c_t = d_c ⊙ c_{t-1} + (1 − d_c) ⊙ ĉ_t,   d_c ~ Bernoulli(z_c)

(ĥ_t, ĉ_t: the cell's new state). Evaluation uses the expectation:

    h_t = z_h · h_{t-1} + (1 − z_h) · ĥ_t,   c_t = z_c · c_{t-1} + (1 − z_c) · ĉ_t

A new mask at each step as in the paper (``locked=false``), or one mask per sequence reused
at every step (``locked=true``). Attached as a ``RecurrentLayer.state_hooks`` entry that is a
:class:`~rnnbench.cells.base.StateMix`: a cell whose whole-sequence kernel takes the masks
(``Cell.takes_state_mix``: every cell with a whole-sequence kernel) gets them drawn for the
whole sequence up front — the same random numbers, in the same order, as the per-step hook
draws — and keeps its fast path; other cells run the per-step loop with the hook. State slot 0 is h (z_h); slot 1 of a two-state cell is c (z_c);
single-state cells (rnn, gru) get z_h only and ``z_c`` is ignored for them. Cells with more
than two state tensors are refused (their extra slots have no defined zoneout).
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor, nn

from ..cells.base import Mix, RecurrentLayer, State, StateMix
from ..cells.kernels import native
from ..errors import ConfigError
from .base import Regularizer, cell_name, layers_of

log = logging.getLogger(__name__)


def zoneout_mix(prev: Tensor, new: Tensor, z: float, training: bool, mask: Optional[Tensor] = None) -> Tensor:
    """One slot: ``d ⊙ prev + (1 − d) ⊙ new`` (training, d ~ Bernoulli(z)) or ``z·prev + (1 − z)·new``."""
    if z == 0.0:
        return new
    if not training:
        return torch.lerp(new, prev, z)  # new + z (prev − new)
    d = mask if mask is not None else torch.rand_like(new) < z  # d ~ Bernoulli(z)
    return torch.where(d, prev, new)


class ZoneoutHook(StateMix):
    """``state_hooks`` entry ``f(prev_state, new_state, layer) -> state``; as a :class:`StateMix`,
    ``k`` is the keep mask ``d`` (training) or ``z`` (evaluation)."""

    def __init__(self, zs: tuple[float, ...], locked: bool) -> None:
        self.zs = zs
        self.locked = locked
        self._masks: dict[int, Tensor] = {}
        self._seq: Optional[int] = None

    def new_sequence(self) -> None:
        self._masks = {}

    def sequence_mix(self, T: int, like: Tensor, training: bool) -> Mix:
        """The masks of the next ``T`` steps: one ``torch.rand`` of ``[T, k, B, H]`` (locked: ``[k,
        B, H]``) for the ``k`` slots with ``z > 0`` — the numbers the per-step hook would draw
        (``rand_like`` of slot h, then slot c, at every step; CPU generators fill in order). On the
        CPU the compiled ``keep_masks`` draws the same numbers and compares them in one pass into
        ``uint8`` masks, which the compiled kernels read (a quarter of a float mask's memory
        traffic); elsewhere the masks are float, as the Python-loop kernels' ``torch.lerp`` takes."""
        zs = self.zs
        if not training:
            return tuple(like.new_tensor(z) if z > 0 else None for z in zs)
        drawn = [i for i, z in enumerate(zs) if z > 0]
        if not drawn:
            return tuple(None for _ in zs)
        out: list[Optional[Tensor]] = [None] * len(zs)
        ext = native.get(like)
        if ext is not None and like.dtype in (torch.float32, torch.float64) and like.dim() == 2:
            masks = ext.keep_masks(T, *like.shape, [zs[i] for i in drawn], self.locked, like.dtype)
        else:
            shape = (len(drawn), *like.shape) if self.locked else (T, len(drawn), *like.shape)
            r = torch.rand(shape, dtype=like.dtype, device=like.device)
            # compared straight into the float mask: 5× faster than lt then a cast
            masks = [torch.lt(ri, zs[i], out=like.new_empty(ri.shape))
                     for i, ri in zip(drawn, r.unbind(0) if self.locked else r.unbind(1))]
        for i, m in zip(drawn, masks):
            out[i] = m
        return tuple(out)

    def __call__(self, prev: State, new: State, layer: RecurrentLayer) -> State:
        training = layer.training
        out = []
        for i, (p, n) in enumerate(zip(prev, new)):
            z = self.zs[i] if i < len(self.zs) else 0.0
            mask = None
            if training and z > 0 and self.locked:
                mask = self._masks.get(i)
                if mask is None or mask.shape != n.shape:
                    mask = self._masks[i] = torch.rand_like(n) < z
            out.append(zoneout_mix(p, n, z, training, mask))
        return tuple(out)


class Zoneout(Regularizer):
    name = "zoneout"
    order = 30

    def __init__(self, z_h: float = 0.05, z_c: float = 0.5, locked: bool = False) -> None:
        for k, v in (("z_h", z_h), ("z_c", z_c)):
            if not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"regularizer.zoneout.{k} must be in [0, 1), got {v}")
        self.z_h = float(z_h)
        self.z_c = float(z_c)
        self.locked = bool(locked)
        self.hooks: list[ZoneoutHook] = []

    def apply(self, model: nn.Module) -> None:
        layers = layers_of(model)
        if not layers:
            raise ConfigError(f"regularizer {self.name} needs a model with recurrent layers (found none)")
        for layer in layers:
            n = layer.cell.num_states
            if n > 2:
                raise ConfigError(f"regularizer zoneout cannot apply to cell {cell_name(layer.cell)}: it has "
                                  f"{n} state tensors (zoneout is defined for (h,) and (h, c))")
            if n == 1 and self.z_c:
                log.info("zoneout: cell %s has no c state; z_c ignored", cell_name(layer.cell))
            hook = ZoneoutHook((self.z_h, self.z_c)[:n], self.locked)
            layer.state_hooks.append(hook)
            layer.sequence_hooks.append(hook.new_sequence)  # a fresh locked mask per sequence
            self.hooks.append(hook)
