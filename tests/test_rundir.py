"""The run directory's files and how runs are found (rnnbench/rundir.py)."""
from __future__ import annotations

import json
from pathlib import Path

from rnnbench import rundir


def _job(root: Path, name: str, overrides: list[str], config: bool = True) -> Path:
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config:
        (d / ".hydra" / "config.yaml").write_text("seed: 0\n")
    return d


def test_find_runs_in_job_number_order_and_by_marker(tmp_path):
    for n in (10, 2, 1):
        _job(tmp_path, str(n), [f"seed={n}"])
    _job(tmp_path, "3", ["seed=3"], config=False)  # Hydra wrote the overrides, not (yet) the config
    assert [p.name for p in rundir.find_runs(tmp_path)] == ["1", "2", "3", "10"]
    assert [p.name for p in rundir.find_runs(tmp_path, rundir.CONFIG)] == ["1", "2", "10"]
    assert rundir.find_runs(tmp_path / "2") == [tmp_path / "2"]


def test_results_round_trip_and_a_job_without_them(tmp_path):
    d = _job(tmp_path, "0", ["cell=gru"])
    assert rundir.read_results(d) is None
    job = rundir.read_job(d)
    assert job["overrides"] == ["cell=gru"] and job["num"] is None and job["results"]["status"] == "unfinished"
    rundir.write_results(d, {"status": "ok", "valid": {"acc": 0.5}})
    assert rundir.read_job(d)["results"] == {"status": "ok", "valid": {"acc": 0.5}}
    (d / rundir.RESULTS).write_text("{torn")
    assert rundir.read_results(d) is None


def test_metrics_rows_skip_a_row_cut_short(tmp_path):
    rows = [{"epoch": 1, "split": "train", "loss": 1.0}, {"epoch": 1, "split": "valid", "loss": 2.0}]
    text = "".join(rundir.metrics_line(r) for r in rows)
    assert text.splitlines()[0] == json.dumps(rows[0], sort_keys=True)
    (tmp_path / rundir.METRICS).write_text(text + '{"epoch": 2, "spl')
    assert rundir.read_metrics(tmp_path) == rows == rundir.read_metrics(tmp_path / rundir.METRICS)
    assert rundir.read_metrics(tmp_path / "nowhere") == []
