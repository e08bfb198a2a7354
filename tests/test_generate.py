"""``rnnbench sample`` on a PTB model trained a few steps and ``rnnbench predict`` on an addition
model: text from the PTB alphabet, reproducible for a seed; answers that agree with the task's own
greedy decoding; one-line errors for the wrong kind of run, a character outside the vocabulary
and a missing checkpoint."""
from __future__ import annotations

import shutil

import pytest
import torch

from rnnbench.cli import main
from testutil import TINY_ADD, run_in_process

PTB_SMOKE = ["dataset=ptb_char", "train.max_steps=3", "train.max_eval_batches=1", "dataset.limit=4000",
             "model.hidden_size=16", "model.embedding_size=8", "train.batch_size=8", "train.epochs=1",
             "train.progress=false"]


@pytest.fixture(scope="module")
def ptb_run(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("ptb") / "run"
    run_in_process(PTB_SMOKE, run, data_dir)
    return run


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("add") / "run"
    run_in_process(TINY_ADD + ["train.max_steps=5", "train.epochs=1"], run)
    return run


def _cli(capsys, *args) -> tuple[int, str, str]:
    try:
        rc = main(list(args))
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_sample_draws_ptb_text_reproducibly(ptb_run, capsys):
    from rnnbench.generate import PTB_TEXT, encode_prompt, load_model, sample

    cfg, task, model = load_model(ptb_run, ("ptb_char",), "sample")
    alphabet = {PTB_TEXT.get(s, s) for s in task.vocab}
    prompt = encode_prompt(task, "the market\n", ptb=True)
    assert [task.vocab[i] for i in prompt[-2:]] == ["t", "<eol>"]
    drawn = sample(model, prompt, 200, 1.0, seed=3)
    assert len(drawn) == 200 and sample(model, prompt, 200, 1.0, seed=3) == drawn  # the seed fixes the draws
    assert sample(model, prompt, 200, 1.0, seed=4) != drawn
    assert sample(model, prompt, 20, 0.0, seed=3) == sample(model, prompt, 20, 0.0, seed=5)  # greedy
    rc, out, err = _cli(capsys, "sample", str(ptb_run), "--length", "300", "--seed", "3", "--prompt", "the market ")
    assert rc == 0, err
    assert out.startswith("the market ") and out.endswith("\n")
    text = out[len("the market "):-1]
    assert len(text) == 300 and set(text) <= alphabet and len(set(text)) > 5


def test_predict_answers_as_the_task_decodes(addition_run, capsys):
    from rnnbench.generate import load_model, predict
    from rnnbench.tasks.base import EvalSums

    cfg, task, model = load_model(addition_run, ("addition",), "predict")
    pairs = [tuple(int(v) for v in p) for p in task.pairs["valid"][:40]]
    answers = predict(task, model, pairs)
    sums = EvalSums()
    with torch.no_grad():
        task.evaluate_batch(model, next(iter(task.eval_batches("valid", 40))), sums)
    assert sum(a == str(x + y) for (x, y), a in zip(pairs, answers)) == sums.seq_correct

    rc, out, err = _cli(capsys, "predict", str(addition_run), "24+654", "1+1", "999+999")
    assert rc == 0, err
    lines = out.splitlines()
    assert [ln.split(" = ")[0] for ln in lines[:3]] == ["24+654", "1+1", "999+999"]
    assert all(ln.endswith("right") or "wrong (it is" in ln for ln in lines[:3])
    assert lines[3].endswith("/3 right")


def _one_error(rc, err) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_one_line_errors(ptb_run, addition_run, tmp_path, capsys):
    assert "needs a run of ptb_char or shakespeare_char" in _one_error(*_cli(capsys, "sample", str(addition_run))[::2])
    assert "needs a run of addition" in _one_error(*_cli(capsys, "predict", str(ptb_run), "1+1")[::2])
    msg = _one_error(*_cli(capsys, "sample", str(ptb_run), "--prompt", "Hello")[::2])
    assert "character 'H' is not in the ptb_char vocabulary" in msg
    assert "'-' is not in the addition vocabulary" in _one_error(*_cli(capsys, "predict", str(addition_run), "2-1")[::2])
    assert "A+B with A and B in 0..999" in _one_error(*_cli(capsys, "predict", str(addition_run), "1000+1")[::2])
    bare = tmp_path / "bare"
    shutil.copytree(addition_run / ".hydra", bare / ".hydra")
    assert "no checkpoint" in _one_error(*_cli(capsys, "predict", str(bare), "1+1")[::2])
    assert "not a run directory" in _one_error(*_cli(capsys, "sample", str(tmp_path / "nothing"))[::2])
