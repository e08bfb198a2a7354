"""The generic code (train/, reports/, cli.py) reaches cells, regularizers and tasks through
their declared hooks only: it names none of them and discovers no hook by name."""
from __future__ import annotations

import ast
from pathlib import Path

from rnnbench import registry

PKG = Path(__file__).resolve().parents[1] / "rnnbench"
GENERIC = sorted([*(PKG / "train").glob("*.py"), *(PKG / "reports").glob("*.py"), PKG / "cli.py"])
HOOKS = {"extra_loss", "stats", "set_training_progress", "final_report", "order", "new_sequence",
         "progress_state", "reported", "input_options", "run_options"}


def _code_words(path: Path) -> tuple[set[str], set[str], list[str]]:
    """Identifiers, string constants that are not docstrings, and the names getattr/hasattr look up."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docs}
    looked_up = [c.args[1].value for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                 and c.func.id in ("getattr", "hasattr") and len(c.args) > 1 and isinstance(c.args[1], ast.Constant)]
    return names, strings, looked_up


def test_generic_code_names_no_cell_regularizer_or_task():
    classes = {*registry.cells().values(), *registry.regularizers().values()}
    from rnnbench.tasks import addition, mnist, text

    classes |= {v for m in (addition, mnist, text) for v in vars(m).values() if isinstance(v, type)
                and v.__module__ == m.__name__}
    banned = {c.__name__ for c in classes} | set(registry.cells()) | set(registry.regularizers())
    banned |= {r.key for r in registry.reported()}
    for path in GENERIC:
        names, strings, _ = _code_words(path)
        assert not (names | strings) & banned, f"{path.relative_to(PKG)} names {sorted((names | strings) & banned)}"


def test_no_hook_is_discovered_by_name():
    for path in GENERIC:
        _, _, looked_up = _code_words(path)
        assert not set(looked_up) & HOOKS, f"{path.relative_to(PKG)} looks up {sorted(set(looked_up) & HOOKS)}"
