"""User-facing errors: printed as one line ``error: ...`` by the CLI (no traceback unless RNNBENCH_DEBUG=1)."""


class RnnbenchError(Exception):
    """An error the user can fix (bad config, missing data, ...). The message says what and how."""


class DataError(RnnbenchError):
    """Missing, corrupt or unreadable dataset files."""


class ConfigError(RnnbenchError):
    """A configuration that cannot work (unknown name, incompatible options)."""


class DivergedError(RnnbenchError):
    """Training produced a NaN/inf loss."""
