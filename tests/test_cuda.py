"""The CUDA paths, on a machine with a GPU (skipped without one; CI has none).

Every cell and step path on the GPU equals the same module on the CPU in float64 (outputs, final
state, every gradient); training runs on ``device=cuda`` with each kind of cell and regularizer and
the CPU-side ``rnnbench verify`` agrees with the run's GPU-computed metrics; an interrupted
deterministic CUDA run resumes to the same bytes as an uninterrupted one; ``rnnbench bench
--device cuda`` measures.

``RNNBENCH_TEST_DEVICE=cpu`` runs the same tests on the CPU (to check the tests themselves where
there is no GPU)."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from cells.cellutil import CELLS, make_cell, run_layer
from testutil import SMOKE, TINY_ADD, kill_mid_run_and_resume, run_in_process

from rnnbench import bench
from rnnbench.train.checkpoint import load_checkpoint
from rnnbench.verify import verify_run

DEVICE = os.environ.get("RNNBENCH_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")

# every cell on its default path, and the custom per-step paths of the cells that have a native kernel
PATHS = [(c, ()) for c in CELLS] + [(c, ("fused=false",)) for c in ("lstm", "gru", "rnn")] + [
    ("vclstm", ("threshold=hard",)), ("mlstm", ("factor_bias=1.0",)), ("mrnn", ("factor_bias=1.0",))]


def _flat(state):
    return [s for s in (state if isinstance(state, (tuple, list)) else (state,)) if torch.is_tensor(s)]


@pytest.mark.parametrize("name,overrides", PATHS, ids=[f"{c}{'-' + '-'.join(o) if o else ''}" for c, o in PATHS])
def test_cell_on_device_equals_cpu_float64(name, overrides):
    T, B, I, H = 9, 4, 5, 7
    cpu = make_cell(name, I, H, overrides, dtype=torch.float64, seed=3)
    dev = copy.deepcopy(cpu).to(DEVICE)
    torch.manual_seed(4)
    x = torch.randn(T, B, I, dtype=torch.float64)
    w = torch.randn(T, B, H, dtype=torch.float64)
    outs = []
    for cell, d in ((cpu, "cpu"), (dev, DEVICE)):
        xi = x.to(d, copy=True).requires_grad_()  # a fresh leaf on each device
        y, state = run_layer(cell, xi)
        finals = _flat(state)
        loss = (y * w.to(d)).sum() + sum((s ** 2).sum() * 0.5 for s in finals)
        loss.backward()
        grads = {n: p.grad.detach().cpu() for n, p in cell.named_parameters() if p.grad is not None}
        outs.append((y.detach().cpu(), [s.detach().cpu() for s in finals], xi.grad.cpu(), grads))
    (y_c, s_c, gx_c, g_c), (y_d, s_d, gx_d, g_d) = outs
    assert y_d.device.type == "cpu" and next(dev.parameters()).device.type == torch.device(DEVICE).type
    torch.testing.assert_close(y_d, y_c, rtol=1e-10, atol=1e-10)
    assert len(s_d) == len(s_c) > 0
    for a, b in zip(s_c, s_d):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx_d, gx_c, rtol=1e-10, atol=1e-10)
    assert set(g_d) == set(g_c) and g_c, "every parameter gets a gradient on both devices"
    for n in g_c:
        torch.testing.assert_close(g_d[n], g_c[n], rtol=1e-10, atol=1e-10, msg=n)


RUNS = {
    "lstm_fused": ["cell=lstm"],
    "lstm_weight_drop_fused": ["cell=lstm", "regularizer=[weight_drop]"],
    "lstm_awd_zoneout_attention": ["cell=lstm", "model=attention_seq2seq", "model.attention=additive",
                                   "regularizer=[awd,zoneout]"],
    "gru_weight_norm": ["cell=gru", "regularizer=[weight_norm]"],
    "rnn_qat": ["cell=rnn", "regularizer=[qat]"],
    "vclstm_lam_schedule": ["cell=vclstm", "cell.lam_schedule=linear", "cell.lam_final=10"],
    "vcgru_window_attention": ["cell=vcgru", "model=attention_seq2seq", "model.attention=window"],
    "mlstm_sequence_fn": ["cell=mlstm", "cell.factor_bias=1.0"],
    "mrnn": ["cell=mrnn"],
    "delta_rnn_variational_dropout": ["cell=delta_rnn", "regularizer=[variational_dropout]",
                                      "regularizer.variational_dropout.output=0.2"],
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_training_on_device_verifies_on_cpu(tmp_path, name):
    res = run_in_process(SMOKE + ["train.max_steps=6", "train.eval_batch_size=100", "train.num_threads=1",
                                  f"device={DEVICE}"] + RUNS[name], tmp_path)
    assert res["status"] == "ok" and res["device"].startswith(DEVICE)
    assert res["test"]["loss"] == res["test"]["loss"]  # not NaN
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")  # saved on the GPU, read on the CPU
    assert all(t.device.type == "cpu" for t in best["model"].values())
    report = verify_run(tmp_path, echo=None)  # the CPU torch and NumPy sides vs the GPU-run metrics
    assert report.ok


def test_deterministic_run_resumes_exactly_after_sigkill(tmp_path):
    args = TINY_ADD + ["train.epochs=3", "train.checkpoint_every=7", f"device={DEVICE}", "train.deterministic=true",
                       "cell=lstm", "regularizer=[weight_drop]"]
    ref, run, state = kill_mid_run_and_resume(args, tmp_path, "sigkill@step=52")
    assert (state["epoch"], state["step"]) == (1, 49), state  # mid-epoch 2, last.pt from step 49
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    a = json.loads((run / "results.json").read_text())
    b = json.loads((ref / "results.json").read_text())
    assert a["test"] == b["test"] and a["steps"] == b["steps"] and a["device"].startswith(DEVICE)


def test_bench_measures_on_device(tmp_path):
    js = tmp_path / "b.json"
    assert bench.main(["--quick", "--device", DEVICE, "--shape", "6,4,3,8", "--cells",
                       "lstm,lstm_custom,vclstm,mlstm,mrnn,delta_rnn", "--regularizers", "none,weight_drop",
                       "--json", str(js)]) == 0
    rows = json.loads(js.read_text())
    assert {r["cell"] for r in rows} >= {"nn.LSTM", "lstm_custom", "vclstm", "mlstm", "mrnn", "delta_rnn"}
    assert all(r["ms"] > 0 for r in rows)
    if DEVICE == "cuda":
        assert all(r["peak_mem_mb"] is not None and r["peak_mem_mb"] > 0 for r in rows)
