"""Optimizers (``_target_`` instantiation), learning-rate schedules and gradient clipping.

Clipping (SPEC §4, article 001):
* ``per_tensor`` — TF's ``clip_by_norm`` on each gradient: g ← g · c / max(‖g‖, c);
* ``global`` — all gradients scaled together: g ← g · c / max(‖g‖_global, c).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from omegaconf import OmegaConf

from ..errors import ConfigError

NON_OPTIMIZER_KEYS = ("name", "clip", "schedule")


def validate_clip(clip: Optional[Any]) -> None:
    """``null`` or ``{kind: per_tensor|global, max_norm: x > 0}``; anything else is a ConfigError."""
    if clip is None:
        return
    keys = set(clip.keys()) if hasattr(clip, "keys") else None
    if keys is None or not keys <= {"kind", "max_norm"} or "max_norm" not in keys:
        raise ConfigError(f"optimizer.clip must be null or {{kind: per_tensor|global, max_norm: x}}, got {clip}")
    if clip.get("kind", "global") not in ("per_tensor", "global"):
        raise ConfigError(f"optimizer.clip.kind must be per_tensor or global, got {clip.kind!r}")
    if not float(clip.max_norm) > 0:
        raise ConfigError(f"optimizer.clip.max_norm must be > 0, got {clip.max_norm}")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Any) -> torch.optim.Optimizer:
    from ..errors import instantiate

    validate_clip(cfg.clip)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NON_OPTIMIZER_KEYS}
    if not math.isfinite(float(kwargs.get("lr", 0.0))) or float(kwargs.get("lr", 0.0)) <= 0:
        raise ConfigError(f"optimizer.lr must be a positive finite number, got {kwargs.get('lr')}")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return instantiate(kwargs, params=list(params))


def build_scheduler(opt: torch.optim.Optimizer, cfg: Any, epochs: int):
    kind = cfg.kind
    if kind == "none":
        return None
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=cfg.min_lr)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.gamma, patience=cfg.patience,
                                                          min_lr=cfg.min_lr)
    raise ConfigError(f"optimizer.schedule.kind must be none|step|cosine|plateau, got {kind!r}")


def clip_gradients(params: list[torch.nn.Parameter], clip: Optional[Any]) -> None:
    """Clip in place as configured (``None``: nothing)."""
    if clip is None:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    c = float(clip.max_norm)
    if clip.get("kind", "global") == "per_tensor":
        norms = torch._foreach_norm(grads)
        scales = [c / torch.clamp(n, min=c) for n in norms]
        torch._foreach_mul_(grads, scales)
    else:
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, c / torch.clamp(total, min=c))


def grad_norm(params: list[torch.nn.Parameter]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
