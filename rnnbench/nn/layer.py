"""Sequences of different lengths on the package's own layers (what ``PackedSequence`` needs).

``torch.nn.LSTM`` runs each sequence of a ``PackedSequence`` for its own length: the final state
is taken at the sequence's last step, and the backward direction starts there. The cells here
run whole ``[T, B, I]`` blocks on their fast paths (native kernel, hand-written BPTT, or the
per-step loop), so :class:`LengthLayer` cuts the padded batch — sorted by decreasing length, the
order of a ``PackedSequence`` — into *segments*: the steps between two consecutive distinct
lengths, each on the prefix of the batch still running. Python runs once per distinct length,
not per step, and every segment runs on the same fast path as a full sequence. The backward
direction reverses each sequence within its own length first (pads stay where they are), so it
is the same left-aligned problem. Regularizers see one call: the module holds one weight-drop
mask over all segments (``parametrize.cached()``), variational dropout masks the padded input
once; only a locked zoneout mask (``locked=true``) is drawn again per segment, whose batch shrinks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells.base import RecurrentLayer, State
from ..cells.stack import RNNStack


def segments(lengths: Sequence[int]) -> list[tuple[int, int]]:
    """``(end, batch)`` per segment for lengths sorted in decreasing order: steps up to ``end``
    (from the previous segment's end) run on the first ``batch`` sequences."""
    return [(L, sum(1 for n in lengths if n >= L)) for L in sorted(set(lengths))]


def reverse_within(x: Tensor, lengths: Sequence[int]) -> Tensor:
    """Each sequence of ``x [T, B, F]`` reversed in time within its own length (an involution)."""
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    n = torch.as_tensor(list(lengths), device=x.device).unsqueeze(0)
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(0, idx.unsqueeze(-1).expand_as(x))


class LengthLayer(RecurrentLayer):
    """A :class:`RecurrentLayer` whose ``forward`` also takes ``lengths`` (decreasing, one per
    sequence of the batch); without it, it is the plain layer."""

    def forward(self, x: Tensor, state: Optional[State] = None,
                lengths: Optional[Sequence[int]] = None) -> tuple[Tensor, State]:
        if lengths is None:
            return super().forward(x, state)
        B = x.shape[1]
        if state is None:
            state = self.cell.init_state(B, x.device, x.dtype)
        if self.reverse:
            x = reverse_within(x, lengths)
        outs, t0 = [], 0
        for end, b in segments(lengths):
            y, s = self._run_forward(x[t0:end, :b], tuple(v[:b] for v in state))
            # finished sequences keep their state: the final state sits at each one's own length
            state = s if b == B else tuple(torch.cat([n, v[b:]]) for n, v in zip(s, state))
            outs.append(F.pad(y, (0, 0, 0, B - b)))
            t0 = end
        y = torch.cat(outs)
        return (reverse_within(y, lengths) if self.reverse else y), state

    def _run_forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The layer's own paths on a left-aligned segment, in forward time order."""
        reverse, self.reverse = self.reverse, False  # reversal was done within the lengths
        try:
            return super().forward(x, state)
        finally:
            self.reverse = reverse


class LengthStack(RNNStack):
    """An :class:`RNNStack` of :class:`LengthLayer` s (``forward(x, states, lengths=...)``)."""

    layer_cls = LengthLayer
