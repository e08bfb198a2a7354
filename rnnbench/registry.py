"""Every cell and regularizer by name, derived from the config schemas (:data:`config.SCHEMAS`:
name -> schema, whose ``_target_`` is the class) and the classes' own attributes. The NumPy
registry of ``rnnbench verify`` stays apart on purpose: it is the independent check."""
from __future__ import annotations

from . import cells as _cells  # noqa: F401  (the cell modules register their schemas on import)
from . import config
from .reported import Reported


def classes(group: str) -> dict[str, type]:
    """``{name: class}`` of a config group with classes (``cell``, ``regularizer``)."""
    from hydra.utils import get_class

    return {name: get_class(schema._target_) for name, schema in config.SCHEMAS[group].items()}


def cells() -> dict[str, type]:
    return classes("cell")


def regularizers() -> dict[str, type]:
    return classes("regularizer")


def reported() -> list[Reported]:
    """What every cell and regularizer declares it reports (``reported``), each key once."""
    out: dict[str, Reported] = {}
    for cls in [*cells().values(), *regularizers().values()]:
        for r in cls.reported:
            out.setdefault(r.key, r)
    return list(out.values())
