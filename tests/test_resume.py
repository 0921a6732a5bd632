"""Resume: a real `zoo train` killed mid-epoch continues the same MLflow run, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import torch

from zoo.training.train import train

from .conftest import ZOO, run_zoo, runs_in

ARGS = ["data=digits", "model.hidden_sizes=[32]", "trainer.max_epochs=8", "trainer.batch_size=4",
        "trainer.log_every=7", "tracking.system_metrics=false", "tracking.log_model=false", "model.dropout=0.1"]



def assert_same_last_checkpoint(tmp_path: Path, step: int) -> None:
    """The interrupted-and-resumed run's last.pt and the straight run's: the same step, the same weights."""
    a = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == step
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key

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
    assert_same_last_checkpoint(tmp_path, 8 * steps_per_epoch)
    for key in ("test/accuracy", "best/val_accuracy"):
        straight_run = client.search_runs([client.get_experiment_by_name("straight").experiment_id])[0]
        assert client.get_run(run.info.run_id).data.metrics[key] == straight_run.data.metrics[key]


def test_resume_errors(tmp_path, make_cfg, registry, store):
    from zoo import ZooError

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


# Written by the loop as it was before the reshape of issue 11 (commit 27f7a18): `zoo train model=perceptron
# data=iris trainer.max_epochs=3 trainer.batch_size=8 trainer.log_every=4 tracking.hist_every=0 optimizer.lr=0.05`
# stopped by Ctrl-C at step 18, mid-way through epoch 2 of 3 (13 steps an epoch). See tests/fixtures/README.md.
V1_CHECKPOINT = Path(__file__).parent / "fixtures" / "last_v1_perceptron_iris_step18.pt"
V1_ARGS = ["model=perceptron", "data=iris", "trainer.max_epochs=3", "trainer.batch_size=8", "trainer.log_every=4",
           "tracking.hist_every=0", "optimizer.lr=0.05", "tracking.log_model=false"]


def test_a_checkpoint_written_before_the_reshape_resumes_to_the_same_weights(tmp_path, make_cfg, registry, client):
    straight = train(make_cfg(*V1_ARGS), registry)
    state = torch.load(V1_CHECKPOINT, weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (18, 1, 5)  # the fixture is mid-epoch
    # The fixture's own run lives in a store that is gone: let it continue a stopped run of this store.
    run = client.create_run(straight["experiment_id"])
    client.set_terminated(run.info.run_id, "KILLED")
    state["run_id"] = run.info.run_id
    folder = tmp_path / "resumed" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / "last.pt")

    resumed = train(make_cfg(f"resume={folder / 'last.pt'}"), registry)
    assert resumed["run_id"] == run.info.run_id
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FINISHED" and after.data.tags["zoo.resumed_from_step"] == "18"
    # a run from before the tags zoo.monitor and zoo.direction existed gets them when it continues
    assert after.data.tags["zoo.monitor"] == "best/val_accuracy" and after.data.tags["zoo.direction"] == "maximize"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == list(range(19, 3 * 13 + 1))  # the rest of epoch 2 and all of epoch 3, nothing twice
    a = torch.load(folder / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "out" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3 * 13
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in ("test/accuracy", "best/val_accuracy"):
        assert resumed[key] == straight[key], key
