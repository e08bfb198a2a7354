"""MNIST / Fashion-MNIST as sequences (articles 000 and 001): ``row`` (28 steps × 28 pixels),
``pixel`` (784 × 1) and ``pmnist`` (pixel order permuted by one fixed, saved permutation).

Images come through ``torchvision.datasets.MNIST/FashionMNIST(root=data.root)``; pixels in [0, 1].
The last ``n_valid`` of the 60k training images are the validation split; test is the official 10k.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .base import EvalSums, TaskSpec, TensorTask, check_file, resolve_limit

# SHA-256 of the uncompressed IDX files (the original bytes; see shared/data/PROVENANCE.md)
RAW_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
FOLDER = {"mnist": "MNIST", "fashion": "FashionMNIST"}


def load_images(root: str, source: str, download: bool) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"train": (uint8 [60000, 28, 28], labels), "test": ...}`` via torchvision."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion": torchvision.datasets.FashionMNIST}[source]
    raw = Path(root) / FOLDER[source] / "raw"
    fix = (f"put the uncompressed IDX files in {raw} or run with data.download=true "
           f"(data.root={root})")
    if download:
        try:
            cls(root=root, train=True, download=True)
            cls(root=root, train=False, download=True)
        except Exception as e:  # network errors etc.
            raise DataError(f"could not download {source} into {raw}: {e}") from e
    for fname, digest in RAW_SHA256[source].items():
        check_file(raw / fname, digest, fix)
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=root, train=train, download=False)
        out[split] = (ds.data, ds.targets)
    return out


class ImageSequenceTask(TensorTask):
    metric = "acc"

    def __init__(self, root: str = "data", download: bool = False, source: str = "mnist", layout: str = "row",
                 permute: bool = False, permutation_seed: int = 92916, n_valid: int = 5000,
                 limit: Optional[int] = None, name: str = "mnist_row", **_: Any) -> None:
        if layout not in ("row", "pixel"):
            raise DataError(f"dataset.layout must be row or pixel, got {layout!r}")
        self.name = name
        data = load_images(root, source, download)
        x, y = data["train"]
        n_train = len(x) - n_valid
        self.layout = layout
        self.permutation = (torch.randperm(784, generator=torch.Generator().manual_seed(permutation_seed))
                            if permute else None)
        lim = resolve_limit(n_train, limit)
        self.data = {"train": (x[:lim], y[:lim]), "valid": (x[n_train:], y[n_train:]), "test": data["test"]}
        steps, feats = (28, 28) if layout == "row" else (784, 1)
        self.spec = TaskSpec("classification", feats, 10, steps)

    def encode_inputs(self, images: Tensor) -> Tensor:
        x = images.float().div_(255.0)
        if self.layout == "row":
            return x  # [B, 28, 28]: row t is step t
        x = x.reshape(x.shape[0], 784)
        if self.permutation is not None:
            x = x[:, self.permutation]
        return x.unsqueeze(-1)

    def loss(self, model, batch, state=None):
        x, y = batch
        return F.cross_entropy(model(x), y), None

    def evaluate_batch(self, model, batch, sums: EvalSums, state=None):
        x, y = batch
        logits = model(x)
        sums.add(F.cross_entropy(logits, y, reduction="sum").item(), (logits.argmax(-1) == y).sum().item(),
                 y.numel())
        return None

    def state_dict(self) -> dict:
        return {"permutation": self.permutation.tolist()} if self.permutation is not None else {}
