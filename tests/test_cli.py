"""The command line as a user runs it: train, --help, --cfg, -m, list, ui, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from .conftest import ZOO, run_zoo, runs_in


def test_train_override_and_summary_line(tmp_path):
    r = run_zoo("train", "model=mlp", "model.hidden_sizes=[32,16]", "model.activation=tanh", "data=moons",
                "optimizer=sgd", "optimizer.lr=0.05", "trainer.max_epochs=3", "trainer.batch_size=full",
                "tracking.system_metrics=false", "tracking.experiment=cli", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("zoo: mlp on moons | ") and "test/accuracy=" in r.stdout and "run " in r.stdout
    (run,) = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.data.params["model.hidden_sizes"] == "[32,16]" and run.data.params["model.activation"] == "tanh"
    assert run.data.params["optimizer._target_"] == "torch.optim.SGD" and run.data.params["trainer.batch_size"] == "full"
    assert run.data.tags["zoo.overrides"].startswith("model=mlp model.hidden_sizes=[32,16]")
    # the default store's artifacts live beside the database, in mlruns/artifacts/
    assert (tmp_path / "mlruns" / "artifacts" / "cli").is_dir()
    assert str(tmp_path / 'mlruns' / 'artifacts' / 'cli' / run.info.run_id) in run.info.artifact_uri


def test_help_lists_groups_and_plugins(tmp_path):
    r = run_zoo("train", "--help", cwd=tmp_path)
    assert r.returncode == 0
    assert "model: " in r.stdout and "mlp" in r.stdout and "perceptron" in r.stdout
    assert "data: " in r.stdout and "digits" in r.stdout
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_cfg_job_prints_composed_config(tmp_path):
    r = run_zoo("train", "--cfg", "job", "model=perceptron", "trainer.batch_size=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "name: perceptron" in r.stdout and "batch_size: 1" in r.stdout and "activation: identity" in r.stdout


def test_multirun_sweep(tmp_path):
    r = run_zoo("train", "-m", "model=mlp,perceptron", "data=iris", "trainer.max_epochs=1",
                "tracking.system_metrics=false", "tracking.log_model=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    runs = [run for run in runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") if "zoo.model" in run.data.tags]
    assert sorted(run.data.tags["zoo.model"] for run in runs) == ["mlp", "perceptron"]
    assert all(run.info.status == "FINISHED" for run in runs)


@pytest.mark.parametrize("args, shown", [(["list"], "ARCHITECTURE"), (["--help"], "usage: zoo"),
                                         (["train", "--help"], "model: "), (["train", "--cfg", "job"], "name: mlp")])
def test_start_up_does_not_import_heavy_parts(tmp_path, args, shown):
    """zoo list, --help and --cfg never load MLflow, torchmetrics, matplotlib or torch_geometric."""
    code = (f"import sys\nfrom zoo.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('mlflow', 'torchmetrics', 'matplotlib', 'torch_geometric') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, (r.stdout[-500:], r.stderr[-500:])
    assert shown in r.stdout  # it did run the command


def test_ctrl_c_ends_the_run_killed_with_a_checkpoint(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    proc = subprocess.Popen([*ZOO, "train", "data=digits", "trainer.max_epochs=500", "trainer.batch_size=8",
                             "tracking.system_metrics=false"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "outputs"
    deadline = time.time() + 120
    while time.time() < deadline and not list(checkpoints.rglob("last.pt")):
        time.sleep(0.5)
    assert list(checkpoints.rglob("last.pt")), "training never reached the end of an epoch"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    (run,) = runs_in(env["MLFLOW_TRACKING_URI"])
    assert run.info.status == "KILLED"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert "checkpoints/last.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert client.get_metric_history(run.info.run_id, "train/loss")  # flushed before ending


def test_ui_binds_to_localhost_and_prints_the_address(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    proc = subprocess.Popen([*ZOO, "ui", "--port", "5987"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "at http://127.0.0.1:5987" in line
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
