"""One training run end to end: build everything from the config, train, test on the best
checkpoint, and write ``results.json`` and ``curves.png`` into the run directory (the files:
:mod:`rnnbench.rundir`, and the README's "What a run writes")."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shlex
import signal
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import check_ranges
from ..errors import ConfigError, DivergedError, Interrupted, RnnbenchError
from ..heap import keep_freed_memory
from ..models import build_model
from ..tasks import build_task
from .. import registry, rundir
from . import interrupt
from .checkpoint import load_checkpoint
from .logger import Board
from .trainer import Trainer

log = logging.getLogger("rnnbench")

#: config sections that must match when resuming a run
RESUME_MUST_MATCH = ("seed", "dataset", "model", "cell", "optimizer", "regularizer")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resume_command(run_dir: Path) -> str:
    """``rnnbench train <the run's command-line overrides> train.resume=<run_dir>``."""
    items = [o for o in rundir.read_overrides(run_dir) if not o.startswith("train.resume=")]
    items.append(f"train.resume={run_dir}")
    return "rnnbench train " + " ".join(shlex.quote(o) for o in items)


#: settings that change how a run goes, not what it computes: never hyperparameters
RUNTIME_KEYS = {"train.progress", "train.num_threads", "train.resume", "train.skip_finished", "train.verify",
                "train.checkpoint_every", "train.log_every", "train.table", "data.root", "data.download"}
#: command-line keys already among the hyperparameters under a short name
HPARAM_NAMES = {"optimizer.lr": "lr", "model.hidden_size": "hidden_size", "model.num_layers": "num_layers",
                "train.batch_size": "batch_size", "train.epochs": "epochs", "optimizer.clip": "clip",
                "model.attention": "attention"}


def _hparams(cfg: DictConfig, run_dir: Optional[Path] = None) -> dict[str, Any]:
    flat: dict[str, Any] = {"dataset": cfg.dataset.name, "model": cfg.model.name, "cell": cfg.cell.name,
                            "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, "seed": cfg.seed,
                            "hidden_size": cfg.model.hidden_size, "num_layers": cfg.model.num_layers,
                            "batch_size": cfg.train.batch_size, "epochs": cfg.train.epochs,
                            "regularizer": ",".join(cfg.regularizer.keys()) or "none",
                            "clip": "none" if cfg.optimizer.clip is None else
                            f"{cfg.optimizer.clip.get('kind', 'global')}:{cfg.optimizer.clip.max_norm}"}
    if "attention" in cfg.model:
        flat["attention"] = cfg.model.attention
    if cfg.get("tuned"):
        flat["tuned"] = cfg.tuned
    for role, scale in (cfg.optimizer.get("lr_scale") or {}).items():
        if scale != 1:
            flat[f"optimizer.lr_scale.{role}"] = scale
    # whatever else the command line (e.g. a sweep) set, so the HParams dashboard tells jobs apart:
    # with the composed (typed) value, not the override's string, so numbers stay numbers
    if run_dir is not None:
        for item in rundir.read_overrides(run_dir):
            key, _, value = str(item).lstrip("+~").partition("=")
            if not key or key.startswith("hydra") or key in RUNTIME_KEYS or HPARAM_NAMES.get(key, key) in flat:
                continue
            typed = OmegaConf.select(cfg, key, default=None)
            flat[key] = typed if isinstance(typed, (int, float, bool, str)) else value
    return flat


def _check_resume_config(cfg: DictConfig, run_dir: Path) -> None:
    saved_path = rundir.hydra_path(run_dir)
    if not saved_path.exists():
        return
    saved = OmegaConf.load(saved_path)
    for key in RESUME_MUST_MATCH:
        a = OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
        b = saved.get(key)
        b = OmegaConf.to_container(b, resolve=True) if isinstance(b, DictConfig) else b
        if a != b:
            raise ConfigError(f"train.resume: this run's {key} differs from the saved one in {saved_path}; "
                              "resume with the same overrides as the original run")


def _refuse_unfinished(run_dir: Path, resuming: bool) -> None:
    """A fresh run into a directory that already holds one would mix two runs' files (metrics.jsonl
    appends); a requeued job lands here when it was relaunched without train.skip_finished."""
    if not resuming and rundir.checkpoint_path(run_dir).exists():
        raise ConfigError(f"run dir {run_dir} already holds a run (checkpoints/last.pt); continue it with "
                          "train.resume=auto (a sweep: train.skip_finished=true) or pick another hydra.run.dir")


def run_training(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as configured, writing into ``run_dir``; return the results dict (also results.json).

    Holds ``run_dir/.lock`` throughout; SIGTERM/SIGUSR1/SIGUSR2/SIGINT stop it at a step boundary
    with last.pt saved (:class:`Interrupted`, results.json status interrupted). Raises
    :class:`RnnbenchError` (after writing results.json with status failed/diverged/interrupted).
    """
    run_dir = Path(run_dir)
    resume_from: Optional[Path] = None
    resume = cfg.train.resume or ("auto" if cfg.train.skip_finished else None)
    if resume:
        resume_dir = run_dir if resume == "auto" else Path(resume)
        ckpt = rundir.checkpoint_path(resume_dir)
        if resume != "auto" and not ckpt.exists():
            raise RnnbenchError(f"train.resume={cfg.train.resume}: no checkpoints/last.pt there; "
                                "pass the directory of an interrupted run")
        if ckpt.exists():
            run_dir, resume_from = resume_dir, ckpt
            _check_resume_config(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.lock(run_dir)
    try:
        rundir.remove_stale_temps(run_dir)
        if cfg.train.skip_finished:
            done = rundir.read_results(run_dir)
            if done is not None and done.get("status") == "ok":
                log.info("skipping finished run %s", run_dir)
                return done
        _refuse_unfinished(run_dir, resume_from is not None)
        with interrupt.catch_signals():
            return _train(cfg, run_dir, resume_from)
    finally:
        rundir.unlock(run_dir)


def _train(cfg: DictConfig, run_dir: Path, resume_from: Optional[Path]) -> dict:
    results: dict[str, Any] = {"status": "failed", "seed": cfg.seed, "cell": cfg.cell.name,
                               "dataset": cfg.dataset.name, "model": cfg.model.name,
                               "regularizer": list(cfg.regularizer.keys()), "valid": {}, "test": {},
                               "hparams": _hparams(cfg, run_dir), "run_dir": str(run_dir)}
    t0 = time.perf_counter()
    trainer: Optional[Trainer] = None
    ended = False  #: the try block finished; a failure to write results.json may then surface
    try:
        check_ranges(cfg)
        keep_freed_memory()  # process-wide, as num_threads: this run's and a joblib worker's later runs
        if cfg.train.num_threads:
            torch.set_num_threads(int(cfg.train.num_threads))
        if cfg.train.deterministic:
            # cuBLAS is deterministic only with a fixed workspace; it reads this when it starts,
            # i.e. at the first CUDA matmul, which comes later (the PyTorch reproducibility notes)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True)
        # process-wide: set either way, a joblib worker runs several jobs
        if not torch.set_flush_denormal(bool(cfg.train.flush_denormal)) and cfg.train.flush_denormal:
            log.warning("train.flush_denormal: this CPU does not support flushing subnormals; ignored")
        device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        task = build_task(cfg)
        rundir.write_text(run_dir / rundir.TASK_STATE, json.dumps(task.state_dict()))
        model = build_model(cfg.model, cfg.cell, task.spec)
        regs: list = []
        if cfg.regularizer:
            from ..regularizers import apply_regularizers
            regs = apply_regularizers(model, cfg.regularizer)
        model.to(device)
        results["params"] = count_params(model)
        results["metric"], results["metric_mode"] = task.metric, task.metric_mode
        log.info("run dir %s | %s on %s | %s %s x%d, %d parameters | %s", run_dir, cfg.model.name,
                 cfg.dataset.name, cfg.cell.name, cfg.model.hidden_size, cfg.model.num_layers,
                 results["params"], device)
        if cfg.get("tuned"):
            log.info("tuned settings for this dataset x cell applied: conf/tuned/%s.yaml (tuned=none turns them off)",
                     cfg.tuned)
        trainer = Trainer(cfg, task, model, run_dir, device, regs)
        if resume_from is not None:
            trainer.resume(resume_from)
        st = trainer.fit()
        # test on the best-valid checkpoint
        best = load_checkpoint(rundir.checkpoint_path(run_dir, rundir.BEST), map_location=device)
        model.load_state_dict(best["model"])
        results["valid"] = best["metrics"]
        results["test"] = trainer.evaluate("test")
        for r in regs:
            results.update(r.final_report(model, task, cfg.train.eval_batch_size, cfg.train.max_eval_batches))
        results.update({
            "status": "ok", "best_epoch": st.best_epoch, "best_step": st.best_step, "epochs": st.epoch, "steps": st.step,
            "epoch_times_s": st.epoch_times,
            "s_per_epoch": (sum(st.epoch_times) / len(st.epoch_times)) if st.epoch_times else None,
            "examples_per_s": st.examples / st.train_time if st.train_time > 0 else None,
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        })
        reported = registry.reported()
        results.update({r.key: results["valid"][r.key] for r in reported if r.result and r.key in results["valid"]})
        board = Board(run_dir)
        # the test split on the best checkpoint, at the last step (best valid: the valid_best curve),
        # and what the cells and regularizers report beside it (a test value of the same name wins)
        final = {f"test/{k}": v for k, v in results["test"].items()}
        for r in reported:
            if r.column and isinstance(results.get(r.key), float):
                final.setdefault(f"test/{r.key}", results[r.key])
        board.hparams(results["hparams"], final, st.step)
        board.close()
        ended = True
    except Interrupted as e:
        cmd = resume_command(run_dir)
        msg = f"{e}: checkpoints/last.pt holds that step; resume with: {cmd}"
        results.update({"status": "interrupted", "error": msg, "signal": e.signame, "resume": cmd,
                        "epochs": e.epoch, "steps": e.step})
        raise Interrupted(e.signum, e.epoch, e.step, msg) from None
    except DivergedError as e:
        results.update({"status": "diverged", "error": str(e)})
        raise
    except RnnbenchError as e:
        results.update({"status": "failed", "error": str(e)})
        raise
    except KeyboardInterrupt:
        results.update({"status": "failed", "error": "interrupted"})
        raise
    except Exception as e:
        if rundir.is_disk_full(e):  # e.g. from a library writing its own file into the run dir
            full = rundir.disk_full(Path(getattr(e, "filename", None) or run_dir), e)
            results.update({"status": "failed", "error": str(full)})
            raise full from e
        results.update({"status": "failed", "error": f"{type(e).__name__}: {e}"})
        raise
    finally:
        results["wall_time_s"] = time.perf_counter() - t0
        try:
            rundir.write_results(run_dir, results)
        except RnnbenchError as e:  # a full disk: never hide the run's own error behind this one
            if ended:
                raise
            log.warning("could not write results.json: %s", e)
        try:
            from ..reports.curves import plot_run_curves
            plot_run_curves(run_dir)
        except Exception as e:  # a plot must never hide the run's real outcome
            log.warning("could not draw curves.png: %s", e)
    if interrupt.requested() is not None:
        log.warning("%s arrived after training had ended: the run finished",
                    signal.Signals(interrupt.requested()).name)
    summary = " ".join(f"{k} {v:.4f}" for k, v in results["test"].items() if isinstance(v, float))
    log.info("done in %.1f s | best epoch %d | test %s", results["wall_time_s"], results["best_epoch"], summary)
    if cfg.train.verify:
        from ..verify import verify_run
        verify_run(run_dir)
    return results


def objective(results: dict, metric: str) -> float:
    """The number a sweeper optimizes: the best valid metric (NaN if the run did not finish)."""
    v = results.get("valid", {}).get(metric)
    return float(v) if v is not None else math.nan
