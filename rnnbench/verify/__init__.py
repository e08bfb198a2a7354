"""``rnnbench verify``: recompute finished runs' metrics with an independent NumPy forward pass
(:mod:`.numpy_ref`) and compare them with the framework's (:mod:`.check`)."""
from .check import VerifyError, VerifyReport, framework_metrics, main, numpy_metrics, verify_run

__all__ = ["VerifyError", "VerifyReport", "framework_metrics", "main", "numpy_metrics", "verify_run"]
