"""train(cfg) end to end against a real SQLite MLflow store, read back with MlflowClient."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from zoo.training.train import train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, registry):
    """One real 2-epoch run of the default experiment, shared by the read-back tests."""
    from hydra import compose, initialize_config_dir

    from zoo.config import CONF_DIR

    tmp = tmp_path_factory.mktemp("digits")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp / 'out'}", f"tracking.uri={uri}",
                                           "trainer.device=cpu", "trainer.max_epochs=2", "tracking.hist_every=10",
                                           "tracking.grad_every=3", "tracking.system_metrics_interval=0.5"])
    metrics = train(cfg, registry, overrides=["trainer.max_epochs=2"])
    client = mlflow.MlflowClient(uri)
    return metrics, client, client.get_run(metrics["run_id"])


def test_run_finishes_with_params_and_tags(digits_run):
    metrics, client, run = digits_run
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["model.name"] == "mlp" and p["model.hidden_sizes"] == "[256,256]"  # as Hydra writes it
    assert p["trainer.max_epochs"] == "2" and p["optimizer._target_"] == "torch.optim.Adam"
    assert p["data.name"] == "digits" and p["seed"] == "0"
    t = run.data.tags
    assert t["zoo.model"] == "mlp" and t["zoo.family"] == "ann" and t["zoo.plugin"] == "ann"
    assert t["zoo.plugin_source"] == "built-in" and t["zoo.dataset"] == "digits" and t["zoo.device"] == "cpu"
    assert t["zoo.torch_version"] == torch.__version__ and t["zoo.overrides"] == "trainer.max_epochs=2"
    assert t["zoo.monitor"] == "best/val_accuracy" and t["zoo.direction"] == "maximize"  # readable without plugins
    assert metrics["test/accuracy"] > 0.8


def test_loss_every_step_and_epoch_metrics(digits_run):
    metrics, client, run = digits_run
    steps_per_epoch = math.ceil(1257 / 64)  # digits' training split, batch 64
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in loss] == list(range(1, 2 * steps_per_epoch + 1))  # no gap, no duplicate
    val = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in val] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "epoch")] == [1.0, 2.0]
    for key in ("train/loss_epoch", "val/loss", "test/accuracy", "test/loss", "best/val_accuracy", "lr"):
        assert key in run.data.metrics, key
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["test/accuracy"])


def test_gradient_and_weight_norms(digits_run):
    """tracking.grad_every=3 (pinned: how fast the machine is changes nothing): norms at every third step, and
    only there; the tag says so. The adaptive cadence (auto) is tests/test_loop.py::test_auto_grad_cadence_*."""
    _, client, run = digits_run
    names = set(run.data.metrics)
    assert "grad_norm/total" in names
    assert {"grad_norm/net.1.weight", "weight_norm/net.1.weight", "grad_norm/net.5.bias"} <= names
    assert run.data.tags["zoo.grad_every"] == "3"
    hist = client.get_metric_history(run.info.run_id, "grad_norm/total")
    assert all(h.value > 0 and math.isfinite(h.value) for h in hist)
    assert sorted(h.step for h in hist) == list(range(3, 41, 3))  # 40 steps: 2 epochs of ceil(1257 / 64)


def test_system_metrics_recorded(digits_run):
    _, _, run = digits_run
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)


def test_artifacts(digits_run):
    _, client, run = digits_run
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.txt", "checkpoints", "plots", "histograms"} <= top
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss_curve.png", "plots/histograms.png"} <= plots
    local = client.download_artifacts(run.info.run_id, "histograms/histograms.npz")
    hist = np.load(local)
    assert any(k.endswith("/counts") for k in hist.files)
    config = open(client.download_artifacts(run.info.run_id, "config.yaml")).read()
    assert "hidden_sizes" in config and "max_epochs: 2" in config


def test_checkpoint_holds_run_id_and_loads_safely(digits_run):
    _, client, run = digits_run
    path = client.download_artifacts(run.info.run_id, "checkpoints/best.pt")
    state = torch.load(path, weights_only=True)
    assert state["run_id"] == run.info.run_id
    assert {"model", "optimizer", "rng", "step", "epoch"} <= set(state)


def test_pyfunc_round_trip(digits_run, registry):
    """The logged model through MLflow's own loader: raw rows by column name in, one class name per row out,
    and the probabilities it gives are a distribution (the model's own numbers: docs/models.md)."""
    _, client, run = digits_run
    mlflow.set_tracking_uri(client.tracking_uri)  # as a user would: Zoo gave MLflow's tracking URI back after the run
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    columns = model.metadata.get_input_schema().input_names()
    assert len(columns) == 64
    rows = pd.DataFrame(np.random.default_rng(0).integers(0, 17, size=(5, 64)).astype(np.float64), columns=columns)
    labels = np.asarray(model.predict(rows)).ravel()
    assert len(labels) == 5 and {str(x) for x in labels} <= {str(i) for i in range(10)}, labels
    everything = model.predict(rows, params={"output": "all"})
    probs = everything[[c for c in everything.columns if c.startswith("probabilities")]].to_numpy()
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.usefixtures("client")
def test_seeded_runs_are_reproducible(make_cfg, registry):
    a = train(make_cfg("trainer.max_epochs=1", "tracking.log_model=false"), registry)
    b = train(make_cfg("trainer.max_epochs=1", "tracking.log_model=false"), registry)
    assert a["test/loss"] == b["test/loss"] and a["run_id"] != b["run_id"]


@pytest.mark.parametrize("batch_size", ["1", "full"])
def test_stochastic_and_batch_gradient_descent(make_cfg, registry, client, batch_size):
    n_train = len(registry.dataset("iris").decl.load(seed=0).train)
    steps = 2 * n_train if batch_size == "1" else 2  # one step per example, or one per epoch
    m = train(make_cfg("data=iris", f"trainer.batch_size={batch_size}", "tracking.log_model=false"), registry)
    history = client.get_metric_history(m["run_id"], "train/loss")
    assert [h.step for h in history] == list(range(1, steps + 1))


def test_regression_task(make_cfg, registry, client):
    m = train(make_cfg("data=diabetes", "trainer.max_epochs=3", "tracking.log_model=false"), registry)
    assert {"test/mse", "test/r2", "best/val_mse"} <= set(m)
    t = client.get_run(m["run_id"]).data.tags
    assert t["zoo.monitor"] == "best/val_mse" and t["zoo.direction"] == "minimize"
    assert m["test/mse"] < 1.0  # standardised target: predicting the mean scores ~1


def test_early_stopping(make_cfg, registry, client):
    # a learning rate of 0 never improves after the first epoch
    m = train(make_cfg("trainer.max_epochs=10", "trainer.patience=2", "optimizer.lr=1e-12",
                       "tracking.log_model=false"), registry)
    epochs = client.get_metric_history(m["run_id"], "epoch")
    assert len(epochs) == 3


def test_scheduler_and_other_optimizer(make_cfg, registry, client):
    m = train(make_cfg("optimizer=sgd", "optimizer.lr=0.1", "scheduler=step", "scheduler.step_size=1",
                       "tracking.log_model=false"), registry)
    lrs = [h.value for h in client.get_metric_history(m["run_id"], "lr")]
    assert lrs == pytest.approx([0.1, 0.05])


def test_plugin_exception_ends_failed_with_traceback(tmp_path, make_cfg, client):
    from zoo.plugin.registry import load_registry

    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "explodes.py").write_text(
        "import torch, zoo\n"
        "class Boom(torch.nn.Module):\n"
        "    def __init__(self, d_in, d_out):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(d_in, d_out); self.calls = 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 3: raise RuntimeError('kaboom in forward')\n"
        "        return self.lin(x)\n"
        "@zoo.hookimpl\n"
        "def zoo_architectures():\n"
        "    return [zoo.Architecture(name='boom', family='test', kinds=('tabular',),\n"
        "                             build=lambda info: Boom(info.input_shape[-1], info.output_dim))]\n")
    reg = load_registry([folder])
    from zoo.config import register_configs

    register_configs(reg)
    with pytest.raises(RuntimeError, match="kaboom"):
        train(make_cfg("model=boom"), reg)
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert run.info.status == "FAILED"
    assert "kaboom in forward" in run.data.tags["zoo.error"]
    tb = open(client.download_artifacts(run.info.run_id, "error/traceback.txt")).read()
    assert "kaboom in forward" in tb and "Traceback" in tb


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_switch(make_cfg, registry, client, precision):
    m = train(make_cfg(f"trainer.precision={precision}", "tracking.log_model=false"), registry)
    run = client.get_run(m["run_id"])
    assert run.data.params["trainer.precision"] == precision and run.info.status == "FINISHED"
    assert m["test/accuracy"] > 0.5


@pytest.mark.usefixtures("client")
def test_torch_compile_switch(make_cfg, registry):
    m = train(make_cfg("model=perceptron", "data=iris", "trainer.max_epochs=1", "trainer.compile=true",
                       "tracking.log_model=false"), registry)
    assert math.isfinite(m["test/loss"])


def test_non_finite_loss_fails_the_run_at_once(make_cfg, registry, client):
    import zoo

    with pytest.raises(zoo.ZooError, match=r"non-finite loss at step \d+"):
        train(make_cfg("optimizer=sgd", "optimizer.lr=1e30", "data=diabetes", "trainer.max_epochs=5",
                       "tracking.log_model=false"), registry)
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["zoo.failure"] == "non_finite_loss"
    step = int(run.data.tags["zoo.failure_step"])
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert logged == list(range(1, step))  # every finite step before it, nothing after
