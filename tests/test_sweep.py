"""Multirun sweeps on Hydra's launchers: joblib in parallel, failures isolated, relaunch resumes,
submitit_local, and the sweep.json index."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testutil import SMOKE

TINY = ["dataset.n_train=2000", "dataset.n_valid=200", "dataset.n_test=200", "model.hidden_size=16",
        "train.batch_size=50", "train.progress=false", "train.num_threads=1", "train.epochs=2",
        "train.checkpoint_every=7"]


def sweep(args, cwd, wait=True, timeout=300, env=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    p = subprocess.Popen([sys.executable, "-m", "rnnbench", "train", "-m", *args], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    return p


def index(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def test_joblib_four_jobs_two_workers(tmp_path):
    rc, out = sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3", *SMOKE,
                     f"hydra.sweep.dir={tmp_path}"], tmp_path)
    assert rc == 0, out
    for i in range(4):
        res = json.loads((tmp_path / str(i) / "results.json").read_text())
        assert res["status"] == "ok" and res["seed"] == i
        assert (tmp_path / str(i) / "checkpoints" / "best.pt").is_file()
        assert res["threads"] == max(1, (os.cpu_count() or 1) // 2)  # jobs x threads <= cores
    assert index(tmp_path)["counts"] == {"ok": 4}


def test_failing_jobs_do_not_stop_the_sweep(tmp_path):
    rc, out = sweep(["optimizer.lr=1e-3,inf", "seed=0,1", *SMOKE, f"hydra.sweep.dir={tmp_path}"], tmp_path)
    assert rc == 0, out
    jobs = index(tmp_path)["jobs"]
    by_lr = {}
    for j in jobs:
        lr = next(o for o in j["overrides"] if o.startswith("optimizer.lr="))
        by_lr.setdefault(lr, []).append(j["status"])
    assert by_lr == {"optimizer.lr=0.001": ["ok", "ok"], "optimizer.lr=inf": ["failed", "failed"]}
    failed = [j for j in jobs if j["status"] == "failed"]
    # every job's config is checked (config.RANGES): one line in results.json and the job's log
    assert all(j["error"] == "optimizer.lr=inf: must be a finite number > 0" for j in failed)
    for j in failed:
        log = (tmp_path / j["dir"] / "cli.log").read_text()
        assert "error: optimizer.lr=inf" in log and "Traceback" not in log


def test_killed_sweep_relaunched_equals_uninterrupted(tmp_path):
    """SIGKILL in job 1 (injected at the process's 8th run-file write: each job writes
    task_state.json, two metrics rows an epoch and results.json, so write 8 is job 1's first
    metrics row, after its periodic checkpoints); the relaunch skips job 0 and resumes job 1."""
    args = ["seed=0,1,2", *TINY]
    rc, out = sweep(args + [f"hydra.sweep.dir={tmp_path / 'ref'}"], tmp_path)
    assert rc == 0, out
    run = tmp_path / "run"
    rc, out = sweep(args + [f"hydra.sweep.dir={run}"], tmp_path, env={"RNNBENCH_FAULT": "sigkill@write=8"})
    assert rc == -signal.SIGKILL, out
    assert (run / "1" / "checkpoints" / "last.pt").exists() and not (run / "1" / "results.json").exists()
    assert not (run / "2" / "results.json").exists()
    done_before = (run / "0" / "results.json").stat().st_mtime
    rc, out = sweep(args + [f"hydra.sweep.dir={run}", "train.skip_finished=true"], tmp_path)
    assert rc == 0, out
    assert (run / "0" / "results.json").stat().st_mtime == done_before  # finished job skipped
    for i in range(3):
        assert (run / str(i) / "metrics.jsonl").read_text() == (tmp_path / "ref" / str(i) / "metrics.jsonl").read_text()
        a = json.loads((run / str(i) / "results.json").read_text())
        b = json.loads((tmp_path / "ref" / str(i) / "results.json").read_text())
        assert (a["status"], a["valid"], a["test"]) == ("ok", b["valid"], b["test"])
    assert index(run)["counts"] == {"ok": 3}


def test_interrupted_job_is_resumed_by_the_relaunch_not_skipped(tmp_path):
    """SIGTERM during job 1 (train.epochs=1,2: only job 1 reaches step 60) stops the sweep with
    exit 143, job 1's results.json interrupted and sweep.json saying so; relaunched with
    train.skip_finished=true, job 0 (ok) is skipped and job 1 resumes from step 60 to the
    metrics of an uninterrupted sweep."""
    args = ["train.epochs=1,2", *[a for a in TINY if not a.startswith("train.epochs=")]]
    rc, out = sweep(args + [f"hydra.sweep.dir={tmp_path / 'ref'}"], tmp_path)
    assert rc == 0, out
    run = tmp_path / "run"
    rc, out = sweep(args + [f"hydra.sweep.dir={run}"], tmp_path, env={"RNNBENCH_FAULT": "sigterm@step=60"})
    assert rc == 128 + signal.SIGTERM, out
    assert "error: interrupted by SIGTERM at step 60" in out and "Traceback" not in out
    assert json.loads((run / "1" / "results.json").read_text())["status"] == "interrupted"
    assert index(run)["counts"] == {"ok": 1, "interrupted": 1}
    done_before = (run / "0" / "results.json").stat().st_mtime
    rc, out = sweep(args + [f"hydra.sweep.dir={run}", "train.skip_finished=true"], tmp_path)
    assert rc == 0, out
    assert (run / "0" / "results.json").stat().st_mtime == done_before
    assert "resumed from" in (run / "1" / "cli.log").read_text()
    for i in range(2):
        assert (run / str(i) / "metrics.jsonl").read_text() == (tmp_path / "ref" / str(i) / "metrics.jsonl").read_text()
    a = json.loads((run / "1" / "results.json").read_text())
    b = json.loads((tmp_path / "ref" / "1" / "results.json").read_text())
    assert (a["status"], a["test"]) == ("ok", b["test"])
    assert index(run)["counts"] == {"ok": 2}


def test_submitit_local_two_jobs(tmp_path):
    rc, out = sweep(["hydra/launcher=submitit_local", "seed=0,1", *SMOKE, f"hydra.sweep.dir={tmp_path}"], tmp_path)
    assert rc == 0, out
    assert index(tmp_path)["counts"] == {"ok": 2}


def test_submitit_requeue_after_sigusr2_resumes_the_job(tmp_path):
    """The SLURM time-limit path on submitit's local executor: SIGUSR2 at step 30 of the job
    (injected: the job process signals itself) saves last.pt and writes results.json
    interrupted, then submitit's own handler requeues the job (exit 144, the same job number and
    directory); with train.skip_finished=true it resumes from its own last.pt and ends with the
    metrics of an uninterrupted run."""
    args = ["seed=0", *TINY, "train.skip_finished=true"]
    rc, out = sweep(args + [f"hydra.sweep.dir={tmp_path / 'ref'}"], tmp_path)
    assert rc == 0, out
    run = tmp_path / "run"
    rc, out = sweep(["hydra/launcher=submitit_local", *args, f"hydra.sweep.dir={run}"], tmp_path,
                    env={"RNNBENCH_FAULT": "sigusr2@step=30"})
    assert rc == 0, out
    log = (run / "0" / "cli.log").read_text()
    assert "interrupted by SIGUSR2 at step 30" in log and "Requeued job" in log
    assert "resumed from" in log and "Traceback" not in log
    assert (run / "0" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "0" / "metrics.jsonl").read_text()
    a = json.loads((run / "0" / "results.json").read_text())
    b = json.loads((tmp_path / "ref" / "0" / "results.json").read_text())
    assert (a["status"], a["steps"], a["test"]) == ("ok", 80, b["test"])


def test_slurm_launcher_config_composes(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rnnbench", "train", "hydra/launcher=slurm", "--cfg", "hydra"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "SlurmLauncher" in p.stdout and "timeout_min: 240" in p.stdout
    # a job at its time limit gets SIGUSR2 early enough to save, and is requeued to resume
    assert "signal_delay_s: 300" in p.stdout and "max_num_timeout: 20" in p.stdout


def test_optuna_search_objective_is_best_valid_metric(tmp_path):
    import yaml

    rc, out = sweep(["experiment=optuna_lstm_addition", "hydra.sweeper.n_trials=2", *SMOKE,
                     f"hydra.sweep.dir={tmp_path}"], tmp_path)
    assert rc == 0, out
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())["best_value"]
    accs = [json.loads((tmp_path / str(i) / "results.json").read_text())["valid"]["acc"] for i in range(2)]
    assert best == pytest.approx(-max(accs))
    assert index(tmp_path)["counts"] == {"ok": 2}
