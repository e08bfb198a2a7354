"""``rnnbench verify`` (article 003): every model × every cell trains a few steps and the
independent NumPy recomputation agrees; the check fails on a changed weight, a changed
attention window, a NumPy-side error, and for anything it has no NumPy implementation of."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from testutil import CONF, REPO, SMOKE, data_root, run_in_process, tuned_pairs

from rnnbench.verify import VerifyError, numpy_ref, verify_run

FAST = SMOKE + ["train.num_threads=1", "train.eval_batch_size=100", "device=cpu"]
CELLS = sorted(p.stem for p in (CONF / "cell").glob("*.yaml"))  # every cell the config offers
ADDITION_MODELS = {
    "seq2seq": ["model=seq2seq"],
    "attention_window": ["model=attention_seq2seq", "model.attention=window"],
    "attention_additive": ["model=attention_seq2seq", "model.attention=additive"],
}


def _train(tmp_path: Path, overrides: list[str], data=None) -> Path:
    run_in_process(FAST + overrides, tmp_path, data)
    return tmp_path


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("model", sorted(ADDITION_MODELS))
def test_addition_models_verify(tmp_path, model, cell):
    run = _train(tmp_path, [f"cell={cell}"] + ADDITION_MODELS[model])
    report = verify_run(run, echo=None)
    assert report.ok
    for s in report.splits:  # both sides really computed and compared, on the same predictions
        assert s.sums.count == 100 * 4
        assert set(s.numpy) - {"loss_notie"} == {"loss", "loss_clip", "acc", "seq_acc"}
        assert abs(s.numpy["loss"] - s.framework["loss"]) <= 1e-4 * s.framework["loss"]


@pytest.mark.parametrize("cell", CELLS)
def test_bidir_mnist_verifies(tmp_path, data_dir, cell):
    run = _train(tmp_path, ["dataset=mnist_row", "model=bidir_classifier", f"cell={cell}"], data_dir)
    report = verify_run(run, echo=None)
    assert report.ok and report.splits[0].sums.count == 100


@pytest.mark.parametrize("overrides", [
    ["dataset=ptb_char", "cell=lstm", "dataset.bptt=20", "train.max_eval_batches=3", "model.num_layers=2"],
    ["dataset=pmnist", "cell=gru", "train.eval_batch_size=10"],
    ["dataset=mnist_row", "model=classifier", "cell=vclstm", "model.num_layers=2"],
    ["model=seq2seq", "cell=vcgru", "model.num_layers=2"],  # mask_input auto: layer 0 unmasked, layer 1 masked
], ids=["lm_state_carried", "pmnist", "classifier_2layers", "seq2seq_vc_2layers"])
def test_other_models_verify(tmp_path, data_dir, overrides):
    if "dataset=ptb_char" in overrides and not (data_dir / "PTB").is_dir():
        pytest.skip("PTB not in the data folder")
    run = _train(tmp_path, overrides, data_dir)
    assert verify_run(run, echo=None).ok


def test_every_regularizer_option_has_a_numpy_meaning():
    # a conf/regularizer option verify does not know would fail only when a run of it is verified
    assert {p.stem for p in (CONF / "regularizer").glob("*.yaml")} <= set(numpy_ref.REGULARIZERS)


@pytest.mark.parametrize("regs", ["[weight_norm]", "[weight_drop]", "[zoneout]", "[awd]", "[awd_char]", "[qat]",
                                  "[weight_norm,zoneout]", "[variational_dropout]"])
def test_regularizers_at_eval_verify(tmp_path, regs):
    cell = "rnn" if "qat" in regs else "lstm"
    run = _train(tmp_path, [f"cell={cell}", f"regularizer={regs}", "train.max_steps=5"])
    assert verify_run(run, echo=None).ok


def test_attention_with_regularizers_verifies(tmp_path):
    run = _train(tmp_path, ["cell=lstm", "model=attention_seq2seq", "model.attention=additive",
                            "regularizer=[awd,zoneout]", "train.max_steps=5"])
    assert verify_run(run, echo=None).ok


def test_window_attention_refuses_locked_dropout(tmp_path):
    from rnnbench.errors import ConfigError

    with pytest.raises(ConfigError, match="RNNStack"):
        _train(tmp_path, ["cell=rnn", "model=attention_seq2seq", "regularizer=[variational_dropout]"])


@pytest.mark.parametrize("fb", ["1.0", "null"])
@pytest.mark.parametrize("cell", ["mrnn", "mlstm"])
def test_factor_bias_run_verifies(tmp_path, cell, fb):
    """``cell.factor_bias`` adds ``bias_m``: the NumPy forward must read it (an unread saved
    parameter would be refused, a wrong use would disagree); null is the papers' form."""
    run = _train(tmp_path, [f"cell={cell}", f"cell.factor_bias={fb}", "model=seq2seq"])
    assert verify_run(run, echo=None).ok


def test_vc_lambda_schedule_run_verifies(tmp_path):
    """λ moves during training (linear 1 -> 6, hard threshold): verify must use λ at the right step."""
    run = _train(tmp_path, ["cell=vcrnn", "cell.lam_schedule=linear", "cell.lam_final=6", "cell.threshold=hard",
                            "train.epochs=3", "train.max_steps=6", "train.batch_size=128", "optimizer.lr=0.05"])
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["split"] == "valid"] == [1, 2, 3]
    assert verify_run(run, echo=None).ok


def test_vc_lambda_schedule_test_metric_is_the_checkpoints(tmp_path):
    """results.json's test numbers are those of best.pt as saved: a fresh model loading it (λ
    included, no training progress given) reproduces them exactly."""
    from rnnbench.tasks import build_task
    from rnnbench.train.checkpoint import load_checkpoint
    from rnnbench.verify import framework_metrics

    run = _train(tmp_path, ["cell=vclstm", "cell.lam_schedule=linear", "cell.lam_final=8",
                            "train.epochs=3", "train.max_steps=6", "train.batch_size=128", "optimizer.lr=0.05"])
    results = json.loads((run / "results.json").read_text())
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    lams = [float(v) for k, v in best["model"].items() if k.endswith("lam_now")]
    assert lams and all(1.0 < lam <= 8.0 for lam in lams)
    got = framework_metrics(cfg, build_task(cfg), best["model"], ["test"], False)["test"]
    assert got["acc"] == results["test"]["acc"] and got["loss"] == pytest.approx(results["test"]["loss"], rel=1e-12)
    assert verify_run(run, echo=None).ok


def test_progress_valid_at_best_epoch_test_at_end(tmp_path):
    """The trainer last called set_training_progress(step − 1, total) before each evaluation: valid
    metrics come from the best epoch (metrics.jsonl), test from the end of training."""
    from rnnbench.verify.check import _progress

    cfg = OmegaConf.create({"train": {"batch_size": 10, "epochs": 4, "max_steps": 7}})

    class FakeTask:
        def num_train_batches(self, batch_size):
            return 3  # 12 steps in 4 epochs, capped at 7

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 1, "step": 3, "split": "train"}, {"epoch": 1, "step": 3, "split": "valid"},
        {"epoch": 2, "step": 6, "split": "valid"}, {"epoch": 3, "step": 7, "split": "valid"}]))
    got = _progress(cfg, FakeTask(), tmp_path, {"steps": 7}, best_epoch=2)
    assert got == {"valid": (5, 7), "test": (6, 7)}


def test_train_verify_true_runs_verify(tmp_path, capsys):
    _train(tmp_path, ["cell=rnn", "model=attention_seq2seq", "train.verify=true"])
    assert "OK: NumPy recomputation agrees" in capsys.readouterr().out


# ----------------------------------------------------------------------------- it can fail
@pytest.fixture(scope="module")
def window_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("win"), ["cell=rnn", "model=attention_seq2seq",
                                                    "model.attention=window", "train.max_steps=60",
                                                    "dataset.limit=2000", "train.batch_size=32"])


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_flipped_window_length_fails_from_cli(window_run, tmp_path):
    run = _copy(window_run, tmp_path / "run")
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert cfg.model.attn_length == 7
    cfg.model.attn_length = 1  # parameters fit any window length: only the numbers can tell
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    p = subprocess.run([sys.executable, "-m", "rnnbench", "verify", str(run)], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "loss stored" in err[0], p.stderr
    assert "MISMATCH" in p.stdout


def test_unchanged_run_passes_from_cli(window_run):
    p = subprocess.run([sys.executable, "-m", "rnnbench", "verify", str(window_run)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "OK: NumPy recomputation agrees" in p.stdout and "framework" in p.stdout


def _perturb(run: Path, key: str, delta: float) -> None:
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    ck["model"][key].view(-1)[0] += delta
    torch.save(ck, run / "checkpoints" / "best.pt")


def _most_sensitive_weight(run: Path) -> tuple[str, int, float, float]:
    """(name, flat index, dloss/dw, loss) of the saved weight the valid loss is most sensitive to,
    by autograd through the framework model on the batches verify uses."""
    from rnnbench.models import build_model
    from rnnbench.tasks import build_task
    from rnnbench.verify.check import _batches

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    task = build_task(cfg)
    model = build_model(cfg.model, cfg.cell, task.spec).double().eval()
    model.load_state_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"])
    total, n = 0.0, 0
    for x, y in _batches(task, "valid", cfg):
        logits = model(x.double())
        total = total + torch.nn.functional.cross_entropy(logits.reshape(-1, 12), y.reshape(-1), reduction="sum")
        n += y.numel()
    loss = total / n
    loss.backward()
    name, p = max(model.named_parameters(), key=lambda kv: float(kv[1].grad.abs().max()))
    i = int(p.grad.abs().argmax())
    return name, i, float(p.grad.view(-1)[i]), float(loss.detach())


def test_perturbed_weight_fails(window_run, tmp_path):
    """One saved weight +1e-3. Its effect on the loss is ~|dL/dw|·1e-3: for the most sensitive weight
    of this small run that is checked to be >= 5x the tolerance used. The default 1e-4 relative
    tolerance can be wider than a 1e-3 change, so the check runs at rtol 2e-6, which the unchanged
    run passes (float32 framework vs float64 NumPy agree to ~1e-7)."""
    run = _copy(window_run, tmp_path / "run")
    rtol = 2e-6
    assert verify_run(run, echo=None, rtol=rtol).ok
    name, i, grad, loss = _most_sensitive_weight(run)
    assert abs(grad) * 1e-3 >= 5 * rtol * loss, (name, grad, loss)
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    ck["model"][name].view(-1)[i] += 1e-3
    torch.save(ck, run / "checkpoints" / "best.pt")
    with pytest.raises(VerifyError, match=r"valid loss stored [\d.]+ vs (numpy|framework) [\d.]+"):
        verify_run(run, echo=None, rtol=rtol)


def test_perturbed_weight_fails_at_default_tolerance(window_run, tmp_path):
    run = _copy(window_run, tmp_path / "run")
    _perturb(run, "head.weight", 0.5)
    with pytest.raises(VerifyError, match="valid loss stored"):
        verify_run(run, echo=None)


def test_numpy_side_error_fails_against_framework(window_run, monkeypatch):
    """A NumPy RNN step that drops ``b_hh`` must be caught by the framework comparison."""
    class Broken(numpy_ref.NpRNN):
        def step(self, x, state):
            p = self.p
            p["bias_hh"]
            h = numpy_ref.np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + state[0] @ p["weight_hh"].T)
            return h, (h,)

    monkeypatch.setitem(numpy_ref.CELLS, "rnn", Broken)
    with pytest.raises(VerifyError, match="loss framework"):
        verify_run(window_run, echo=None)


def test_unsupported_cell_fails_loudly(window_run, monkeypatch):
    monkeypatch.delitem(numpy_ref.CELLS, "rnn")
    with pytest.raises(VerifyError, match="verify has no NumPy implementation for cell rnn"):
        verify_run(window_run, echo=None)


def test_unsupported_regularizer_fails_loudly(window_run):
    from rnnbench.tasks import build_task
    from rnnbench.verify import numpy_metrics

    cfg = OmegaConf.load(window_run / ".hydra" / "config.yaml")
    ck = torch.load(window_run / "checkpoints" / "best.pt", weights_only=True)
    arrays = {k: v.double().numpy() for k, v in ck["model"].items()}
    cfg.regularizer = {"mystery": {}}
    with pytest.raises(numpy_ref.VerifyUnsupported, match="no NumPy implementation for regularizer mystery"):
        numpy_metrics(cfg, build_task(cfg), arrays, ["valid"], False)


def test_unused_saved_parameter_fails(window_run, tmp_path):
    run = _copy(window_run, tmp_path / "run")
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    arrays = {k: v.double().numpy() for k, v in ck["model"].items()}
    arrays["encoder.extra_gate.weight"] = arrays["head.weight"]
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    from rnnbench.tasks import build_task
    from rnnbench.verify import numpy_metrics

    with pytest.raises(numpy_ref.VerifyUnsupported, match="encoder.extra_gate.weight"):
        numpy_metrics(cfg, build_task(cfg), arrays, ["valid"], False)


def test_sweep_dir_verifies_every_run(window_run, tmp_path, capsys):
    from rnnbench.verify import main

    _copy(window_run, tmp_path / "sweep" / "0")
    bad = _copy(window_run, tmp_path / "sweep" / "1")
    assert main([str(tmp_path / "sweep")]) == 0
    assert "all 2 runs agree" in capsys.readouterr().out
    res = json.loads((bad / "results.json").read_text())
    res["test"]["acc"] += 0.05  # a reported number the weights do not give
    (bad / "results.json").write_text(json.dumps(res))
    with pytest.raises(VerifyError, match=r"1 of 2 runs.*test acc stored"):
        main([str(tmp_path / "sweep")])


def test_numpy_reference_does_not_import_torch():
    code = ("import sys, importlib.util, pathlib; p = pathlib.Path('rnnbench/verify/numpy_ref.py');"
            "spec = importlib.util.spec_from_file_location('numpy_ref', p); m = importlib.util.module_from_spec(spec);"
            "sys.modules['numpy_ref'] = m;"
            "spec.loader.exec_module(m); assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr


def test_article_metrics_by_hand():
    """Article 003's formulas on a hand-worked batch: scores ln(p) give p back exactly."""
    import numpy as np

    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25], [1e-12, 1 - 1e-12, 0.0 + 1e-300]])
    s = numpy_ref.Sums()
    numpy_ref.add_batch(s, "classification", np.log(p), np.array([0, 2, 0]))
    m = s.metrics("classification")
    assert m["acc"] == pytest.approx(1 / 3)
    # article: -[ln .7 + ln .25 + ln(clip(1e-12) = 1e-10)] / 3; compared loss: unclipped ln 1e-12
    assert m["loss_clip"] == pytest.approx(-(np.log(0.7) + np.log(0.25) + np.log(1e-10)) / 3, rel=1e-9)
    assert m["loss"] == pytest.approx(-(np.log(0.7) + np.log(0.25) + np.log(1e-12)) / 3, rel=1e-9)


def test_data_root_is_found_for_mnist():
    if data_root() is None:
        pytest.skip("MNIST not found in ../shared/data (or $RNNBENCH_DATA): bidir tests skip")
    assert (data_root() / "MNIST").is_dir()


def test_near_tie_rule_compares_only_answers_without_a_near_tie():
    """Greedy seq2seq: answers that met a near-tie are left out of the loss comparison, the rest
    must agree — numbers worked by hand."""
    import numpy as np

    from rnnbench.verify.check import _near_tie_loss
    from rnnbench.verify.numpy_ref import Sums, add_batch

    sums = Sums()
    # 3 answers of 2 steps over 3 symbols; answer 1 has a near-tie at step 0 (scores 1.0 / 1.00001)
    scores = np.array([[[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
                       [[1.0, 1.00001, 0.0], [0.0, 0.0, 5.0]],
                       [[0.0, 0.0, 4.0], [1.0, 0.0, 0.0]]])
    labels = np.array([[0, 1], [1, 2], [2, 0]])
    add_batch(sums, "seq2seq", scores, labels)
    assert sums.seq_tie_allowance == 1 and sums.count_notie == 4

    def nll(row, k):
        return -(row[k] - np.log(np.exp(row).sum()))

    want_np = (nll(scores[0, 0], 0) + nll(scores[0, 1], 1) + nll(scores[2, 0], 2) + nll(scores[2, 1], 0)) / 4
    fw_answers = [np.array([0.5, 99.0, 0.25])]  # framework answer losses: the tied answer's is ignored
    fw, mine = _near_tie_loss({"_answer_loss": fw_answers}, sums)
    assert fw == pytest.approx((0.5 + 0.25) / 4) and mine == pytest.approx(want_np, rel=1e-12)
    assert _near_tie_loss({}, sums) is None


@pytest.mark.parametrize("name,dataset,cell", tuned_pairs())
def test_tuned_pairs_train_and_verify(tmp_path, name, dataset, cell):
    """Every conf/tuned pair file as the command line gets it: trains, names itself, verifies."""
    data = None
    if dataset != "addition":
        data = data_root()
        if data is None:
            pytest.skip("real datasets not found")
    res = run_in_process(FAST + [f"dataset={dataset}", f"cell={cell}"], tmp_path, data, tuned=True)
    assert res["status"] == "ok" and res["hparams"]["tuned"] == name
    assert verify_run(tmp_path, echo=None).ok
