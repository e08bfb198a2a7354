"""Training runs: the outputs the README lists, determinism, exact resume after SIGKILL, atomic checkpoints."""
from __future__ import annotations

import json
import math

import pytest
import torch

from testutil import SMOKE, TINY_ADD, kill_mid_run_and_resume, run_in_process, train_cli

from rnnbench.train import checkpoint as ckpt_mod
from rnnbench.train.checkpoint import load_checkpoint, save_atomic


def test_run_writes_everything(tmp_path):
    res = run_in_process(SMOKE + ["train.batch_size=32"], tmp_path)
    for f in ("metrics.jsonl", "results.json", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / f).is_file(), f
    assert list(tmp_path.glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "ok" and res["status"] == "ok"
    for key in ("valid", "test", "params", "wall_time_s", "seed", "cell", "dataset"):
        assert key in saved
    assert set(saved["test"]) >= {"loss", "acc", "seq_acc"}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "valid"}
    assert all({"epoch", "step", "split", "loss"} <= set(r) for r in rows)
    assert saved["steps"] == 3


def test_tensorboard_has_scalars_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_in_process(SMOKE + ["train.log_every=1"], tmp_path)
    tags: set[str] = set()
    plugins: set[str] = set()
    for ev in tmp_path.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(ev))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        if "hparams" in acc.Tags().get("tensors", []) or "hparams" in acc._plugin_to_tag_to_content:
            plugins |= set(acc.PluginTagToContent("hparams"))
    assert {"train_step/loss", "train_step/lr", "train_step/grad_norm", "train_step/examples_per_s",
            "valid/loss", "valid/acc"} <= tags
    assert plugins, "no hparams summary written"


def test_same_seed_same_metrics(tmp_path):
    a = run_in_process(TINY_ADD + ["train.epochs=2"], tmp_path / "a")
    b = run_in_process(TINY_ADD + ["train.epochs=2"], tmp_path / "b")
    assert (tmp_path / "a/metrics.jsonl").read_text() == (tmp_path / "b/metrics.jsonl").read_text()
    assert a["test"] == b["test"]
    c = run_in_process(TINY_ADD + ["train.epochs=2", "seed=1"], tmp_path / "c")
    assert c["test"] != a["test"]


def test_resume_after_sigkill_is_exact(tmp_path):
    ref, run, state = kill_mid_run_and_resume(TINY_ADD + ["train.epochs=3", "train.checkpoint_every=7"], tmp_path,
                                               "sigkill@step=52")
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 49, 9), state  # mid-epoch 2
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    a = json.loads((run / "results.json").read_text())
    b = json.loads((ref / "results.json").read_text())
    assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["steps"] == b["steps"]


def test_resume_refuses_a_different_config(tmp_path):
    run = tmp_path / "r"
    p = train_cli(SMOKE + [f"hydra.run.dir={run}"], tmp_path)
    assert p.wait(timeout=120) == 0
    q = train_cli(SMOKE + ["cell=gru", f"hydra.run.dir={tmp_path / 'x'}", f"train.resume={run}"], tmp_path)
    assert q.wait(timeout=120) != 0
    assert "error: train.resume: this run's cell differs" in q.stderr.read()


def test_atomic_checkpoint_survives_a_crash_during_save(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"x": torch.arange(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_atomic({"x": torch.arange(5)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_max_steps_and_limit(tmp_path):
    res = run_in_process(TINY_ADD + ["train.max_steps=4", "dataset.limit=100"], tmp_path)
    assert res["steps"] == 4


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_follows_the_config(tmp_path, flush):
    """``train.flush_denormal`` (default true) sets the process-wide flag on every run, either
    way (a joblib worker runs several jobs): a subnormal product then becomes 0 or stays."""
    torch.set_flush_denormal(not flush)
    run_in_process(SMOKE + [f"train.flush_denormal={str(flush).lower()}"], tmp_path)
    tiny = torch.tensor([1e-39], dtype=torch.float32) * 1.0
    assert (tiny.item() == 0.0) == flush


def test_tuned_settings_are_named_in_the_results(tmp_path):
    """A run of a dataset x cell pair with a conf/tuned file records which one (results.json hparams,
    saved config); tuned=none records none."""
    from testutil import tuned_pairs

    tuned = [(name, cell) for name, dataset, cell in tuned_pairs() if dataset == "addition"]
    if not tuned:
        pytest.skip("no conf/tuned/addition_*.yaml")
    name, cell = tuned[0]
    res = run_in_process(SMOKE + [f"cell={cell}"], tmp_path / "a", tuned=True)
    assert res["hparams"]["tuned"] == name
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["hparams"]["tuned"] == name
    res = run_in_process(SMOKE + [f"cell={cell}", "tuned=none"], tmp_path / "b", tuned=True)
    assert "tuned" not in res["hparams"]


# ----------------------------------------------------------------------------- train.eval_every
class _Crash(Exception):
    """Stands in for a kill: raised from inside the trainer at a chosen checkpoint write."""


def _crash_at_save(monkeypatch, nth: int, before: bool) -> None:
    """Make the ``nth`` call of Trainer.save_last raise, before or after it has written last.pt."""
    from rnnbench.train.trainer import Trainer

    orig, calls = Trainer.save_last, {"n": 0}

    def save_last(self):
        calls["n"] += 1
        if calls["n"] == nth and before:
            raise _Crash()
        orig(self)
        if calls["n"] == nth:
            raise _Crash()

    monkeypatch.setattr(Trainer, "save_last", save_last)


EVAL_EVERY = TINY_ADD + ["train.epochs=2", "train.eval_every=15", "train.checkpoint_every=0"]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_every_adds_valid_points_and_best_is_the_best_of_them(tmp_path):
    res = run_in_process(EVAL_EVERY, tmp_path)
    valid = [r for r in _rows(tmp_path) if r["split"] == "valid"]
    # 40 steps an epoch, eval_every 15: steps 15, 30 | 40 (epoch end) | 45, 60, 75 | 80 (epoch end)
    assert [r["step"] for r in valid] == [15, 30, 40, 45, 60, 75, 80]
    assert [r["epoch"] for r in valid] == [0.375, 0.75, 1, 1.125, 1.5, 1.875, 2]
    best = max(valid, key=lambda r: r["acc"])  # addition: accuracy is maximised (first of ties)
    assert res["valid"]["acc"] == best["acc"] and res["best_step"] == best["step"]
    assert res["best_epoch"] == math.ceil(best["epoch"])
    train = [r for r in _rows(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in train] == [r["step"] for r in valid]


@pytest.mark.parametrize("nth,before", [(2, True), (1, False), (3, True), (4, False)])
def test_eval_every_resume_is_exact(tmp_path, monkeypatch, nth, before):
    """A crash at an eval point's checkpoint (before or after last.pt is written), or at an epoch
    end's, resumes to the same metrics.jsonl as an uninterrupted run."""
    ref = run_in_process(EVAL_EVERY, tmp_path / "ref")
    _crash_at_save(monkeypatch, nth, before)
    with pytest.raises(_Crash):
        run_in_process(EVAL_EVERY, tmp_path / "run")
    monkeypatch.undo()
    res = run_in_process(EVAL_EVERY + [f"train.resume={tmp_path / 'run'}"], tmp_path / "run")
    assert (tmp_path / "run/metrics.jsonl").read_text() == (tmp_path / "ref/metrics.jsonl").read_text()
    assert res["valid"] == ref["valid"] and res["test"] == ref["test"] and res["best_step"] == ref["best_step"]
