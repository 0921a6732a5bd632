"""Eight ``zoo train`` processes writing to one store at once: every run complete, every step there.

Once against the default local SQLite store, started together on a store that does not exist
yet (``prepare_store`` serialises its creation, then WAL and MLflow's busy timeout carry the
writers), and once against a ``zoo server`` backed by PostgreSQL (skipped, with the reason,
when no PostgreSQL runs here; ``scripts/ci-services.sh`` starts one and CI runs it).
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys

import mlflow
import pytest

from zoo.plugin.registry import load_registry
from zoo.tracking import prepare_store

from ._servers import fresh_postgres_database, zoo_env, zoo_server
from .conftest import ZOO

WRITERS = 8
BATCH = 8
EPOCHS = 2
ARGS = ["data=iris", f"trainer.max_epochs={EPOCHS}", f"trainer.batch_size={BATCH}", "trainer.log_every=1",
        "trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false", "tracking.hist_every=0",
        "tracking.experiment=concurrent"]


def expected_steps() -> list[int]:
    n_train = len(load_registry().datasets["iris"].decl.load(seed=0).train)
    return list(range(1, EPOCHS * math.ceil(n_train / BATCH) + 1))


def train_together(uri: str, tmp_path, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Start WRITERS real `zoo train` processes at once (each in its own folder), wait for all."""
    procs = []
    for i in range(WRITERS):
        cwd = tmp_path / f"job{i}"
        cwd.mkdir()
        procs.append(subprocess.Popen([*ZOO, "train", *ARGS, f"seed={i}", f"tracking.uri={uri}"], cwd=cwd,
                                      env=env or zoo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def check_every_run_complete(uri: str, results: list[subprocess.CompletedProcess]) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
        assert "database is locked" not in r.stderr
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == WRITERS
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(WRITERS))
    steps = expected_steps()
    for run in runs:
        assert run.info.status == "FINISHED", run.info
        loss = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in loss] == steps, run.info.run_id  # every step, once, none lost
        assert "test/accuracy" in run.data.metrics and "val/loss" in run.data.metrics


def test_eight_writers_on_a_new_sqlite_store(tmp_path):
    db = tmp_path / "shared" / "mlflow.db"
    uri = f"sqlite:///{db}"
    results = train_together(uri, tmp_path)
    check_every_run_complete(uri, results)
    with sqlite3.connect(db) as con:  # prepare_store switched the store to write-ahead logging
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_preparing_a_store_keeps_this_processs_view_of_other_writers(tmp_path):
    """A notebook: a client open on the store, a second run prepared in-process, a run from another process.

    Preparing the store once opened and closed the database file to probe it, which dropped this
    process's SQLite locks (POSIX ``close`` releases them all): the other process, closing last,
    deleted the WAL under the open client, which then never saw another process's run again.
    """
    db = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    prepare_store(uri, "notebook")
    client = mlflow.MlflowClient(uri)  # MLflow's engine for this URI: pooled connections, the WAL open
    client.search_experiments()
    prepare_store(uri, "notebook")  # what every Tracker run does first
    for _ in range(2):  # other processes writing, each closing its last connection
        written = subprocess.run(
            [sys.executable, "-c", "import sys, mlflow; c = mlflow.MlflowClient(sys.argv[1]); "
             "print(c.create_run(c.get_experiment_by_name('notebook').experiment_id).info.run_id)", uri],
            capture_output=True, text=True, timeout=600)
        assert written.returncode == 0, written.stderr[-2000:]
        run_id = written.stdout.split()[-1]
        assert client.get_run(run_id).info.run_id == run_id
    # The direct, deterministic sign: with the locks dropped, the first of them to close deleted the
    # WAL and shared memory under this process's connections (which then, once enough pages sat in
    # the old WAL, read a stale snapshot: "Run with id=... not found" in tests/test_models.py).
    assert db.with_name("mlflow.db-wal").exists() and db.with_name("mlflow.db-shm").exists()


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    with fresh_postgres_database() as pg_uri:
        with zoo_server("--backend-store-uri", pg_uri, cwd=tmp_path_factory.mktemp("pg-server")) as url:
            yield url


def test_eight_writers_on_a_postgres_tracking_server(postgres_server, tmp_path):
    results = train_together(postgres_server, tmp_path)
    check_every_run_complete(postgres_server, results)
