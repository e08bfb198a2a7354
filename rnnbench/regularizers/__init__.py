"""Regularizers (config group ``regularizer``, composable).

``regularizer=[weight_norm,zoneout]`` composes ``cfg.regularizer = {weight_norm: {...},
zoneout: {...}}``; the trainer calls, right after building the model and before creating the
optimizer::

    regs = apply_regularizers(model, cfg.regularizer)
    ...
    for r in regs: r.after_step(model)        # after every optimizer step

and, for QAT's quant delay, ``m.set_training_progress(step, total_steps)`` on every module
that defines it. ``int_only_report(model, task)`` (from :mod:`.qat`) is the end-of-run check of
the integer-only inference path.

===================  ============================================  =================================
name                 what                                          touches
===================  ============================================  =================================
weight_norm          w = g·v/‖v‖ per output unit (article 001)     input + recurrent matrices (1)
weight_drop          DropConnect, one mask per sequence (AWD)      recurrent matrices (1)
variational_dropout  locked dropout: inputs, between layers,       every RNNStack; nn.Embedding rows
                     outputs; embedding rows
zoneout              keep h (and c) units, expectation at eval     every RecurrentLayer (state_hooks)
awd                  weight_drop + variational_dropout + emb.      as those two (embedding if any)
qat                  fake int8 + integer-only inference check      lstm/rnn cells, nn.Linear modules
===================  ============================================  =================================

(1) a cell's ``regularizer_weights`` declaration, else its 2-D parameters named ``weight_h*``
(recurrent) / ``weight_i*``, ``weight_x*`` (input); see :mod:`.base`. A regularizer that finds
nothing to act on raises :class:`~rnnbench.errors.ConfigError` with one line.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import nn

from ..errors import ConfigError
from .awd import AWD
from .base import Regularizer
from .variational_dropout import VariationalDropout
from .weight_drop import WeightDrop
from .weight_norm import WeightNorm
from .zoneout import Zoneout


def build_regularizer(name: str, options: Any) -> Regularizer:
    """One regularizer from its config node (``_target_`` + options, or plain options)."""
    from omegaconf import DictConfig, OmegaConf

    opts = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options or {})
    target = opts.pop("_target_", None)
    opts.pop("name", None)
    if target is not None:
        from hydra.utils import get_class

        cls = get_class(target)
    else:
        from .. import registry

        reg = registry.regularizers()
        if name not in reg:
            raise ConfigError(f"unknown regularizer {name!r}; choose from {', '.join(sorted(reg))}")
        cls = reg[name]
    try:
        return cls(**opts)
    except TypeError as e:  # unknown option
        raise ConfigError(f"regularizer {name}: {e}") from None


def apply_regularizers(model: nn.Module, cfg: Optional[Mapping[str, Any]]) -> list[Regularizer]:
    """Build every regularizer in ``cfg`` (name -> options) and apply it to ``model``.

    Applied in a fixed order whatever the listing order (weight_norm first: its g/v split must
    be the first parametrization of a weight; then weight_drop/awd, variational dropout,
    zoneout, qat last). Returns the applied objects (for ``after_step``).
    """
    if not cfg:
        return []
    regs = [build_regularizer(str(name), opts) for name, opts in cfg.items()]
    regs.sort(key=lambda r: r.order)
    for r in regs:
        r.apply(model)
    return regs


__all__ = ["apply_regularizers", "build_regularizer", "Regularizer", "WeightNorm", "WeightDrop",
           "VariationalDropout", "Zoneout", "AWD"]
