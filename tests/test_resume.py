"""Resume: a real `zoo train` killed mid-epoch continues the same MLflow run, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import mlflow
import pytest
import torch

from .conftest import ZOO, run_zoo, runs_in

ARGS = ["data=digits", "model.hidden_sizes=[32]", "trainer.max_epochs=8", "trainer.batch_size=4",
        "trainer.log_every=7", "tracking.system_metrics=false", "tracking.log_model=false", "model.dropout=0.1"]


def _wait_for(predicate, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, sig):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([*ZOO, "train", *ARGS, "hydra.run.dir=interrupted"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = mlflow.MlflowClient(uri)

    def first_epoch_done():
        return (tmp_path / "interrupted" / "checkpoints" / "last.pt").exists()

    assert _wait_for(first_epoch_done), "training never finished its first epoch"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    (run,) = runs_in(uri)
    assert run.info.status == "KILLED"
    assert "zoo train resume=" in err
    stopped = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.pt", weights_only=True)
    steps_per_epoch = 315  # ceil(1257 / 4)
    assert 0 < stopped["batch_in_epoch"] < steps_per_epoch and 1 <= stopped["epoch"] < 8  # mid-epoch
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(logged) == list(range(1, stopped["step"] + 1))  # everything up to the stop, flushed

    resumed = run_zoo("train", f"resume={run.info.run_id}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (after,) = runs_in(uri)  # the same run, not a new one
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == list(range(1, 8 * steps_per_epoch + 1))  # no gap, no duplicate
    assert after.data.tags["zoo.resumed_from_step"] == str(stopped["step"])

    straight = run_zoo("train", *ARGS, "hydra.run.dir=straight", "tracking.experiment=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8 * steps_per_epoch
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in ("test/accuracy", "best/val_accuracy"):
        straight_run = client.search_runs([client.get_experiment_by_name("straight").experiment_id])[0]
        assert client.get_run(run.info.run_id).data.metrics[key] == straight_run.data.metrics[key]


def test_resume_errors(tmp_path, make_cfg, registry, store):
    from zoo import ZooError
    from zoo.train import train

    with pytest.raises(ZooError, match="resume=0123abcd: no run with this id"):
        train(make_cfg("resume=0123abcd"), registry)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ZooError, match=r"checkpoint .*corrupt.pt is corrupt or not a Zoo checkpoint"):
        train(make_cfg(f"resume={bad}"), registry)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ZooError, match=r"is not a Zoo checkpoint \(missing"):
        train(make_cfg(f"resume={tmp_path / 'other.pt'}"), registry)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ZooError, match="no checkpoints/last.pt in that folder"):
        train(make_cfg(f"resume={tmp_path / 'empty_run'}"), registry)
    done = train(make_cfg("trainer.max_epochs=1", "tracking.log_model=false"), registry)
    with pytest.raises(ZooError, match="already FINISHED"):
        train(make_cfg(f"resume={done['run_id']}"), registry)
    assert all(r.info.status == "FINISHED" for r in runs_in(store))
