"""The metric writer process: writes a run's metric rows to MLflow on behalf of the training process.

MLflow spends a few milliseconds of Python on each ``log_batch`` call and about 0.07 ms on each
row it writes to SQLite. Done by a thread of the training process, that work holds the GIL the
training thread needs between its PyTorch operations; done here, it runs on another core.
:mod:`zoo.tracking` starts this process with two pipe ends and talks to it in pickled tuples:

=========================================================  =========================================
training process -> writer                                 writer -> training process
=========================================================  =========================================
``("open", uri, cwd, env, early)`` first: the store      ``("ready",)`` once its client is open,
(which need not exist yet), the training process's folder  or ``("failed", message)``
and its ``MLFLOW_*`` variables (a process left idle by a
run elsewhere); ``early``: the run does not exist yet,
open the store now if it exists (:func:`_open_early`)
``("call", op, args, journaled)``:                          ``("answer", None, value)`` or
``RunStore(uri).op(*args)`` (:mod:`zoo.tracking.runstore`:  ``("answer", (kind, one line), None)``
open the experiment, start and end the run, tags,           (kind ``zoo``: a ZooError; else a refusal;
artifacts, the model...); ``journaled``: the run's journal  a ``journaled`` request after a refused
would take it                                               batch is refused untried, as rows are)
``("rows", run_id, [(key, value, ms, step), ...])``        ``("done", n_rows, seconds, error|None)``
                                                           (after the retries of RETRY_WAITS_S; once
                                                           a batch is refused, later ones are not tried)
``("flush",)``                                             ``("flushed",)``
``("stop",)``                                              ``("stopped",)``, then it exits
=========================================================  =========================================

Every request of a run goes here in mode ``process``: the training process of a plain ``zoo train``
never imports MLflow. Started before the run's data and model are built, it opens a store that exists already
(:func:`_open_early`) while they are. This process runs the run's heartbeat and system-metrics monitor. Once the run
has started, a thread of the lowest priority prepares what logging the model will need (:func:`_warm_up`). This
process never imports torch.

The writer ignores Ctrl-C (the training process stops at a step boundary and then stops it) and
exits by itself when the training process goes away (its pipe closes).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from zoo.errors import one_line

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
# A batch the store refuses is tried again after these waits (seconds); then its rows go to the
# run's journal (zoo.tracking.journal). MLflow's own HTTP retries are bounded in this process
# (HTTP_BOUNDS), so a server that went away costs about ten seconds, not MLflow's minutes.
RETRY_WAITS_S = (1.0, 3.0)
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def write_rows(client, run_id: str, rows: list) -> None:
    """Write ``(key, value, timestamp_ms, step)`` rows to a run, MAX_BATCH per ``log_batch`` call."""
    from mlflow.entities import Metric

    for i in range(0, len(rows), MAX_BATCH):
        client.log_batch(run_id, metrics=[Metric(*r) for r in rows[i:i + MAX_BATCH]], synchronous=True)


def write_patiently(client, run_id: str, rows: list) -> None:
    """:func:`write_rows`, tried again after each of RETRY_WAITS_S; the last refusal is raised.

    A batch tried again whole is safe: MLflow ignores a row it already holds.
    """
    for wait in RETRY_WAITS_S:
        try:
            return write_rows(client, run_id, rows)
        except Exception:
            time.sleep(wait)
    write_rows(client, run_id, rows)


def serve(inbox: Connection, outbox: Connection) -> int:
    """Answer the training process until it says stop or goes away."""
    gc.disable()  # while importing MLflow: full passes over its modules cost a tenth of a second each
    try:
        import logging

        import mlflow

        from zoo.tracking.runstore import RunStore, answer

        # a refused batch is reported to the training process, which says so once: not MLflow's
        # error log (set up by its import) and urllib3's "Retrying" line for every try
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    except Exception as exc:  # pragma: no cover - mlflow is a dependency
        outbox.send(("failed", one_line(exc)))
        return 1
    gc.freeze()  # MLflow's modules live as long as this process: the collector's full passes skip them
    gc.enable()
    store = None
    refused = None  # once the store refused a batch, the rest go straight back to the journal, untried
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):  # the training process is gone
            return 0
        kind = msg[0]
        if kind == "open":
            try:
                uri, cwd, env, early = (*msg[1:], None, None, False)[:4]
                if cwd is not None:  # relative paths (a store, an artifact) mean what they mean there
                    os.chdir(cwd)
                if env is not None:
                    for key in [k for k in os.environ if k.startswith("MLFLOW_") and k not in env]:
                        del os.environ[key]
                    os.environ.update(env)
                store = RunStore(uri)
                mlflow.set_tracking_uri(uri)  # where the model is logged (MLflow's Model.log)
            except Exception as exc:
                outbox.send(("failed", one_line(exc)))
                return 1
            refused = None  # a new run's store (or the same one, back)
            outbox.send(("ready",))
            if early:
                _open_early(store)  # (not the warm-up: beside the start's own requests it slowed them, one GIL)
        elif kind == "call":
            _, op, args, journaled = (*msg, False)[:4]
            if journaled and refused is not None:  # after the refused rows, into the journal in order with them
                outbox.send(("answer", ("refused", refused), None))
                continue
            outbox.send(("answer", *answer(store, op, args)))
            if op == "start":
                _warm_up()
        elif kind == "rows":
            _, run_id, rows = msg
            t0, error = time.perf_counter(), refused
            if refused is None:
                try:
                    write_patiently(store.client, run_id, rows)
                except Exception as exc:
                    error = refused = one_line(exc)
            outbox.send(("done", len(rows), time.perf_counter() - t0, error))
        elif kind == "flush":
            outbox.send(("flushed",))
        elif kind == "stop":
            outbox.send(("stopped",))
            return 0


def _open_early(store) -> None:
    """Before the run exists: import what starting a run needs, and open the store (MLflow's engine, its schema
    check; MLflow keeps the store for the run's requests) if it exists already: a SQLite database with MLflow's
    tables, its Default experiment (MLflow would create those) and WAL on (Zoo's open would switch it), or a
    tracking server. Nothing is written: a command that then fails leaves the store as it was. Whatever fails
    here is the run's own requests' to say."""
    try:
        import mlflow.entities  # noqa: F401
        import mlflow.system_metrics.system_metrics_monitor  # noqa: F401
        import mlflow.tracking.context.default_context  # noqa: F401

        import zoo.tracking.runs  # noqa: F401
        from zoo.tracking.runstore import OPENED
        from zoo.tracking.store import is_http, sqlite_path

        db = sqlite_path(store.uri)
        if db is not None and store.uri not in OPENED and _is_ready(db):
            store.client  # noqa: B018 - made now, and kept
            OPENED.add(store.uri)  # checked: the run's open does not probe the file again
        elif is_http(store.uri):
            store.client  # noqa: B018
    except Exception:
        pass


def _is_ready(db) -> bool:
    """Whether the SQLite file ``db`` is an MLflow store with its Default experiment, in WAL mode: read only."""
    import sqlite3
    from urllib.parse import quote

    if not db.is_file():
        return False
    try:
        con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=5)
        try:
            return bool(con.execute("SELECT 1 FROM experiments WHERE experiment_id = 0").fetchall()) and \
                bool(con.execute("SELECT version_num FROM alembic_version").fetchall()) and \
                con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        finally:
            con.close()
    except sqlite3.Error:
        return False


_warming: threading.Thread | None = None


def _warm_up() -> None:
    """Prepare what logging the model will need (:func:`zoo.tracking.models.prepare_model_logging`) in a thread of
    the lowest priority, once: it only takes CPU time that the training process leaves, and what it has not done
    when the model comes is done then (not twice). Logging the model needs neither torch nor the model: the
    training process loaded it back and sends its answers (:func:`zoo.models.log.log_model`)."""
    global _warming
    if _warming is not None:
        return

    def warm() -> None:
        if not sys.platform.startswith("linux"):  # a thread's own priority is Linux's; elsewhere, when the model comes
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread alone
        except OSError:
            return
        try:
            from zoo.tracking.models import prepare_model_logging

            prepare_model_logging()
        except Exception:  # the model's own request says what is wrong
            pass

    _warming = threading.Thread(target=warm, name="zoo-warm-up", daemon=True)
    _warming.start()


def _exit_now(code: int) -> None:
    """Exit without MLflow's exit handlers (its telemetry threads take a second to join): all is written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    try:
        code = serve(inbox, outbox)
    except OSError:  # the training process went away while this one answered it (a broken pipe): nothing to do
        code = 0
    _exit_now(code)


if __name__ == "__main__":
    sys.exit(main())
