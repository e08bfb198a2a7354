"""Character-level language modelling: Penn Treebank characters (Mikolov's ``ptb.char.*.txt``)
and Tiny Shakespeare (90/5/5 % split by position).

The corpus is one long stream of symbol ids, cut into ``batch_size`` parallel columns; training
walks it in windows of ``bptt`` steps with the hidden state carried (and detached) across
windows — truncated BPTT. Metric: bits per character ``bpc = loss / ln 2``.

PTB char files: characters separated by spaces, ``_`` between words; every line ends with an
end-of-line symbol (49 symbols + eol = 50). Files are checked against known SHA-256 hashes.
"""
from __future__ import annotations

import math
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .base import EvalSums, Task, TaskSpec, check_file

EOL = "<eol>"
PTB_SHA256 = {
    "ptb.char.train.txt": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "ptb.char.valid.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb.char.test.txt": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}
#: Mikolov's archive, the canonical source of the preprocessed PTB files
PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        urllib.request.urlretrieve(url, tmp)
    except Exception as e:
        raise DataError(f"could not download {url} to {dest}: {e}; copy the file there by hand") from e
    tmp.replace(dest)


def _download_ptb(folder: Path) -> None:
    """Fetch Mikolov's simple-examples.tgz and extract the three ptb.char files into ``folder``."""
    import tarfile

    archive = folder / "simple-examples.tgz"
    if not archive.exists():
        _download(PTB_URL, archive)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name in PTB_SHA256:
                src = tar.extractfile(member)
                if src is not None:
                    (folder / name).write_bytes(src.read())


def ptb_char_tokens(text: str) -> list[str]:
    """Mikolov's char format -> symbols, one ``<eol>`` per line."""
    out: list[str] = []
    parts = text.split("\n")
    for i, line in enumerate(parts):
        syms = line.split()
        if i == len(parts) - 1 and not syms:  # what follows the final newline is not a line
            break
        out.extend(syms)
        out.append(EOL)
    return out


def load_ptb_char(root: str, download: bool) -> dict[str, list[str]]:
    folder = Path(root) / "PTB"
    fix = f"put Mikolov's PTB files in {folder} or run with data.download=true (data.root={root})"
    if download and not all((folder / f).exists() for f in PTB_SHA256):
        _download_ptb(folder)
    out = {}
    for split in ("train", "valid", "test"):
        fname = f"ptb.char.{split}.txt"
        path = folder / fname
        check_file(path, PTB_SHA256[fname], fix)
        out[split] = ptb_char_tokens(path.read_text(encoding="utf-8"))
    return out


def load_shakespeare(root: str, download: bool) -> dict[str, list[str]]:
    path = Path(root) / "tinyshakespeare" / "input.txt"
    if download and not path.exists():
        _download(SHAKESPEARE_URL, path)
    check_file(path, SHAKESPEARE_SHA256,
               f"put Tiny Shakespeare's input.txt there or run with data.download=true (data.root={root})")
    text = list(path.read_text(encoding="utf-8"))
    n = len(text)
    a, b = int(n * 0.9), int(n * 0.95)
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D stream into ``[batch_size, n]`` contiguous columns (the tail is dropped)."""
    n = ids.numel() // batch_size
    return ids[: n * batch_size].view(batch_size, n)


class CharLMTask(Task):
    metric = "bpc"
    metric_mode = "min"

    def __init__(self, root: str = "data", download: bool = False, corpus: str = "ptb", bptt: int = 100,
                 eval_batch_size: int = 50, limit: Optional[int] = None, name: str = "ptb_char", **_: Any) -> None:
        self.name = name
        if corpus == "ptb":
            tokens = load_ptb_char(root, download)
        elif corpus == "shakespeare":
            tokens = load_shakespeare(root, download)
        else:
            raise DataError(f"unknown corpus {corpus!r}: use ptb or shakespeare")
        self.vocab = sorted(set(tokens["train"]))
        index = {s: i for i, s in enumerate(self.vocab)}
        unknown = {s for split in ("valid", "test") for s in tokens[split]} - set(index)
        if unknown:
            raise DataError(f"{corpus}: valid/test symbols missing from train: {sorted(unknown)[:5]}")
        self.ids = {k: torch.tensor([index[s] for s in v], dtype=torch.long) for k, v in tokens.items()}
        if limit is not None:
            self.ids["train"] = self.ids["train"][: max(int(limit), 2)]
        self.bptt = bptt
        self.eval_batch_size = eval_batch_size
        self.spec = TaskSpec("lm", len(self.vocab), len(self.vocab), bptt)

    def _windows(self, data: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        n = data.shape[1]
        for i in range(0, n - 1, self.bptt):
            L = min(self.bptt, n - 1 - i)
            yield data[:, i:i + L], data[:, i + 1:i + 1 + L]

    def num_train_batches(self, batch_size: int) -> int:
        n = self.ids["train"].numel() // batch_size
        return -(-(n - 1) // self.bptt)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._windows(batchify(self.ids["train"], batch_size))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._windows(batchify(self.ids[split], self.eval_batch_size))

    def num_examples(self, batch) -> int:
        return int(batch[0].numel())

    def loss(self, model, batch, state=None):
        x, y = batch
        logits, state = model(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), state

    def evaluate_batch(self, model, batch, sums: EvalSums, state=None):
        x, y = batch
        logits, state = model(x, state)
        flat = logits.reshape(-1, logits.shape[-1])
        sums.add(F.cross_entropy(flat, y.reshape(-1), reduction="sum").item(),
                 (flat.argmax(-1) == y.reshape(-1)).sum().item(), y.numel())
        return state

    def metrics(self, sums: EvalSums) -> dict[str, float]:
        m = super().metrics(sums)
        m["bpc"] = m["loss"] / math.log(2)
        return m
