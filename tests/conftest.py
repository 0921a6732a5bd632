"""Shared fixtures: a real MLflow store in tmp_path, Hydra's compose API, the real registry.

Nothing here mocks MLflow, Hydra, torch or pluggy. Every test that trains points tracking at
its own temporary SQLite store, never at the repository's ``mlruns/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from zoo._runtime import share_config_store
from zoo.config import CONF_DIR, register_configs
from zoo.plugin.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
ZOO = [sys.executable, "-m", "zoo.cli"]

# Fast settings for tests: CPU, no system-metrics thread, a couple of epochs.
FAST = ["trainer.device=cpu", "tracking.system_metrics=false", "trainer.max_epochs=2"]


# MLflow's default stores in the repository: ./mlflow.db (MLflow's own, in the folder pytest runs from) and
# mlruns/mlflow.db (Zoo's). A test that creates one fails, naming itself.
REPO_STORES = (Path.cwd() / "mlflow.db", ROOT / "mlflow.db", ROOT / "mlruns" / "mlflow.db")


@pytest.fixture(autouse=True)
def _no_repo_store(tmp_path, monkeypatch):
    """Whatever a test does, MLflow's default store is inside tmp_path, and no test leaves one in the repository."""
    existed = {p for p in REPO_STORES if p.exists()}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING",
                 "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):  # Zoo reads them: the caller's own must not leak in
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ZOO_PLUGIN_DIR", raising=False)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    yield
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # a test's own mlflow.set_tracking_uri ends with it: the next test's is its tmp_path
    written = [str(p) for p in REPO_STORES if p.exists() and p not in existed]
    if written:
        pytest.fail(f"the test wrote MLflow's store {', '.join(written)} into the repository: point MLflow at tmp_path",
                    pytrace=False)


@pytest.fixture(scope="session")
def registry():
    reg = load_registry()
    register_configs(reg)
    share_config_store()  # as `zoo train` does: each compose then takes about a quarter less time
    return reg


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh SQLite tracking URI inside tmp_path."""
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


@pytest.fixture
def make_cfg(tmp_path, store, registry):
    """Compose the real config with overrides, pointed at tmp_path and the temporary store."""

    def make(*overrides: str, fast: bool = True):
        base = [f"paths.output_dir={tmp_path / 'out'}", f"tracking.uri={store}"] + (FAST if fast else [])
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=base + list(overrides))

    return make


@pytest.fixture(scope="session")
def empty_store_file(tmp_path_factory) -> Path:
    """One new, empty MLflow store made as ``zoo train`` makes it (``create_store``: MLflow's tables, WAL),
    in a process of its own, so that the closed file holds all of it. MLflow's schema migration takes
    1-2 s a store (far more on a busy machine); :func:`client` copies this file instead."""
    folder = tmp_path_factory.mktemp("empty-store")
    db = folder / "mlflow.db"
    made = subprocess.run([sys.executable, "-c", "import sys; from zoo.tracking.store import create_store; "
                           "create_store(sys.argv[1])", f"sqlite:///{db}"], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0 and not db.with_name("mlflow.db-wal").exists(), made.stderr[-3000:]
    return db


def with_tables(db: Path, empty_store_file: Path) -> str:
    """The SQLite store ``db`` made as a copy of :func:`empty_store_file`; its URI. Whatever opens it
    (``zoo train``, ``zoo server``, a client) finds MLflow's tables there and migrates nothing."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store_file, db)
    return f"sqlite:///{db}"


@pytest.fixture
def client(store, empty_store_file):
    """An ``MlflowClient`` on the test's store, which holds MLflow's tables already (a copy of
    :func:`empty_store_file`) and nothing else: the test's runs are the only ones in it. A test that
    checks that nothing creates the store takes ``store`` without ``client``."""
    return mlflow.MlflowClient(with_tables(Path(store.removeprefix("sqlite:///")), empty_store_file))


@pytest.fixture
def local_store(tmp_path, empty_store_file) -> str:
    """The default store of a command run in ``tmp_path`` (``mlruns/mlflow.db``), holding MLflow's tables
    already (a copy of :func:`empty_store_file`), as a user's store does after their first run: each
    ``zoo train`` there skips MLflow's schema migration. For tests not about the store's creation."""
    return with_tables(tmp_path / "mlruns" / "mlflow.db", empty_store_file)


def run_zoo(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line in ``cwd`` (its default store is ``cwd/mlruns``)."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return subprocess.run([*ZOO, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def zoo_here(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``zoo ARGS`` run in this process (``zoo.cli.main``), given back as :func:`run_zoo` gives it: the exit
    status, stdout and stderr, in ``cwd`` with ``env`` added to the environment for the call.

    For the commands that are not Hydra apps (list, compare, models, register, eval, predict, and
    server's refusals before it starts) where the process boundary is not what the test is about: the
    same code path without a new interpreter's 3-5 s of imports. ``zoo train`` always runs in its
    own process (:func:`run_zoo`). An exception other than ``SystemExit`` fails the test where it happens.
    """
    from zoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        mp.chdir(cwd)
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
        if isinstance(code, str):  # as the interpreter does with sys.exit("message")
            print(code, file=sys.stderr)
            code = 1
    return subprocess.CompletedProcess(["zoo", *args], code or 0, out.getvalue(), err.getvalue())


def runs_in(uri: str):
    c = mlflow.MlflowClient(uri)
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


def last_checkpoint(out_dir: Path) -> Path:
    """The one run's ``last.pt`` under a job's output folder (``checkpoints/<run id>/last.pt``)."""
    found = sorted(Path(out_dir).glob("checkpoints/*/last.pt"))
    assert len(found) == 1, found
    return found[0]
