"""User-facing errors: printed as one line ``error: ...`` by the CLI (no traceback unless RNNBENCH_DEBUG=1)."""


class RnnbenchError(Exception):
    """An error the user can fix (bad config, missing data, ...). The message says what and how."""


class DataError(RnnbenchError):
    """Missing, corrupt or unreadable dataset files."""


class ConfigError(RnnbenchError):
    """A configuration that cannot work (unknown name, incompatible options)."""


class DivergedError(RnnbenchError):
    """Training produced a NaN/inf loss."""


class DiskFullError(RnnbenchError):
    """A run file could not be written: no space left (or quota exceeded) on its device."""


class RunDirBusyError(RnnbenchError):
    """Another process holds the run directory's lock."""


#: exit status of a run stopped by a signal: 128 + the signal's number, as a shell reports it
#: (130 Ctrl-C, 138 SIGUSR1, 140 SIGUSR2, 143 SIGTERM); 2 usage/data and 3 diverged stay distinct
INTERRUPTED_BASE = 128


class Interrupted(RnnbenchError):
    """A signal asked the run to stop; ``checkpoints/last.pt`` holds the step it stopped at."""

    def __init__(self, signum: int, epoch: int, step: int, message: str = "") -> None:
        import signal

        self.signum, self.epoch, self.step = signum, epoch, step
        self.signame = signal.Signals(signum).name
        super().__init__(message or f"interrupted by {self.signame} at step {step} (epochs done: {epoch})")

    @property
    def exit_code(self) -> int:
        return INTERRUPTED_BASE + self.signum


def instantiate(cfg, *args, **kwargs):
    """``hydra.utils.instantiate`` that lets our own errors through unwrapped (one-line messages)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as _instantiate

    try:
        return _instantiate(cfg, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, RnnbenchError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        bad = _bad_setting(e)
        if bad is not None:
            raise bad from None
        raise


def _bad_setting(e: BaseException):
    """A ValueError from a configured constructor (a cell refusing ``threshold=...``, say) is a bad
    setting of that group option: a ConfigError naming the group, not an internal error."""
    import re

    from .config import SCHEMAS

    target, cause = None, e
    while cause is not None and not isinstance(cause, ValueError):
        m = re.search(r"target '([\w.]+)'", str(cause).splitlines()[0] if str(cause) else "")
        target = m.group(1) if m else target
        cause = cause.__cause__
    if cause is None:
        return None
    group = next((g for g, opts in SCHEMAS.items() for s in opts.values()
                  if getattr(s, "_target_", None) == target), target or "config")
    return ConfigError(f"{group}: {cause}")
