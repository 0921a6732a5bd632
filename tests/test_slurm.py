"""Real Slurm: a one-node cluster on 127.0.0.1 (scripts/slurm.sh, started by .ci/run).

Sweeps submit real Slurm jobs through Hydra's submitit launcher (``hydra/launcher=slurm``) into one
MLflow parent run; a DDP job of two Slurm tasks (``srun -n 2``) gives one run with world size 2.
Skipped, with the reason, only where Slurm is not installed (no ``sbatch``); where it is installed
but the cluster is down, the module starts it with scripts/slurm.sh and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from zoo.training.distributed import first_host, slurm_tasks

from .conftest import ZOO, run_zoo, runs_in
from .test_sweeps import QUIET, _store, _sweep_runs

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm.sh"
# what one job may ask of the one-node test cluster (the preset asks for a GPU and 4 CPUs)
SMALL = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20"]


def _cluster_up() -> bool:
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and any(s.rstrip("*~#$@") in ("idle", "mixed", "allocated") for s in r.stdout.split())


@pytest.fixture(scope="module")
def slurm():
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed on this machine (no sbatch on PATH); `scripts/slurm.sh start` "
                    "(which .ci/run calls) installs slurm-wlm and munge and starts a one-node cluster")
    started = False
    if not _cluster_up():
        r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"sbatch is installed but the cluster is down, and scripts/slurm.sh start " \
                                  f"failed:\n{r.stdout}\n{r.stderr}"
        started = True
    yield
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=300)


def _slurm_job_dirs(tmp_path) -> list[Path]:
    """The submitit folders of the Slurm jobs a sweep submitted (one per job, named by its job id)."""
    return sorted(p for p in tmp_path.glob("multirun/*/*/.submitit/*") if p.is_dir() and p.name.isdigit())


def test_a_grid_sweep_runs_as_slurm_jobs_into_one_parent(tmp_path, slurm):
    r = run_zoo("train", "-m", *SMALL, "data=iris", "model=mlp,perceptron", "trainer.max_epochs=2", *QUIET,
                cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    _, (parent,), children = _sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.run_name for c in children) == ["model=mlp", "model=perceptron"]
    assert all(c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for c in children)
    jobs = _slurm_job_dirs(tmp_path)
    assert len(jobs) == 2  # two Slurm jobs, each ran one training run
    logs = [next(j.glob("*_log.out")).read_text() for j in jobs]
    assert all("Job completed successfully" in log for log in logs)
    assert sorted(log.count("zoo: ") for log in logs) == [1, 1]


def test_an_asynchronous_search_submits_a_slurm_job_per_trial(tmp_path, slurm):
    r = run_zoo("train", "-m", *SMALL, "hydra.sweeper.search=optuna", "data=iris", "optimizer.lr=interval(0.01,0.1)",
                "trainer.max_epochs=1", "hydra.sweeper.optuna.n_jobs=2", "hydra.sweeper.optuna.n_trials=3", *QUIET,
                cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="zoo", storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    _, (parent,), children = _sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert {t.user_attrs["zoo.run_id"] for t in study.trials} == {c.info.run_id for c in children}
    assert len(_slurm_job_dirs(tmp_path)) == 3  # one Slurm job per trial, not one array per batch


def test_ddp_over_two_slurm_tasks_is_one_run_with_world_size_2(tmp_path, slurm):
    """``srun -n 2 zoo train trainer=ddp``: Slurm starts both processes; each joins the step's process
    group (rank from SLURM_PROCID, rendezvous on the step's first node) instead of starting torchrun."""
    store = _store(tmp_path)
    r = subprocess.run(["srun", "-n", "2", "-c", "1", "-N", "1", "--export=ALL", *ZOO, "train", "data=iris",
                        "trainer=ddp", "trainer.nproc=2", "trainer.batch_size=8", "trainer.max_epochs=2",
                        "hydra.run.dir=ddp", *QUIET],
                       cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": store},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("zoo: mlp on iris") == 1  # only rank 0 reports
    (run,) = runs_in(store)  # one run for the two tasks
    assert run.info.status == "FINISHED" and run.data.tags["zoo.world_size"] == "2"
    history = mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 2  # two epochs, logged once (by rank 0), not once per task


def test_the_rendezvous_host_of_a_multi_node_step_is_its_first_node():
    """The multi-node recipe: every task of ``srun -N 2 --ntasks-per-node=G`` gets torchrun's variables,
    MASTER_ADDR the step's first node (as ``scontrol show hostnames`` expands the node list)."""
    env = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
           "SLURM_STEP_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "1234"}
    assert slurm_tasks(env) == {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_ADDR": "gpu03",
                                "MASTER_PORT": str(29500 + 1234)}
    assert slurm_tasks({**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "4000"})["MASTER_ADDR"] == "10.0.0.1"
    assert slurm_tasks({**env, "SLURM_STEP_NUM_TASKS": "1"}) is None  # one task: a plain run
    assert slurm_tasks({k: v for k, v in env.items() if k != "SLURM_STEP_ID"}) is None  # the batch script itself
    assert first_host("node[07,09-10],login1") == "node07"
    assert first_host("login1") == "login1"
