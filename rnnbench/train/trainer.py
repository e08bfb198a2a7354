"""The training loop: epochs of optimizer steps, validation each epoch, exact resume.

Everything that decides what the run computes — model, optimizer and scheduler states, the
torch RNG, the position in the epoch (batch order is a pure function of ``(seed, epoch)``),
the carried LM state and the running train-loss sums — is in ``checkpoints/last.pt``, so a run
killed at any point and resumed writes the same ``metrics.jsonl`` as an uninterrupted one. A
signal (``interrupt.py``) is honoured at the next step boundary: last.pt at that step, then
:class:`~rnnbench.errors.Interrupted`.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from ..cells.base import CellRunner, FollowsTraining
from ..cells.stack import map_state
from ..errors import DivergedError, Interrupted
from ..tasks.base import EvalSums, Task
from . import faults, interrupt
from ..rundir import BEST, CHECKPOINTS, LAST, METRICS
from .checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from .logger import Board, MetricsLog
from .optim import build_optimizer, build_scheduler, clip_gradients, grad_norm, param_groups

log = logging.getLogger("rnnbench")


@dataclass
class TrainState:
    epoch: int = 0  #: epochs completed
    step: int = 0  #: optimizer steps done
    batch_in_epoch: int = 0  #: batches done in the current epoch
    best_metric: Optional[float] = None
    best_epoch: int = -1
    best_step: int = -1  #: optimizer step of the best valid evaluation (an epoch end or an eval point)
    train_loss_sum: float = 0.0
    train_count: int = 0
    window_loss_sum: float = 0.0  #: train loss since the last evaluation (train.eval_every rows)
    window_count: int = 0
    epoch_time: float = 0.0  #: seconds spent in the current epoch so far
    epoch_times: list = field(default_factory=list)
    examples: int = 0
    train_time: float = 0.0


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return type(batch)(to_device(b, device) for b in batch)


class Trainer:
    def __init__(self, cfg: Any, task: Task, model: torch.nn.Module, run_dir: Path, device: torch.device,
                 regularizers: Optional[list] = None) -> None:
        self.cfg, self.task, self.model, self.run_dir, self.device = cfg, task, model, run_dir, device
        self.tc = cfg.train
        self.regs = regularizers or []
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = build_optimizer(param_groups(model, cfg.optimizer.get("lr_scale")), cfg.optimizer)
        self.sched = build_scheduler(self.opt, cfg.optimizer.schedule, self.tc.epochs)
        # the modules that run cells report their cells' auxiliary losses and statistics
        self.stacks = [m for m in model.modules() if isinstance(m, CellRunner)]
        self.progress_modules = [m for m in model.modules() if isinstance(m, FollowsTraining)]
        self.state = TrainState()
        self.ckpt_dir = run_dir / CHECKPOINTS
        self.metrics = MetricsLog(run_dir / METRICS)
        self.carry: Any = None
        n = task.num_train_batches(self.tc.batch_size)
        self.total_steps = n * self.tc.epochs if self.tc.max_steps is None else min(n * self.tc.epochs,
                                                                                        self.tc.max_steps)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_last(self) -> None:
        save_atomic({
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "state": asdict(self.state), "rng": rng_state(),
            "carry": map_state(self.carry, lambda t: t.detach().cpu()) if self.carry is not None else None,
        }, self.ckpt_dir / LAST)

    def save_best(self, metrics: dict) -> None:
        save_atomic({"model": self.model.state_dict(), "epoch": self.state.epoch, "metrics": metrics},
                    self.ckpt_dir / BEST)

    def resume(self, ckpt_path: Path) -> None:
        ck = load_checkpoint(ckpt_path, map_location=self.device)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.sched is not None and ck["scheduler"] is not None:
            self.sched.load_state_dict(ck["scheduler"])
        self.state = TrainState(**ck["state"])
        set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                       for k, v in ck["rng"].items()})
        self.carry = map_state(ck["carry"], lambda t: t.to(self.device)) if ck["carry"] is not None else None
        self.metrics.truncate_after(self.state.step, self.state.epoch)
        log.info("resumed from %s at epoch %d, step %d (batch %d of the epoch)", ckpt_path, self.state.epoch,
                 self.state.step, self.state.batch_in_epoch)

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str, max_batches: Optional[int] = None) -> dict[str, float]:
        """Metrics of the current model on ``split`` (at most ``max_batches`` batches)."""
        was_training = self.model.training
        self.model.eval()
        sums = EvalSums()
        stats: dict[str, list[float]] = {}
        state = None
        batches = self.task.eval_batches(split, self.tc.eval_batch_size)
        cap = max_batches or self.tc.max_eval_batches
        if cap:
            batches = itertools.islice(batches, cap)
        for batch in tqdm(batches, desc=f"eval {split}", leave=False, disable=not self.tc.progress,
                          mininterval=1.0):
            state = self.task.evaluate_batch(self.model, to_device(batch, self.device), sums, state)
            for stack in self.stacks:
                for k, v in stack.stats().items():
                    stats.setdefault(k, []).append(v)
        out = self.task.metrics(sums)
        out.update({k: sum(v) / len(v) for k, v in stats.items()})
        self.model.train(was_training)
        return out

    # -- training -------------------------------------------------------------------------------
    def _extra_loss(self) -> Optional[torch.Tensor]:
        terms = [t for t in (s.extra_loss() for s in self.stacks) if t is not None]
        return sum(terms) if terms else None

    def _better(self, value: float) -> bool:
        best = self.state.best_metric
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value > best if self.task.metric_mode == "max" else value < best

    def fit(self) -> TrainState:
        tc, st = self.tc, self.state
        board = Board(self.run_dir, purge_step=st.step if st.step else None)
        n_batches = self.task.num_train_batches(tc.batch_size)
        stop = tc.max_steps is not None and st.step >= tc.max_steps
        try:
            for epoch in range(st.epoch, tc.epochs):
                if stop:
                    break
                self.model.train()
                if st.batch_in_epoch == 0:
                    self.carry = None
                batches = self.task.train_batches(tc.batch_size, epoch, self.cfg.seed)
                batches = itertools.islice(batches, st.batch_in_epoch, None)
                bar = tqdm(total=n_batches, initial=st.batch_in_epoch, desc=f"epoch {epoch + 1}/{tc.epochs}",
                           disable=not tc.progress, mininterval=1.0, dynamic_ncols=True)
                t_last = time.perf_counter()
                for batch in batches:
                    batch = to_device(batch, self.device)
                    for m in self.progress_modules:
                        m.set_training_progress(st.step, self.total_steps)
                    loss, carry = self.task.loss(self.model, batch, self.carry)
                    self.carry = map_state(carry, torch.Tensor.detach) if carry is not None else None
                    if not torch.isfinite(loss):
                        raise DivergedError(f"loss became {loss.item()} at epoch {epoch + 1}, step {st.step + 1}; "
                                            "lower optimizer.lr or set optimizer.clip")
                    total = loss
                    extra = self._extra_loss()
                    if extra is not None:
                        total = total + extra
                    self.opt.zero_grad(set_to_none=True)
                    total.backward()
                    gnorm = grad_norm(self.params) if (st.step % tc.log_every == 0) else None
                    clip_gradients(self.params, self.cfg.optimizer.clip)
                    self.opt.step()
                    for r in self.regs:
                        r.after_step(self.model)
                    n_ex = self.task.num_examples(batch)
                    st.step += 1
                    st.batch_in_epoch += 1
                    faults.at_step(st.step)
                    st.train_loss_sum += loss.item() * n_ex
                    st.train_count += n_ex
                    st.window_loss_sum += loss.item() * n_ex
                    st.window_count += n_ex
                    st.examples += n_ex
                    now = time.perf_counter()
                    dt, t_last = now - t_last, now
                    st.epoch_time += dt
                    st.train_time += dt
                    bar.update(1)
                    if gnorm is not None:
                        bar.set_postfix(loss=f"{loss.item():.4f}", ex_s=f"{n_ex / max(dt, 1e-9):.0f}", refresh=False)
                        vals = {"loss": loss.item(), "lr": self.opt.param_groups[0]["lr"], "grad_norm": gnorm,
                                "examples_per_s": n_ex / max(dt, 1e-9)}
                        for s in self.stacks:
                            vals.update(s.stats())
                        board.scalars("train_step", vals, st.step)
                    if tc.max_steps is not None and st.step >= tc.max_steps:
                        stop = True
                    # an evaluation point inside the epoch; the epoch's last step is _end_epoch's
                    if tc.eval_every and st.step % tc.eval_every == 0 and not stop and st.batch_in_epoch < n_batches:
                        self._eval_point(epoch, n_batches, board)
                        t_last = time.perf_counter()  # evaluation time is not training time
                    elif tc.checkpoint_every and st.step % tc.checkpoint_every == 0:
                        self.save_last()
                    if stop:  # max_steps: the epoch's end (evaluation, last.pt) comes first
                        break
                    self._stop_if_asked()
                bar.close()
                self._end_epoch(epoch, board)
                faults.at_epoch_end(epoch + 1)
                self._stop_if_asked()
        finally:
            board.close()
        return st

    def _stop_if_asked(self) -> None:
        """A signal arrived (see train/interrupt.py): last.pt at this step boundary, then stop."""
        signum = interrupt.requested()
        if signum is not None:
            self.save_last()
            raise Interrupted(signum, self.state.epoch, self.state.step)

    def _record_best(self, valid: dict, epoch: int, board: Board) -> None:
        """best.pt and the best-so-far fields when ``valid`` (taken during 1-based ``epoch``) is best;
        the ``valid_best/<metric>`` curve (its last point: the run's best, for the HParams dashboard)."""
        st = self.state
        if self._better(valid[self.task.metric]):
            st.best_metric, st.best_epoch, st.best_step = valid[self.task.metric], epoch, st.step
            self.save_best(valid)
        board.scalars("valid_best", {self.task.metric: st.best_metric}, st.step)

    def _eval_point(self, epoch: int, n_batches: int, board: Board) -> None:
        """``train.eval_every``: a valid evaluation inside the epoch, its metrics.jsonl rows (at the
        fractional epoch), TensorBoard points, best.pt when best, then last.pt, so a resumed run
        neither repeats nor skips it."""
        st = self.state
        valid = self.evaluate("valid")
        at = round(epoch + st.batch_in_epoch / n_batches, 6)  # < epoch + 1: resume's truncation relies on it
        train = {"loss": st.window_loss_sum / max(st.window_count, 1)}
        st.window_loss_sum, st.window_count = 0.0, 0
        lr = self.opt.param_groups[0]["lr"]
        self.metrics.write({"epoch": at, "step": st.step, "split": "train", **train, "lr": lr})
        self.metrics.write({"epoch": at, "step": st.step, "split": "valid", **valid})
        board.scalars("valid_step", valid, st.step)
        log.info("step %d (epoch %.2f): train loss %.4f | valid %s", st.step, at, train["loss"],
                 " ".join(f"{k} {v:.4f}" for k, v in valid.items()))
        self._record_best(valid, epoch + 1, board)
        self.save_last()

    def _end_epoch(self, epoch: int, board: Board) -> None:
        st = self.state
        train = {"loss": st.train_loss_sum / max(st.train_count, 1)}
        if self.tc.eval_train:  # metrics of the model at the end of the epoch on a training sample
            sample = self.evaluate("train", max_batches=self.tc.max_eval_batches or 5)
            train.update({f"eval_{k}" if k == "loss" else k: v for k, v in sample.items()})
        valid = self.evaluate("valid")
        lr = self.opt.param_groups[0]["lr"]
        self.metrics.write({"epoch": epoch + 1, "step": st.step, "split": "train", **train, "lr": lr})
        self.metrics.write({"epoch": epoch + 1, "step": st.step, "split": "valid", **valid})
        # every curve on one x axis, optimizer steps; train/epoch maps steps to epochs
        board.scalars("train", {**train, "lr": lr, "epoch_time_s": st.epoch_time, "epoch": epoch + 1}, st.step)
        board.scalars("valid", valid, st.step)
        if self.tc.eval_every:
            board.scalars("valid_step", valid, st.step)
        log.info("epoch %d: train loss %.4f | valid %s | %.1f s", epoch + 1, train["loss"],
                 " ".join(f"{k} {v:.4f}" for k, v in valid.items()), st.epoch_time)
        if self.sched is not None:
            if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.sched.step(valid["loss"])
            else:
                self.sched.step()
        st.epoch = epoch + 1
        st.epoch_times.append(st.epoch_time)
        st.epoch_time = 0.0
        st.batch_in_epoch = 0
        st.train_loss_sum, st.train_count = 0.0, 0
        st.window_loss_sum, st.window_count = 0.0, 0
        self._record_best(valid, epoch + 1, board)
        self.carry = None
        self.save_last()
