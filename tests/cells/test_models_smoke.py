"""Every cell trains in every model: a few Adam steps on a fixed random batch lower the loss,
gradients are finite, and the VC statistics / penalty flow through the model (as the trainer uses them)."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from rnnbench.tasks.base import TaskSpec
from cellutil import CELLS, cell_cfg

HAS_ATTENTION = importlib.util.find_spec("rnnbench.models.attention") is not None
MODELS = ["classifier", "bidir_classifier", "seq2seq", "lm", "attention_window", "attention_additive"]


def _build(model: str, cfg):
    H = 8
    if model in ("classifier", "bidir_classifier"):
        from rnnbench.models.classifier import Classifier

        spec = TaskSpec("classification", 5, 3, 6)
        net = Classifier(spec, cfg, hidden_size=H, num_layers=2 if model == "classifier" else 1,
                         bidirectional=model == "bidir_classifier")
        x = torch.randn(4, 6, 5)
        y = torch.randint(0, 3, (4,))
        return net, lambda: F.cross_entropy(net(x), y)
    if model == "lm":
        from rnnbench.models.lm import LanguageModel

        spec = TaskSpec("lm", 10, 10)
        net = LanguageModel(spec, cfg, hidden_size=H, num_layers=2, embedding_size=6)
        x = torch.randint(0, 10, (3, 7))
        y = torch.randint(0, 10, (3, 7))

        def loss():
            logits, _ = net(x)
            return F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
        return net, loss
    spec = TaskSpec("seq2seq", 12, 12, 7, 4)
    if model == "seq2seq":
        from rnnbench.models.seq2seq import Seq2Seq

        net = Seq2Seq(spec, cfg, hidden_size=H)
    else:
        if not HAS_ATTENTION:
            pytest.skip("rnnbench/models/attention.py not present")
        from rnnbench.models.attention import AttentionSeq2Seq

        net = AttentionSeq2Seq(spec, cfg, hidden_size=H, attention=model.split("_")[1], attn_length=3)
    x = F.one_hot(torch.randint(0, 12, (4, 7)), 12).float()
    yi = torch.randint(0, 12, (4, 4))
    y1 = F.one_hot(yi, 12).float()

    def loss():
        logits = net(x, y1)
        return F.cross_entropy(logits.reshape(-1, 12), yi.reshape(-1))
    return net, loss


def _extra(net):
    terms = [t for m in net.modules() if hasattr(m, "extra_loss") and not hasattr(m, "cells")
             for t in [m.extra_loss()] if t is not None]
    return sum(terms) if terms else None


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("cell", CELLS)
def test_cell_trains_in_model(cell, model):
    torch.manual_seed(0)
    overrides = ("penalty=0.01",) if cell.startswith("vc") else ()
    net, loss_fn = _build(model, cell_cfg(cell, overrides))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    losses = []
    for step in range(8):
        for m in net.modules():
            if hasattr(m, "set_training_progress"):
                m.set_training_progress(step, 8)
        loss = loss_fn()
        losses.append(loss.item())
        extra = _extra(net)
        if cell.startswith("vc"):
            assert extra is not None and torch.isfinite(extra)
            loss = loss + extra
        else:
            assert extra is None
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    if cell.startswith("vc"):
        stats = [c.stats() for c in net.modules() if hasattr(c, "w_mh")]
        assert stats and all(0 < s["compute_fraction"] <= 1 and 0 < s["mean_m"] < 1 for s in stats)
    with torch.no_grad():  # evaluation mode (greedy decoding for seq2seq) runs too
        net.eval()
        if model.startswith("attention") or model == "seq2seq":
            out = net(torch.zeros(2, 7, 12))
            assert out.shape == (2, 4, 12) and torch.isfinite(out).all()
