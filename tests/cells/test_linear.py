"""rnnbench/cells/kernels/linear.py: the cells' input projection equals F.linear (values and the
gradients of x, W and b) on the compiled kernels' GEMM engine; float64 is F.linear itself."""
from __future__ import annotations

import pytest
import torch

from rnnbench.cells.kernels import native
from rnnbench.cells.kernels.linear import linear


def _both(dtype, bias: bool, x_grad: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(28, 64, 28, generator=g, dtype=dtype).requires_grad_(x_grad)
    w = torch.randn(512, 28, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(512, generator=g, dtype=dtype).requires_grad_() if bias else None
    dy = torch.randn(28, 64, 512, generator=g, dtype=dtype)
    out = []
    for fn in (linear, torch.nn.functional.linear):
        leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
        y = fn(x, w, b)
        out.append([y, *torch.autograd.grad(y, leaves, dy)])
    return out


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_grad", [True, False])
def test_linear_equals_f_linear_in_float32(bias, x_grad):
    ours, ref = _both(torch.float32, bias, x_grad)
    assert len(ours) == len(ref) == 2 + x_grad + bias
    for u, v in zip(ours, ref):
        assert u.shape == v.shape
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4 * max(1.0, v.abs().max().item()))


def test_linear_in_float64_is_f_linear():
    ours, ref = _both(torch.float64, True, True)
    for u, v in zip(ours, ref):
        assert torch.equal(u, v)


def test_linear_without_compiled_kernels_is_f_linear():
    with native.enabled(False):
        ours, ref = _both(torch.float32, True, True)
    for u, v in zip(ours, ref):
        assert torch.equal(u, v)
