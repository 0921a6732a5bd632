"""``zoo server``: one MLflow tracking server for a team, over SQLite or PostgreSQL, with logins.

It checks everything a user can get wrong before it starts (a busy port, an unreachable
database, a missing driver, a missing or short admin password), then runs ``mlflow server`` in
the foreground with:

- the backend store from ``--backend-store-uri`` (default ``MLFLOW_BACKEND_STORE_URI``, else the
  project's SQLite store ``mlruns/mlflow.db``), handed to MLflow through the environment so a
  database password never appears in the process list;
- artifacts proxied by the server (``--artifacts-destination``, default beside a SQLite store or
  ``./mlruns/artifacts``), so clients need no access to the server's disk;
- with ``--auth``, MLflow's own authentication (``--app-name basic-auth``): the admin password
  comes from ``MLFLOW_AUTH_ADMIN_PASSWORD``, never from a file; the generated auth config holds
  no secret.

Runs go to it with ``zoo train tracking.uri=http://HOST:PORT`` (or ``MLFLOW_TRACKING_URI``), with
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` when ``--auth`` is on.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from zoo.errors import ZooError, one_line

MIN_PASSWORD = 12  # MLflow's own policy for basic-auth passwords
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")


def mask(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"(//[^/:@]+):[^@/]*@", r"\1:***@", uri)


def parser() -> argparse.ArgumentParser:
    from zoo.tracking.store import default_uri

    p = argparse.ArgumentParser(
        prog="zoo server",
        description="A shared MLflow tracking server (SQLite or PostgreSQL store, optional basic-auth logins). "
                    "Point runs at it with: zoo train tracking.uri=http://HOST:PORT")
    p.add_argument("--backend-store-uri", metavar="URI", default=os.environ.get("MLFLOW_BACKEND_STORE_URI") or default_uri(),
                   help="where runs are stored: sqlite:///path.db or postgresql://user@host:5432/db "
                        "(default: MLFLOW_BACKEND_STORE_URI, else ./mlruns/mlflow.db). Keep a database password "
                        "out of the URI: PostgreSQL reads PGPASSWORD or ~/.pgpass")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for the team's network)")
    p.add_argument("--port", type=int, default=5000, metavar="N", help="port (default 5000)")
    p.add_argument("--artifacts-destination", default=None, metavar="DIR",
                   help="where the server keeps run artifacts (default: beside a SQLite store, else ./mlruns/artifacts)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="server worker processes (default 2)")
    p.add_argument("--auth", action="store_true",
                   help="require logins (MLflow basic-auth): admin password from MLFLOW_AUTH_ADMIN_PASSWORD")
    p.add_argument("--auth-db", default=None, metavar="URI",
                   help="where users and permissions are stored (default: basic_auth.db beside a SQLite store, "
                        "else the backend store's database)")
    p.add_argument("--default-permission", default="READ", choices=PERMISSIONS,
                   help="what a user may do in experiments they did not create (default READ)")
    p.add_argument("--allowed-hosts", default=None, metavar="HOSTS",
                   help="Host headers to accept when serving beyond this machine, e.g. mlflow.example.org,10.0.0.5:5000")
    return p


# -- checks before starting ------------------------------------------------------------------

def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ZooError(f"--port {port} is invalid: expected 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ZooError(f"--host {host} is not an address of this machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
                raise ZooError(f"port {port} on {host} is already in use: stop what runs there or pass --port N") from None
            raise ZooError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --host or --port") from None


def check_backend(uri: str) -> None:
    """The store can be opened now: a writable SQLite store, or a database that answers."""
    from zoo.tracking.store import create_store, sqlite_path

    if uri.startswith("sqlite:"):
        if sqlite_path(uri) is None:
            raise ZooError(f"--backend-store-uri {uri}: a server needs a SQLite file, e.g. sqlite:///mlruns/mlflow.db")
        create_store(uri)  # its tables made now, under the lock: `zoo ui` started alongside does not race it
        return
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("postgresql", "postgres", "mysql", "mssql"):
        raise ZooError(f"--backend-store-uri {mask(uri)}: expected sqlite:///path.db or postgresql://user@host:5432/db")
    from sqlalchemy.engine import make_url

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ImportError as exc:
        package = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary"}.get(exc.name or "", exc.name)
        raise ZooError(f"--backend-store-uri {mask(uri)} needs its database driver: pip install {package}") from None
    except Exception as exc:
        raise ZooError(f"--backend-store-uri {mask(uri)} is not a database URI SQLAlchemy knows ({exc})") from None
    import sqlalchemy

    try:
        args = {"connect_timeout": 5} if scheme in ("postgresql", "postgres") else {}
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        # the whole first line, without the driver's "(class)" prefix: masked before it is cut
        first = re.sub(r"^\(.*?\)\s*", "", one_line(exc, limit=10_000))
        raise ZooError(f"cannot connect to --backend-store-uri {mask(uri)}: {mask(first)[:300]}; "
                       "is the database running and the role allowed? (scripts/ci-services.sh starts a local PostgreSQL)") from None


def auth_db_for(backend: str) -> str:
    from zoo.tracking.store import sqlite_path

    db = sqlite_path(backend)
    return f"sqlite:///{db.parent.resolve() / 'basic_auth.db'}" if db is not None else backend


def password_problem(password: str) -> str | None:
    """Why ``password`` is too weak for the admin, or None: MLflow's 12 characters, not blank, not one character repeated."""
    if len(password) < MIN_PASSWORD:
        return f"is {len(password)} characters long: MLflow wants at least {MIN_PASSWORD}"
    if not password.strip():
        return "is blank (only spaces)"
    if len(set(password)) == 1:
        return f"is one character repeated {len(password)} times"
    return None


def check_auth(auth_db: str) -> None:
    """The admin password is needed the first time (no auth store yet), and must not be weak (:func:`password_problem`)."""
    from zoo.tracking.store import sqlite_path

    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    weak = None if password is None else password_problem(password)
    if weak:
        raise ZooError(f"MLFLOW_AUTH_ADMIN_PASSWORD {weak}; choose a password of {MIN_PASSWORD}+ characters that "
                       "is not blank and not one character repeated")
    db = sqlite_path(auth_db)
    if not password and db is not None and not db.exists():
        raise ZooError("--auth needs the admin's password the first time: export MLFLOW_AUTH_ADMIN_PASSWORD=<12+ "
                       "characters> (and MLFLOW_AUTH_ADMIN_USERNAME, default 'admin') before `zoo server --auth`")
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        raise ZooError("--auth needs MLflow's auth extra: pip install 'mlflow[auth]'") from None


def artifacts_for(backend: str) -> str:
    from zoo.tracking.store import artifact_root, sqlite_path

    root = artifact_root(backend) if sqlite_path(backend) is not None else None
    return str(Path(root or Path.cwd() / "mlruns" / "artifacts").resolve())


def write_auth_config(folder: Path, auth_db: str, default_permission: str) -> Path:
    """MLflow's basic-auth settings, without a password: that comes from MLFLOW_AUTH_ADMIN_PASSWORD."""
    path = folder / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    f"default_permission = {default_permission}\n"
                    f"database_uri = {auth_db.replace('%', '%%')}\n"
                    f"admin_username = {os.environ.get('MLFLOW_AUTH_ADMIN_USERNAME') or 'admin'}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def command(ns: argparse.Namespace, artifacts: str) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", ns.host, "--port", str(ns.port),
           "--workers", str(ns.workers), "--serve-artifacts", "--artifacts-destination", artifacts]
    if ns.auth:
        cmd += ["--app-name", "basic-auth"]
    if ns.allowed_hosts:
        cmd += ["--allowed-hosts", ns.allowed_hosts]
    return cmd


def main(args: list[str]) -> int:
    ns = parser().parse_args(args)
    uri = ns.backend_store_uri
    if ns.workers < 1:
        raise ZooError(f"--workers {ns.workers} is invalid: expected an integer >= 1")
    check_port(ns.host, ns.port)
    auth_db = ns.auth_db or auth_db_for(uri)
    if ns.auth:
        check_auth(auth_db)
    check_backend(uri)
    artifacts = ns.artifacts_destination or artifacts_for(uri)
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}  # not on the command line: `ps` shows that
    env.pop("MLFLOW_TRACKING_URI", None)  # the server is the store; a client setting must not redirect it
    # MLflow's job runner (GenAI evaluation, trace jobs: eight more processes) is of no use to Zoo
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    scratch = tempfile.TemporaryDirectory(prefix="zoo-server-")
    notes = []
    if ns.auth:
        if not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(Path(scratch.name), auth_db, ns.default_permission))
        if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
            # shared by this server's workers; browser sessions end when it restarts
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        notes.append(f"logins required (admin user '{os.environ.get('MLFLOW_AUTH_ADMIN_USERNAME') or 'admin'}', "
                     f"others {ns.default_permission} by default)")
    else:
        notes.append("no logins: anyone who can reach it can read and change runs (add --auth)")
    shown = "127.0.0.1" if ns.host in ("0.0.0.0", "::") else ns.host
    print(f"zoo server: MLflow tracking server for {mask(uri)} at http://{shown}:{ns.port} "
          f"(artifacts in {artifacts}; {'; '.join(notes)})", flush=True)
    print(f"zoo server: point runs at it with: zoo train tracking.uri=http://{shown}:{ns.port}", flush=True)
    # The server stays in this process group: killing the group (or Ctrl-C in a terminal) stops all.
    proc = subprocess.Popen(command(ns, artifacts), env=env)

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)
        scratch.cleanup()
