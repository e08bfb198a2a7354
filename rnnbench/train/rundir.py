"""Writing into a run directory: one process at a time (a lock), atomic files, and a full disk
reported as such (which file, which device) instead of a library's internal error."""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

from ..errors import DiskFullError, RunDirBusyError
from . import faults

LOCK_NAME = ".lock"
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
