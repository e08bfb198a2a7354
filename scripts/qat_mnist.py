"""QAT on mnist_row, end to end (issue 5's QAT acceptance): a separate study with its own
training loop, outside the package; tests/regularizers/test_qat_mnist_slow.py runs it.

    python scripts/qat_mnist.py --data /work/shared/data [--float-steps N --qat-steps M]

1. trains a float LSTM classifier (rows as steps, 28x28) for ``float_steps + qat_steps``
   Adam steps and tests it (the float baseline, the same number of steps as QAT);
2. from its checkpoint after ``float_steps`` (= ``quant_delay``), trains ``qat_steps`` more with
   ``regularizer=qat`` (fake int8 weights/activations);
3. reports the fake-quant and integer-only test accuracies and their agreement
   (:func:`rnnbench.regularizers.qat.int_only_report`) on the 10k MNIST test images.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F

from rnnbench.cells.base import FollowsTraining
from rnnbench.models.classifier import Classifier
from rnnbench.regularizers import apply_regularizers
from rnnbench.regularizers.qat import int_only_report
from rnnbench.tasks.mnist import ImageSequenceTask


def accuracy(model: torch.nn.Module, task: ImageSequenceTask, split: str = "test") -> float:
    model.eval()
    ok = n = 0
    with torch.no_grad():
        for x, y in task.eval_batches(split, 1000):
            ok += (model(x).argmax(-1) == y).sum().item()
            n += y.numel()
    model.train()
    return ok / n


def train(model, task, steps: int, lr: float, seed: int, regs=(), start: int = 0, total: int = 0, bs: int = 128):
    opt = torch.optim.Adam(model.parameters(), lr)
    step, epoch = 0, 0
    progress = [m for m in model.modules() if isinstance(m, FollowsTraining)]
    model.train()
    while step < steps:
        for x, y in task.train_batches(bs, epoch, seed):
            for m in progress:
                m.set_training_progress(start + step, total)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            for r in regs:
                r.after_step(model)
            step += 1
            if step >= steps:
                break
        epoch += 1
    return model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--float-steps", type=int, default=1500)
    ap.add_argument("--qat-steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--qat-lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    task = ImageSequenceTask(root=a.data, source="mnist", layout="row")
    cell = {"_target_": "rnnbench.cells.lstm.LSTMCell", "name": "lstm"}
    t0 = time.time()
    model = Classifier(task.spec, cell, hidden_size=a.hidden)
    train(model, task, a.float_steps, a.lr, a.seed)
    start = copy.deepcopy(model.state_dict())
    train(model, task, a.qat_steps, a.qat_lr, a.seed + 1)  # float baseline: same total steps
    float_acc = accuracy(model, task)
    t1 = time.time()
    qmodel = Classifier(task.spec, cell, hidden_size=a.hidden)
    qmodel.load_state_dict(start)
    regs = apply_regularizers(qmodel, {"qat": {"quant_delay": a.float_steps}})
    train(qmodel, task, a.qat_steps, a.qat_lr, a.seed + 1, regs, start=a.float_steps,
          total=a.float_steps + a.qat_steps)
    t2 = time.time()
    rep = int_only_report(qmodel, task, "test")
    rep.update(float_acc=float_acc, acc_drop_points=100 * (float_acc - rep["int_acc"]),
               float_steps=a.float_steps, qat_steps=a.qat_steps, hidden=a.hidden,
               seconds={"float": round(t1 - t0, 1), "qat": round(t2 - t1, 1), "report": round(time.time() - t2, 1)})
    print(json.dumps(rep, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)
    return rep


if __name__ == "__main__":
    main()
