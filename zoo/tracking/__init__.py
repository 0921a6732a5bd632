"""The MLflow side of a run: params, buffered metrics, artifacts, the model, an honest end state.

The training loop talks to a :class:`Tracker` through a handful of calls (``start``, ``metrics``,
``series``, ``artifact``, ``model``, ``finish``) and knows nothing of MLflow's API. Metrics are
queued and written by one background thread with ``log_batch`` (one SQLite transaction per batch
instead of one per value), so the training thread never waits on the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterable

from zoo.errors import ZooError
from zoo.tracking.writer_process import MAX_BATCH, write_rows

try:  # POSIX only: the lock that serialises creating a new SQLite store
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

# Rows wait up to this long so that one log_batch carries many: a call to a SQLite store costs a
# few milliseconds of Python whatever it carries, then about 0.05 ms per row.
WRITE_EVERY_S = 1.0


def default_uri(root: str | os.PathLike | None = None) -> str:
    """The project's store: ``mlruns/mlflow.db`` under ``root`` (default: the working directory)."""
    return f"sqlite:///{Path(root or os.getcwd()).resolve() / 'mlruns' / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts live beside the database in ``artifacts/``."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).parent / "artifacts")
    return None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit(path: str | os.PathLike) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# -- store preparation ------------------------------------------------------------------------
# MLflow retries an HTTP request for minutes by default (7 retries, back-off factor 2, 120 s
# timeout): right for a run that outlives a network blip, wrong for the check before training.
# The check gives up after about 2 s on a refused connection and about 30 s on a silent host.
HTTP_CHECK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": 2, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
              "MLFLOW_HTTP_REQUEST_TIMEOUT": 10}


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def prepare_sqlite(uri: str) -> None:
    """A clear error now if a local SQLite store (or its folder) cannot be written.

    Both are probed by writing: ``os.access`` says yes to root on a read-only file and knows
    nothing of read-only mounts. SQLite writes its journal beside the database, so the folder
    must be writable too.
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
    try:  # SQLite writes its journal beside the database: the folder must be writable too
        fd, probe = tempfile.mkstemp(prefix=".zoo-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ZooError(f"tracking.uri={uri}: the folder {folder} is read-only ({exc.strerror}); "
                       "choose a writable tracking.uri") from None
    if db.exists():
        try:
            with open(db, "r+b"):
                pass
        except OSError as exc:
            raise ZooError(f"tracking.uri={uri}: the store {db} is read-only ({exc.strerror}); "
                           "make it writable or choose another tracking.uri") from None


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
    """Bound MLflow's HTTP retries and timeout while checking an ``http(s)://`` store."""
    if not uri.startswith(("http://", "https://")):
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
    first = text.splitlines()[0] if text else type(exc).__name__
    if uri.startswith(("http://", "https://")):
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
            return ZooError(f"tracking.uri={uri}: user '{user}' is not allowed to do this ({first[:200]}); "
                            "ask the server's admin for EDIT permission or choose another tracking.experiment")
    return ZooError(f"tracking.uri={uri} is not usable: {first[:300]}; check the address or set tracking.uri")


def _check_can_write(uri: str, experiment_id: str) -> None:
    """On a server with authentication, refuse now a user who may only read the experiment.

    Asks the server for the user's own permission (MLflow's basic-auth API); a server without
    authentication, or one too old to answer, is not checked here.
    """
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user or not uri.startswith(("http://", "https://")):
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


def prepare_store(uri: str, experiment: str) -> str:
    """Open (create) the store and the experiment; return the experiment id.

    Done once before training (and before parallel jobs start), so an unreachable server, a
    refused login or a read-only store is a clear one-line error now, not a crash after an hour.

    A local SQLite store is made safe for several writers at once. The first process to open a
    new store creates MLflow's tables while holding a lock file beside it: processes started
    together would otherwise race MLflow's schema migration and break the store for good. The
    store is switched to write-ahead logging (WAL, persistent in the file), so readers (the UI,
    ``zoo compare``) do not block writers and a commit costs one sync instead of several; MLflow
    itself waits up to 20 s for a busy store (``PRAGMA busy_timeout``). WAL and the lock need a
    local disk: for a store shared across machines, run ``zoo server``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    prepare_sqlite(uri)
    db = sqlite_path(uri)
    started = time.perf_counter()
    try:
        with bounded_http(uri):
            if db is not None:
                with _store_lock(db):  # held for milliseconds once the store exists
                    if not _has_tables(db):
                        mlflow.MlflowClient(uri).search_experiments(max_results=1)  # MLflow creates the tables
                    enable_wal(db)
            client = mlflow.MlflowClient(uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                root = artifact_root(uri)
                location = None if root is None else str(Path(root) / re.sub(r"[^\w.-]+", "_", experiment))
                try:
                    return client.create_experiment(experiment, artifact_location=location)
                except MlflowException as exc:  # another process created it first (or a refusal)
                    exp = client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise exc from None
            if exp.lifecycle_stage == "deleted":
                raise ZooError(f"tracking.experiment={experiment!r} is deleted in {uri}; restore it in the UI or choose another name")
            _check_can_write(uri, exp.experiment_id)
            return exp.experiment_id
    except ZooError:
        raise
    except Exception as exc:
        raise _store_error(uri, exc, time.perf_counter() - started) from None


def writer_mode() -> str:
    """``process`` or ``thread``: where metric rows are written (``ZOO_METRIC_WRITER``, default ``auto``).

    ``auto`` is ``process`` on a POSIX machine with at least two cores this process may use.
    """
    mode = os.environ.get("ZOO_METRIC_WRITER", "auto").strip().lower() or "auto"
    if mode not in ("auto", "process", "thread"):
        raise ZooError(f"ZOO_METRIC_WRITER={mode!r} is invalid: expected auto, process or thread")
    if mode == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        mode = "process" if os.name == "posix" and cores >= 2 else "thread"
    return mode


class _Child:
    """The writer process (:mod:`zoo.tracking.writer_process`) seen from the training process.

    Started before the store is opened, so that importing MLflow there overlaps the run's set-up;
    ``open(uri)`` hands it the store once it exists. Every method is called from the writer thread.
    """

    START_S = 20.0  # give up on a writer process that is not ready by then

    def __init__(self):
        from multiprocessing.connection import Connection

        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:  # the installed package's module, as the training process imported it
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from zoo.tracking.writer_process import main; main()", str(to_child), str(from_child)],
                pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(to_child)
            os.close(from_child)
        self.outbox = Connection(from_parent, readable=False)
        self.inbox = Connection(to_parent, writable=False)
        self.started = time.monotonic()
        self.ready = self.dead = False
        self.failure: str | None = None
        self.inflight: list[list] = []  # rows sent, not yet confirmed: written again here if it dies
        self.rows, self.seconds = 0, 0.0
        self.error: str | None = None

    def open(self, uri: str) -> None:
        self._send(("open", uri))

    @property
    def starting(self) -> bool:
        return not (self.ready or self.dead) and time.monotonic() - self.started < self.START_S

    def _send(self, msg) -> None:
        if self.dead:
            return
        try:
            self.outbox.send(msg)
        except OSError:
            self._died("its pipe closed")

    def _died(self, why: str) -> None:
        if not self.dead:
            self.dead, self.ready = True, False
            self.failure = self.failure or why

    def _handle(self, msg) -> str:
        kind = msg[0]
        if kind == "ready":
            self.ready = True
        elif kind == "failed":
            self.failure = msg[1]
            self._died(msg[1])
        elif kind == "done":
            _, n, seconds, error = msg
            self.inflight.pop(0)
            self.rows += n
            self.seconds += seconds
            if error and self.error is None:
                self.error = error
        return kind

    def poll(self, timeout: float = 0.0, until: str | None = None) -> bool:
        """Read the writer's answers, waiting up to ``timeout`` s for ``until``; True once ``until`` came."""
        deadline = time.monotonic() + timeout
        while not self.dead:
            try:
                if not self.inbox.poll(max(0.0, deadline - time.monotonic())):
                    return False
                if self._handle(self.inbox.recv()) == until:
                    return True
            except (EOFError, OSError):
                self._died(f"it exited with code {self.proc.poll()}")
        return False

    def send(self, run_id: str, rows: list) -> None:
        self.inflight.append(rows)
        self._send(("rows", run_id, rows))

    def wait(self, message: str, answer: str) -> bool:
        """Send ``message`` and wait for ``answer`` (everything sent before is then written) while it lives."""
        self._send((message,))
        while not self.dead:
            if self.poll(1.0, until=answer):
                return True
            if self.proc.poll() is not None:
                self._died(f"it exited with code {self.proc.returncode}")
        return False

    def close(self) -> None:
        for conn in (self.outbox, self.inbox):
            with contextlib.suppress(OSError):
                conn.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Writer(threading.Thread):
    """Writes queued metric rows to MLflow in batches, off the training thread.

    Rows are ``(key, value, timestamp_ms, step)`` tuples. They wait up to WRITE_EVERY_S so that
    one ``log_batch`` carries many, then go to the writer process (mode ``process``) or are
    written by this thread (mode ``thread``, and whenever the process is not ready: a run shorter
    than its start-up writes here, and one whose writer process dies goes on here, after writing
    again the rows that process had not confirmed; MLflow ignores a row it already holds).
    """

    def __init__(self, client, run_id: str | None, mode: str = "thread"):
        super().__init__(name="zoo-metrics", daemon=True)
        self.client, self.run_id, self.mode = client, run_id, mode
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.rows = 0
        self.rows_here = 0  # of which this thread wrote
        self.seconds = 0.0
        self.last_step = 0
        self.child: _Child | None = None
        if mode == "process":
            try:
                self.child = _Child()
            except Exception as exc:  # no subprocess here: write from this thread
                log.warning("metric writer process could not start (%s); writing metrics from a thread", exc)
                self.mode = "thread"

    def open(self, client, uri: str, run_id: str) -> None:
        """The store exists and the run too: the writer process may open it."""
        self.client, self.run_id = client, run_id
        if self.child is not None:
            self.child.open(uri)

    def run(self) -> None:
        batch: list = []
        due = 0.0
        while True:
            if batch:
                timeout = max(0.0, due - time.monotonic())
            else:  # idle: still look in on a writer process that is starting
                timeout = 0.2 if self.child is not None and not self.child.ready else None
            try:
                item = self.q.get(timeout=timeout)
            except queue.Empty:  # the oldest waiting row is WRITE_EVERY_S old, or a look at the process
                if batch:
                    batch = self._send(batch)
                    due = time.monotonic() + 0.2
                elif self.child is not None:
                    self.child.poll()
                    self._collect()
                continue
            if isinstance(item, list):
                if not batch:
                    due = time.monotonic() + WRITE_EVERY_S
                batch.extend(item)
                if len(batch) >= MAX_BATCH:
                    batch = self._send(batch)
            else:  # a flush marker (an Event) or None to stop
                self._send(batch, now=True)
                batch = []
                self._settle(stop=item is None)
                if item is None:
                    return
                item.set()

    def _send(self, batch: list, now: bool = False) -> list:
        """Hand ``batch`` on; returns what must wait (rows held for a writer process still starting)."""
        if not batch:
            return batch
        child = self.child
        if child is not None:
            child.poll()
            self._collect()
            if child.ready:
                child.send(self.run_id, batch)
                self.last_step = max(self.last_step, batch[-1][3])
                return []
            if child.starting and not now and len(batch) < 50 * MAX_BATCH:
                return batch
            if not child.starting:
                self._abandon()
        self._write(batch)
        return []

    def _write(self, batch: list) -> None:
        if self.error is not None:
            return
        t0 = time.perf_counter()
        try:
            write_rows(self.client, self.run_id, batch)
        except BaseException as exc:  # surfaced to the training thread at the next flush
            self.error = exc
        self.seconds += time.perf_counter() - t0
        self.rows += len(batch)
        self.rows_here += len(batch)
        self.last_step = max(self.last_step, batch[-1][3])

    def _collect(self) -> None:
        """Take the writer process's confirmed rows and errors into this writer's account."""
        child = self.child
        if child is None:
            return
        self.rows, self.seconds = self.rows + child.rows, self.seconds + child.seconds
        child.rows, child.seconds = 0, 0.0
        if child.error and self.error is None:
            self.error = RuntimeError(child.error)
        if child.dead:
            self._abandon()

    def _abandon(self) -> None:
        """Go on without the writer process, writing here what it had not confirmed."""
        child, self.child = self.child, None
        if child is None:
            return
        if child.ready or child.inflight or child.failure:
            log.warning("metric writer process stopped (%s); writing metrics from a thread",
                        child.failure or "did not answer")
        child.proc.kill()
        child.close()
        for rows in child.inflight:
            self._write(rows)
        self.mode = "thread"

    def _settle(self, stop: bool) -> None:
        """Wait until the writer process has written everything sent (and, at ``stop``, has exited)."""
        child = self.child
        if child is None:
            return
        if child.ready or child.inflight:
            child.wait("stop" if stop else "flush", "stopped" if stop else "flushed")
        self._collect()
        if stop and self.child is not None:
            if not child.ready:
                child.proc.kill()  # still starting, or never started: nothing of ours is in it
            self.child = None
            child.close()
            if child.inflight:  # it died before confirming these
                for rows in child.inflight:
                    self._write(rows)

    def discard(self) -> None:
        """Stop the writer process of a run that never started."""
        child, self.child = self.child, None
        if child is not None:
            child.proc.kill()
            child.close()

    @property
    def where(self) -> str:
        """Who wrote the rows: ``process``, ``thread`` or ``process+thread``."""
        if self.rows_here == 0:
            return "process"
        return "thread" if self.rows_here == self.rows else "process+thread"

    @property
    def row_cost(self) -> float:
        """Measured seconds per metric row written (about 0.1 ms on SQLite)."""
        return self.seconds / self.rows if self.rows >= 100 else 2e-4


class Tracker:
    """One MLflow run.

    Args:
        uri: the MLflow tracking URI.
        experiment: the experiment name.
        system_metrics: record CPU, memory and GPU through MLflow's system-metrics monitor.
        system_metrics_interval: seconds between samples.
    """

    def __init__(self, uri: str, experiment: str, system_metrics: bool = True, system_metrics_interval: float = 10.0):
        self.uri, self.experiment = uri, experiment
        self.system_metrics, self.interval = system_metrics, system_metrics_interval
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._writer: _Writer | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None) -> str:
        writer = _Writer(None, None, writer_mode())  # its process imports MLflow while this one opens the store
        try:
            self._start(run_name, params, tags, run_id)
        except BaseException:
            writer.discard()
            raise
        writer.open(self.client, self.uri, self.run_id)
        self._writer = writer
        writer.start()
        return self.run_id

    def _start(self, run_name: str | None, params: dict, tags: dict, run_id: str | None) -> None:
        import mlflow
        from mlflow.entities import Param

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.experiment_id = prepare_store(self.uri, self.experiment)
        mlflow.set_tracking_uri(self.uri)
        self.client = mlflow.MlflowClient(self.uri)
        if self.system_metrics:
            mlflow.set_system_metrics_sampling_interval(self.interval)
            mlflow.set_system_metrics_samples_before_logging(1)
        if mlflow.active_run() is not None:  # a previous run in this process that did not end
            mlflow.end_run("KILLED")
        run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else self.experiment_id,
                               run_name=run_name, tags=None if run_id else {k: str(v) for k, v in tags.items()},
                               log_system_metrics=self.system_metrics)
        self.run_id = run.info.run_id
        if run_id is None:
            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])

    @contextlib.contextmanager
    def run(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None):
        """Start (or continue) the run, and end it honestly whatever happens inside the block.

        FINISHED when the block completes; KILLED on Ctrl-C or SIGTERM (``KeyboardInterrupt``);
        FAILED on any other exception, with its traceback as ``error/traceback.txt``. The tag
        ``zoo.error`` gets ``self.error`` when the block set one (a reason better than the
        exception's text, such as how to resume), else the exception's type and message.
        """
        self.start(run_name=run_name, params=params, tags=tags, run_id=run_id)
        status, self.error = "FAILED", None
        try:
            yield self
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self.text(traceback.format_exc(), "error/traceback.txt")
            raise
        finally:
            self.finish(status, self.error)

    def finish(self, status: str, error: str | None = None) -> None:
        """Flush every queued metric, then end the run as FINISHED, FAILED or KILLED."""
        import mlflow

        if self.run_id is None:
            return
        writer = self._writer
        try:
            self.flush(stop=True)
            self._log_writer_cost(writer)
        finally:
            if error:
                try:
                    self.client.set_tag(self.run_id, "zoo.error", error[:5000])
                except Exception:  # the store itself may be the problem; the status still matters more
                    log.exception("could not record the error tag")
            mlflow.end_run(status)

    def _log_writer_cost(self, w: "_Writer | None") -> None:
        """``perf/metric_rows`` written, ``perf/writer_s`` spent writing them, and where (``zoo.metric_writer``)."""
        if w is None or not w.rows:
            return
        from mlflow.entities import Metric, RunTag

        ts, step = int(time.time() * 1000), w.last_step
        try:
            self.client.log_batch(self.run_id, metrics=[Metric("perf/writer_s", w.seconds, ts, step),
                                                        Metric("perf/metric_rows", float(w.rows), ts, step)],
                                  tags=[RunTag("zoo.metric_writer", w.where)])
        except Exception as exc:  # a figure about the run, never a reason to fail it
            log.warning("could not record the metric writer's cost: %s", str(exc).splitlines()[0][:200])

    def flush(self, stop: bool = False) -> None:
        """Wait until every queued metric is written; raise if the store refused them."""
        w = self._writer
        if w is None:
            return
        if stop:
            w.q.put(None)
            w.join()
            self._writer = None
        else:
            done = threading.Event()
            w.q.put(done)
            while not done.wait(0.5):
                if not w.is_alive():
                    break
        if w.error is not None:
            err, w.error = w.error, None
            raise ZooError(f"writing metrics to {self.uri} failed: {str(err).splitlines()[0][:300]}")

    # -- what the loop logs ---------------------------------------------------------------------
    @property
    def row_cost(self) -> float:
        return self._writer.row_cost if self._writer else 2e-4

    def metrics(self, values: dict[str, float], step: int, timestamp: float | None = None) -> None:
        ts = int((timestamp or time.time()) * 1000)
        self._put([(k, float(v), ts, int(step)) for k, v in values.items()])

    def series(self, key: str, values: Iterable[float], steps: Iterable[int], timestamps: Iterable[float]) -> None:
        self._put([(key, float(v), int(t * 1000), int(s)) for v, s, t in zip(values, steps, timestamps)])

    def _put(self, rows: list) -> None:
        if self._writer is not None and self._writer.error is not None:
            self.flush()  # raises the writer's error
        self._writer.q.put(rows)

    def tags(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self.client.set_tag(self.run_id, k, str(v))

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def model(self, model, example, output) -> None:
        """Log the model with a signature and an input example, loadable by ``mlflow.pyfunc``."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        ex = example.detach().cpu().numpy()
        signature = infer_signature(ex, output.detach().cpu().numpy())
        with warnings.catch_warnings():  # torch's export warns about cuDNN's flat RNN weights; harmless here
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=ex,
                                     pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
