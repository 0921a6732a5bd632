"""One MLflow run as the training loop sees it: :class:`Tracker` (:class:`~zoo.tracking.null.NullTracker` for ranks that log nothing).

The loop talks to a tracker through a handful of calls (``metrics``, ``series``, ``tags``,
``artifact``, ``text``, ``model``) and knows nothing of MLflow's API. ``Tracker.run(...)`` is the
run's lifecycle as one context manager: it ends the run FINISHED, FAILED (with the reason and the
traceback) or KILLED, never RUNNING. Metrics are queued for the writer (:mod:`zoo.tracking.writer`),
so the training thread never waits on the store; every other store request (the run's start and
end, tags, artifacts, datasets, the model) goes the same way, in order with them, to the run's
:class:`~zoo.tracking.runstore.RunStore` in the writer process (so that this process need not import
MLflow) or in this process (mode ``thread``). Only a request whose answer matters waits for it (the run's
start, the model, metrics linked to it); tags, artifacts, texts and the dataset inputs are sent without
waiting, and a refusal among them is raised at the next metrics, the next answered request, a flush or the
run's end, whichever comes first, and ends the run FAILED with its one line. Once the store refuses rows,
everything the run sends goes to its journal (:mod:`zoo.tracking.journal`), a request the store refuses
while it is on its way too, and the run ends FAILED saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterable

from zoo.errors import ZooError, one_line
from zoo.tracking import liveness
from zoo.tracking import tags as tag
from zoo.tracking.journal import Journal, journal_path
from zoo.tracking.runs import check_parent
from zoo.tracking.store import default_uri
from zoo.tracking.child import writer_mode
from zoo.tracking.writer import DEFAULT_ROW_COST_S, Writer

log = logging.getLogger(__name__)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (an empty dict stays a value)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit(path: str | os.PathLike) -> str | None:
    """The commit checked out at ``path`` (None outside a git work tree or without git)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class Tracker:
    """One MLflow run.

    Args:
        uri: the MLflow tracking URI; None: the store of the caller's active MLflow run if there is
            one (Python code inside ``with mlflow.start_run():``), else :func:`default_uri`.
        experiment: the experiment name.
        system_metrics: record CPU, memory and GPU through MLflow's system-metrics monitor.
        system_metrics_interval: seconds between samples.
        journal_dir: where the run's journal goes if the store refuses rows (its checkpoint folder);
            None: a refusal fails the run at once.

    Every store request goes through the run's :class:`~zoo.tracking.writer.Writer`, in order with
    the metric rows, to a :class:`~zoo.tracking.runstore.RunStore` in the writer process (mode
    ``process``: this process never imports MLflow for it) or in this process (mode ``thread``).
    Inside the caller's own active run, Zoo's run is nested under it (``mlflow.parentRunId``) and
    the caller's run stays active. MLflow's process-wide tracking URI (``MLFLOW_TRACKING_URI``) is
    Zoo's store while the run is open and the caller's again after it.
    """

    def __init__(self, uri: str | None, experiment: str, system_metrics: bool = True,
                 system_metrics_interval: float = 10.0, journal_dir: str | os.PathLike | None = None):
        self.uri, self.experiment, self.journal_dir = uri, experiment, journal_dir
        self._journal: Journal | None = None
        self.system_metrics, self.interval = system_metrics, system_metrics_interval
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.error: str | None = None  # set inside ``run()`` for a better reason than the exception's text
        self._writer: Writer | None = None
        self._stored: dict[str, int] = {}  # a continued run: metric -> the last step the store holds (never again)
        self._continued = False
        self._refused = False  # a refused request was raised: the run fails with it, later ones are warnings
        self._outer: tuple[str | None, str | None] | None = None  # the caller's tracking URI and MLFLOW_TRACKING_URI

    # -- lifecycle -----------------------------------------------------------------------------
    @staticmethod
    def warm_up(uri: str | None = None, *, store: bool = False) -> None:
        """Start what a run will need before it starts (the metric writer process), so that its start-up
        overlaps the caller's own (loading the data, building the model). ``store``: the process also opens
        the run's store meanwhile, if it exists already (``uri`` as :class:`Tracker` takes it)."""
        from zoo.tracking.child import prestart

        if store and uri is None and _outer_run() is None:  # (else the caller's run's store, known at its start)
            uri = default_uri()
        prestart(uri if store else None)

    def start(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None) -> str:
        outer = _outer_run()  # the caller's own run (Zoo's runs always end): Zoo's nests under it
        if outer is not None:
            import mlflow

            self.uri = self.uri or mlflow.get_tracking_uri()
        self.uri = self.uri or default_uri()
        writer = Writer(self.uri, writer_mode())  # its process imports MLflow while this one builds the run
        writer.start()
        try:
            self.experiment_id = writer.call("open", self.experiment)
            tags = {k: str(v) for k, v in tags.items()}
            if outer is not None:  # (this process imported MLflow already: the caller's run is in it)
                import mlflow

                check_parent(mlflow.MlflowClient(self.uri), outer.info.run_id, self.uri)
                tags.setdefault(tag.PARENT, outer.info.run_id)
            self._use_store()
            try:
                self.run_id, self._stored = writer.call(
                    "start", self.experiment_id, run_name, {**_source(), **tags} if run_id is None else {},
                    {} if run_id else flatten(params), run_id, liveness.identity(), self.system_metrics,
                    self.interval)
            except BaseException:
                self._restore_store()
                raise
        except BaseException:
            writer.q.put(None)
            writer.join()
            raise
        self._continued, self._refused = run_id is not None, False
        if self.journal_dir is not None:
            self._journal = Journal(journal_path(self.journal_dir, self.run_id), self.run_id, self.uri)
        writer.run_id, writer.journal = self.run_id, self._journal  # the writer waits for rows: nothing raced
        self._writer = writer
        return self.run_id

    def _use_store(self) -> None:
        """Make Zoo's store MLflow's process-wide one, noting the caller's (in MLflow itself where this
        process imported it, else ``MLFLOW_TRACKING_URI`` alone, which MLflow reads when imported later)."""
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if "mlflow" not in sys.modules:
            if env != self.uri:
                self._outer = (None, env)
                os.environ["MLFLOW_TRACKING_URI"] = self.uri
            return
        import mlflow

        previous = mlflow.get_tracking_uri()
        if previous != self.uri:
            # the caller's own setting, or None where it came from MLFLOW_TRACKING_URI or MLflow's default
            # (given back as it was, not as a path resolved now, which would outlive a later chdir or export)
            mine = previous if mlflow.is_tracking_uri_set() and previous != env else None
            self._outer = (mine, env)
            mlflow.set_tracking_uri(self.uri)  # which also sets MLFLOW_TRACKING_URI for child processes

    def _restore_store(self) -> None:
        """Give the caller back its tracking URI (and MLFLOW_TRACKING_URI as it was)."""
        if self._outer is None:
            return
        previous, env = self._outer
        self._outer = None
        if "mlflow" in sys.modules:
            import mlflow

            mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env

    @contextlib.contextmanager
    def run(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None):
        """Start (or continue) the run, and end it honestly whatever happens inside the block.

        FINISHED when the block completes; KILLED on Ctrl-C or SIGTERM (``KeyboardInterrupt``);
        FAILED on any other exception, with its traceback as ``error/traceback.txt``, and when a request
        sent without waiting was refused (raised once the block completes, if not before). The tag
        ``zoo.error`` gets ``self.error`` when the block set one (a reason better than the
        exception's text, such as how to resume), else the exception's type and message.
        """
        self.start(run_name=run_name, params=params, tags=tags, run_id=run_id)
        status, self.error = "FAILED", None
        try:
            yield self
            self.flush()  # every request sent without waiting was taken
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
        """Flush every queued metric and request, then end the run as FINISHED, FAILED or KILLED.

        A request sent without waiting that the store refused makes a FINISHED run FAILED (and is raised
        after its end); after another failure it is a warning (the run ends with its first reason).
        """
        if self.run_id is None:
            return
        w = self._writer
        if w is None:
            raise ZooError(f"the run {self.run_id} is not open: cannot end it")
        refused = None
        try:
            with contextlib.suppress(Exception):  # its last sample goes in while the run is RUNNING
                w.call("stop_sampling")
            self._drain()
            refused = self._take_failed()
            if refused is not None and status == "FINISHED":
                status, error = "FAILED", one_line(refused, 5000)
            elif refused is not None:
                log.warning("the store also refused a request of run %s: %s", self.run_id, one_line(refused))
                refused = None
            self._log_writer_cost(w)
        finally:
            try:
                if self.journaling:  # FAILED (or KILLED) saying where the rows are; raises its one line
                    self._journal.end(_Tags(w), "KILLED" if status == "KILLED" else "FAILED", error,
                                      lambda s: w.call("end", self.run_id, s, None, False))
                else:
                    w.call("end", self.run_id, status, error, status == "FINISHED" and self._continued)
            finally:
                try:
                    self._drain(stop=True)
                finally:
                    self._restore_store()
        if refused is not None:
            raise refused

    def _call(self, op: str, *args):
        """A store request, answered (see :class:`~zoo.tracking.writer.Writer`); an earlier request sent
        without waiting that the store refused is raised first."""
        if self._writer is None:
            raise ZooError(f"the run {self.run_id} is not open: cannot {op}")
        value = self._writer.call(op, *args)
        self._raise_failed()
        return value

    def _send(self, op: str, *args, record: dict | None = None):
        """A store request sent without waiting for its answer (a refusal: :meth:`_raise_failed`);
        ``record``: the request as the run's journal keeps it."""
        if self._writer is None:
            raise ZooError(f"the run {self.run_id} is not open: cannot {op}")
        return self._writer.submit(op, *args, record=record, watched=False)

    def _take_failed(self) -> BaseException | None:
        """The error of the first request sent without waiting that the store refused (once)."""
        w = self._writer
        if w is None or w.failed is None:
            return None
        call, w.failed = w.failed, None
        return call.error

    def _raise_failed(self) -> None:
        error = self._take_failed()
        if error is None:
            return
        if self._refused:  # the run fails already (a failed run's last.pt, its checkpoints, still go on)
            log.warning("the store also refused a request of run %s: %s", self.run_id, one_line(error))
            return
        self._refused = True
        raise error

    @property
    def journaling(self) -> bool:
        """The store refused rows: from now on, everything this run sends goes to its journal."""
        return self._journal is not None and self._journal.active

    def _journaled(self, record: dict) -> bool:
        return self._journal is not None and self._journal.keep(record)

    def _log_writer_cost(self, w: Writer | None) -> None:
        """``perf/metric_rows`` written, ``perf/writer_s`` spent writing them, and where (``zoo.metric_writer``)."""
        if w is None or not w.rows:
            return
        ts, step = int(time.time() * 1000), w.last_step
        if self._journaled({"metrics": [["perf/writer_s", w.seconds, ts, step], ["perf/metric_rows", float(w.rows), ts, step]],
                            "tags": {tag.METRIC_WRITER: w.where}}):
            return
        w.call("writer_cost", self.run_id, w.seconds, w.rows, step, w.where)

    def when_stored(self, then) -> None:
        """Call ``then()`` (in the writer's thread) once every metric and request queued before now is stored,
        without waiting here; never, if the store refused rows (a later :meth:`flush` raises that)."""
        if self._writer is None:
            then()
        else:
            self._writer.q.put(then)

    def flush(self, stop: bool = False) -> None:
        """Wait until every queued metric and request is done; raise if the store refused them."""
        self._drain(stop)
        self._raise_failed()

    def _drain(self, stop: bool = False) -> None:
        """Wait until every queued metric and request is done; raise if the store refused metric rows."""
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
            if isinstance(err, ZooError):
                raise err
            raise ZooError(f"writing metrics to {self.uri} failed: {one_line(err)}")

    # -- what the loop logs ---------------------------------------------------------------------
    @property
    def row_cost(self) -> float:
        return self._writer.row_cost if self._writer else DEFAULT_ROW_COST_S

    def metrics(self, values: dict[str, float], step: int, timestamp: float | None = None) -> None:
        ts = int((timestamp or time.time()) * 1000)
        self._put([(k, float(v), ts, int(step)) for k, v in values.items()])

    def series(self, key: str, values: Iterable[float], steps: Iterable[int], timestamps: Iterable[float]) -> None:
        self._put([(key, float(v), int(t * 1000), int(s)) for v, s, t in zip(values, steps, timestamps)])

    def _put(self, rows: list) -> None:
        w = self._writer
        if w is not None and (w.error is not None or w.failed is not None):
            self.flush()  # raises the writer's error, or a refused request's
        if self._stored:
            rows = self._not_stored(rows)
        if rows:
            self._writer.q.put(rows)

    def _not_stored(self, rows: list) -> list:
        """The rows of a continued run at steps the store does not hold yet (the steps between its checkpoint
        and the last stored step are trained again, not logged again). Each metric's steps only grow: once one
        passes its last stored step, that metric is never filtered again."""
        kept = []
        for row in rows:
            last = self._stored.get(row[0])
            if last is None:
                kept.append(row)
            elif row[3] > last:
                kept.append(row)
                del self._stored[row[0]]
        return kept

    def tags(self, values: dict[str, Any]) -> None:
        values = {k: str(v) for k, v in values.items()}
        self._send("tags", self.run_id, values, record={"tags": values})

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        """Store the file at ``path`` in the run's ``folder``; sent without waiting: the file must stay as it is
        until the writer has copied it (the run's next :meth:`flush`; a checkpoint is replaced by a rename after
        one, :class:`~zoo.training.checkpoint.Checkpointer`)."""
        self._send("artifact", self.run_id, os.path.abspath(path), folder,  # the writer's folder may differ
                   record={"artifact": str(Path(path).resolve()), "folder": folder})

    def text(self, text: str, name: str) -> None:
        self._send("text", self.run_id, text, name, record={"text": text, "name": name})

    def model(self, folder, wait: bool = True, **kwargs):
        """Log the model saved in ``folder`` as this run's pyfunc model; return its model id.

        ``wait=False``: return at once a function that waits for the model id (the writer logs the model
        while the caller goes on; ``folder`` must last until then). See
        :func:`zoo.tracking.models.log_pyfunc` for the keyword arguments.
        """
        if self.journaling:  # a model is not journaled: its checkpoints are kept
            log.warning("the model is not logged: the store refused rows earlier (see %s)", self._journal.path)
            return None if wait else (lambda: None)
        pending = self._writer.submit("model", self.run_id, str(folder), kwargs)
        if wait:
            return pending.answer(self._writer)
        return lambda: pending.answer(self._writer)

    def datasets(self, records, wait: bool = True):
        """The run's data as MLflow dataset inputs; ``split -> (name, digest)`` (see :func:`~zoo.tracking.models.log_datasets`).

        ``wait=False``: sent without waiting; returns a function that waits for that mapping (``linked_metrics``
        needs it at the end of the run).
        """
        if self.journaling:
            return {} if wait else dict
        w, call = self._writer, self._send("datasets", self.run_id, list(records))

        def answer() -> dict[str, tuple[str, str]]:  # a refusal (this request's or another's) is raised by the
            call.wait(w)  # next request that waits, after it was stored: the test metrics of a failing run stay
            return call.value if call.error is None else {}

        return answer() if wait else answer

    def linked_metrics(self, values: dict[str, float], step: int, model_id: str | None, dataset) -> None:
        """Metrics of ``model_id`` on ``dataset`` (name, digest), written now (MLflow 3's model metrics)."""
        values = {k: v for k, v in values.items() if step > self._stored.get(k, -1)}
        if values and self.journaling:  # plain metrics, in the journal (no model to link them to)
            self.metrics(values, step)
        elif values:  # after the metrics queued before them
            self._call("linked_metrics", self.run_id, values, step, model_id, dataset)

    def model_input(self, model_id: str) -> None:
        """``model_id`` is where this run started from (``init_from=``) or what it evaluated."""
        if self.journaling:
            return
        self._call("model_input", self.run_id, model_id)


class _Tags:
    """What :meth:`Journal.end` needs of a client (``set_tag``), as the run's store requests."""

    def __init__(self, writer: Writer):
        self.writer = writer

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.writer.call("tags", run_id, {key: value})


def _outer_run():
    """The caller's active MLflow run: only where this process imported MLflow (else there is none)."""
    if "mlflow" not in sys.modules:
        return None
    import mlflow

    return mlflow.active_run()


def _source() -> dict[str, str]:
    """What ``mlflow.start_run`` records about the program that ran (the writer process's would be its own;
    the user, the same in both, is :meth:`RunStore.start`'s)."""
    return {"mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<console>", "mlflow.source.type": "LOCAL"}
