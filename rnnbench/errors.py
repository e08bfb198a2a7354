"""User-facing errors: printed as one line ``error: ...`` by the CLI (no traceback unless RNNBENCH_DEBUG=1)."""


class RnnbenchError(Exception):
    """An error the user can fix (bad config, missing data, ...). The message says what and how."""


class DataError(RnnbenchError):
    """Missing, corrupt or unreadable dataset files."""


class ConfigError(RnnbenchError):
    """A configuration that cannot work (unknown name, incompatible options)."""


class DivergedError(RnnbenchError):
    """Training produced a NaN/inf loss."""


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
        raise
