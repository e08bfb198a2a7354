"""What a finished sweep leaves: ``rnnbench table``'s files in its directory and the table at the end
of its log (``train.table=false``: neither), and TensorBoard HParams data — as the hparams plugin
serves it — that covers every job: each swept key (marked as differing), numbers kept numeric,
no runtime knobs, the VC cells' metrics, and every curve on the optimizer-step axis."""
from __future__ import annotations

import json

import pytest

from test_sweep import sweep

MIXED = ["cell=lstm,vclstm", "seed=0,1", "scale=smoke", "train.num_threads=1", "dataset.limit=300"]


@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    rc, out = sweep([*MIXED, f"hydra.sweep.dir={d}"], d)
    assert rc == 0, out
    return d, out


def test_sweep_ends_with_its_table(mixed_sweep):
    d, out = mixed_sweep
    for name in ("table.md", "table.csv", "table.tex", "curves.png"):
        assert (d / name).stat().st_size > 0, name
    table = (d / "table.md").read_text().rstrip().splitlines()
    assert out.rstrip().splitlines()[-len(table):] == table  # the log's last lines are the table
    assert "| vclstm |" in (d / "table.md").read_text()


def test_table_false_turns_it_off(tmp_path):
    rc, out = sweep(["seed=0", "scale=smoke", "train.num_threads=1", "train.table=false",
                     f"hydra.sweep.dir={tmp_path}"], tmp_path)
    assert rc == 0, out
    assert not (tmp_path / "table.md").exists() and "| variant |" not in out
    assert json.loads((tmp_path / "sweep.json").read_text())["counts"] == {"ok": 1}


def _hparams_served(logdir):
    """The experiment and session groups TensorBoard's HParams dashboard receives."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)))
    ctx, rc = backend_context.Context(tb), context.RequestContext()
    exp = get_experiment.Handler(rc, ctx, "", api_pb2.GetExperimentRequest()).run()
    req = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100,
                                           allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_UNKNOWN])
    for m in exp.metric_infos:
        req.col_params.add(metric=m.name)
    for h in exp.hparam_infos:
        req.col_params.add(hparam=h.name)
    groups = list_session_groups.Handler(rc, ctx, "", req).run().session_groups
    return exp, groups, mux


def test_hparams_cover_the_whole_sweep(mixed_sweep):
    from tensorboard.plugins.hparams import api_pb2

    d, _ = mixed_sweep
    exp, groups, mux = _hparams_served(d)
    infos = {h.name: h for h in exp.hparam_infos}
    assert infos["cell"].differs and set(infos["cell"].domain_discrete) == {"lstm", "vclstm"}
    assert infos["seed"].differs and infos["seed"].type == api_pb2.DATA_TYPE_FLOAT64
    assert infos["dataset.limit"].type == api_pb2.DATA_TYPE_FLOAT64  # a number, not the override's string
    assert not {"train.num_threads", "train.progress", "train.epochs"} & set(infos)  # epochs is "epochs"
    metrics = {m.name.tag for m in exp.metric_infos}
    assert {"test/acc", "valid_best/acc", "valid/compute_fraction", "test/compute_fraction"} <= metrics
    assert not any(t.startswith("hparam/") for t in metrics)
    assert len(groups) == 4
    for g in groups:
        values = {m.name.tag: m.value for m in g.metric_values}
        vc = g.hparams["cell"].string_value == "vclstm"
        assert "test/acc" in values and ("test/compute_fraction" in values) == vc
    for run in mux.Runs():  # train and valid curves share the optimizer-step axis
        acc = mux.GetAccumulator(run)
        if "valid/acc" in acc.Tags().get("scalars", []):
            steps = [e.step for e in acc.Scalars("train_step/loss")]
            assert acc.Scalars("valid/acc")[-1].step == acc.Scalars("train/epoch")[-1].step == 5 >= max(steps)
