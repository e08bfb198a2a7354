"""Hand-written whole-sequence kernels: ``torch.autograd.Function`` s with a custom forward and
BPTT, one module per cell family. A cell runs its kernel from ``sequence_forward`` when no
per-step hook needs the generic loop (:class:`~rnnbench.cells.base.RecurrentLayer`); each
computes the same function as the cell's ``step`` (tests/cells/test_gradcheck.py,
tests/cells/test_equality.py). docs/performance.md records what each layout choice measured."""
