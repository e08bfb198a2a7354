"""Helpers shared by the tests: paths, the real-data folder, composed configs, in-process runs.

(Imported as ``testutil``; fixtures live in ``conftest.py``.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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


# a small addition job: 40 steps an epoch
TINY_ADD = ["dataset.n_train=2000", "dataset.n_valid=200", "dataset.n_test=200", "model.hidden_size=16",
            "train.batch_size=50", "train.progress=false", "train.num_threads=1"]


def train_cli(args: list[str], cwd: Path, env: Optional[dict] = None) -> subprocess.Popen:
    """``python -m rnnbench train ARGS`` in a subprocess (output captured, text)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "rnnbench", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_mid_run_and_resume(args: list[str], tmp: Path, fault: str,
                            expect_rc: int = -signal.SIGKILL) -> tuple[Path, Path, dict]:
    """Train ``args`` uninterrupted into ``tmp/ref``; train them again into ``tmp/killed`` with
    ``RNNBENCH_FAULT=fault`` (e.g. ``sigkill@step=52``: the run kills itself there, no race), then
    resume it to the end. Returns (ref dir, killed dir, the trainer state its last.pt held)."""
    from rnnbench.train.checkpoint import load_checkpoint

    ref = train_cli(args + [f"hydra.run.dir={tmp / 'ref'}"], tmp)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    run = tmp / "killed"
    p = train_cli(args + [f"hydra.run.dir={run}"], tmp, env={"RNNBENCH_FAULT": fault})
    assert p.wait(timeout=300) == expect_rc, p.stderr.read()
    state = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    r = train_cli(args + [f"hydra.run.dir={tmp / 'resume_log'}", f"train.resume={run}"], tmp)
    assert r.wait(timeout=300) == 0, r.stderr.read()
    return tmp / "ref", run, state


def error_lines(stderr: str) -> list[str]:
    """The ``error: ...`` lines of a run's stderr (the CLI prints exactly one on failure)."""
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
