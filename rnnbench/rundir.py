"""The run directory: its layout, the files in it, and how they are written and found.

Every module that reads or writes a run goes through here: the paths (:data:`RESULTS`,
:data:`METRICS`, the checkpoints, Hydra's ``.hydra/`` files), ``results.json`` and
``metrics.jsonl`` read and written, finding the runs and sweep jobs under a folder. Writes are
one process at a time (a lock), atomic, and a full disk is reported as such (which file, which
device) instead of a library's internal error. The README's "What a run writes" describes the
files for users."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import DiskFullError, RunDirBusyError
from .train import faults

LOCK_NAME = ".lock"
RESULTS = "results.json"  #: the run's outcome (README, "What a run writes")
METRICS = "metrics.jsonl"  #: one JSON object per evaluation
TASK_STATE = "task_state.json"  #: what the data depends on beyond the seed
CHECKPOINTS = "checkpoints"
LAST = "last.pt"  #: everything a resume needs
BEST = "best.pt"  #: the best-valid weights the test split is evaluated on
HYDRA_DIR = ".hydra"
CONFIG = "config.yaml"  #: the composed config (in HYDRA_DIR)
OVERRIDES = "overrides.yaml"  #: the command-line overrides (in HYDRA_DIR)
HYDRA = "hydra.yaml"  #: Hydra's own config, with the job's number in its sweep (in HYDRA_DIR)
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_held: dict[str, int] = {}  #: run dir -> fd of the lock this process holds


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in FULL_ERRNOS


def disk_full(path: Path, e: OSError) -> DiskFullError:
    """The one-line error for ``e`` (ENOSPC/EDQUOT) while writing ``path``."""
    what = "no space left on the device" if e.errno == errno.ENOSPC else "disk quota exceeded"
    return DiskFullError(f"disk full: {what} while writing {path}; an earlier checkpoint is left intact — "
                         "free space (or point hydra.run.dir elsewhere) and resume with train.resume=<run dir>")


def _guard(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(path, e) from e
        raise


def write_atomic(path: Path, data: bytes, on_written: Optional[Callable[[], None]] = None) -> None:
    """``data`` into ``path`` via a temp file in the same folder, fsync, ``os.replace``: a crash
    or a full disk leaves the previous file as it was and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the other users of a shared cluster dir

    def write() -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if on_written is not None:
            on_written()
        os.replace(tmp, path)

    try:
        _guard(path, write)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: Path, text: str) -> None:
    """A run file other than a checkpoint (results.json, task_state.json), atomically."""
    _guard(Path(path), lambda: faults.in_write(str(path)))
    write_atomic(path, text.encode("utf-8"))


def append_text(path: Path, text: str) -> None:
    """Append to a run file (metrics.jsonl); a full disk is reported as such."""
    def write() -> None:
        faults.in_write(str(path))
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    _guard(Path(path), write)


def lock(run_dir: Path) -> None:
    """Take ``run_dir/.lock`` for this process (idempotent), or refuse with one line when
    another process holds it. The kernel releases it when the process ends, however it ends."""
    key = str(Path(run_dir).resolve())
    if key in _held:
        return
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirBusyError(f"run dir {run_dir} is in use by another rnnbench process (pid {owner}, {path}); "
                              "wait for it to end or pick another hydra.run.dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the other process's message
    _held[key] = fd


def remove_stale_temps(run_dir: Path) -> None:
    """Temp files a killed write left behind (SIGKILL skips the cleanup); call with the lock held."""
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for tmp in folder.glob("*.*.tmp"):
            tmp.unlink(missing_ok=True)


def unlock(run_dir: Path) -> None:
    """Release the lock :func:`lock` took (the file stays: removing it would race a waiter)."""
    fd = _held.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


# ----------------------------------------------------------------------------- paths
def checkpoint_path(run_dir: Path, which: str = LAST) -> Path:
    return Path(run_dir) / CHECKPOINTS / which


def hydra_path(run_dir: Path, name: str = CONFIG) -> Path:
    return Path(run_dir) / HYDRA_DIR / name


# ----------------------------------------------------------------------------- files
def read_results(run_dir: Path) -> Optional[dict]:
    """``results.json``, or None when there is none or it is unreadable (killed, still running)."""
    try:
        return json.loads((Path(run_dir) / RESULTS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_results(run_dir: Path, results: dict) -> None:
    write_text(Path(run_dir) / RESULTS, json.dumps(results, indent=2, sort_keys=True, default=str))


def metrics_line(record: dict) -> str:
    """One ``metrics.jsonl`` row (keys sorted: the same run writes the same bytes)."""
    return json.dumps(record, sort_keys=True) + "\n"


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (a run dir or the file itself); a row cut short by a kill
    or a full disk is skipped (a resume redoes it)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def read_overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides (``.hydra/overrides.yaml``; [] without one)."""
    from omegaconf import OmegaConf

    path = hydra_path(run_dir, OVERRIDES)
    return [str(o) for o in (OmegaConf.load(path) or [])] if path.is_file() else []


def job_number(run_dir: Path) -> Optional[int]:
    """The job's number in its sweep (``.hydra/hydra.yaml``), None if unknown."""
    from omegaconf import OmegaConf

    path = hydra_path(run_dir, HYDRA)
    if not path.exists():
        return None
    try:
        return OmegaConf.load(path).hydra.job.get("num")
    except Exception:  # an unreadable hydra.yaml only loses the ordering
        return None


def read_job(job_dir: Path) -> dict:
    """A job's number in its sweep (None if unknown), its command-line overrides, and its
    results.json — ``{"status": "unfinished", ...}`` when there is none (killed, or running)."""
    res = read_results(job_dir)
    if res is None:
        res = {"status": "unfinished", "error": "no results.json (killed, or still running)"}
    return {"num": job_number(job_dir), "overrides": read_overrides(job_dir), "results": res}


# ----------------------------------------------------------------------------- finding runs
def _natural(p: Path) -> list[Any]:
    return [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.parts]


def find_runs(root: Path, marker: str = OVERRIDES) -> list[Path]:
    """``root`` itself if it is a run directory (holds ``.hydra/<marker>``), else every run
    directory below it (a sweep's jobs), job numbers in numeric order."""
    root = Path(root)
    if hydra_path(root, marker).is_file():
        return [root]
    return sorted((p.parent.parent for p in root.rglob(f"{HYDRA_DIR}/{marker}")), key=_natural)
