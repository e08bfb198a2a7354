"""``rnnbench sample RUN_DIR`` (text from a character language model) and ``rnnbench predict RUN_DIR
"24+654" ...`` (an addition model's answers).

Both rebuild the run's model from its ``.hydra/config.yaml`` (regularizers included, in eval mode:
dropout off, zoneout at its expectation) and load ``checkpoints/best.pt`` — the checkpoint the
run's test metrics come from — with the run loader (``torch.load(weights_only=True)``); a run
without a finished epoch falls back to ``last.pt``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import DataError, RnnbenchError

#: how ptb_char's symbols read as text: ``_`` separates words, ``<eol>`` ends a line
PTB_TEXT = {"_": " ", "<eol>": "\n"}
LM_DATASETS = ("ptb_char", "shakespeare_char")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line via the CLI's RnnbenchError handling
        raise RnnbenchError(f"{self.prog}: {message}")


def load_model(run_dir: Path, want: tuple[str, ...], command: str, data_root: Optional[str] = None):
    """``(cfg, task, model)`` of a finished run whose dataset is one of ``want``."""
    from .models import build_model
    from .tasks import build_task
    from .train.checkpoint import load_checkpoint
    from .verify.check import load_run_config

    cfg = load_run_config(Path(run_dir), data_root)
    dataset = str(cfg.dataset.name)
    if dataset not in want:
        other = "rnnbench predict (addition)" if command == "sample" else "rnnbench sample (ptb_char, shakespeare_char)"
        raise RnnbenchError(f"rnnbench {command} needs a run of {' or '.join(want)}; {run_dir} is a run of {dataset} "
                            f"(for the others see {other})")
    ckpts = [Path(run_dir) / "checkpoints" / n for n in ("best.pt", "last.pt")]
    path = next((p for p in ckpts if p.is_file()), None)
    if path is None:
        raise RnnbenchError(f"{run_dir}: no checkpoint (checkpoints/best.pt or last.pt); the run has not saved "
                            "one yet — train it (or resume it with train.resume)")
    try:
        task = build_task(cfg)
    except DataError as e:  # the vocabulary comes from the training text
        raise DataError(f"{e} (or point rnnbench {command} at the data with --data-root)") from None
    model = build_model(cfg.model, cfg.cell, task.spec)
    if cfg.get("regularizer"):
        from .regularizers import apply_regularizers
        apply_regularizers(model, cfg.regularizer)
    model.load_state_dict(load_checkpoint(path)["model"])
    return cfg, task, model.eval()


# ----------------------------------------------------------------------------- sample
def encode_prompt(task: Any, prompt: str, ptb: bool) -> list[int]:
    """Prompt text -> symbol ids; a character outside the vocabulary is a one-line error."""
    index = {s: i for i, s in enumerate(task.vocab)}
    to_symbol = {v: k for k, v in PTB_TEXT.items()} if ptb else {}
    ids = []
    for ch in prompt:
        sym = to_symbol.get(ch, ch)
        if sym not in index:
            shown = "".join(sorted(c for c in (PTB_TEXT.get(s, s) if ptb else s for s in task.vocab)
                                   if c not in " \n"))
            raise RnnbenchError(f"--prompt: character {ch!r} is not in the {task.name} vocabulary "
                                f"(space, newline and {shown})")
        ids.append(index[sym])
    return ids


@torch.no_grad()
def sample(model: Any, prompt_ids: list[int], length: int, temperature: float, seed: int) -> list[int]:
    """``length`` symbols drawn one at a time from softmax(logits / temperature) (argmax at 0),
    the recurrent state carried; the draws come from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    logits, state = model(torch.tensor([prompt_ids]), None)  # the whole prompt in one call
    out: list[int] = []
    for _ in range(length):
        last = logits[0, -1].double()
        if temperature == 0:
            nxt = int(last.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)
    return out


def sample_main(argv: Optional[list[str]] = None) -> int:
    ap = _Parser(prog="rnnbench sample", description="Text drawn from a character language model run "
                                                     "(dataset ptb_char or shakespeare_char).")
    ap.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ap.add_argument("--prompt", default="\n", help="text the model reads first (default: a newline)")
    ap.add_argument("--length", type=int, default=500, help="characters to draw (default 500)")
    ap.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = always the most "
                                                                   "likely character (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ap.add_argument("--data-root", default=None, help="override the run's data.root (the vocabulary comes "
                                                      "from the training text)")
    args = ap.parse_args(argv)
    if args.length < 1 or not args.temperature >= 0:
        raise RnnbenchError("rnnbench sample: --length must be >= 1 and --temperature >= 0")
    if not args.prompt:
        raise RnnbenchError("rnnbench sample: --prompt must not be empty")
    cfg, task, model = load_model(args.run_dir, LM_DATASETS, "sample", args.data_root)
    ptb = str(cfg.dataset.get("corpus", "ptb")) == "ptb"
    ids = sample(model, encode_prompt(task, args.prompt, ptb), args.length, args.temperature, args.seed)
    text = "".join(PTB_TEXT.get(task.vocab[i], task.vocab[i]) if ptb else task.vocab[i] for i in ids)
    print(args.prompt + text)
    return 0


# ----------------------------------------------------------------------------- predict
def parse_question(task: Any, q: str) -> tuple[int, int]:
    """``"24+654"`` -> (24, 654); anything else is a one-line error saying what is allowed."""
    from .tasks.addition import SYMBOLS

    bad = sorted({c for c in q if c not in SYMBOLS})
    if bad:
        raise RnnbenchError(f"question {q!r}: character {bad[0]!r} is not in the addition vocabulary "
                            f"(digits, '+' and space)")
    a, plus, b = q.replace(" ", "").partition("+")
    top = 10 ** ((task.in_len - 1) // 2) - 1
    if not plus or not a.isdigit() or not b.isdigit() or int(a) > top or int(b) > top:
        raise RnnbenchError(f"question {q!r}: write it as A+B with A and B in 0..{top}, e.g. 24+654")
    return int(a), int(b)


@torch.no_grad()
def predict(task: Any, model: Any, pairs: list[tuple[int, int]]) -> list[str]:
    """The model's greedy answers (stripped) for operand pairs, one batch."""
    from .tasks.addition import decode

    x, _ = task._encode(pairs)
    logits = model(task.one_hot(x))
    return [decode(row).strip() for row in logits.argmax(-1)]


def predict_main(argv: Optional[list[str]] = None) -> int:
    ap = _Parser(prog="rnnbench predict", description="An addition run's answers to questions like 24+654.")
    ap.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ap.add_argument("questions", nargs="+", metavar="QUESTION", help='e.g. "24+654"')
    args = ap.parse_args(argv)
    cfg, task, model = load_model(args.run_dir, ("addition",), "predict")
    pairs = [parse_question(task, q) for q in args.questions]
    answers = predict(task, model, pairs)
    right = 0
    for (a, b), got in zip(pairs, answers):
        ok = got == str(a + b)
        right += ok
        print(f"{a}+{b} = {got or '(empty)'}  " + ("right" if ok else f"wrong (it is {a + b})"))
    print(f"{right}/{len(pairs)} right")
    return 0
