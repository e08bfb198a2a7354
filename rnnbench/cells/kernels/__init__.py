"""Hand-written whole-sequence kernels: ``torch.autograd.Function`` s with a custom forward and
BPTT, one module per cell family. A cell runs its kernel from ``sequence_forward`` when no
per-step hook needs the generic loop (:class:`~rnnbench.cells.base.RecurrentLayer`); each
computes the same function as the cell's ``step`` (tests/cells/test_gradcheck.py,
tests/cells/test_equality.py). docs/performance.md records what each layout choice measured."""

import torch


def as_factor(k, like):
    """Zoneout's keep factor ``k`` in ``like``'s dtype: a ``uint8`` mask (the compiled ``keep_masks``
    draws them for the compiled kernels) becomes the float 0/1 the Python loop's ``torch.lerp`` takes."""
    return k if k is None or k.dtype == like.dtype else k.to(like.dtype)


def step_views(k, T: int, B: int, H: int, like):
    """Zoneout's keep factors ``k`` (broadcastable to ``[T, B, H]``) as per-step views of ``k`` and
    of ``1 − k`` (computed once per sequence, not per step) in ``like``'s dtype, or ``(None, None)``."""
    if k is None:
        return None, None
    k = as_factor(k, like)
    return k.expand(T, B, H).unbind(0), (1 - k).expand(T, B, H).unbind(0)


def tanh_step_tail(hn, h, h_next, a, k, ak, one) -> None:
    """The rest of a tanh RNN step (RNN, mRNN) after ``ĥ = tanh(pre)`` in ``hn``: the backward's
    factor ``a = (1 − k)(1 − ĥ²)`` (``a`` None: no grad) and, with zoneout's ``k``, ``h_t =
    lerp(ĥ, h_{t−1}, k)`` into ``h_next`` (without, ``hn`` is ``h_next``); ``one`` = ones [B, H]."""
    if a is not None:
        torch.addcmul(one, hn, hn, value=-1, out=a)  # 1 − ĥ²
        if k is not None:
            a.mul_(ak)
    if k is not None:
        torch.lerp(hn, h, k, out=h_next)
