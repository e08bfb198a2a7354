"""``rnnbench verify RUN_DIR...`` — article 003's check, for every run: recompute a finished run's
metrics with an independent NumPy forward pass and compare them with the framework's.

For each run directory (or every run found under a sweep directory) it

1. reads ``.hydra/config.yaml`` and ``checkpoints/best.pt`` (``torch.load(weights_only=True)``);
2. rebuilds the valid and test data (``rnnbench.tasks.build_task``; ``--data-root`` overrides
   ``data.root``), the same batches the trainer evaluated (``train.eval_batch_size``,
   ``train.max_eval_batches``);
3. **framework**: rebuilds the torch model (+ regularizers), loads the weights and runs the
   task's own evaluation; **stored**: the numbers the run reported (``results.json``);
4. **numpy**: :mod:`rnnbench.verify.numpy_ref` — float64 NumPy only, no torch — with article
   003's metrics (softmax, ``clip(p, 1e-10, 1)`` log-loss shown as ``loss_clip``, argmax accuracy;
   the compared ``loss`` is the unclipped log-loss, the framework's definition);
5. prints the three side by side and fails (:class:`VerifyError`, a one-line message with the
   differing numbers) unless loss/bpc agree to ``rtol`` (1e-4 relative) and accuracies are
   equal up to predictions that are near-ties (top-2 scores within 1e-4).

Comparing with the *stored* numbers is what catches a changed checkpoint or config; comparing
with the *framework* recomputation separates that from a forward-pass disagreement.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .. import rundir
from ..errors import RnnbenchError
from .numpy_ref import (MODELS, Context, Params, Sums, VerifyUnsupported, add_batch, check_regularizers,
                        fold_parametrizations)

RTOL = 1e-4
RELATIVE_KEYS = ("loss", "bpc")
COUNT_KEYS = ("acc", "seq_acc")


class VerifyError(RnnbenchError):
    """The NumPy recomputation disagrees with the run (or cannot be done)."""


@dataclass
class SplitReport:
    split: str
    numpy: dict[str, float]
    framework: dict[str, float]
    stored: dict[str, float]
    sums: Sums
    mismatches: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    run_dir: Path
    splits: list[SplitReport]

    @property
    def ok(self) -> bool:
        return not any(s.mismatches for s in self.splits)

    def table(self) -> str:
        lines = [f"verify {self.run_dir}",
                 f"  {'split':<6} {'metric':<9} {'stored':>12} {'framework':>12} {'numpy':>12}  check"]
        for s in self.splits:
            for k, v in s.numpy.items():
                st = s.stored.get(k)
                fw = s.framework.get(k)
                bad = any(m.startswith(f"{s.split} {k} ") for m in s.mismatches)
                check = "MISMATCH" if bad else ("ok" if (st is not None or fw is not None) else "article, clip 1e-10")
                if k == "loss" and "loss_notie" in s.numpy and not bad:
                    check = "stored = framework; numpy: see loss_notie"
                elif k == "loss_notie" and not bad:
                    check = "ok (answers without a greedy near-tie)"
                lines.append(f"  {s.split:<6} {k:<9} {_fmt(st):>12} {_fmt(fw):>12} {_fmt(v):>12}  {check}")
        lines.append("  => " + ("OK: NumPy recomputation agrees" if self.ok else
                                "FAILED: " + "; ".join(m for s in self.splits for m in s.mismatches)))
        return "\n".join(lines)


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.6f}"


# ----------------------------------------------------------------------------- loading
def load_run_config(run_dir: Path, data_root: Optional[str] = None) -> Any:
    from omegaconf import OmegaConf

    path = rundir.hydra_path(run_dir)
    if not path.is_file():
        raise VerifyError(f"{run_dir} is not a run directory (no .hydra/config.yaml)")
    cfg = OmegaConf.load(path)
    if data_root is not None:
        cfg.data.root = str(data_root)
    return cfg


def _to_numpy(state_dict: dict) -> dict:
    """Saved tensors -> float64 NumPy arrays (torch is used only to *load*)."""
    return {k: v.detach().cpu().double().numpy() for k, v in state_dict.items()}


def _regularizers(cfg: Any) -> dict[str, dict]:
    from omegaconf import OmegaConf

    regs = cfg.get("regularizer") or {}
    return {k: (OmegaConf.to_container(v, resolve=True) or {}) for k, v in regs.items()}


def _qat_enabled(regs: dict, results: Optional[dict]) -> bool:
    """QAT fake-quantises once ``step >= quant_delay``; for checkpoints without the ``qat_enabled``
    buffers, the last training step decides the mode the run evaluated with (``results.json`` ``steps``)."""
    if "qat" not in regs:
        return False
    delay = int(regs["qat"].get("quant_delay", 0) or 0)
    steps = int((results or {}).get("steps") or 0)
    return delay <= 0 or steps - 1 >= delay


def _progress(cfg: Any, task: Any, run_dir: Path, results: Optional[dict], best_epoch: Optional[int]
              ) -> dict[str, tuple[Optional[int], int]]:
    """Per split, ``(step, total_steps)`` as the trainer last passed them to ``set_training_progress``
    before that split was evaluated (VC λ schedules): valid at the end of the best epoch
    (``metrics.jsonl``), test after training (``results.json`` ``steps``)."""
    n = task.num_train_batches(int(cfg.train.batch_size)) * int(cfg.train.epochs)
    total = n if cfg.train.get("max_steps") is None else min(n, int(cfg.train.max_steps))
    steps = (results or {}).get("steps")
    out: dict[str, tuple[Optional[int], int]] = {"test": (int(steps) - 1 if steps else None, total)}
    valid_step = None
    if best_epoch is not None:
        for row in rundir.read_metrics(run_dir):
            if row.get("split") == "valid" and row.get("epoch") == best_epoch:
                valid_step = int(row["step"]) - 1
    out["valid"] = (valid_step, total) if valid_step is not None else out["test"]
    return out


def _batches(task: Any, split: str, cfg: Any):
    b = task.eval_batches(split, int(cfg.train.eval_batch_size))
    if cfg.train.get("max_eval_batches"):
        b = itertools.islice(b, int(cfg.train.max_eval_batches))
    return b


def framework_metrics(cfg: Any, task: Any, state_dict: dict, splits: Sequence[str], qat_enabled: bool,
                      progress: tuple[Optional[int], int] = (None, 1)) -> dict[str, dict[str, float]]:
    """The framework's own numbers: rebuild the torch model, load the weights, ``Task`` evaluation."""
    import torch

    from ..cells.base import FollowsTraining
    from ..models import build_model
    from ..tasks.base import EvalSums

    model = build_model(cfg.model, cfg.cell, task.spec)
    if cfg.get("regularizer"):
        from ..regularizers import apply_regularizers
        apply_regularizers(model, cfg.regularizer)
    model.load_state_dict(state_dict)
    model.eval()
    # what training progress set travels with the checkpoint (QAT's mode, a VC λ schedule); a
    # module without such an entry, or a checkpoint from before it: set from the run's progress
    if progress[0] is not None:
        for name, m in model.named_modules():
            if isinstance(m, FollowsTraining):
                kept = m.progress_state()
                if kept is None or (f"{name}.{kept}" if name else kept) not in state_dict:
                    m.set_training_progress(progress[0], progress[1])
    out = {}
    with torch.no_grad():
        for split in splits:
            sums, state = EvalSums(), None
            per_answer = []
            for batch in _batches(task, split, cfg):
                state = task.evaluate_batch(model, batch, sums, state)
                if task.spec.kind == "seq2seq":  # greedy answers' losses, for the near-tie rule
                    x, y = batch
                    logits = model(x)
                    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                           reduction="none")
                    per_answer.append(ce.view(y.shape).sum(1).double().numpy())
            out[split] = task.metrics(sums)
            if per_answer:
                out[split]["_answer_loss"] = per_answer  # type: ignore[assignment]
    return out


def _near_tie_loss(fw: dict, sums: Sums) -> Optional[tuple[float, float]]:
    """Greedy seq2seq with near-ties: (framework, NumPy) mean loss over the answers that met no
    near-tie. A near-tie can resolve differently in float32 and float64 and then send the two
    greedy decoders down different paths for the rest of that answer, so those answers' losses
    are not comparable; every other answer must agree. None when there is nothing to exclude."""
    import numpy as np

    answers = fw.get("_answer_loss")
    if not answers or not sums.seq_tie_allowance or not sums.count_notie:
        return None
    tie = np.concatenate(sums.tie_answers)
    fw_loss = np.concatenate(answers)
    return float(fw_loss[~tie].sum()) / sums.count_notie, sums.loss_notie / sums.count_notie


def numpy_metrics(cfg: Any, task: Any, arrays: dict, splits: Sequence[str], qat_enabled: bool,
                  progress: Optional[float] = None) -> dict[str, Sums]:
    """The NumPy side: article 003's recomputation on the same batches."""
    from omegaconf import OmegaConf

    regs = _regularizers(cfg)
    check_regularizers(regs)
    name = str(cfg.model.name)
    if name not in MODELS:
        raise VerifyUnsupported(f"verify has no NumPy implementation for model {name}")
    params = Params(fold_parametrizations(arrays, regs))
    ctx = Context(params, OmegaConf.to_container(cfg.cell, resolve=True), regs, qat_enabled,
                  out_len=int(task.spec.out_len), progress=progress)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    forward = MODELS[name]
    kind = task.spec.kind
    out: dict[str, Sums] = {}
    for split in splits:
        sums, state = Sums(), None
        for x, y in _batches(task, split, cfg):
            scores, state = forward(ctx, model_cfg, x.numpy(), state)
            add_batch(sums, kind, scores, y.numpy())
        out[split] = sums
    unused = params.unused()
    if unused:
        raise VerifyUnsupported(f"verify has no NumPy use for saved parameters {', '.join(unused[:6])}"
                                f"{' ...' if len(unused) > 6 else ''} (model {name}, cell {cfg.cell.name})")
    return out


def compare(split: str, ref_name: str, ref: dict[str, float], mine: dict[str, float], sums: Sums,
            kind: str, rtol: float, mine_name: str = "numpy") -> list[str]:
    """Mismatch messages for ``mine`` (NumPy) against ``ref`` (framework or stored)."""
    bad = []
    for k, v in mine.items():
        r = ref.get(k)
        if r is None:
            continue
        if k in RELATIVE_KEYS:
            if not (abs(v - r) <= rtol * max(abs(r), 1e-12)) or math.isnan(r) != math.isnan(v):
                rel = abs(v - r) / max(abs(r), 1e-12)
                bad.append(f"{split} {k} {ref_name} {r:.8g} vs {mine_name} {v:.8g} (rel diff {rel:.2e})")
        elif k in COUNT_KEYS:
            n = sums.count if k == "acc" else sums.seq_count
            allow = sums.tie_allowance if k == "acc" else sums.seq_tie_allowance
            diff = round(abs(v - r) * n)
            if diff > allow:
                bad.append(f"{split} {k} {ref_name} {r:.6f} vs numpy {v:.6f} ({diff} of {n} predictions differ, "
                           f"{allow} near-ties)")
    return bad


def verify_run(run_dir: str | Path, data_root: Optional[str] = None, splits: Sequence[str] = ("valid", "test"),
               rtol: float = RTOL, echo: Optional[Callable[[str], None]] = print, cfg: Any = None) -> VerifyReport:
    """Verify one run directory; print the side-by-side table; raise :class:`VerifyError` on a mismatch.

    ``cfg`` replaces ``.hydra/config.yaml`` (for runs written without the Hydra CLI).
    """
    import torch

    from ..tasks import build_task

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, data_root) if cfg is None else cfg
    if data_root is not None:
        cfg.data.root = str(data_root)
    ckpt = rundir.checkpoint_path(run_dir, rundir.BEST)
    if not ckpt.is_file():
        raise VerifyError(f"{run_dir}: no checkpoints/best.pt to verify")
    best = torch.load(ckpt, map_location="cpu", weights_only=True)
    results = rundir.read_results(run_dir)
    task = build_task(cfg)
    saved_task = run_dir / rundir.TASK_STATE
    if saved_task.is_file():
        want = json.loads(saved_task.read_text())
        if want != json.loads(json.dumps(task.state_dict())):
            raise VerifyError(f"{run_dir}: the rebuilt dataset's state (e.g. pmnist permutation) differs from "
                              "task_state.json")
    regs = _regularizers(cfg)
    qat_on = _qat_enabled(regs, results)
    state_dict = best["model"]
    progress = _progress(cfg, task, run_dir, results, best.get("epoch"))
    arrays = _to_numpy(state_dict)
    fw: dict[str, dict[str, float]] = {}
    np_sums: dict[str, Sums] = {}
    try:
        for split in splits:
            step, total = progress.get(split, progress["test"])
            fw.update(framework_metrics(cfg, task, state_dict, [split], qat_on, (step, total)))
            np_sums.update(numpy_metrics(cfg, task, arrays, [split], qat_on,
                                         None if step is None else min(max(step / max(total, 1), 0.0), 1.0)))
    except VerifyUnsupported as e:
        raise VerifyError(f"{run_dir}: {e}") from None
    reports = []
    kind = task.spec.kind
    for split in splits:
        sums = np_sums[split]
        mine = sums.metrics(kind)
        stored = dict((results or {}).get(split) or {})
        if split == "valid" and not stored:
            stored = dict(best.get("metrics") or {})
        fw_split = {k: v for k, v in fw[split].items() if not k.startswith("_")}
        rep = SplitReport(split, mine, fw_split, stored, sums)
        notie = _near_tie_loss(fw[split], sums)
        if notie is None:
            rep.mismatches += compare(split, "framework", fw_split, mine, sums, kind, rtol)
            rep.mismatches += compare(split, "stored", stored, mine, sums, kind, rtol)
        else:  # the loss over answers without a near-tie; stored vs framework for the total
            fw_nt, np_nt = notie
            mine["loss_notie"], fw_split["loss_notie"] = np_nt, fw_nt
            rep.mismatches += compare(split, "framework", {**fw_split, "loss": fw_nt},
                                      {**mine, "loss": np_nt}, sums, kind, rtol)
            rep.mismatches += compare(split, "stored", {"loss": stored.get("loss", fw_split["loss"])},
                                      {"loss": fw_split["loss"]}, sums, kind, rtol, mine_name="framework")
            rep.mismatches += compare(split, "stored", {k: v for k, v in stored.items() if k != "loss"}, mine,
                                      sums, kind, rtol)
        reports.append(rep)
    report = VerifyReport(run_dir, reports)
    if echo is not None:
        echo(report.table())
    if not report.ok:
        msgs = [m for s in reports for m in s.mismatches]
        raise VerifyError(f"verify {run_dir}: NumPy recomputation disagrees: " + "; ".join(msgs))
    return report


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="rnnbench verify",
                                 description="Recompute runs' accuracy and log-loss with an independent NumPy "
                                             "forward pass (article 003) and compare with the framework.")
    ap.add_argument("paths", nargs="+", help="run directories or sweep directories (every run below)")
    ap.add_argument("--data-root", default=None, help="override the runs' data.root")
    ap.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance on loss/bpc (default 1e-4)")
    ap.add_argument("--splits", default="valid,test", help="comma-separated splits (default valid,test)")
    args = ap.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    runs: list[Path] = []
    for p in args.paths:
        path = Path(p)
        if not path.exists():
            raise VerifyError(f"no such run or sweep directory: {path}")
        found = rundir.find_runs(path, rundir.CONFIG)
        if not found:
            raise VerifyError(f"{path}: no run directories (with .hydra/config.yaml) found")
        runs += found
    failures = []
    for run in runs:
        try:
            verify_run(run, args.data_root, splits, args.rtol)
        except RnnbenchError as e:
            if len(runs) == 1:
                raise
            print(f"  => error: {e}")
            failures.append(f"{run.name}: {str(e).splitlines()[0]}")
    if failures:
        raise VerifyError(f"verify failed for {len(failures)} of {len(runs)} runs: " + " | ".join(failures))
    if len(runs) > 1:
        print(f"verify: all {len(runs)} runs agree")
    return 0
