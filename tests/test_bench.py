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
    assert next(r for r in rows if r["cell"] == "lstm_custom")["path"] == "sequence"
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
