"""Sweeps: parent and child runs, failed jobs, parallel jobs, GPU slots, Optuna searches, lesson presets.

Every sweep runs through the real command line into a SQLite store in tmp_path and is read back
with MlflowClient; the Optuna study is read back with Optuna. Nothing is mocked.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from zoo.config import CONF_DIR, validate
from zoo.errors import ZooError
from hydra_plugins.zoo_sweepers.search_space import search_space
from zoo.experiments.gpus import gpus_for_slot
from zoo.experiments.objective import pick_best
from zoo.experiments.overrides import grid_jobs, job_label, varying_keys

from .conftest import run_zoo

QUIET = ["trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false", "tracking.hist_every=0"]


def _store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def _sweep_runs(tmp_path, experiment: str = "zoo"):
    client = mlflow.MlflowClient(_store(tmp_path))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in runs if "zoo.sweep" in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


# ------------------------------------------------------------------------------------ pure parts

def test_gpus_for_slot_gives_parallel_workers_distinct_gpus():
    visible = ["0", "1", "2", "3"]
    assert [gpus_for_slot(s, visible) for s in range(4)] == [["0"], ["1"], ["2"], ["3"]]
    assert [gpus_for_slot(s, visible, per_job=2) for s in range(2)] == [["0", "1"], ["2", "3"]]
    assert gpus_for_slot(5, ["0", "1"]) == ["1"]  # more workers than GPUs: they share, round robin
    assert gpus_for_slot(0, ["0", "1"], per_job=8) == ["0", "1"]  # asks for more than there are: all
    assert gpus_for_slot(3, ["GPU-a1", "GPU-b2"]) == ["GPU-b2"]  # UUIDs pass through
    assert gpus_for_slot(0, []) == []  # no GPU: the CPU


def test_acquire_slot_holds_one_slot_per_live_process(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from zoo.experiments.gpus import acquire_slot
        print(acquire_slot({str(tmp_path)!r}, 3), acquire_slot({str(tmp_path)!r}, 3), flush=True)
        time.sleep(3)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    slots = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(a == b for a, b in slots)  # a process keeps its slot from job to job
    assert sorted(int(a) for a, _ in slots) == [0, 1, 2]  # concurrent processes never share one


def test_grid_jobs_arms_and_labels():
    jobs = grid_jobs({"optimizer.lr": "0.1,0.01"}, ["data=moons", "trainer.max_epochs=2"],
                     [["model=mlp", "model.activation=relu"], ["model=perceptron"]])
    assert jobs == [
        ["optimizer.lr=0.1", "data=moons", "trainer.max_epochs=2", "model=mlp", "model.activation=relu"],
        ["optimizer.lr=0.01", "data=moons", "trainer.max_epochs=2", "model=mlp", "model.activation=relu"],
        ["optimizer.lr=0.1", "data=moons", "trainer.max_epochs=2", "model=perceptron"],
        ["optimizer.lr=0.01", "data=moons", "trainer.max_epochs=2", "model=perceptron"],
    ]
    sweeper = {"params": {"optimizer.lr": "0.1,0.01"},
               "arms": [["model=mlp", "model.dropout=0.1", "model.activation=relu"], ["model=mlp", "model.dropout=0.1"]]}
    keys = varying_keys(["data=moons", "seed=0,1"], sweeper)
    assert keys == ["optimizer.lr", "seed", "model.activation"]  # model and dropout are the same in every arm
    assert job_label(["seed=1", "optimizer.lr=0.004430375245218269", "model.activation=relu"], keys) == \
        "optimizer.lr=0.00443 seed=1 model.activation=relu"
    with pytest.raises(ZooError, match="interval"):
        grid_jobs({}, ["optimizer.lr=interval(0.1,1)"], None)


def test_search_space_from_hydra_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists, fixed, raw = search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "model.hidden_sizes": "choice([64], [128, 64])",
         "trainer.batch_size": "range(16, 80, 16)", "model.activation": "relu,tanh"},
        ["data=iris", "model.dropout=interval(0, 0.5)"])
    assert dists["optimizer.lr"] == FloatDistribution(1e-4, 0.1, log=True)
    assert dists["model.dropout"] == FloatDistribution(0.0, 0.5)
    assert dists["trainer.batch_size"] == IntDistribution(16, 64, step=16)
    assert dists["model.activation"] == CategoricalDistribution(["relu", "tanh"])
    assert dists["model.hidden_sizes"] == CategoricalDistribution(["[64]", "[128,64]"]) and raw == {"model.hidden_sizes"}
    assert fixed == ["data=iris"]
    with pytest.raises(ZooError, match="log interval must be above 0"):
        search_space({"optimizer.lr": "tag(log, interval(0, 1))"}, [])
    with pytest.raises(ZooError, match="nothing to search"):
        search_space({}, ["data=iris"])


def test_pick_best_follows_the_direction_and_skips_missing_values():
    rows = [{"metrics": {"m": 0.5}}, {"metrics": {"m": float("nan")}}, {"metrics": {}}, {"metrics": {"m": 0.9}}]
    assert pick_best(rows, "m", "maximize") is rows[3]
    assert pick_best(rows, "m", "minimize") is rows[0]
    assert pick_best(rows[1:3], "m", "maximize") is None


LESSONS = ["linear_collapse", "gd_variants", "rnn_memory", "gnn_vs_mlp", "transformer_vs_rnn"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_preset_is_one_sweep_whose_every_job_validates(lesson, registry, tmp_path):
    """Each lesson is one command (MULTIRUN from the preset) in its own experiment, and every job it
    will launch composes and passes Zoo's validation (so a renamed plugin setting breaks this test)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        master = compose("config", overrides=[f"experiment={lesson}"], return_hydra_config=True)
        sweeper = master.hydra.sweeper
        assert str(master.hydra.mode) == "RunMode.MULTIRUN"
        assert "zoo_sweepers" in sweeper._target_ and sweeper.search == "grid" and sweeper.description
        assert master.tracking.experiment == f"lesson_{lesson}"
        jobs = grid_jobs(dict(sweeper.params or {}), [], [list(a) for a in sweeper.arms or []])
        assert len(jobs) >= 2
        labels = {job_label(job, varying_keys([], sweeper)) for job in jobs}
        assert len(labels) == len(jobs)  # every child run gets its own name
        for job in jobs:
            cfg = compose("config", overrides=[f"experiment={lesson}", *job, f"paths.output_dir={tmp_path}"])
            validate(cfg, registry)


# ------------------------------------------------------------------------------------ the command line

def test_grid_sweep_is_one_parent_with_a_nested_child_per_job(tmp_path):
    scratch = tmp_path / "tmp"  # the sweep's temporary folders (TMPDIR): none is left behind
    scratch.mkdir()
    r = run_zoo("train", "-m", "model=mlp,perceptron", "optimizer.lr=0.1,0.01", "data=iris",
                "trainer.max_epochs=2", *QUIET, cwd=tmp_path, env={"TMPDIR": str(scratch)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [p.name for p in scratch.iterdir() if p.name.startswith(("zoo-", "pymp-"))]
    client, parents, children = _sweep_runs(tmp_path)
    (parent,) = parents
    assert parent.info.status == "FINISHED" and parent.data.tags["zoo.sweep"] == "grid"
    assert parent.data.tags["zoo.sweep_overrides"].startswith("model=mlp,perceptron optimizer.lr=0.1,0.01")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    # each child is named by what varies and tagged with its own overrides
    assert sorted(c.info.run_name for c in children) == [
        "model=mlp optimizer.lr=0.01", "model=mlp optimizer.lr=0.1",
        "model=perceptron optimizer.lr=0.01", "model=perceptron optimizer.lr=0.1"]
    for c in children:
        assert set(c.info.run_name.split()) <= set(c.data.tags["zoo.overrides"].split())
    # each job ran with its own config (composed once, for the check before the first job, on the serial
    # launcher): its folder <sweep dir>/<job number>, Hydra's record of that number and of its overrides
    for c in children:
        folder = Path(c.data.tags["zoo.output_dir"])
        job = OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.job
        assert str(job.num) == str(job.id) == folder.name
        assert OmegaConf.load(folder / ".hydra" / "config.yaml").model.name == c.data.tags["zoo.model"]
        assert set(c.info.run_name.split()) <= set(OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
    assert sorted(Path(c.data.tags["zoo.output_dir"]).name for c in children) == ["0", "1", "2", "3"]
    # the parent carries the best child: its id, its metric's name and value
    best = max(children, key=lambda c: c.data.metrics["best/val_accuracy"])
    assert parent.data.tags["zoo.best_metric"] == "best/val_accuracy"
    assert parent.data.metrics["best/val_accuracy"] == pytest.approx(best.data.metrics["best/val_accuracy"])
    assert client.get_run(parent.data.tags["zoo.best_run_id"]).data.metrics["best/val_accuracy"] == \
        pytest.approx(best.data.metrics["best/val_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} | \
        {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"sweep/summary.csv", "sweep/summary.md", "plots/sweep.png"} <= artifacts
    assert "zoo sweep: best " in r.stdout and parent.info.run_id in r.stdout


def test_a_serial_sweeps_trials_keep_every_row_and_artifact(tmp_path):
    """Trials in one process share a writer process and freeze what outlives each job (zoo/tracking/writer.py,
    zoo._runtime.collect_between_jobs): every trial still ends FINISHED with all its rows, its model and plots."""
    r = run_zoo("train", "-m", "seed=0,1,2", "data=iris", "trainer.max_epochs=3", "trainer.device=cpu",
                "tracking.system_metrics=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    client, parents, children = _sweep_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 3
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["zoo.metric_writer"] in ("process", "thread", "process+thread")
        steps = int(c.data.metrics["perf/steps"])
        assert sorted(m.step for m in client.get_metric_history(c.info.run_id, "train/loss")) == list(range(1, steps + 1))
        assert c.data.metrics["perf/metric_rows"] >= steps
        files = {a.path for a in client.list_artifacts(c.info.run_id, "plots")} | \
            {a.path for a in client.list_artifacts(c.info.run_id, "checkpoints")}
        assert {"plots/loss_curve.png", "checkpoints/best.pt"} <= files, files
        assert client.get_run(c.info.run_id).outputs.model_outputs, "the trial's model was not logged"


def test_hydras_basic_sweeper_gets_the_same_parent_and_children(tmp_path):
    """With Hydra's own sweeper the callback opens the parent run as the sweep starts (Zoo's
    sweepers open it themselves, once every job's config has been checked)."""
    r = run_zoo("train", "-m", "hydra/sweeper=basic", "model=mlp,perceptron", "data=iris", "trainer.max_epochs=1",
                *QUIET, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    _, (parent,), children = _sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["zoo.sweep"] == "grid"
    assert "hydra._internal.core_plugins.basic_sweeper" in parent.data.tags["zoo.sweeper"]
    assert sorted(c.info.run_name for c in children) == ["model=mlp", "model=perceptron"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    assert f"zoo sweep: parent run {parent.info.run_id}" in r.stdout


def test_a_failed_job_does_not_stop_the_sweep(tmp_path):
    # cuda:99 passes the config check but not the job (no such GPU): one job fails, the other runs
    r = run_zoo("train", "-m", "data=iris", "trainer.max_epochs=1", "trainer.device=cpu,cuda:99",
                *QUIET[1:], cwd=tmp_path)
    assert r.returncode == 1
    assert re.search(r"error: sweep job failed \(trainer.device=cuda:99\): trainer.device='cuda:99' is invalid", r.stderr)
    assert "error: 1 of 2 sweep jobs failed" in r.stderr and "Traceback" not in r.stderr
    _, (parent,), children = _sweep_runs(tmp_path)
    assert [c.info.run_name for c in children] == ["trainer.device=cpu"] and children[0].info.status == "FINISHED"
    assert parent.info.status == "FAILED" and "cuda:99" in parent.data.tags["zoo.error"]


def test_bad_sweep_input_stops_before_any_run(tmp_path):
    r = run_zoo("train", "-m", "model=mlp,perceptron", "model.hidden_sizes=[8]", "data=iris", *QUIET, cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: sweep job 1 (model=perceptron): model.hidden_sizes is not a setting of model=perceptron "
                     "(its settings: activation); give it to some jobs only with hydra.sweeper.arms (docs/experiments.md)"]
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []  # nothing left behind


def test_parallel_jobs_share_one_store_and_each_worker_gets_its_gpu(tmp_path):
    """Four jobs at once, each its own process, into one fresh SQLite store: every run and every
    step of train/loss arrives. Four (pretend) GPUs: each worker process sets its own one."""
    r = run_zoo("train", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=4", "model=mlp,perceptron",
                "optimizer.lr=0.1,0.01", "data=iris", "trainer.max_epochs=2", "trainer.batch_size=4",
                "trainer.log_every=3", *QUIET, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert r.returncode == 0, r.stderr[-3000:]
    client, (parent,), children = _sweep_runs(tmp_path)
    assert len(children) == 4 and parent.info.status == "FINISHED"
    for c in children:
        assert c.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "train/loss")]
        epochs = sorted(m.step for m in client.get_metric_history(c.info.run_id, "val/loss"))
        assert len(epochs) == 2 and epochs[1] == 2 * epochs[0] > 50  # ~103 examples, batches of 4
        assert sorted(steps) == list(range(1, epochs[1] + 1))  # every step, once
    assignments = re.findall(r"\(pid (\d+), slot (\d+)\): CUDA_VISIBLE_DEVICES=(\S+)", r.stdout + r.stderr)
    assert len(assignments) == 4
    gpu_of = {}
    for pid, slot, gpus in assignments:
        assert gpu_of.setdefault(pid, gpus) == gpus  # a worker keeps its GPU
        assert gpus == slot  # slot n -> the n-th visible GPU
    assert len(set(gpu_of.values())) == len(gpu_of)  # no two workers share a GPU


def test_optuna_search_continues_where_it_stopped(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution

    args = ["train", "hparams_search=mlp_digits", "data=iris", "trainer.max_epochs=1", *QUIET]
    r = run_zoo(*args, "hydra.sweeper.optuna.n_trials=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "0 trials done, 2 to run" in r.stdout, r.stdout[-3000:]
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"  # beside mlflow.db
    study = optuna.load_study(study_name="mlp_digits", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    _, (parent,), children = _sweep_runs(tmp_path, "hparams_mlp_digits")
    assert study.user_attrs["zoo.parent_run_id"] == parent.info.run_id
    assert {t.user_attrs["zoo.run_id"] for t in study.trials} == {c.info.run_id for c in children}
    for t in study.trials:  # the value told to Optuna is the run's named metric
        run = next(c for c in children if c.info.run_id == t.user_attrs["zoo.run_id"])
        assert t.value == pytest.approx(run.data.metrics["best/val_accuracy"])
        assert run.info.run_name.startswith(f"trial {t.number}: optimizer.lr=")

    # a process that died mid-trial leaves a RUNNING trial: the next run re-runs it first
    stale = study.ask({"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)})
    r = run_zoo(*args, "hydra.sweeper.optuna.n_trials=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 trials done, 1 to run" in r.stdout, r.stdout[-3000:]
    study = optuna.load_study(study_name="mlp_digits", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3  # the two finished trials were not run again
    assert study.trials[stale.number].state.name == "FAIL"
    assert complete[-1].params["optimizer.lr"] == stale.params["optimizer.lr"]
    _, (parent2,), children = _sweep_runs(tmp_path, "hparams_mlp_digits")
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert len(children) == 3
    best = max(complete, key=lambda t: t.value)
    assert parent2.data.tags["zoo.best_run_id"] == best.user_attrs["zoo.run_id"]
    assert parent2.data.metrics["best/val_accuracy"] == pytest.approx(best.value)
    assert parent2.data.tags["zoo.optuna_study"] == "mlp_digits"


def test_bad_search_space_is_one_line_and_no_run(tmp_path):
    r = run_zoo("train", "hparams_search=mlp_digits", "optimizer.lr=tag(log, interval(0, 1))", *QUIET, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "error: optimizer.lr=tag(log, interval(0, 1)): a log interval must be above 0")
    assert not (tmp_path / "mlruns" / "optuna.db").exists()
    client = mlflow.MlflowClient(_store(tmp_path))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
