"""The addition generator: every sample decodes to a correct sum; splits are disjoint."""
from __future__ import annotations

import torch

from rnnbench.tasks.addition import SYMBOLS, AdditionTask, decode


def _parse(question: str) -> tuple[int, int]:
    a, b = question.strip().split("+")
    return int(a), int(b)


def test_every_sample_is_a_correct_sum():
    task = AdditionTask(seed=3, n_train=2000, n_valid=300, n_test=300)
    for split in ("train", "valid", "test"):
        x, y = task.data[split]
        assert x.shape[1:] == (7,) and y.shape[1:] == (4,)
        for q_ids, a_ids in zip(x, y):
            a, b = _parse(decode(q_ids))
            assert 0 <= a <= 999 and 0 <= b <= 999
            assert decode(a_ids) == str(a + b).ljust(4)


def test_splits_are_disjoint_and_sized():
    task = AdditionTask(seed=0, n_train=5000, n_valid=500, n_test=500)
    sets = {k: {tuple(p) for p in v.tolist()} for k, v in task.pairs.items()}
    assert [len(sets[k]) for k in ("train", "valid", "test")] == [5000, 500, 500]
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"] and not sets["valid"] & sets["test"]


def test_default_sizes_50k_5k_5k():
    task = AdditionTask(seed=0)
    assert [len(task.data[k][0]) for k in ("train", "valid", "test")] == [50000, 5000, 5000]


def test_generated_from_seed():
    a, b, c = AdditionTask(seed=1, n_train=100), AdditionTask(seed=1, n_train=100), AdditionTask(seed=2, n_train=100)
    assert torch.equal(a.data["train"][0], b.data["train"][0])
    assert not torch.equal(a.data["train"][0], c.data["train"][0])


def test_reversed_input():
    fwd = AdditionTask(seed=0, n_train=50, n_valid=5, n_test=5)
    rev = AdditionTask(seed=0, n_train=50, n_valid=5, n_test=5, reverse=True)
    for q1, q2 in zip(fwd.data["train"][0], rev.data["train"][0]):
        assert decode(q1)[::-1] == decode(q2)
        assert rev.question(q2) == decode(q1)


def test_one_hot_batches_and_limit():
    task = AdditionTask(seed=0, n_train=1000, limit=100)
    batches = list(task.train_batches(32, epoch=0, seed=0))
    assert sum(b[0].shape[0] for b in batches) == 100
    x, y = batches[0]
    assert x.shape == (32, 7, len(SYMBOLS)) and torch.all(x.sum(-1) == 1)
    # the order is a function of (seed, epoch)
    again = next(iter(task.train_batches(32, epoch=0, seed=0)))
    other = next(iter(task.train_batches(32, epoch=1, seed=0)))
    assert torch.equal(again[1], y) and not torch.equal(other[1], y)
