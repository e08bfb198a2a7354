"""Helpers shared by the tests: paths, the real-data folder, composed configs, in-process runs.

(Imported as ``testutil``; fixtures live in ``conftest.py``.)"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def data_root() -> Optional[Path]:
    """Real datasets: $RNNBENCH_DATA, else ``../shared/data`` beside the repository."""
    env = os.environ.get("RNNBENCH_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "MNIST").is_dir():
            return cand
    return None


def compose(overrides: list[str] = (), data: Optional[Path] = None, tuned: bool = False):
    """Compose the primary config with overrides (compose API), data.root pointed at ``data``.

    ``tuned=False`` adds ``tuned=none``: the tests check the cell, model and dataset configs
    themselves, whatever pair a test happens to compose; the conf/tuned files have their own
    tests (``tuned=True``: the pair's file applies, as on the command line)."""
    from hydra import compose as hcompose, initialize_config_dir

    from rnnbench.config import register_configs

    register_configs()
    ov = list(overrides)
    if not tuned and not any(o.startswith("tuned=") for o in ov):
        ov.append("tuned=none")
    if data is not None:
        ov.append(f"data.root={data}")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hcompose("config", overrides=ov)


def tuned_pairs() -> list[tuple[str, str, str]]:
    """``(name, dataset, cell)`` of every conf/tuned/<dataset>_<cell>.yaml (``none`` aside), split
    on the one cut that names an existing dataset and cell."""
    def options(group: str) -> set[str]:
        return {p.stem for p in (CONF / group).glob("*.yaml")}

    datasets, cells = options("dataset"), options("cell")
    out = []
    for name in sorted(options("tuned") - {"none"}):
        cuts = [(name[:i], name[i + 1:]) for i, ch in enumerate(name) if ch == "_"]
        pairs = [(d, c) for d, c in cuts if d in datasets and c in cells]
        assert len(pairs) == 1, f"conf/tuned/{name}.yaml must be named <dataset>_<cell>"
        out.append((name, *pairs[0]))
    return out


SMOKE = ["train.max_steps=3", "train.max_eval_batches=1", "dataset.limit=256", "model.hidden_size=16",
         "train.progress=false", "train.epochs=1"]


def run_in_process(overrides: list[str], run_dir: Path, data: Optional[Path] = None, tuned: bool = False) -> dict:
    """Train in this process (no Hydra runtime) and save the config as the CLI would."""
    from omegaconf import OmegaConf

    from rnnbench.train.run import run_training

    cfg = compose(overrides, data, tuned)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_training(cfg, run_dir)
