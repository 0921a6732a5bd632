"""The store: where runs are kept, made ready before a run (or a sweep) starts, and opened to read.

``default_uri`` and ``sqlite_path``/``artifact_root`` say where a store and its artifacts live;
``create_store`` makes a new local store (under a lock: ``zoo train``, ``zoo ui`` and ``zoo server``
may start together); ``prepare_store`` opens (creates) a store and an experiment for writing, once, before training,
so that every problem with it is a one-line :class:`ZooError` now (reading an existing store
without creating one is :meth:`zoo.tracking.runs.Runs.open`). ``bounded_http`` bounds MLflow's
HTTP retries while a person waits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from zoo.errors import ZooError, one_line
from zoo.tracking import tags

try:  # POSIX only: the lock that serialises creating a new SQLite store
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)


def default_uri(root: str | os.PathLike | None = None) -> str:
    """The project's store: ``mlruns/mlflow.db`` under ``root`` (default: the working directory)."""
    return f"sqlite:///{Path(root or os.getcwd()).resolve() / 'mlruns' / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts live beside the database in ``artifacts/``."""
    db = sqlite_path(uri)
    return None if db is None else str(db.parent / "artifacts")


def experiment_folder(root: str, experiment: str) -> str:
    """The artifact folder of ``experiment`` inside ``root``: one plain folder name, never a way out of it.

    Characters other than letters, digits, ``.``, ``-`` and ``_`` become ``_``, and a name of
    dots alone (``..``) gets a leading ``_``, so ``tracking.experiment=..`` stays in ``root``.
    """
    name = re.sub(r"[^\w.-]+", "_", experiment)
    if not name.strip("."):
        name = "_" + name
    return str(Path(root) / name)


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


# -- store preparation ------------------------------------------------------------------------
# MLflow retries an HTTP request for minutes by default (7 retries, back-off factor 2, 120 s
# timeout): right for a run that outlives a network blip, wrong for the check before training.
# The check gives up after about 2 s on a refused connection and about 30 s on a silent host.
HTTP_CHECK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": 2, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
              "MLFLOW_HTTP_REQUEST_TIMEOUT": 10}


def prepare_sqlite(uri: str, opened: bool = False) -> None:
    """A clear error now if a local SQLite store (or its folder) cannot be written.

    Both are probed by writing: ``os.access`` says yes to root on a read-only file and knows
    nothing of read-only mounts. SQLite writes its journal beside the database, so the folder
    must be writable too. ``opened``: this process holds MLflow's connections to the store, checked
    already: the file itself is not opened again (see :func:`_store_not_writable`).
    """
    db = sqlite_path(uri)
    if db is None:
        return
    folder = db.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"tracking.uri={uri}: cannot create the folder {folder} ({exc.strerror}); "
                       "choose a writable tracking.uri") from None
    why = _not_writable(folder)  # SQLite writes its journal beside the database: the folder must be writable too
    if why:
        raise ZooError(f"tracking.uri={uri}: the folder {folder} is read-only ({why}); "
                       "choose a writable tracking.uri")
    why = _store_not_writable(db) if db.exists() else None
    if why:
        raise ZooError(f"tracking.uri={uri}: the store {db} is read-only ({why}); "
                       "make it writable or choose another tracking.uri")
    if not opened:
        check_mlflow_file(uri)


def _store_not_writable(db: Path) -> str | None:
    """Why the database file cannot be written, or None; asked without opening the file.

    Opening and closing the file here would drop every POSIX lock this process holds on it
    (``close`` releases all of a process's ``fcntl`` locks on a file): the pooled SQLite
    connections of MLflow's cached engine (any ``MlflowClient`` made earlier in this process)
    would look gone to other processes, and the next one to close its last connection would
    checkpoint and delete the WAL and shared-memory files under them, leaving this process
    reading a stale snapshot ("Run ... not found" for runs other processes wrote). SQLite's
    own "How To Corrupt" page, section 2.2. ``access(2)`` asks the kernel without a file
    descriptor: it answers for read-only mounts (EROFS) and, for root, yes on a 0444 file,
    which root can indeed write.
    """
    if os.statvfs(db).f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if not os.access(db, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


def _not_writable(folder: Path) -> str | None:
    """Why no file can be written in ``folder``, or None: found by writing one."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".zoo-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror
    return None


def check_mlflow_file(uri: str) -> None:
    """Refuse a SQLite database that is not an MLflow store, without changing it.

    MLflow would add its ~70 tables to any SQLite file it is pointed at (a database of the
    user's own, given by mistake); the file is only read here, through a read-only connection.
    A file that is not a database at all is left to MLflow, which says so in one line.
    """
    import sqlite3
    from urllib.parse import quote

    db = sqlite_path(uri)
    if db is None or not db.is_file() or db.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=30)
        try:
            tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        finally:
            con.close()
    except sqlite3.Error:
        return
    if tables and "alembic_version" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise ZooError(f"tracking.uri={uri}: {db} is a SQLite database but not an MLflow store (its tables: {shown}); "
                       "Zoo leaves it untouched: point tracking.uri at another file")


def _check_artifacts(uri: str, location: str | None) -> None:
    """A local artifacts folder (the experiment's) must take files: refused now, not after training."""
    from urllib.parse import unquote, urlparse

    if not location or not (location.startswith("/") or location.startswith("file:")):
        return  # a server's proxied artifacts, or a cloud store: MLflow's to check
    folder = Path(unquote(urlparse(location).path) if location.startswith("file:") else location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        why = _not_writable(folder)
    except OSError as exc:
        why = exc.strerror
    if why:
        raise ZooError(f"tracking.uri={uri}: the artifacts folder {folder} is not writable ({why}); "
                       "make it writable or choose another tracking.uri")


def create_store(uri: str, opened: bool = False) -> None:
    """Make a local SQLite store ready for writers: checked, MLflow's tables created, WAL on.

    The first process to open a new store creates the tables while holding a lock file beside
    it: processes started together (``zoo train`` runs, ``zoo ui`` and ``zoo server``) would
    otherwise race MLflow's schema migration and break the store for good. Any other store is
    left to MLflow. ``opened``: this process holds MLflow's connections to the store, which has its tables and
    WAL on (:func:`prepare_store`).
    """
    prepare_sqlite(uri, opened)
    db = sqlite_path(uri)
    if db is None or opened:
        return
    with _store_lock(db):  # held for milliseconds once the store exists
        if not _has_tables(db):
            import mlflow

            try:
                mlflow.MlflowClient(uri).search_experiments(max_results=1)  # MLflow creates the tables
            except Exception as exc:
                raise _store_error(uri, exc, 0.0) from None
        enable_wal(db)


@contextlib.contextmanager
def _store_lock(db: Path):
    """An exclusive lock file beside a SQLite store (``.mlflow.db.lock``) while it is set up."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(db.parent / f".{db.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # cannot create it: go on unlocked, as MLflow alone would
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _has_tables(db: Path) -> bool:
    """Whether MLflow has created its tables in ``db`` (a schema version is recorded)."""
    import sqlite3

    if not db.exists():
        return False
    try:
        con = sqlite3.connect(str(db), timeout=30)
        try:
            return bool(con.execute("SELECT version_num FROM alembic_version").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return False


def enable_wal(db: Path) -> None:
    """Switch a SQLite store to write-ahead logging, once (it stays in the file; a new file is created)."""
    import sqlite3

    try:
        con = sqlite3.connect(str(db), timeout=30)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:  # still correct without WAL, only slower under contention
        log.warning("could not switch %s to write-ahead logging: %s", db, exc)


@contextlib.contextmanager
def bounded_http(uri: str):
    """Bound MLflow's HTTP retries and timeout inside the block, for an ``http(s)://`` store.

    For the check before training and for ``zoo compare``: a person is waiting, so a server that
    does not answer is an error in seconds, not after MLflow's minutes of retries. The environment
    is restored after the block (a run's own requests keep MLflow's patient defaults).
    """
    if not is_http(uri):
        yield
        return
    old = {k: os.environ.get(k) for k in HTTP_CHECK}
    for k, v in HTTP_CHECK.items():
        try:
            v = min(v, int(old[k])) if old[k] else v  # a user's own, tighter bound still holds
        except ValueError:
            pass
        os.environ[k] = str(v)
    retries_log = logging.getLogger("urllib3.connectionpool")  # one "Retrying ..." warning per try
    level = retries_log.level
    retries_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retries_log.setLevel(level)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _store_error(uri: str, exc: BaseException, seconds: float) -> ZooError:
    """One line for a store that cannot be used, saying what to do."""
    text = str(exc)
    if is_http(uri):
        code = re.search(r"error code (\d{3})", text)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if "Connection refused" in text or "NewConnectionError" in text or "Failed to resolve" in text:
            return ZooError(f"tracking.uri={uri}: no tracking server answers there (gave up after {seconds:.1f}s); "
                            "start one with `zoo server` or fix tracking.uri")
        if "timed out" in text.lower() or "ReadTimeout" in text or "ConnectTimeout" in text:
            return ZooError(f"tracking.uri={uri}: the tracking server did not answer (gave up after {seconds:.1f}s); "
                            "check the address and that the server is up")
        if code and code.group(1) == "401":
            who = f"the credentials of user '{user}' were refused" if user else "it needs a login"
            return ZooError(f"tracking.uri={uri}: {who}; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        if code and code.group(1) == "403":
            return ZooError(f"tracking.uri={uri}: user '{user}' is not allowed to do this ({one_line(exc, 200)}); "
                            "ask the server's admin for EDIT permission or choose another tracking.experiment")
    return ZooError(f"tracking.uri={uri} is not usable: {one_line(exc)}; check the address or set tracking.uri")


def _check_can_write(uri: str, experiment_id: str) -> None:
    """On a server with authentication, refuse now a user who may only read the experiment.

    Asks the server for the user's own permission (MLflow's basic-auth API); a server without
    authentication, or one too old to answer, is not checked here.
    """
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user or not is_http(uri):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        resp = http_request(get_default_host_creds(uri), "/api/3.0/mlflow/users/permissions/get", "GET",
                            params={"username": user, "resource_type": "experiment", "resource_id": experiment_id})
        permission = resp.json().get("permission") if resp.status_code == 200 else None
    except Exception:  # not an auth server, or another version of the API: MLflow will tell later
        return
    if permission in ("READ", "USE", "NO_PERMISSIONS", "DENY"):
        raise ZooError(f"tracking.uri={uri}: user '{user}' has {permission} permission on experiment "
                       f"{experiment_id} and cannot log runs to it; ask the server's admin for EDIT permission "
                       "or choose another tracking.experiment")


def check_no_inherited_run() -> None:
    """Refuse an ``MLFLOW_RUN_ID`` in the environment: MLflow would log into that run instead of a new one.

    Such a variable is inherited (a shell's ``export``, ``mlflow run``, a parent process), and
    ``mlflow.start_run()`` would reopen that run, rename it and overwrite its tags. Zoo starts its
    own runs, and continues one only through ``resume=``.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        raise ZooError(f"MLFLOW_RUN_ID={run_id} is set in the environment, and Zoo never logs into another run: "
                       "unset MLFLOW_RUN_ID (to continue a run Zoo stopped, use resume=<run id>)")


def prepare_store(uri: str, experiment: str, opened: bool = False) -> str:
    """Open (create) the store and the experiment; return the experiment id.

    Done once before training (and before parallel jobs start), so an unreachable server, a
    refused login, a read-only store or artifacts folder, a SQLite file that is not an MLflow store,
    or an inherited ``MLFLOW_RUN_ID`` (:func:`check_no_inherited_run`) is a clear one-line error
    now, not a crash after an hour.

    A local SQLite store is made safe for several writers at once (:func:`create_store`: its
    tables are created under a lock, as ``zoo ui`` and ``zoo server`` create them). The
    store is switched to write-ahead logging (WAL, persistent in the file), so readers (the UI,
    ``zoo compare``) do not block writers and a commit costs one sync instead of several; MLflow
    itself waits up to 20 s for a busy store (``PRAGMA busy_timeout``). WAL and the lock need a
    local disk: for a store shared across machines, run ``zoo server``.

    ``opened``: this process holds MLflow's connections to the store (a writer process that opened it before,
    having checked its tables and WAL): the database file is not opened by ``sqlite3`` again, which would drop
    those connections' locks (:func:`_store_not_writable`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    check_no_inherited_run()
    started = time.perf_counter()
    try:
        with bounded_http(uri):
            create_store(uri, opened)
            client = mlflow.MlflowClient(uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                root = artifact_root(uri)
                location = None if root is None else experiment_folder(root, experiment)
                _check_artifacts(uri, location)
                try:
                    return client.create_experiment(experiment, artifact_location=location,
                                                    tags={tags.EXPERIMENT_KIND: tags.MODEL_TRAINING})
                except MlflowException as exc:  # another process created it first (or a refusal)
                    exp = client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise exc from None
            if exp.lifecycle_stage == "deleted":
                raise ZooError(f"tracking.experiment={experiment!r} is deleted in {uri}; restore it in the UI or choose another name")
            _check_artifacts(uri, exp.artifact_location)
            _check_can_write(uri, exp.experiment_id)
            if tags.EXPERIMENT_KIND not in exp.tags:  # made before Zoo tagged them: open it on the training view too
                client.set_experiment_tag(exp.experiment_id, tags.EXPERIMENT_KIND, tags.MODEL_TRAINING)
            return exp.experiment_id
    except ZooError:
        raise
    except Exception as exc:
        raise _store_error(uri, exc, time.perf_counter() - started) from None


