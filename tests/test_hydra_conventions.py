"""Zoo as an experienced Hydra user runs it: their own config folder, hydra.job.chdir, glob() sweeps,
tab completion, --info, the job's folder and log, and what a run keeps of the command line.

Every test runs the real ``zoo`` command in a temporary folder and reads the runs back through
``MlflowClient``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from .conftest import ROOT, ZOO, run_zoo, runs_in

QUICK = ["trainer.max_epochs=1", "tracking.system_metrics=false", "tracking.log_model=false", "trainer.device=cpu"]


def write_user_conf(folder: Path) -> Path:
    """A user's own config folder: a preset and a model YAML that extends a plugin's node."""
    (folder / "experiment").mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "experiment" / "my_iris.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /data: iris\n  - override /model: mlp_tiny\n"
        "tracking:\n  experiment: my_exp\n")
    (folder / "model" / "mlp_tiny.yaml").write_text(
        "defaults:\n  - /zoo/model/mlp@_here_\n  - _self_\nhidden_sizes: [8]\n")
    return folder


def the_run(cwd: Path, dataset: str | None = None):
    (run,) = [r for r in runs_in(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
              if "zoo.model" in r.data.tags and r.data.tags["zoo.dataset"] == (dataset or r.data.tags["zoo.dataset"])]
    return run


def test_presets_and_models_from_the_users_config_folder_train(tmp_path):
    conf = write_user_conf(tmp_path / "myconf")
    r = run_zoo("train", "--config-dir", "myconf", "experiment=my_iris", *QUICK, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = the_run(tmp_path, "iris")
    assert run.data.params["model.hidden_sizes"] == "[8]"
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").get_experiment(
        run.info.experiment_id).name == "my_exp"

    r = run_zoo("train", f"hydra.searchpath=[file://{conf}]", "model=mlp_tiny", "data=wine", *QUICK, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert the_run(tmp_path, "wine").data.params["model.hidden_sizes"] == "[8]"

    # a misspelt name is still one line, choosing among the user's names too
    r = run_zoo("train", f"--config-dir={conf}", "experiment=my_irs", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "unknown experiment 'my_irs' in experiment=my_irs. Did you mean 'my_iris'?" in r.stderr


def test_job_chdir_keeps_runs_in_the_project_store(tmp_path):
    """hydra.job.chdir=true moves the job into its folder; the default store stays where zoo ran."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store, not a set one
    r = subprocess.run([*ZOO, "train", "hydra.job.chdir=true", "hydra.run.dir=job", "data=iris", *QUICK],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert the_run(tmp_path).info.status == "FINISHED"
    assert (tmp_path / "job" / "train.log").exists() and not (tmp_path / "job" / "mlruns").exists()

    r = subprocess.run([*ZOO, "train", "-m", "hydra.job.chdir=true", "hydra.sweep.dir=sweep", "seed=0,1",
                        "data=iris", "tracking.experiment=chdir_sweep", *QUICK],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    runs = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (parent,) = [x for x in runs if x.data.tags.get("zoo.sweep")]
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert not list((tmp_path / "sweep").rglob("mlruns"))


def test_a_sweep_whose_parent_failed_exits_non_zero(tmp_path):
    """Jobs that nest nowhere (tracking.parent_run_id=null) leave the parent without a finished child."""
    r = run_zoo("train", "-m", "seed=0,1", "data=iris", "tracking.parent_run_id=null", *QUICK, cwd=tmp_path)
    assert r.returncode != 0
    assert "error: no job of the sweep finished a run nested under the parent run" in r.stderr
    (parent,) = [x for x in runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") if x.data.tags.get("zoo.sweep")]
    assert parent.info.status == "FAILED"


def test_glob_in_a_sweep(tmp_path):
    r = run_zoo("train", "-m", "optimizer=glob(adam*)", "data=iris", "tracking.experiment=globbed", *QUICK, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    runs = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    children = [x for x in runs if "zoo.model" in x.data.tags]
    assert sorted(x.data.params["optimizer._target_"] for x in children) == ["torch.optim.Adam", "torch.optim.AdamW"]
    assert all(x.info.status == "FINISHED" for x in runs)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_bash_completion_of_zoo_train(tmp_path):
    """The script `zoo train --shell-completion install=bash` prints, driven in a real bash as <TAB> does."""
    plugins = tmp_path / "plugs"
    plugins.mkdir()
    (plugins / "mine.py").write_text(
        "import torch\nimport zoo\n\n@zoo.hookimpl\ndef zoo_architectures():\n"
        "    return [zoo.Architecture(name='my_folder_net', family='ann', kinds=('tabular',),\n"
        "                             build=lambda info: torch.nn.Linear(info.input_shape[-1], info.output_dim))]\n")
    bindir = tmp_path / "bin"  # `zoo` on PATH, as an installed command
    bindir.mkdir()
    (bindir / "zoo").write_text(f"#!/bin/sh\nexec {' '.join(ZOO)} \"$@\"\n")
    (bindir / "zoo").chmod(0o755)
    script = """
eval "$(zoo train --shell-completion install=bash)"
complete -p zoo
complete -p train 2>/dev/null && echo "ALSO TRAIN"
tab() {  # what bash sets before it calls the completion function
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${#COMP_WORDS[@]}
  COMPREPLY=(); hydra_bash_completion; echo "[$1] ${COMPREPLY[*]}"
}
tab "zoo train mod"
tab "zoo train model="
tab "zoo train model=my_f"
tab "zoo tr"
"""
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "ZOO_PLUGIN_DIR": str(plugins)}
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = dict(line.split("] ", 1) for line in r.stdout.splitlines() if line.startswith("[") and "] " in line)
    assert "-F hydra_bash_completion zoo" in r.stdout and "ALSO TRAIN" not in r.stdout, r.stdout + r.stderr
    assert out["[zoo train mod"].split() == ["model.", "model="], r.stdout + r.stderr
    assert {"model=mlp", "model=perceptron", "model=gcn", "model=my_folder_net"} <= set(out["[zoo train model="].split())
    assert out["[zoo train model=my_f"].split() == ["model=my_folder_net"]
    assert out["[zoo tr"].split() == ["train"]
    assert "error" not in r.stderr


def test_info_is_printed_once(tmp_path):
    r = run_zoo("train", "--info", "searchpath", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.count("Config search path") == 1 and "pkg://zoo.config.conf" in r.stdout
    assert "Config search path" not in r.stderr and "hydra._internal" not in r.stderr


def test_a_run_keeps_the_command_line_as_hydra_wrote_it(tmp_path):
    """Overrides as typed, params in Hydra's syntax, .hydra/ with the run, the job's log naming the run;
    scheduler=null is no scheduler (Hydra 1.3 itself refuses a null group choice: Zoo gives it ~scheduler)."""
    r = run_zoo("train", "data=iris", "scheduler=null", "tracking.run_name=${model.name}-typed",
                "model.hidden_sizes=[16,8]", *QUICK, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = the_run(tmp_path)
    assert run.info.run_name == "mlp-typed"
    assert run.data.tags["zoo.overrides"].startswith(  # scheduler=null reaches Hydra as ~scheduler
        "data=iris ~scheduler tracking.run_name=${model.name}-typed model.hidden_sizes=[16,8]")
    params = run.data.params
    assert (params["model.hidden_sizes"], params["model.batch_norm"], params["trainer.patience"]) == ("[16,8]", "false", "null")
    assert params["optimizer._target_"] == "torch.optim.Adam" and not any(k.startswith("scheduler.") for k in params)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")} == {
        ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}
    typed = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, ".hydra/overrides.yaml", str(tmp_path))).read_text())
    assert "tracking.run_name=${model.name}-typed" in typed
    (log,) = (tmp_path / "outputs").rglob("*.log")
    text = log.read_text()
    assert log.name == "train.log" and f"MLflow run {run.info.run_id} in experiment 'zoo'" in text
    summary = next(line for line in r.stdout.splitlines() if line.startswith("zoo: mlp on iris"))
    assert text.rstrip().endswith(summary)
    assert "zoo.run" not in r.stdout  # the record goes to the file; the terminal has the summary once
    assert r.stdout.count(summary) == 1


def test_params_paste_back_as_overrides(tmp_path, make_cfg, registry):
    """Every logged param, given back as `key=param`, composes to the value the run used."""
    from omegaconf import OmegaConf

    from zoo.training.train import hydra_params

    plain = OmegaConf.to_container(make_cfg("model.hidden_sizes=[16,8]", "trainer.patience=3"), resolve=True)
    params = hydra_params(plain)
    wanted = {k: v for k, v in params.items() if k.startswith(("model.", "trainer.", "optimizer.", "seed"))}
    again = OmegaConf.to_container(make_cfg(*[f"{k}={v}" for k, v in wanted.items()]), resolve=True)
    assert hydra_params(again) == params


def test_zoo_train_documents_the_users_config_folder():
    readme = (ROOT / "README.md").read_text()
    for text in ("--config-dir", "hydra.searchpath=[file://", "hydra.job.chdir=true", "--shell-completion install=bash"):
        assert text in readme, text
