"""Searches: the direction follows the metric, asynchronous trials, pruning, the failure rate, seeds.

Every search runs through the real command line into a SQLite store in tmp_path, read back with
MlflowClient and with Optuna. No assertion depends on how fast anything runs: the asynchronous
search is shown by a trial that cannot end (100,000 epochs) while the next ones start and finish.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time

import mlflow
import pytest

from zoo.errors import ZooError
from zoo.experiments.objective import search_direction
from zoo.experiments.table import fmt_number

from .conftest import ZOO, run_zoo, zoo_here
from .test_sweeps import QUIET, _store, _sweep_runs

SEARCH = ["-m", "hydra.sweeper.search=optuna", "data=iris", *QUIET]


def _optuna(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"


def _study(tmp_path, name: str, enqueue=(), direction: str = "maximize"):
    """A study made beforehand with trials queued in order: the search runs them first (its own seed)."""
    import optuna

    (tmp_path / "mlruns").mkdir(exist_ok=True)
    study = optuna.create_study(study_name=name, storage=_optuna(tmp_path), direction=direction)
    for params in enqueue:
        study.enqueue_trial(params)
    return study


def _load(tmp_path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=_optuna(tmp_path))


# ------------------------------------------------------------------------------------ the direction

def test_search_direction_follows_the_metric():
    accuracy, mse = ("best/val_accuracy", "maximize"), ("best/val_mse", "minimize")
    assert search_direction(None, None, mse) == "minimize"  # the task's own metric, its own way
    assert search_direction("test/mse", None, mse) == "minimize"  # the same measure
    assert search_direction("val/loss", None, accuracy) == "minimize"  # a loss goes down
    assert search_direction("best/val_accuracy", "maximize", accuracy) == "maximize"
    assert search_direction("perf/steps_per_s", "maximize", accuracy) == "maximize"  # unknown: as set
    with pytest.raises(ZooError, match="direction=maximize contradicts the metric best/val_mse"):
        search_direction(None, "maximize", mse)
    with pytest.raises(ZooError, match="its direction is not known"):
        search_direction("perf/steps_per_s", None, accuracy)


def test_a_regression_search_minimises_the_validation_mse(tmp_path):
    """Issue 12: with no direction given, a search on a regression task used to maximise the MSE and
    call the worst trial the best."""
    r = run_zoo("train", "hparams_search=mlp_digits", "data=diabetes", "hydra.sweeper.optuna.metric=null",
                "trainer.max_epochs=2", "hydra.sweeper.optuna.n_trials=3", *QUIET, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "minimize the monitored validation metric" in r.stdout
    study = _load(tmp_path, "mlp_digits")
    assert study.direction.name == "MINIMIZE"
    values = [t.value for t in study.trials]
    assert study.best_value == min(values)
    _, (parent,), children = _sweep_runs(tmp_path, "hparams_mlp_digits")
    assert parent.data.tags["zoo.best_direction"] == "minimize"
    assert parent.data.metrics["best/val_mse"] == pytest.approx(min(c.data.metrics["best/val_mse"] for c in children))


def test_a_direction_against_the_metric_is_one_line_and_no_run(tmp_path):
    r = run_zoo("train", "hparams_search=mlp_digits", "data=diabetes", "hydra.sweeper.optuna.metric=null",
                "hydra.sweeper.optuna.direction=maximize", *QUIET, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.optuna.direction=maximize contradicts the metric best/val_mse, which improves by "
        "going down (minimize): leave direction unset, or set it to minimize")
    assert not (tmp_path / "mlruns" / "optuna.db").exists()
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


# ------------------------------------------------------------------------------------ asynchronous

def test_the_next_trial_starts_while_a_long_one_runs_and_ctrl_c_queues_it_again(tmp_path):
    """Two workers; trial 0 trains 100,000 epochs (it never ends by itself). Trials 1 and 2 run one
    after the other on the second worker and finish while trial 0 still runs: a batch-synchronous
    search would not start trial 2 before trial 0 ended. Then Ctrl-C: trial 0's run ends KILLED and
    the study queues its parameters again."""
    _study(tmp_path, "gate", [{"trainer.max_epochs": 100000}, {"trainer.max_epochs": 1}, {"trainer.max_epochs": 1}])
    env = {**os.environ, "MLFLOW_TRACKING_URI": _store(tmp_path)}
    proc = subprocess.Popen([*ZOO, "train", *SEARCH, "trainer.max_epochs=choice(1,100000)", "hydra/launcher=parallel",
                             "hydra.launcher.n_jobs=2", "hydra.sweeper.optuna.n_jobs=2",
                             "hydra.sweeper.optuna.n_trials=3", "hydra.sweeper.optuna.study_name=gate"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline, states = time.time() + 600, []
        while time.time() < deadline and proc.poll() is None:  # told to the study: trials 1 and 2 are done
            states = [t.state.name for t in _load(tmp_path, "gate").trials]
            if states[1:3] == ["COMPLETE", "COMPLETE"]:
                break
            time.sleep(1)
        assert states[:3] == ["RUNNING", "COMPLETE", "COMPLETE"], (states, proc.poll())  # trial 0 still at it
        _, _, children = _sweep_runs(tmp_path, "zoo")
        assert {c.info.run_name.split(":")[0]: c.info.status for c in children}["trial 0"] == "RUNNING"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: every process of the command
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    study = _load(tmp_path, "gate")
    states = [t.state.name for t in study.trials]
    assert states[:3] == ["FAIL", "COMPLETE", "COMPLETE"] and study.trials[0].user_attrs["zoo.interrupted"]
    queued = study.trials[3]  # Optuna keeps an enqueued trial's parameters as its fixed_params
    assert states[3] == "WAITING" and queued.system_attrs["fixed_params"] == {"trainer.max_epochs": 100000}
    _, (parent,), children = _sweep_runs(tmp_path, "zoo")
    assert parent.info.status == "KILLED"
    assert {c.info.run_name.split(":")[0]: c.info.status for c in children}["trial 0"] == "KILLED"


# ------------------------------------------------------------------------------------ pruning

def test_a_hopeless_trial_is_pruned_with_a_checkpoint_and_shown_apart(tmp_path):
    """Median pruning after two complete trials: a learning rate of 1e-7 learns nothing in its first
    epoch, is pruned there (not 20 epochs later), keeps last.pt, and ends FINISHED as pruned."""
    import torch

    _study(tmp_path, "prune", [{"optimizer.lr": 0.05}, {"optimizer.lr": 0.05}, {"optimizer.lr": 1e-7}])
    r = run_zoo("train", *SEARCH, "optimizer.lr=choice(0.05,1e-7)", "trainer.max_epochs=20",
                "hydra.sweeper.optuna.n_trials=3", "hydra.sweeper.optuna.study_name=prune",
                "hydra.sweeper.optuna.pruner=median", "+hydra.sweeper.optuna.pruner_settings.n_startup_trials=2",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(2 complete, 1 pruned, 0 failed)" in r.stdout
    study = _load(tmp_path, "prune")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert list(study.trials[2].intermediate_values) == [1]  # reported after epoch 1, then stopped
    # a good trial reports after epochs 1-8, then four times per doubling
    assert list(study.trials[0].intermediate_values) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20]
    client, (parent,), children = _sweep_runs(tmp_path, "zoo")
    pruned = next(c for c in children if c.info.run_id == study.trials[2].user_attrs["zoo.run_id"])
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["zoo.pruned"] == "true" and pruned.data.tags["zoo.pruned_epoch"] == "1"
    assert len(client.get_metric_history(pruned.info.run_id, "val/loss")) == 1  # one epoch trained
    last = torch.load(f"{pruned.data.tags['zoo.checkpoint_dir']}/last.pt", weights_only=False)
    assert last["epoch"] == 1
    assert all("zoo.pruned" not in c.data.tags for c in children if c is not pruned)
    # no candidate: it keeps its best checkpoint and skips the plots (and the model) a finished trial logs
    assert [a.path for a in client.list_artifacts(pruned.info.run_id, "checkpoints")] == ["checkpoints/best.pt"]
    assert "plots" not in {a.path for a in client.list_artifacts(pruned.info.run_id)}
    assert all("plots" in {a.path for a in client.list_artifacts(c.info.run_id)} for c in children if c is not pruned)
    # the parent and zoo compare show it apart, and it is never the best
    assert parent.data.tags["zoo.sweep_pruned_runs"] == "1" and parent.data.tags["zoo.best_run_id"] != pruned.info.run_id
    assert "PRUNED@1" in parent.data.tags["mlflow.note.content"]
    cmp = zoo_here("compare", "--sweep", parent.info.run_id, cwd=tmp_path)
    assert cmp.returncode == 0, cmp.stderr
    row = next(line for line in cmp.stdout.splitlines() if line.startswith(pruned.info.run_id[:8]))
    assert "PRUNED@1" in row


def test_a_trial_reports_after_the_same_few_epochs_whatever_its_length():
    """Each report is a write and a read of the study storage, as long as an epoch of a small model:
    every epoch of the first 8, then four per doubling (a gap of at most a quarter of the epochs
    trained), so a 300-epoch trial reports 28 times, not 300; and every trial at the same epochs, so
    the median pruner compares trials at the same step."""
    from hydra_plugins.zoo_sweepers.reporter import reported

    epochs = [e for e in range(1, 301) if reported(e)]
    assert epochs[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16]
    assert epochs[-4:] == [160, 192, 224, 256] and len(epochs) == 28
    assert all((b - a) / a <= 0.25 for a, b in zip(epochs[7:], epochs[8:]))


# ------------------------------------------------------------------------------------ failures

def test_a_search_stops_starting_trials_past_the_failure_rate(tmp_path):
    """Every trial fails (no such GPU): the search stops after three instead of running all ten."""
    r = run_zoo("train", "-m", "hydra.sweeper.search=optuna", "data=iris", "optimizer.lr=interval(0.01,0.1)",
                "trainer.device=cuda:99", "hydra.sweeper.optuna.n_trials=10", *QUIET[1:], cwd=tmp_path)
    assert r.returncode == 1
    assert "error: the search stops: 3 of 3 finished trials failed, more than " \
           "hydra.sweeper.optuna.max_failure_rate=0.5; no new trial was started" in r.stdout
    assert "Traceback" not in r.stderr
    study = _load(tmp_path, "zoo")
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    _, (parent,), _ = _sweep_runs(tmp_path, "zoo")
    assert parent.info.status == "FAILED" and "max_failure_rate" in parent.data.tags["zoo.sweep_stopped"]
    assert parent.data.tags["zoo.optuna_trials_failed"] == "3"


# ------------------------------------------------------------------------------------ seeds

def test_a_search_optimises_the_mean_over_seeds(tmp_path):
    r = run_zoo("train", *SEARCH, "optimizer.lr=interval(0.01,0.1)", "trainer.max_epochs=2",
                "hydra.sweeper.optuna.n_trials=2", "hydra.sweeper.repeats=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    study = _load(tmp_path, "zoo")
    _, (parent,), children = _sweep_runs(tmp_path, "zoo")
    assert len(children) == 4 and parent.data.tags["zoo.repeats"] == "2"
    by_id = {c.info.run_id: c for c in children}
    for t in study.trials:
        runs = [by_id[i] for i in t.user_attrs["zoo.run_ids"]]
        assert sorted(c.data.params["seed"] for c in runs) == ["0", "1"]
        assert all(c.info.run_name.startswith(f"trial {t.number}: optimizer.lr=") for c in runs)
        values = [c.data.metrics["best/val_accuracy"] for c in runs]
        assert t.value == pytest.approx(statistics.fmean(values)) and t.user_attrs["zoo.values"] == values
    assert float(parent.data.tags["zoo.best_value"]) == pytest.approx(study.best_value, abs=1e-5)
    assert parent.data.tags["zoo.best_n"] == "2"


def test_grid_repeats_and_compare_group_by_give_mean_std_and_n(tmp_path):
    r = run_zoo("train", "-m", "model=mlp,perceptron", "data=iris", "trainer.max_epochs=3", "hydra.sweeper.repeats=3",
                *QUIET, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    client, (parent,), children = _sweep_runs(tmp_path)
    assert sorted(c.info.run_name for c in children) == sorted(
        f"model={m} seed={s}" for m in ("mlp", "perceptron") for s in range(3))
    assert parent.data.tags["zoo.repeats"] == "3" and parent.data.tags["zoo.best_n"] == "3"
    groups = {m: [c for c in children if c.data.params["model.name"] == m] for m in ("mlp", "perceptron")}
    means = {m: statistics.fmean(c.data.metrics["best/val_accuracy"] for c in g) for m, g in groups.items()}
    best = max(means, key=means.get)
    assert parent.data.tags["zoo.best_group"] == f"model={best}"
    assert parent.data.metrics["best/val_accuracy"] == pytest.approx(means[best])
    assert {"sweep/groups.csv", "sweep/groups.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}

    cmp = zoo_here("compare", "--sweep", parent.info.run_id, "--group-by", "--metrics", "test/accuracy",
                  "--sort", "best/val_accuracy", cwd=tmp_path)
    assert cmp.returncode == 0, cmp.stderr
    lines = cmp.stdout.splitlines()
    assert "2 groups by model.name" in lines[0] and "sorted by the mean of best/val_accuracy" in lines[0]
    for m, g in groups.items():
        row = next(line for line in lines if line.startswith(m + " "))
        values = [c.data.metrics["test/accuracy"] for c in g]
        cell = f"{fmt_number(statistics.fmean(values))} ± {fmt_number(statistics.stdev(values))}"
        assert "3/3" in row and "3 FINISHED" in row and cell in row, (row, cell)
    assert lines[3].startswith(best + " ")  # best mean first (under the header and its rule)

    # --pick best: each run's best value over its history, not its last
    one = groups["mlp"][0]
    history = [m.value for m in client.get_metric_history(one.info.run_id, "val/loss")]
    cmp = zoo_here("compare", one.info.run_id, "--metrics", "val/loss", "--pick", "best", cwd=tmp_path)
    assert fmt_number(min(history)) in cmp.stdout.splitlines()[3] and "best values" in cmp.stdout.splitlines()[0]
    cmp = zoo_here("compare", one.info.run_id, "--metrics", "val/loss", cwd=tmp_path)
    assert fmt_number(history[-1]) in cmp.stdout.splitlines()[3]


# ------------------------------------------------------------------------------------ bad input

BAD_SEARCH = [
    (["hydra.sweeper.optuna.pruner=sometimes"],
     "error: hydra.sweeper.optuna.pruner='sometimes' is invalid: expected none, median, hyperband, successive_halving"),
    (["hydra.sweeper.optuna.sampler=cmaes"], "error: hydra.sweeper.optuna.sampler='cmaes' is invalid: expected tpe or random"),
    (["hydra.sweeper.repeats=0"],
     "error: hydra.sweeper.repeats=0 is invalid: expected an integer >= 1 (the seeds every configuration runs with)"),
    (["hydra.sweeper.optuna.storage=sqlite:////nonexistent/folder/optuna.db"],
     "error: hydra.sweeper.optuna.storage=sqlite:////nonexistent/folder/optuna.db: cannot open the study storage: "),
    (["hydra.sweeper.optuna.pruner=median", "+hydra.sweeper.optuna.pruner_settings.patience=3"],
     "error: hydra.sweeper.optuna.pruner_settings.patience is not a setting of the median pruner; its settings: "),
    (["hydra.sweeper.optuna.max_failure_rate=2"],
     "error: hydra.sweeper.optuna.max_failure_rate=2.0 is invalid: expected a number from 0 to 1"),
    (["hydra.sweeper.optuna.pruner=median", "hydra.sweeper.repeats=2"],
     "error: hydra.sweeper.optuna.pruner=median with hydra.sweeper.repeats=2: a trial's seeds would report over "
     "each other; use one of them"),
]


@pytest.mark.parametrize("args,line", BAD_SEARCH, ids=[" ".join(a) for a, _ in BAD_SEARCH])
def test_bad_search_input_is_one_line_and_no_run(tmp_path, args, line):
    r = run_zoo("train", *SEARCH, "optimizer.lr=interval(0.01,0.1)", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(line), last
    assert "Traceback" not in r.stderr
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_grid_repeats_zero_and_repeats_with_a_seed_sweep_are_one_line(tmp_path):
    r = run_zoo("train", "-m", "data=iris", "model=mlp,perceptron", "hydra.sweeper.repeats=0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.repeats=0 is invalid: expected an integer >= 1 (the seeds every configuration runs with)")
    r = run_zoo("train", "-m", "data=iris", "seed=0,1", "hydra.sweeper.repeats=2", *QUIET, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "error: seed is swept and hydra.sweeper.repeats=2 runs every configuration with 2 seeds: use one of them")
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_an_engine_out_of_reach_is_one_line_and_no_run(tmp_path):
    """Slurm's launcher where sbatch is not installed; a Ray cluster address where nothing answers
    (a closed port on 127.0.0.1: the check connects there and nowhere else)."""
    import socket

    (tmp_path / "bin").mkdir()
    r = run_zoo("train", "-m", "hydra/launcher=slurm", "data=iris", "model=mlp,perceptron", *QUIET, cwd=tmp_path,
                env={"PATH": str(tmp_path / "bin")})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "error: hydra/launcher=slurm needs Slurm's sbatch, which is not on this machine's PATH: run the command on "
        "the cluster's login node (or hydra/launcher=parallel to run the jobs here)")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_zoo("train", "-m", "data=iris", "model=mlp,perceptron", *QUIET,
                "hydra.launcher._target_=hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                f"+hydra.launcher.ray={{init:{{address:'127.0.0.1:{port}'}}}}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"error: hydra.launcher.ray.init.address=127.0.0.1:{port}: no Ray cluster answers there (")
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
