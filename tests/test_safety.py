"""Nothing runs that should not: a crafted checkpoint or override calls no code and reads no
environment, a secret typed as ``${oc.env:...}`` stays out of the store, a weak admin password is
refused, and an experiment's name never leads out of the artifacts folder.

Every case runs the real command line against a real store in tmp_path (field report
``reliability.md``, cases 5o, 5q, 7c-7g).
"""

from __future__ import annotations

import mlflow
import pytest
import torch

from ._faults import FIXTURE_CHECKPOINT, SMALL, TINY, no_run_in, one_line_error, runs_of
from ._servers import free_port, zoo_env
from .conftest import run_zoo

SECRET = "s3cr3t-value-123"


def crafted_checkpoint(tmp_path, change) -> str:
    """A real Zoo checkpoint (the fixture's last.pt) whose config ``change(config)`` edited, saved as a new file."""
    state = torch.load(FIXTURE_CHECKPOINT, weights_only=True)
    change(state["config"])
    path = tmp_path / "crafted" / "last.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return str(path)


def test_a_target_nested_in_lists_of_a_checkpoint_runs_nothing(tmp_path):
    """7c: ``optimizer.foo=[[{_target_: numpy.savetxt, ...}]]`` in a crafted last.pt wrote a file on ``resume=``."""
    payload = tmp_path / "written-by-the-checkpoint"

    def plant(config):
        config["optimizer"]["foo"] = [[{"_target_": "numpy.savetxt", "fname": str(payload), "X": [1, 2]}]]

    r = run_zoo("train", f"resume={crafted_checkpoint(tmp_path, plant)}", cwd=tmp_path)
    one_line_error(r, "optimizer.foo[0][0]._target_='numpy.savetxt' is invalid: expected plain data")
    assert not payload.exists()
    no_run_in(tmp_path)


def test_a_target_nested_in_lists_of_an_override_runs_nothing(tmp_path):
    """7c2: the same nesting typed on the command line."""
    payload = tmp_path / "written-by-the-override"
    r = run_zoo("train", *TINY, *SMALL, f"+optimizer.foo=[[{{_target_:numpy.savetxt,fname:{payload},X:[1,2]}}]]", cwd=tmp_path)
    one_line_error(r, "optimizer.foo[0][0]._target_='numpy.savetxt' is invalid")
    assert not payload.exists()
    no_run_in(tmp_path)


@pytest.mark.parametrize("override, message", [
    ("+optimizer.foo=[[[{_partial_:true}]]]", "optimizer.foo[0][0][0]._partial_=True is invalid: expected no _partial_ here"),
    ("+tracking.x={a:[{_args_:[1]}]}", "tracking.x.a[0]._args_=[1] is invalid: expected no _args_ here"),
    ("+optimizer._recursive_=false", "optimizer._recursive_=False is invalid: expected no _recursive_ in optimizer"),
    ("+optimizer._convert_=all", "optimizer._convert_='all' is invalid: expected no _convert_ in optimizer"),
    ("optimizer._partial_=false", "optimizer._partial_=False is invalid: expected true"),
    ("+_target_=os.system", "_target_='os.system' is invalid: expected plain data"),
], ids=["partial-deep", "args-in-dict-list", "recursive", "convert", "partial-false", "top-level-target"])
def test_instantiate_keys_are_refused_wherever_zoo_does_not_expect_them(make_cfg, registry, override, message):
    import zoo
    from zoo.training.train import train

    with pytest.raises(zoo.ZooError) as err:
        train(make_cfg(override), registry)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_checkpoint_config_is_data_and_its_interpolations_are_refused(tmp_path):
    """7d: ``tracking.experiment: leak-${oc.env:SECRET_TOKEN}`` in a crafted last.pt named an experiment after the secret."""

    def plant(config):
        config["tracking"]["experiment"] = "leak-${oc.env:SECRET_TOKEN}"

    r = run_zoo("train", f"resume={crafted_checkpoint(tmp_path, plant)}", cwd=tmp_path, env={"SECRET_TOKEN": SECRET})
    line = one_line_error(r, "its config holds the interpolation tracking.experiment='leak-${oc.env:SECRET_TOKEN}'")
    assert SECRET not in r.stderr + r.stdout and SECRET not in line
    db = tmp_path / "mlruns" / "mlflow.db"
    if db.exists():
        assert not [e for e in mlflow.MlflowClient(f"sqlite:///{db}").search_experiments() if SECRET in e.name]


def test_an_env_value_typed_as_an_override_is_recorded_as_typed(tmp_path):
    """7e: ``tracking.run_name=${oc.env:SECRET_TOKEN}`` stored the secret as run name, param, tag and artifact."""
    typed = "${oc.env:SECRET_TOKEN}"
    r = run_zoo("train", *TINY, *SMALL, f"tracking.run_name={typed}", cwd=tmp_path, env={"SECRET_TOKEN": SECRET})
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = runs_of(tmp_path / "mlruns" / "mlflow.db")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == typed and run.data.params["tracking.run_name"] == typed
    assert f"tracking.run_name={typed}" in run.data.tags["zoo.overrides"]
    stored = [run.info.run_name, *run.data.params.values(), *run.data.tags.values()]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    for name in ("config.yaml", "overrides.txt"):
        stored.append(open(client.download_artifacts(run.info.run_id, name, str(tmp_path))).read())
    assert not [s for s in stored if SECRET in str(s)]


@pytest.mark.parametrize("password, why", [
    (" " * 12, "is blank"), ("a" * 16, "is one character repeated 16 times"), ("short", "is 5 characters long")])
def test_zoo_server_refuses_a_weak_admin_password(tmp_path, password, why):
    """7g: an admin password of 12 spaces started a server that accepted it."""
    r = run_zoo("server", "--auth", "--port", str(free_port()), cwd=tmp_path,
                env=zoo_env(MLFLOW_AUTH_ADMIN_PASSWORD=password))
    one_line_error(r, f"MLFLOW_AUTH_ADMIN_PASSWORD {why}")
    assert not (tmp_path / "mlruns").exists()  # nothing was started or created


@pytest.mark.parametrize("name", ["..", ".", "..."])
def test_an_experiment_name_never_leads_out_of_the_artifacts_folder(tmp_path, name):
    """5q: ``tracking.experiment=..`` wrote the run's files beside mlflow.db, outside mlruns/artifacts/."""
    r = run_zoo("train", *TINY, *SMALL, f"tracking.experiment='{name}'", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = runs_of(tmp_path / "mlruns" / "mlflow.db")
    root = (tmp_path / "mlruns" / "artifacts").resolve()
    artifacts = (tmp_path / run.info.artifact_uri.removeprefix("file://")).resolve()
    assert root in artifacts.parents and (artifacts / "config.yaml").is_file(), artifacts
    assert sorted(p.name for p in (tmp_path / "mlruns").iterdir() if p.is_dir()) == ["artifacts"]


def test_a_long_experiment_name_blames_tracking_experiment(tmp_path):
    """5o: a 10,000-character name blamed tracking.uri."""
    r = run_zoo("train", *TINY, *SMALL, "tracking.experiment=" + "x" * 10_000, cwd=tmp_path)
    line = one_line_error(r, "tracking.experiment='xxxx")
    assert "at most 500 characters" in line and "(10000 characters)" in line and len(line) < 300
    no_run_in(tmp_path)
