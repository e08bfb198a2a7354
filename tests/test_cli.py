"""The command line: subcommands, one-line errors with non-zero exit, and a non-editable install."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from testutil import REPO, SMOKE


def rnnbench(*args, cwd=None, env_extra=None, timeout=180):
    env = dict(os.environ)
    env.pop("RNNBENCH_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "rnnbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errs = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1, proc.stderr
    return errs[0]


def test_help_lists_subcommands():
    out = rnnbench("--help").stdout
    for cmd in ("train", "table", "verify", "bench"):
        assert f"  {cmd}" in out


def test_train_help_is_hydras(tmp_path):
    p = rnnbench("train", "--help", cwd=tmp_path)
    assert p.returncode == 0 and "== Config ==" in p.stdout and "dataset:" in p.stdout


@pytest.mark.parametrize("override, expect", [
    ("train.epoch=3", "Could not override 'train.epoch'"),
    ("cell=nosuch", "cell/nosuch"),
    ("dataset=nosuch", "dataset/nosuch"),
    ("train.epochs=abc", "train.epochs=abc"),
])
def test_bad_overrides_are_one_line_errors(override, expect, tmp_path):
    line = one_line_error(rnnbench("train", override, cwd=tmp_path))
    assert expect in line


def test_unknown_cell_lists_the_available_ones(tmp_path):
    line = one_line_error(rnnbench("train", "cell=nosuch", cwd=tmp_path))
    assert "lstm" in line and "_schema" not in line


def test_missing_data_is_a_one_line_error(tmp_path):
    p = rnnbench("train", "dataset=mnist_row", f"data.root={tmp_path / 'nowhere'}",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    line = one_line_error(p)
    assert "missing data file" in line and "data.download=true" in line
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"


def test_bad_value_is_a_one_line_error(tmp_path):
    line = one_line_error(rnnbench("train", "device=tpu", *SMOKE, f"hydra.run.dir={tmp_path}", cwd=tmp_path))
    assert "device must be auto, cpu or cuda" in line
    line = one_line_error(rnnbench("train", "optimizer.lr=inf", *SMOKE, f"hydra.run.dir={tmp_path}", cwd=tmp_path))
    assert "optimizer.lr" in line


@pytest.mark.parametrize("override,expect", [
    ("model.hidden_size=-5", "model.hidden_size=-5: must be an integer >= 1"),
    ("model.hidden_size=0", "model.hidden_size=0: must be an integer >= 1"),
    ("train.batch_size=0", "train.batch_size=0: must be an integer >= 1"),
    ("model.dropout=1.5", "model.dropout=1.5: must be a finite number in [0, 1)"),
])
def test_out_of_range_number_is_a_one_line_error_before_the_run(override, expect, tmp_path):
    """Checked when the config is composed (config.RANGES): exit 2, no run directory."""
    p = rnnbench("train", *SMOKE, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 2
    assert one_line_error(p) == f"error: {expect}"
    assert not (tmp_path / "run").exists()


def test_nan_loss_is_diverged(tmp_path):
    p = rnnbench("train", "optimizer=sgd", "optimizer.lr=1e38", "train.batch_size=32", "train.max_steps=50",
                 *[s for s in SMOKE if "max_steps" not in s], f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    line = one_line_error(p)
    assert "loss became" in line
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["status"] == "diverged" and "loss became" in res["error"]


def test_debug_shows_traceback(tmp_path):
    p = rnnbench("train", "device=tpu", *SMOKE, f"hydra.run.dir={tmp_path}", cwd=tmp_path,
                 env_extra={"RNNBENCH_DEBUG": "1"})
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_module_and_script_train_a_smoke_run(tmp_path):
    p = rnnbench("train", *SMOKE, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / ".hydra" / "config.yaml").is_file()
    assert json.loads((tmp_path / "r" / "results.json").read_text())["status"] == "ok"


def test_non_editable_install_finds_its_configs(tmp_path):
    """Build a wheel, install it (no editable link) into a folder, run it from elsewhere."""
    wheels = tmp_path / "wheels"
    b = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(wheels), str(REPO)], capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    whl = next(wheels.glob("rnnbench-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    assert "rnnbench/conf/config.yaml" in names and "rnnbench/conf/cell/lstm.yaml" in names
    target = tmp_path / "site"
    i = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert i.returncode == 0, i.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target)}
    p = rnnbench("train", *SMOKE, "hydra.run.dir=run", cwd=elsewhere, env_extra=env)
    assert p.returncode == 0, p.stderr
    assert json.loads((elsewhere / "run" / "results.json").read_text())["status"] == "ok"
    probe = subprocess.run([sys.executable, "-c", "import rnnbench; print(rnnbench.__file__)"], cwd=elsewhere,
                           env=dict(os.environ, **env), capture_output=True, text=True)
    assert probe.stdout.startswith(str(target))
