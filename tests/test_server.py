"""Faults in the store before training, and the team server: ``zoo server`` with logins.

- an unreachable tracking server or a read-only store: ``zoo train`` stops before training with
  one line and exit 2, quickly, and no run is created;
- ``zoo server --auth`` (MLflow's basic-auth app, passwords from the environment only): a request
  without credentials is refused, a reader cannot write, a user with EDIT permission trains and
  logs a run with ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, a reader's ``zoo
  train`` is refused before training;
- ``zoo server``'s own checks: a busy port, a short admin password, an unreachable database.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode

import mlflow
import pytest

from zoo.tracking import prepare_store

from ._servers import credentials, free_port, zoo_env, zoo_server
from .conftest import ZOO, run_zoo, runs_in

TINY = ["data=iris", "trainer.max_epochs=1", "trainer.device=cpu", "tracking.system_metrics=false",
        "tracking.log_model=false"]


def one_line_error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Retrying" not in r.stderr
    return lines[0]


# -- faults before training --------------------------------------------------------------------

def test_unreachable_tracking_server_is_one_line_and_quick(tmp_path):
    port = free_port()  # nothing listens there
    uri = f"http://127.0.0.1:{port}"
    t0 = time.time()
    r = run_zoo("train", *TINY, f"tracking.uri={uri}", cwd=tmp_path, env=zoo_env())
    elapsed = time.time() - t0
    line = one_line_error(r)
    assert f"tracking.uri={uri}" in line and "no tracking server answers" in line and "zoo server" in line
    gave_up = float(re.search(r"gave up after ([\d.]+)s", line).group(1))
    assert gave_up < 15, line  # MLflow's own retries would take about 4 minutes
    assert elapsed < 240
    assert not (tmp_path / "mlruns").exists()  # no run went anywhere else instead


def _without_write_permission() -> list[str]:
    """A prefix that runs a command without root's power to ignore file permissions."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if not shutil.which("setpriv") or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, and setpriv (util-linux) cannot drop CAP_DAC_OVERRIDE here: "
                    "root would write to a read-only store anyway")
    return prefix


@pytest.mark.parametrize("what", ["folder", "file"])
def test_read_only_store_is_one_line_and_no_run(tmp_path, what):
    folder = tmp_path / "store"
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    prepare_store(uri, "zoo")
    prefix = _without_write_permission()
    if what == "folder":
        folder.chmod(0o555)
    else:
        db.chmod(0o444)
    try:
        r = subprocess.run([*prefix, *ZOO, "train", *TINY, f"tracking.uri={uri}"], cwd=tmp_path, env=zoo_env(),
                           capture_output=True, text=True, timeout=300)
        line = one_line_error(r)
        assert "read-only" in line and str(db if what == "file" else folder) in line
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)
    assert runs_in(uri) == []


# -- the team server with logins ---------------------------------------------------------------

ADMIN = "admin"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A `zoo server --auth` over a SQLite store, with a reader and a writer; passwords made up now."""
    cwd = tmp_path_factory.mktemp("team-server")
    pw = {name: secrets.token_urlsafe(16) for name in (ADMIN, "reader", "writer")}
    env = zoo_env(MLFLOW_AUTH_ADMIN_USERNAME=ADMIN, MLFLOW_AUTH_ADMIN_PASSWORD=pw[ADMIN])
    with zoo_server("--auth", "--backend-store-uri", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", cwd=cwd, env=env) as url:
        admin = {"user": ADMIN, "password": pw[ADMIN]}
        for name in ("reader", "writer"):  # MLflow's auth REST API; new users may READ by default
            assert _request(url, "/api/2.0/mlflow/users/create", {"username": name, "password": pw[name]}, **admin) == 200
        with credentials(ADMIN, pw[ADMIN]):
            client = mlflow.MlflowClient(url)
            exp_id = client.create_experiment("team")
            admin_run = client.create_run(exp_id).info.run_id
        grant = {"username": "writer", "resource_type": "experiment", "resource_id": exp_id, "permission": "EDIT"}
        assert _request(url, "/api/3.0/mlflow/users/permissions/grant", grant, **admin) == 200
        yield {"url": url, "pw": pw, "experiment_id": exp_id, "admin_run": admin_run}


def _request(url: str, path: str, body: dict | None = None, user: str | None = None, password: str | None = None):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    if user:
        req.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_request_without_credentials_is_refused(team):
    url = team["url"]
    assert _request(url, "/api/2.0/mlflow/experiments/search?max_results=10") == 401
    assert _request(url, "/api/2.0/mlflow/runs/create", {"experiment_id": team["experiment_id"]}) == 401
    assert _request(url, "/api/2.0/mlflow/experiments/search?max_results=10", user="reader", password="wrong-password!") == 401
    assert _request(url, "/api/2.0/mlflow/experiments/search?max_results=10", user=ADMIN, password=team["pw"][ADMIN]) == 200


def test_reader_can_read_but_not_write(team):
    url, pw, run_id = team["url"], team["pw"]["reader"], team["admin_run"]
    assert _request(url, f"/api/2.0/mlflow/runs/get?run_id={run_id}", user="reader", password=pw) == 200
    assert _request(url, "/api/2.0/mlflow/runs/create", {"experiment_id": team["experiment_id"]},
                    user="reader", password=pw) == 403
    metric = {"run_id": run_id, "key": "x", "value": 1.0, "timestamp": 0, "step": 0}
    assert _request(url, "/api/2.0/mlflow/runs/log-metric", metric, user="reader", password=pw) == 403
    with credentials(ADMIN, team["pw"][ADMIN]):
        assert "x" not in mlflow.MlflowClient(url).get_run(run_id).data.metrics


def test_zoo_train_with_credentials_logs_its_run(team, tmp_path):
    url = team["url"]
    env = zoo_env(MLFLOW_TRACKING_USERNAME="writer", MLFLOW_TRACKING_PASSWORD=team["pw"]["writer"])
    r = run_zoo("train", *TINY, f"tracking.uri={url}", "tracking.experiment=team", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    run_id = re.search(r"run ([0-9a-f]{32})", r.stdout).group(1)
    with credentials(ADMIN, team["pw"][ADMIN]):
        client = mlflow.MlflowClient(url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.user_id == "writer"
        assert run.info.experiment_id == team["experiment_id"]
        assert client.get_metric_history(run_id, "train/loss") and "test/accuracy" in run.data.metrics
        assert "config.yaml" in {a.path for a in client.list_artifacts(run_id)}  # artifacts through the server


def test_zoo_train_as_reader_is_refused_before_training(team, tmp_path):
    url = team["url"]
    env = zoo_env(MLFLOW_TRACKING_USERNAME="reader", MLFLOW_TRACKING_PASSWORD=team["pw"]["reader"])
    with credentials(ADMIN, team["pw"][ADMIN]):
        before = len(mlflow.MlflowClient(url).search_runs([team["experiment_id"]]))
    r = run_zoo("train", *TINY, f"tracking.uri={url}", "tracking.experiment=team", cwd=tmp_path, env=env)
    line = one_line_error(r)
    assert "user 'reader' has READ permission" in line and "EDIT" in line
    with credentials(ADMIN, team["pw"][ADMIN]):
        assert len(mlflow.MlflowClient(url).search_runs([team["experiment_id"]])) == before


# -- zoo server's own checks ---------------------------------------------------------------------

def test_server_refuses_a_busy_port_a_short_password_and_a_dead_database(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_zoo("server", "--port", str(port), cwd=tmp_path, env=zoo_env())
        assert f"port {port} on 127.0.0.1 is already in use" in one_line_error(r)
    r = run_zoo("server", "--auth", "--port", str(free_port()), cwd=tmp_path,
                env=zoo_env(MLFLOW_AUTH_ADMIN_PASSWORD="short"))
    assert "MLFLOW_AUTH_ADMIN_PASSWORD is 5 characters long" in one_line_error(r)
    r = run_zoo("server", "--auth", "--port", str(free_port()), cwd=tmp_path, env=zoo_env())
    assert "export MLFLOW_AUTH_ADMIN_PASSWORD" in one_line_error(r)
    dead = f"postgresql://zoo:s3cret@127.0.0.1:{free_port()}/zoo"
    r = run_zoo("server", "--backend-store-uri", dead, "--port", str(free_port()), cwd=tmp_path, env=zoo_env())
    line = one_line_error(r)
    assert "cannot connect to --backend-store-uri" in line or "needs its database driver" in line
    assert "s3cret" not in line  # the password never reaches the terminal
    assert not (tmp_path / "mlruns").exists()


def test_server_help_names_the_options(tmp_path):
    r = run_zoo("server", "--help", cwd=tmp_path, env=zoo_env())
    assert r.returncode == 0
    for option in ("--backend-store-uri", "--host", "--port", "--auth", "--artifacts-destination"):
        assert option in r.stdout
