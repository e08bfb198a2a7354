"""Optimizers (``_target_`` instantiation), learning-rate schedules and gradient clipping.

Clipping (article 001):
* ``per_tensor`` — TF's ``clip_by_norm`` on each gradient: g ← g · c / max(‖g‖, c);
* ``global`` — all gradients scaled together: g ← g · c / max(‖g‖_global, c).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from omegaconf import OmegaConf
from torch.nn.utils import parametrize

from ..cells.base import MATRIX_KINDS, Cell
from ..errors import ConfigError

NON_OPTIMIZER_KEYS = ("name", "clip", "schedule", "lr_scale")


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


def validate_lr_scale(lr_scale: Optional[Any]) -> dict[str, float]:
    """``{role: scale}`` of the scales that are not 1 (roles: the cells' ``MATRIX_KINDS``); each
    must be a positive finite number."""
    out = {}
    for role, scale in (lr_scale or {}).items():
        if role not in MATRIX_KINDS:
            raise ConfigError(f"optimizer.lr_scale: unknown role {role!r}; use {' or '.join(MATRIX_KINDS)}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ConfigError(f"optimizer.lr_scale.{role} must be a positive number, got {scale!r}")
        if scale != 1:
            out[str(role)] = float(scale)
    return out


def role_parameters(model: torch.nn.Module, role: str) -> list[torch.nn.Parameter]:
    """The parameters behind every cell's ``role`` matrices (:meth:`Cell.matrix_names`); for a
    parametrized matrix (weight norm, weight drop) the parametrization's own parameters."""
    out: dict[int, torch.nn.Parameter] = {}
    for cell in model.modules():
        if not isinstance(cell, Cell):
            continue
        for name in cell.matrix_names(role):
            if parametrize.is_parametrized(cell, name):
                params = list(cell.parametrizations[name].parameters())  # type: ignore[index]
            else:
                params = [getattr(cell, name)]
            out.update((id(p), p) for p in params if p.requires_grad)
    return list(out.values())


def param_groups(model: torch.nn.Module, lr_scale: Optional[Any]) -> list[dict[str, Any]]:
    """Optimizer parameter groups: everything at the base lr first (group 0, the one logged),
    then one group per ``optimizer.lr_scale`` role with ``lr_scale`` set on it."""
    scales = validate_lr_scale(lr_scale)
    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = []
    taken: set[int] = set()
    for role, scale in scales.items():
        ps = [p for p in role_parameters(model, role) if id(p) not in taken]
        if not ps:
            raise ConfigError(f"optimizer.lr_scale.{role}: this model's cells have no {role} matrices")
        taken.update(id(p) for p in ps)
        groups.append({"params": ps, "lr_scale": scale, "role": role})
    return [{"params": [p for p in params if id(p) not in taken], "lr_scale": 1.0, "role": "rest"}, *groups]


def build_optimizer(params: Iterable[Any], cfg: Any) -> torch.optim.Optimizer:
    """The configured optimizer over ``params``: parameters, or groups from :func:`param_groups`
    (each group's lr = optimizer.lr × its ``lr_scale``; schedules keep the ratio)."""
    from ..config import instantiate

    validate_clip(cfg.clip)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NON_OPTIMIZER_KEYS}
    if not math.isfinite(float(kwargs.get("lr", 0.0))) or float(kwargs.get("lr", 0.0)) <= 0:
        raise ConfigError(f"optimizer.lr must be a positive finite number, got {kwargs.get('lr')}")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    params = list(params)
    if params and isinstance(params[0], dict):
        lr = float(kwargs["lr"])
        params = [{**g, "lr": lr * g.get("lr_scale", 1.0)} for g in params if g["params"]]
    # partial: Hydra would turn a list of group dicts (tensors inside) into a config
    try:
        return instantiate(kwargs, _partial_=True)(params=params)
    except ValueError as e:  # torch's own argument checks (nesterov without momentum, ...)
        raise ConfigError(f"optimizer={cfg.name}: {e}") from None


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
