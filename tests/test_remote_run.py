"""MLflow off the training process's critical path (issue 16): one RunStore, two transports.

In mode ``process`` every store request of a run (the store, the run's start, tags, artifacts, the
datasets, the model, linked metrics, the end) goes to the writer process, so the training process
of a plain ``zoo train`` never imports MLflow; in mode ``thread`` the same requests run in the
training process. Either way the run reads back complete. Real command, real store, real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from zoo.tracking import Tracker

# the real command's main in a process of its own; it says at its end whether it imported MLflow
DRIVER = ("import os, sys\nfrom zoo.cli import main\nrc = 0\ntry:\n    main(sys.argv[1:])\n"
          "except SystemExit as e:\n    rc = e.code\nprint('PID', os.getpid())\n"
          "print('MLFLOW', 'mlflow' in sys.modules)\nsys.exit(rc)")


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_plain_zoo_train_stores_everything_and_imports_mlflow_only_in_thread_mode(tmp_path, mode):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "ZOO_METRIC_WRITER": mode, "MLFLOW_TRACKING_URI": uri}
    r = subprocess.run([sys.executable, "-c", DRIVER, "train", "data=iris", "trainer.max_epochs=2",
                        "trainer.device=cpu", "tracking.system_metrics_interval=1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert f"MLFLOW {mode == 'thread'}" in lines, r.stdout[-2000:]
    pid = next(line.split()[1] for line in lines if line.startswith("PID "))

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    rid = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "iris" and run.data.params["trainer.max_epochs"] == "2"
    t = run.data.tags
    assert t["zoo.dataset"] == "iris" and t["zoo.monitor"] == "best/val_accuracy" and t["zoo.direction"] == "maximize"
    assert t["zoo.pid"] == pid  # the training process runs the run, whoever writes it
    assert t["mlflow.runName"] and t["mlflow.source.type"] == "LOCAL" and t["mlflow.user"]
    assert t["zoo.metric_writer"] == mode and "zoo.error" not in t
    steps = sorted(m.step for m in client.get_metric_history(rid, "train/loss"))
    assert steps == list(range(1, steps[-1] + 1))
    assert "test/accuracy" in run.data.metrics and "system/cpu_utilization_percentage" in run.data.metrics
    artifacts = {a.path for folder in (None, "checkpoints", "plots") for a in client.list_artifacts(rid, folder)}
    assert {"config.yaml", "overrides.txt", "checkpoints/best.pt", "plots/loss_curve.png"} <= artifacts
    assert sorted(i.tags[0].value for i in run.inputs.dataset_inputs) == ["test", "training", "validation"]
    (out,) = run.outputs.model_outputs
    model = client.get_logged_model(out.model_id)
    assert model.status == "READY" and model.source_run_id == rid and model.experiment_id == run.info.experiment_id
    mlflow.set_tracking_uri(uri)  # runs:/ is looked up in MLflow's current store
    try:
        assert mlflow.pyfunc.load_model(f"runs:/{rid}/model").metadata.get_input_schema() is not None
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_store_request_refused_is_one_line_and_the_run_still_ends(tmp_path, monkeypatch, mode):
    """An artifact the store cannot take comes back from either transport as one line, and the run
    ends FAILED with the reason (the block's own error), never RUNNING."""
    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "remote", system_metrics=False)
    with pytest.raises(Exception) as caught:
        with tracker.run(run_name="r", params={"a": {"b": 1}}, tags={"zoo.model": "m"}) as run:
            run.metrics({"x": 1.0}, step=1)
            run.tags({"zoo.task": "t"})
            run.text("hello", "notes/hello.txt")
            run.artifact(tmp_path / "no-such-file.txt", "files")
    message = str(caught.value)
    assert "no-such-file.txt" in message and "\n" not in message
    assert type(caught.value).__name__ == ("StoreRefused" if mode == "process" else "FileNotFoundError")
    got = mlflow.MlflowClient(uri).get_run(tracker.run_id)
    assert got.info.status == "FAILED" and "no-such-file.txt" in got.data.tags["zoo.error"]
    assert got.data.params == {"a.b": "1"} and got.data.tags["zoo.task"] == "t" and got.data.metrics["x"] == 1.0
    assert "notes/hello.txt" in {a.path for a in mlflow.MlflowClient(uri).list_artifacts(tracker.run_id, "notes")}
