"""Signals, kills, full disks and a second process, each injected at an exact point
(``RNNBENCH_FAULT``, rnnbench/train/faults.py): no sleep-then-kill, so nothing here can race."""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
from pathlib import Path

import pytest

from testutil import SMOKE, TINY_ADD, error_lines, kill_mid_run_and_resume, run_in_process, train_cli

from rnnbench.errors import INTERRUPTED_BASE, Interrupted
from rnnbench import rundir
from rnnbench.train import interrupt
from rnnbench.train.checkpoint import load_checkpoint

# 40 steps an epoch, two epochs; a periodic last.pt every 7 steps
ARGS = TINY_ADD + ["train.epochs=2", "train.checkpoint_every=7"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end up equal to."""
    tmp = tmp_path_factory.mktemp("ref")
    p = train_cli(ARGS + [f"hydra.run.dir={tmp / 'run'}"], tmp)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    return tmp / "run"


def _run(tmp: Path, fault: str, args=ARGS, name="run"):
    p = train_cli(args + [f"hydra.run.dir={tmp / name}"], tmp, env={"RNNBENCH_FAULT": fault})
    _, err = p.communicate(timeout=300)
    return p.returncode, err, tmp / name


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")["state"]


def _resume_and_compare(run: Path, ref: Path, tmp: Path, extra=()) -> dict:
    p = train_cli(ARGS + [f"hydra.run.dir={tmp / 'resume_log'}", f"train.resume={run}", *extra], tmp)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    a, b = _results(run), _results(ref)
    assert (a["status"], a["valid"], a["test"], a["steps"]) == ("ok", b["valid"], b["test"], b["steps"])
    assert not list(run.glob("**/*.tmp"))
    return a


def _no_traceback_in_log(run: Path) -> None:
    log = (run / "cli.log").read_text()
    assert "Traceback" not in log, log


# ----------------------------------------------------------------------------- signals
# one handler serves all four: SIGTERM in the fast suite, the other three in `make test-full`
@pytest.mark.parametrize("sig", ["SIGTERM", *(pytest.param(s, marks=pytest.mark.slow) for s in ("SIGUSR1", "SIGUSR2", "SIGINT"))])
def test_signal_saves_the_current_step_and_resume_is_exact(tmp_path, ref, sig):
    """A scheduler's SIGTERM/SIGUSR1/SIGUSR2 or Ctrl-C at step 52 (mid-epoch 2, 3 steps after the
    periodic last.pt of step 49): last.pt holds step 52, results.json says interrupted with the
    resume command, one error line, exit 128 + signal; that command resumes to the same metrics."""
    signum = signal.Signals[sig]
    rc, err, run = _run(tmp_path, f"{sig.lower()}@step=52")
    assert rc == INTERRUPTED_BASE + signum, err
    (line,) = error_lines(err)
    assert line.startswith(f"error: interrupted by {sig} at step 52") and "train.resume=" in line
    state = _state(run)
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 52, 12)
    res = _results(run)
    assert (res["status"], res["signal"], res["steps"]) == ("interrupted", sig, 52)
    cmd = shlex.split(res["resume"])
    assert cmd == ["rnnbench", "train", *ARGS, f"train.resume={run}"]
    _no_traceback_in_log(run)
    p = train_cli(cmd[2:] + [f"hydra.run.dir={tmp_path / 'resume_log'}"], tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    assert _results(run)["test"] == _results(ref)["test"]


def test_second_signal_during_the_save_corrupts_nothing(tmp_path, ref):
    """SIGTERM at step 12, then SIGINT inside that stop's own checkpoint write (save 2: step 7's
    periodic one is save 1), between its temp file and the rename: the first signal wins, the
    save completes, and the run resumes exactly."""
    rc, err, run = _run(tmp_path, "sigterm@step=12,sigint@save=2")
    assert rc == INTERRUPTED_BASE + signal.SIGTERM, err
    assert _state(run)["step"] == 12
    assert _results(run)["status"] == "interrupted"
    _resume_and_compare(run, ref, tmp_path)


def test_signal_between_epochs_resumes_at_the_next_epoch(tmp_path, ref):
    """A signal right after epoch 1's end (its evaluation and last.pt done) stops there."""
    rc, err, run = _run(tmp_path, "sigterm@epoch=1")
    assert rc == INTERRUPTED_BASE + signal.SIGTERM, err
    state = _state(run)
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 40, 0)
    _resume_and_compare(run, ref, tmp_path)


def test_the_previous_handler_runs_after_the_stop(tmp_path, monkeypatch):
    """A handler installed before the run (submitit's requeue on SIGUSR2) is not called by the
    signal itself but by interrupt.forward, after last.pt and results.json are written; the run's
    own handlers are gone afterwards."""
    calls = []

    def requeue(signum, frame):
        calls.append((signum, _results(tmp_path)["status"], _state(tmp_path)["step"]))

    old = signal.signal(signal.SIGUSR2, requeue)
    try:
        monkeypatch.setenv("RNNBENCH_FAULT", "sigusr2@step=2")
        with pytest.raises(Interrupted) as e:
            run_in_process(SMOKE, tmp_path)
        assert e.value.exit_code == INTERRUPTED_BASE + signal.SIGUSR2 and not calls
        assert signal.getsignal(signal.SIGUSR2) is requeue
        interrupt.forward(e.value.signum)
        assert calls == [(signal.SIGUSR2, "interrupted", 2)]
    finally:
        signal.signal(signal.SIGUSR2, old)


# ----------------------------------------------------------------------------- kills
def test_kill_inside_the_checkpoint_write_keeps_the_previous_one(tmp_path):
    """SIGKILL in the third periodic save (step 21), after its temp file, before the rename:
    last.pt is step 14's and loads; the resume removes the temp file and ends exact."""
    ref, run, state = kill_mid_run_and_resume(ARGS, tmp_path, "sigkill@save=3")
    assert state["step"] == 14
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    assert not list(run.glob("**/*.tmp"))


def test_kill_between_epochs(tmp_path):
    """SIGKILL after epoch 1 has ended and saved, before epoch 2's first step."""
    ref, run, state = kill_mid_run_and_resume(ARGS, tmp_path, "sigkill@epoch=1")
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 40, 0)
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    assert _results(run)["test"] == _results(ref)["test"]


# ----------------------------------------------------------------------------- full disk
def test_disk_full_in_a_checkpoint_write(tmp_path, ref):
    """ENOSPC while writing last.pt (save 2, step 14): one line saying the disk is full and which
    file, results.json failed with it, step 7's last.pt intact, no temp file; resume is exact."""
    rc, err, run = _run(tmp_path, "enospc@save=2")
    assert rc == 2, err
    (line,) = error_lines(err)
    assert line.startswith("error: disk full: no space left on the device while writing")
    assert str(run / "checkpoints" / "last.pt") in line
    assert _results(run)["status"] == "failed" and "disk full" in _results(run)["error"]
    assert _state(run)["step"] == 7 and not list(run.glob("**/*.tmp"))
    _no_traceback_in_log(run)
    _resume_and_compare(run, ref, tmp_path)


@pytest.mark.parametrize("nth,name", [(1, "task_state.json"), (2, "metrics.jsonl"), (4, "results.json")])
def test_disk_full_in_another_run_file(tmp_path, nth, name):
    """ENOSPC at the n-th write of a run file (1: task_state.json, 2 and 3: epoch 1's
    metrics.jsonl rows, 4: results.json of this one-epoch run): one line naming it; the
    checkpoints written before are intact."""
    rc, err, run = _run(tmp_path, f"enospc@write={nth}", args=TINY_ADD + ["train.epochs=1", "train.checkpoint_every=7"])
    assert rc == 2, err
    (line,) = error_lines(err)
    assert line.startswith("error: disk full:") and str(run / name) in line
    _no_traceback_in_log(run)
    if name != "results.json":  # results.json itself could not be written: the run's outcome is the line
        assert _results(run)["status"] == "failed" and name in _results(run)["error"]
    if nth > 1:  # the last periodic save before the epoch's end (35), or the run's last (40)
        assert _state(run)["step"] == (35 if name == "metrics.jsonl" else 40)


def test_a_metrics_row_cut_short_is_dropped_on_resume(tmp_path):
    """A full disk (or a kill) in the middle of appending a metrics.jsonl row leaves half a line;
    the resume's truncation drops it instead of failing on it."""
    from rnnbench.train.logger import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"epoch": 1, "step": 40, "split": "train", "loss": 1.0})
    with open(log.path, "a") as f:
        f.write('{"epoch": 1, "step": 40, "spl')
    log.truncate_after(40, 1)
    assert log.read() == [{"epoch": 1, "step": 40, "split": "train", "loss": 1.0}]


# ----------------------------------------------------------------------------- one process a run dir
def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path):
    """While another process holds run_dir/.lock, a run into that dir, or resuming it, is refused
    with one line before it writes anything there; once released, the same command runs."""
    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this test process is the "other" one
    try:
        p = train_cli(SMOKE + [f"hydra.run.dir={run}"], tmp_path)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2
        (line,) = error_lines(err)
        assert f"run dir {run} is in use by another rnnbench process" in line
        assert sorted(x.name for x in run.iterdir()) == [".lock"]  # not even Hydra's .hydra/ or log
    finally:
        os.close(fd)
    p = train_cli(SMOKE + [f"hydra.run.dir={run}"], tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    # released at exit: this process can take it now; resuming from elsewhere is then refused
    rundir.lock(run)
    try:
        before = (run / "results.json").read_text()
        q = train_cli(SMOKE + [f"hydra.run.dir={tmp_path / 'other'}", f"train.resume={run}"], tmp_path)
        _, err = q.communicate(timeout=300)
        assert q.returncode == 2 and "is in use by another rnnbench process" in error_lines(err)[0]
        assert (run / "results.json").read_text() == before
    finally:
        rundir.unlock(run)


def test_a_fresh_run_into_an_unfinished_run_dir_is_refused(tmp_path):
    """Reusing the dir of an interrupted run without resuming it would mix two runs' files."""
    rc, err, run = _run(tmp_path, "sigterm@step=2", args=SMOKE)
    assert rc == INTERRUPTED_BASE + signal.SIGTERM, err
    p = train_cli(SMOKE + [f"hydra.run.dir={run}"], tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "already holds a run" in error_lines(err)[0]
    assert _results(run)["status"] == "interrupted"
    p = train_cli(SMOKE + [f"hydra.run.dir={run}", "train.resume=auto"], tmp_path)
    assert p.wait(timeout=300) == 0
    assert _results(run)["status"] == "ok"
