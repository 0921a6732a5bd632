"""Helpers for the tests that start a real ``zoo server`` or use a real PostgreSQL.

A server runs in its own process group (``start_new_session``) and is stopped by killing that
group, so none of its workers outlives the test module. PostgreSQL is whatever
``ZOO_TEST_POSTGRES_URI`` names, else the local cluster that ``scripts/ci-services.sh`` starts
(``postgresql:///zoo_test?host=/var/run/postgresql``); tests that need it skip when it is not
running. Each module gets a fresh database of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from zoo._runtime import stop_group

from .conftest import ZOO

POSTGRES_URI = os.environ.get("ZOO_TEST_POSTGRES_URI") or "postgresql:///zoo_test?host=/var/run/postgresql"
SERVER_START_S = 180  # about 20 s on a quiet machine; several times that with the CPUs shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zoo_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


@contextlib.contextmanager
def zoo_server(*args: str, cwd: Path, env: dict | None = None, port: int | None = None):
    """Start ``zoo server ARGS`` on ``port`` (default: a free one); yield its URL once it answers; stop the whole group."""
    port = port or free_port()
    log = open(cwd / "server.log", "w")
    proc = subprocess.Popen([*ZOO, "server", "--port", str(port), *args], cwd=cwd, env=env or zoo_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"zoo server exited with {proc.returncode}:\n{(cwd / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except urllib.error.HTTPError:  # it answers, if only to refuse
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"zoo server did not answer in {SERVER_START_S}s:\n{(cwd / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)  # the server and its workers
        log.close()


def postgres_or_skip() -> str:
    """The base PostgreSQL URI, or skip the test with the reason."""
    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url

        make_url(POSTGRES_URI).get_dialect().import_dbapi()
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need the driver ({exc.name}): pip install 'psycopg[binary]'")
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URI, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        first = str(exc).splitlines()[0][:200]
        pytest.skip(f"PostgreSQL is not running at {POSTGRES_URI} ({first}); start it with scripts/ci-services.sh "
                    "or set ZOO_TEST_POSTGRES_URI")
    return POSTGRES_URI


@contextlib.contextmanager
def fresh_postgres_database():
    """A new, empty database for one test module (the base database if the role may not create one)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    base = postgres_or_skip()
    name = f"zoo_t_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception:
        admin.dispose()
        yield base
        return
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def credentials(user: str, password: str):
    """MLFLOW_TRACKING_USERNAME/PASSWORD for the MLflow client calls made inside the block."""
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
