"""The cells' input projection ``x Wᵀ + b`` for all time steps (``Cell.project_input``): one GEMM
with the compiled kernels' engine (:func:`native.mm`: oneDNN for float32 where it runs), forward
and backward, so the projection does not fall back to the BLAS the kernels avoid (``F.linear`` is
``aten::addmm``: MKL, its AVX2 path on AMD CPUs, ≈ 8 % of a compiled LSTM batch at ``short``).
Elsewhere (float64, no compiled kernels, ``RNNBENCH_GEMM=blas``, a GPU) it is ``F.linear`` itself."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .native import gemm_engine, get, mm


class _LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x2: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x2, w)
        ctx.has_bias = b is not None
        y = mm(x2, w.t())
        return y.add_(b) if b is not None else y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor):  # type: ignore[override]
        x2, w = ctx.saved_tensors
        dx = mm(dy, w) if ctx.needs_input_grad[0] else None
        dw = mm(dy.t(), x2) if ctx.needs_input_grad[1] else None
        db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, w, b)`` (``x [..., I]``, ``w [P, I]``), its GEMMs on the kernels' engine."""
    if x.dtype != torch.float32 or get(x) is None or gemm_engine() != "onednn":
        return torch.nn.functional.linear(x, w, b)
    y = _LinearFn.apply(x.reshape(-1, x.shape[-1]), w, b)
    return y.view(*x.shape[:-1], w.shape[0])
