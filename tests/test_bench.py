"""`rnnbench bench` runs and writes its documented JSON/CSV schema (a benchmark: no timing asserted)."""
from __future__ import annotations

import csv
import json

import pytest

from rnnbench import bench
from rnnbench.errors import RnnbenchError

KEYS = {"cell", "regularizer", "shape", "ms", "ratio_to_lstm", "gflops", "peak_mem_mb"}
TINY = "6,4,3,8"


def _run(tmp_path, *args):
    js, cs = tmp_path / "b.json", tmp_path / "b.csv"
    assert bench.main(["--quick", "--threads", "1", "--json", str(js), "--csv", str(cs), *args]) == 0
    return json.loads(js.read_text()), list(csv.DictReader(cs.open()))


def test_quick_json_schema(tmp_path):
    rows, crow = _run(tmp_path, "--shape", TINY, "--cells", "lstm,lstm_custom,gru_custom,delta_rnn",
                      "--regularizers", "none,weight_drop,zoneout")
    assert isinstance(rows, list) and rows
    for r in rows:
        assert KEYS <= set(r), r
        assert r["shape"] == TINY
        assert r["ms"] > 0 and r["gflops"] > 0 and r["ratio_to_lstm"] > 0
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0
    got = {(r["cell"], r["regularizer"]) for r in rows}
    assert ("nn.LSTM", "none") in got and ("lstm_custom", "none") in got and ("lstm", "zoneout") in got
    assert len(got) == 1 + 4 * 3
    assert next(r for r in rows if r["cell"] == "nn.LSTM")["ratio_to_lstm"] == 1.0
    from rnnbench.cells.kernels import native

    compiled = "sequence+c++" if native.available() else "sequence"  # the C++ loop where it builds
    assert next(r for r in rows if r["cell"] == "lstm_custom")["path"] == compiled
    assert next(r for r in rows if r["cell"] == "gru_custom")["path"] == compiled
    assert next(r for r in rows if r["cell"] == "delta_rnn")["path"] == compiled
    # the process's settings every row ran under: the kernels' GEMM engine and the allocator's
    assert {r["gemm"] for r in rows} == {native.gemm_engine()} and native.gemm_engine() in ("onednn", "blas", "none")
    assert {r["heap"] for r in rows} <= {"kept", "system"}
    assert len(crow) == len(rows) and KEYS <= set(crow[0])


def test_quick_default_is_short_and_covers_every_cell(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "measure", lambda cell, reg, shape, dims, plan, device, ref=None: (
        seen.append((cell, reg, shape, dims)) or ({"cell": cell, "regularizer": reg, "shape": shape, "ms": 1.0,
                                                    "ref_ms": 1.0, "ratio_to_lstm": 1.0, "gflops": 1.0, "path": "loop",
                                                    "peak_mem_mb": None}, lambda: None)))
    rows, _ = _run(tmp_path)
    assert {s for _, _, s, _ in seen} == {"short"} and seen[0][3] == (28, 64, 28, 128)
    cells = {c for c, r, _, _ in seen if r == "none"}
    assert set(bench.CELLS) | {"nn.LSTM"} == cells
    assert {r for c, r, _, _ in seen if c == "lstm"} == {"none", *bench.REGULARIZERS}


@pytest.mark.parametrize("args", [["--shape", "1,2,3"], ["--shape", "huge"], ["--cells", "nope"],
                                  ["--regularizers", "dropout"], ["--device", "tpu"]])
def test_bad_arguments_are_one_line_errors(args):
    with pytest.raises(RnnbenchError) as e:
        bench.main(["--quick", *args])
    assert "\n" not in str(e.value)


def test_shapes_and_flops():
    assert bench.parse_shape("long") == ("long", (784, 64, 1, 128))
    assert bench.parse_shape(" 10,2,3,4") == ("10,2,3,4", (10, 2, 3, 4))
    T, B, I, H = 28, 64, 28, 128
    assert bench.flops("lstm", T, B, I, H) == 3 * (2 * T * B * 4 * H * (I + H) + 10 * T * B * H)
    assert bench.flops("lstm_custom", T, B, I, H) == bench.flops("lstm", T, B, I, H)


def test_cell_options_in_a_row_name(tmp_path):
    assert bench.split_options("vclstm[threshold=hard, lam=2]") == ("vclstm", {"threshold": "hard", "lam": 2})
    assert bench.split_options("lstm_custom") == ("lstm_custom", {})
    assert bench.base_cell("vclstm_custom[eps=0.2]") == "vclstm"
    rows, _ = _run(tmp_path, "--shape", TINY, "--no-memory", "--cells", "vclstm[threshold=hard,lam=2],lstm")
    assert [r["cell"] for r in rows] == ["nn.LSTM", "vclstm[threshold=hard,lam=2]", "lstm"]
    cell = bench.build_model("vclstm[threshold=hard,lam=2]", "none", 3, 8, __import__("torch").device("cpu")) \
        .recurrent_layers()[0].cell
    assert cell.threshold == "hard" and float(cell.lam_now) == 2.0
    with pytest.raises(RnnbenchError, match="name\\[key=value"):
        bench.main(["--quick", "--cells", "vclstm[threshold]"])


@pytest.mark.parametrize("cell", ["vclstm", "vclstm[threshold=hard]", "vcgru", "vcrnn", "vcrnn[threshold=hard]"])
def test_vc_cells_with_zoneout_report_their_kernel_path(cell):
    """Zoneout runs inside the VC-LSTM / VC-GRU / VC-RNN kernels: the path column is the kernel's, not the step loop."""
    from rnnbench.cells.kernels import native

    compiled = "sequence+c++" if native.available() else "sequence"
    for reg in ("none", "zoneout"):
        assert bench.path_of(bench.build_model(cell, reg, 3, 8, __import__("torch").device("cpu"))) == compiled


def test_compile_rows_are_the_cells_that_run_their_own_step():
    """``--compile`` adds a ``_compiled`` row for each row that runs a cell's own step code: the
    ``_custom`` rows and the cells without a fused native kernel; never a fused row's sibling."""
    a = bench.build_parser().parse_args(["--compile", "--shape", TINY])
    compiled = {c for c, r in bench.make_plan(a).jobs if c.endswith("_compiled")}
    assert compiled == {"lstm_compiled", "gru_compiled", "rnn_compiled", "vclstm_compiled", "vcrnn_compiled",
                        "vcgru_compiled", "mlstm_compiled", "mrnn_compiled", "delta_rnn_compiled"}


def test_qat_row_reports_the_fake_quant_loop_and_the_float_path_before_its_delay():
    import torch

    from rnnbench.regularizers.qat import QATCell

    model = bench.build_model("lstm", "qat", 3, 8, torch.device("cpu"))
    cell = model.recurrent_layers()[0].cell
    assert isinstance(cell, QATCell) and bench.path_of(model) == "qat"
    cell.quant_delay = 5
    cell.set_training_progress(0, 10)  # before the delay: the float LSTM's fused kernel
    assert bench.path_of(model) == "native"


def test_peer_tf_without_tensorflow_is_one_skipped_line(tmp_path, monkeypatch, capsys):
    from rnnbench.peers import tf as peer_tf

    monkeypatch.setattr(peer_tf, "unavailable", lambda: "tensorflow is not importable (ImportError: x)")
    rows, _ = _run(tmp_path, "--shape", TINY, "--no-memory", "--cells", "lstm", "--peer", "tf")
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "--peer tf" in ln] == [
        "rnnbench bench: --peer tf skipped: tensorflow is not importable (ImportError: x)"]
    assert {r["cell"] for r in rows} == {"nn.LSTM", "lstm"}


def test_peer_row_is_timed_against_ours_batches_alternated(monkeypatch):
    """A peer row's ratio_to_ours: its batches alternated with those of the row of ours that
    computes the same function (not two rows' ms from different stretches of time)."""
    from types import SimpleNamespace

    fns = {"nn.LSTM": lambda: None, "ours": lambda: None, "tf_x": lambda: None}
    monkeypatch.setattr(bench, "measure", lambda cell, reg, shape, dims, plan, device, ref=None: (
        {"cell": cell, "regularizer": reg, "shape": shape, "ms": 1.0, "ref_ms": 1.0, "ratio_to_lstm": 1.0,
         "gflops": 1.0, "path": "p", "peak_mem_mb": None}, fns[cell]))
    monkeypatch.setattr(bench, "_peer", lambda cell: SimpleNamespace(ours=("ours", "none")) if cell == "tf_x" else None)
    calls = []

    def fake_time_fn(fn, device, repeats, warmup, max_seconds, ref=None):
        calls.append((fn, ref))
        return [3.0, 5.0, 4.0], [2.0, 2.5, 1.0], 0.0

    monkeypatch.setattr(bench, "time_fn", fake_time_fn)
    plan = bench.Plan(shapes=[("tiny", (6, 4, 3, 8))], jobs=[("ours", "none"), ("tf_x", "none")], repeats=3,
                      warmup=0, max_seconds=1.0, memory=False, peak=False)
    rows = {r["cell"]: r for r in bench.run(plan, __import__("torch").device("cpu"), lambda m: None)}
    assert calls == [(fns["tf_x"], fns["ours"])]  # the peer timed, ours as the interleaved reference
    assert rows["tf_x"]["ratio_to_ours"] == pytest.approx(4.0 / 2.0)
    assert rows["tf_x"]["ours_ms"] == 2.0 and rows["tf_x"]["peer_ms_h2h"] == 4.0
    assert "ratio_to_ours" not in rows["ours"]


def test_peer_tf_rows_beside_ours(tmp_path, monkeypatch):
    """With TensorFlow: each peer row and the row of ours that computes the same function."""
    from rnnbench.peers import tf as peer_tf

    if peer_tf.unavailable() is not None:
        pytest.skip("tensorflow is not importable")
    rows, _ = _run(tmp_path, "--shape", TINY, "--no-memory", "--cells", "lstm", "--peer", "tf")
    got = {(r["cell"], r["regularizer"]): r for r in rows}
    assert {("tf_vclstm", "none"), ("vclstm[threshold=hard]", "none"), ("tf_wn_lstm", "weight_norm"),
            ("lstm", "weight_norm")} <= set(got)
    assert got[("tf_vclstm", "none")]["path"] == "tf.function" and got[("tf_vclstm", "none")]["article"] == "000"
    assert got[("tf_vclstm", "none")]["ratio_to_ours"] > 0 and got[("tf_wn_lstm", "weight_norm")]["ours_ms"] > 0
