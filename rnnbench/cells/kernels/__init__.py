"""Hand-written whole-sequence kernels: ``torch.autograd.Function`` s with a custom forward and
BPTT, one module per cell family. A cell runs its kernel from ``sequence_forward`` when no
per-step hook needs the generic loop (:class:`~rnnbench.cells.base.RecurrentLayer`); each
computes the same function as the cell's ``step`` (tests/cells/test_gradcheck.py,
tests/cells/test_equality.py). docs/performance.md records what each layout choice measured."""


def step_views(k, T: int, B: int, H: int):
    """Zoneout's keep factors ``k`` (broadcastable to ``[T, B, H]``) as per-step views of ``k`` and
    of ``1 − k`` (computed once per sequence, not per step), or ``(None, None)``."""
    if k is None:
        return None, None
    return k.expand(T, B, H).unbind(0), (1 - k).expand(T, B, H).unbind(0)
