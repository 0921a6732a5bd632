"""Zoo as an MLflow user expects it: MLflow's environment variables, runs nested under the caller's own,
system metrics for every run, and the Python API of docs/python-api.md run as it is written there."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import pytest

import zoo
from zoo.training.train import train

from .conftest import ROOT, run_zoo, runs_in

QUICK = ("data=iris", "trainer.max_epochs=1", "tracking.log_model=false")


def experiment_of(uri: str, run_id: str) -> str:
    client = mlflow.MlflowClient(uri)
    return client.get_experiment(client.get_run(run_id).info.experiment_id).name


# ----------------------------------------------------------------------------- the Python API

def test_from_zoo_import_train_is_the_function():
    from zoo import compose, train as from_zoo
    from zoo.config import compose_run
    from zoo.training.train import train as real

    assert from_zoo is real and zoo.train is real
    assert compose is compose_run and zoo.compose is compose_run


def test_compose_is_what_zoo_train_composes(registry):
    cfg = zoo.compose(["data=iris", "model.hidden_sizes=[8]", "trainer.max_epochs=3"])
    assert (cfg.model.name, cfg.data.name, list(cfg.model.hidden_sizes), cfg.trainer.max_epochs) == ("mlp", "iris", [8], 3)
    assert cfg.paths.output_dir is None  # Hydra's job folder exists only under zoo train: train makes one
    assert zoo.compose(["paths.output_dir=/tmp/here"]).paths.output_dir == "/tmp/here"
    with pytest.raises(zoo.ZooError, match=r"^unknown model \(architecture\) 'mpl' in model=mpl. Did you mean 'mlp'\?"):
        zoo.compose(["model=mpl"])


def python_example() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_python_api_example(tmp_path):
    """docs/python-api.md's example, run as a script: two runs nested under the caller's, which stays open."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the example chooses its store
    (tmp_path / "example.py").write_text(python_example())
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["lr=0.1", "lr=0.01"]
    assert re.fullmatch(r"val/accuracy by epoch: \[[0-9., ]+\]", lines[2]) and lines[2].count(",") == 2  # 3 epochs
    parent_id = lines[3].split()[1]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"  # not KILLED: Zoo ends only its own runs
    assert set(parent.data.metrics) == {"test_accuracy_lr_0.1", "test_accuracy_lr_0.01"}
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.info.run_id for c in children} == {line.split()[-1] for line in lines[:2]}


def test_nested_under_the_callers_run_in_its_store(make_cfg, registry, store):
    """tracking.uri unset inside the caller's run: Zoo's run goes to that run's store, nested; the caller's stays open."""
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run(run_name="mine") as mine:
            m = train(make_cfg(*QUICK, "tracking.uri=null"), registry)
            assert mlflow.active_run().info.run_id == mine.info.run_id
            assert mlflow.get_tracking_uri() == store
            mlflow.log_metric("after", 1.0)  # the caller's run still takes metrics
        client = mlflow.MlflowClient(store)
        child = client.get_run(m["run_id"])
        assert child.data.tags["mlflow.parentRunId"] == mine.info.run_id and child.info.status == "FINISHED"
        assert client.get_run(mine.info.run_id).info.status == "FINISHED"
        assert client.get_run(mine.info.run_id).data.metrics == {"after": 1.0}
    finally:
        mlflow.set_tracking_uri(None)


def test_nesting_into_another_store_is_refused(make_cfg, registry, store, tmp_path):
    other = f"sqlite:///{tmp_path / 'mine' / 'mlflow.db'}"
    mlflow.set_tracking_uri(other)
    try:
        with mlflow.start_run(run_name="mine") as mine:
            with pytest.raises(zoo.ZooError) as err:
                train(make_cfg(*QUICK), registry)  # tracking.uri=<store>: not where the caller's run is
            assert "\n" not in str(err.value)
            assert f"run {mine.info.run_id} in {other}" in str(err.value) and "another store" in str(err.value)
            assert mlflow.active_run().info.run_id == mine.info.run_id and mlflow.get_tracking_uri() == other
        assert runs_in(store) == []
        assert mlflow.MlflowClient(other).get_run(mine.info.run_id).info.status == "FINISHED"
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.usefixtures("client")
def test_tracking_uri_is_the_callers_again_after_a_run(make_cfg, registry, store, tmp_path, monkeypatch):
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mine)
    m = train(make_cfg(*QUICK), registry)  # tracking.uri=<store>
    assert mlflow.get_tracking_uri() == mine and os.environ["MLFLOW_TRACKING_URI"] == mine
    assert mlflow.MlflowClient(store).get_run(m["run_id"]).info.status == "FINISHED"
    later = f"sqlite:///{tmp_path / 'later.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", later)  # still the variable's: Zoo pinned nothing
    assert mlflow.get_tracking_uri() == later


@pytest.mark.usefixtures("client")
def test_no_tracking_uri_set_stays_unset_after_a_run(make_cfg, registry, store, tmp_path, monkeypatch):
    """A caller that set no tracking URI has none set after Zoo's run: MLflow's default (./mlflow.db wherever the
    caller then is) is not pinned to the folder of the moment, and no MLFLOW_TRACKING_URI is left behind."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    m = train(make_cfg(*QUICK), registry)  # tracking.uri=<store>
    assert not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.MlflowClient(store).get_run(m["run_id"]).info.status == "FINISHED"
    assert not (tmp_path / "mlflow.db").exists()


# ----------------------------------------------------------------------------- MLflow's environment variables

@pytest.mark.usefixtures("client")
def test_mlflow_experiment_name_is_the_default_experiment(make_cfg, registry, store, monkeypatch):
    """As in MLflow: an experiment named in the config (override or preset) wins, then MLFLOW_EXPERIMENT_NAME, then zoo."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from_env")
    assert experiment_of(store, train(make_cfg(*QUICK), registry)["run_id"]) == "from_env"
    assert experiment_of(store, train(make_cfg(*QUICK, "tracking.experiment=explicit"), registry)["run_id"]) == "explicit"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert make_cfg().tracking.experiment == "zoo"


def test_system_metrics_logging_env_false_turns_them_off(make_cfg, registry, client, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    m = train(make_cfg(*QUICK, "trainer.device=cpu", fast=False), registry)
    run = client.get_run(m["run_id"])
    assert not [k for k in run.data.metrics if k.startswith("system/")]
    assert run.data.params["tracking.system_metrics"] == "false"  # as Hydra writes it (issue 12A: params paste back as overrides)
    with pytest.raises(zoo.ZooError, match=r"tracking.system_metrics='maybe' is invalid: expected true or false"):
        monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "maybe")
        train(make_cfg(*QUICK, fast=False), registry)
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    assert make_cfg(fast=False).tracking.system_metrics is True  # Zoo's default: on


def test_a_run_shorter_than_the_sampling_interval_records_one_sample(make_cfg, registry, client):
    """MLflow's monitor logs a sample when its interval has passed; the run's end logs the one it holds."""
    m = train(make_cfg(*QUICK, "trainer.device=cpu", "tracking.system_metrics_interval=3600", fast=False), registry)
    cpu = client.get_metric_history(m["run_id"], "system/cpu_utilization_percentage")
    assert [s.step for s in cpu] == [0]
    assert {"system/system_memory_usage_megabytes", "system/disk_usage_megabytes"} <= set(client.get_run(m["run_id"]).data.metrics)


def test_inherited_mlflow_run_id_never_touches_that_run(tmp_path):
    """MLFLOW_RUN_ID would make MLflow reopen that run (rename it, overwrite its tags): refused in one line, exit 2."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    first = run_zoo("train", *QUICK, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    client = mlflow.MlflowClient(uri)
    (before,) = runs_in(uri)
    for args in (("train", *QUICK), ("train", "-m", *QUICK, "seed=0,1")):  # one run, and a sweep (refused before its parent run)
        out = run_zoo(*args, cwd=tmp_path, env={"MLFLOW_RUN_ID": before.info.run_id})
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines() == [
            f"error: MLFLOW_RUN_ID={before.info.run_id} is set in the environment, and Zoo never logs into another "
            "run: unset MLFLOW_RUN_ID (to continue a run Zoo stopped, use resume=<run id>)"]
    (after,) = runs_in(uri)
    assert after.info == before.info  # name, status, end time: untouched
    assert after.data.tags == before.data.tags and after.data.params == before.data.params
    assert client.get_run(before.info.run_id).info.status == "FINISHED"
