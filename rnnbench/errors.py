"""User-facing errors: printed as one line ``error: ...`` by the CLI (no traceback unless RNNBENCH_DEBUG=1)."""


class RnnbenchError(Exception):
    """An error the user can fix (bad config, missing data, ...). The message says what and how."""

    exit_code: int = 2  #: the CLI's exit status for it (README, "Errors")


class DataError(RnnbenchError):
    """Missing, corrupt or unreadable dataset files."""


class ConfigError(RnnbenchError):
    """A configuration that cannot work (unknown name, incompatible options)."""


class DivergedError(RnnbenchError):
    """Training produced a NaN/inf loss."""

    exit_code = 3


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
