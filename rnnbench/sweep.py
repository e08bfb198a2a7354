"""Multirun support: the sweep index (``sweep.json``), threads per parallel job, relaunch.

Sweeps run on Hydra's own launchers and sweepers (basic, ``joblib``, ``submitit_local`` /
``slurm``, ``optuna``); rnnbench only adds:

* ``SweepIndex`` — a Hydra callback that writes ``<sweep dir>/sweep.json`` (one entry per job:
  number, overrides, directory, status, best valid metric) when the sweep ends, and keeps it
  current as jobs finish under the basic launcher;
* ``write_table`` — at the end of a sweep, what ``rnnbench table`` writes, into the sweep
  directory, and the table at the end of the log (``train.table=false``: off);
* ``threads_per_job`` — with ``n_jobs`` parallel local workers each job uses
  ``cores // n_jobs`` torch threads, so jobs × threads ≤ cores (no oversubscription).

A relaunched sweep (same command, ``hydra.sweep.dir=<old dir>``, ``train.skip_finished=true``)
skips jobs whose results.json says ``ok`` and resumes the others from ``checkpoints/last.pt``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .rundir import find_runs, read_job


def threads_per_job(hydra_cfg: Any) -> Optional[int]:
    """``cores // n_jobs`` for local parallel launchers, else None (leave torch's default)."""
    launcher = hydra_cfg.launcher
    n_jobs = launcher.get("n_jobs") if "n_jobs" in launcher else None
    if n_jobs is None:
        # submitit_local: tasks_per_node x cpus_per_task set by the user
        cpus = launcher.get("cpus_per_task") if "cpus_per_task" in launcher else None
        return int(cpus) if cpus else None
    cores = os.cpu_count() or 1
    n = cores if int(n_jobs) < 0 else max(1, int(n_jobs))
    return max(1, cores // n)


def collect_jobs(sweep_dir: Path) -> list[dict]:
    """One entry per job directory (those holding ``.hydra/overrides.yaml``), by job number."""
    jobs = []
    for job_dir in find_runs(sweep_dir):
        job = read_job(job_dir)
        res = job["results"]
        jobs.append({
            "num": job["num"], "dir": str(job_dir.relative_to(sweep_dir)), "overrides": job["overrides"],
            "status": res.get("status", "unfinished"), "error": res.get("error"),
            "valid": res.get("valid", {}), "test": res.get("test", {}),
        })
    jobs.sort(key=lambda j: (j["num"] is None, j["num"] if j["num"] is not None else 0, j["dir"]))
    return jobs


def write_index(sweep_dir: Path) -> Path:
    jobs = collect_jobs(sweep_dir)
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    out = Path(sweep_dir) / "sweep.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"sweep_dir": str(sweep_dir), "counts": counts, "jobs": jobs}, indent=2))
    os.replace(tmp, out)
    return out


class SweepIndex(Callback):
    """Hydra callback: maintain ``sweep.json`` in the sweep directory."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            hc = HydraConfig.get()
        except ValueError:
            return
        if hc.mode == RunMode.MULTIRUN and hc.launcher._target_.endswith("BasicLauncher"):
            write_index(Path(hc.sweep.dir))  # only the basic launcher runs jobs in this process, one at a time

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.exists():
            path = write_index(sweep_dir)
            import logging

            counts = json.loads(path.read_text())["counts"]
            logging.getLogger("rnnbench").info("sweep %s: %s (index: %s)", sweep_dir,
                                               ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), path)
            if OmegaConf.select(config, "train.table", default=True):
                write_table(sweep_dir)


def write_table(sweep_dir: Path) -> None:
    """What ``rnnbench table <sweep dir>`` writes (table.md/.csv/.tex, curves.png), and the table
    as the log's last lines; a sweep the table cannot cover (mixed metrics, no finished job)
    gets one warning line instead — the sweep itself has succeeded."""
    import logging

    from .reports.table import make_table

    log = logging.getLogger("rnnbench")
    try:
        summary = make_table([str(sweep_dir)])
    except Exception as e:  # the jobs' results stand; only the summary is missing
        log.warning("no table for sweep %s: %s (rnnbench table %s retries it)", sweep_dir,
                    " ".join(str(e).split()), sweep_dir)
        return
    files = ", ".join(p.name for p in summary["files"].values())
    log.info("table of sweep %s (%s, train.table=false turns this off):\n%s", sweep_dir, files,
             summary["markdown"].rstrip())
