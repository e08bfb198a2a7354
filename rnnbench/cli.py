"""``rnnbench`` command line: ``train`` (Hydra), ``table``, ``verify``, ``bench``, ``sample``, ``predict``.

Errors the user can fix end the program with one line ``error: ...`` on stderr and a non-zero
exit status; ``RNNBENCH_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from .errors import Interrupted, RnnbenchError

log = logging.getLogger("rnnbench")

USAGE = """usage: rnnbench <command> [args]

commands:
  train [overrides]   train one run, or a sweep with -m (Hydra; `rnnbench train --help`)
  table DIR...        comparison table (Markdown/CSV/LaTeX) and curves from sweep/run directories
  verify RUN_DIR...   recompute a run's metrics with an independent NumPy forward pass
  bench [options]     forward+backward throughput of every cell against fused nn.LSTM
  sample RUN_DIR      text from a character language model run (--prompt, --length, --temperature, --seed)
  predict RUN_DIR Q.. an addition run's answers to questions such as "24+654"

examples:
  rnnbench train                                   # addition, seq2seq LSTM (the default)
  rnnbench train dataset=mnist_row data.root=/path/to/data
  rnnbench train -m cell=lstm,gru seed=0,1,2       # a sweep
  rnnbench train -m experiment=wn_mnist scale=cpu  # an article's comparison (a sweep)
  rnnbench table outputs/multirun/<date>/<time>    # its table and curves
"""

# subcommand -> "module:function" taking argv and returning an exit status
COMMANDS = {
    "table": "rnnbench.reports.table:main",
    "verify": "rnnbench.verify.check:main",
    "bench": "rnnbench.bench:main",
    "sample": "rnnbench.generate:sample_main",
    "predict": "rnnbench.generate:predict_main",
}
HYDRA_FLAGS = {"-m", "--multirun", "--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i",
               "--shell-completion", "-sc", "--resolve", "--package", "-p", "--version",
               "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def debug() -> bool:
    return os.environ.get("RNNBENCH_DEBUG", "") not in ("", "0")


def fail(msg: str, code: int = 2) -> None:
    """Print the one-line error and exit."""
    first = " ".join(str(msg).strip().split("\n")[0].split())
    print(f"error: {first}", file=sys.stderr)
    raise SystemExit(code)


def _hydra_message(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    if "Could not find" in msg or "Could not load" in msg:
        opts = [ln for ln in lines[1:] if not ln.startswith(("Config search path", "provider=", "Available"))
                and not ln.startswith("_schema_")]
        if opts:
            msg += " (available: " + ", ".join(opts) + ")"
    elif "Could not override" in msg and len(lines) > 1:
        msg += " — unknown key; check the spelling (`rnnbench train --cfg job` prints the config)"
    return msg


def validate_overrides(overrides: list[str]):
    """Compose the config once so a bad override or an out-of-range number fails with one line
    before Hydra starts a run; returns the composed config (hydra node included)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import CONF_DIR, check_ranges

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        if debug():
            raise
        fail(_hydra_message(e))
    check_ranges(cfg)  # a ConfigError: main prints its one line, exit 2
    return cfg


def lock_existing_run_dir(cfg) -> None:
    """Hydra writes .hydra/ and the log into the run dir before the task starts: when that dir
    already exists (a fixed hydra.run.dir), lock it first so a second process on it is refused
    before it touches anything (run_training keeps the same lock)."""
    from omegaconf.errors import OmegaConfBaseException

    from . import rundir

    try:
        path = Path(str(cfg.hydra.run.dir))
    except OmegaConfBaseException:  # an interpolation only Hydra's runtime resolves
        return
    if path.is_dir():
        rundir.lock(path)


def _index_sweep() -> None:
    """sweep.json before a sweep stops early (Hydra's end-of-sweep callback will not run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .sweep import write_index

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and hc.launcher._target_.endswith("BasicLauncher"):
        write_index(Path(hc.sweep.dir))  # other launchers' jobs run in processes of their own


def _interrupted(e: Interrupted) -> None:
    """Stop after a signal: one log line; a scheduler's own handler (submitit: requeue) runs
    next; then exit 128 + signal number (a sweep stops too: the whole process was asked to)."""
    from .train import interrupt

    log.warning("%s", e)
    _index_sweep()
    interrupt.forward(e.signum)
    fail(str(e), e.exit_code)  # SystemExit: Hydra's launchers let it through, so a sweep ends here


def _train_task(cfg) -> float:
    """Hydra's task function: one job of a run or a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train.run import objective, run_training

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    if multirun and cfg.train.num_threads is None:
        import torch

        from .sweep import threads_per_job

        n = threads_per_job(hc)
        if n:
            torch.set_num_threads(n)
    try:
        results = run_training(cfg, run_dir)
    except Interrupted as e:
        if debug():
            raise
        _interrupted(e)
    except RnnbenchError as e:
        if debug():
            raise
        log.error("error: %s", e)
        if multirun:  # a failed job must not stop the sweep; results.json says what happened
            return math.nan
        fail(str(e), e.exit_code)
    except Exception as e:  # a bug: keep the sweep going, report the job
        if debug():
            raise
        if not multirun:
            log.exception("internal error")
            fail(f"internal error: {type(e).__name__}: {e} (RNNBENCH_DEBUG=1 shows the traceback)", 1)
        log.exception("job failed")
        return math.nan
    if multirun:
        _stop_sweep_if_signalled()
    metric = results.get("metric", "acc")
    value = objective(results, metric)
    return value if results.get("metric_mode") == "min" else -value  # sweepers minimize


def _stop_sweep_if_signalled() -> None:
    """A signal that arrived after this job's training ended: the job finished, the sweep stops."""
    import signal

    from .errors import INTERRUPTED_BASE
    from .train import interrupt

    signum = interrupt.requested()
    if signum is not None:
        fail(f"interrupted by {signal.Signals(signum).name}: this job finished, the sweep stops here; "
             "relaunch it with train.skip_finished=true", INTERRUPTED_BASE + signum)


def train_command(args: list[str]) -> int:
    import hydra

    from .config import CONF_DIR, register_configs

    register_configs()
    if not any(a.split("=")[0] in HYDRA_FLAGS for a in args):
        lock_existing_run_dir(validate_overrides(args))
    sys.argv = [sys.argv[0] + " train", *args]
    main_fn = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_train_task)
    try:
        main_fn()
    except ValueError as e:  # Hydra's own argument checks (e.g. --cfg together with -m)
        if debug():
            raise
        fail(str(e))
    return 0


def _load(spec: str) -> Callable[[list[str]], Optional[int]]:
    mod, fn = spec.split(":")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name == mod:
            fail(f"this rnnbench build has no `{mod.split('.')[-1]}` command yet")
        raise
    return getattr(module, fn)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    try:
        if cmd in ("-h", "--help", "help"):
            print(USAGE)
            return 0
        if cmd == "train":
            return train_command(rest)
        if cmd in COMMANDS:
            return int(_load(COMMANDS[cmd])(rest) or 0)
        fail(f"unknown command {cmd!r}; commands: train, {', '.join(COMMANDS)} (see rnnbench --help)")
    except RnnbenchError as e:
        if debug():
            raise
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `rnnbench --help | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full disk where Hydra writes (.hydra/, the log) before the run starts
        from .rundir import disk_full, is_disk_full

        if not is_disk_full(e) or debug():
            raise
        fail(str(disk_full(Path(e.filename or "."), e)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
