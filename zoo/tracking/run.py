"""One MLflow run as the training loop sees it: :class:`Tracker` (:class:`~zoo.tracking.null.NullTracker` for ranks that log nothing).

The loop talks to a tracker through a handful of calls (``metrics``, ``series``, ``tags``,
``artifact``, ``text``, ``model``) and knows nothing of MLflow's API. ``Tracker.run(...)`` is the
run's lifecycle as one context manager: it ends the run FINISHED, FAILED (with the reason and the
traceback) or KILLED, never RUNNING. Metrics are queued for the writer (:mod:`zoo.tracking.writer`),
so the training thread never waits on the store. Once the store refuses rows, everything the run
sends goes to its journal (:mod:`zoo.tracking.journal`) and the run ends FAILED saying so.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterable

from zoo.errors import ZooError, one_line
from zoo.tracking import liveness, system
from zoo.tracking import tags as tag
from zoo.tracking.journal import Journal, journal_path
from zoo.tracking.runs import check_parent, stored_steps
from zoo.tracking.store import default_uri, prepare_store
from zoo.tracking.writer import DEFAULT_ROW_COST_S, Writer, writer_mode

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

    Inside the caller's own active run, Zoo's run is nested under it (``mlflow.parentRunId``) and
    the caller's run stays active. MLflow's process-wide tracking URI is Zoo's store while the run
    is open and the caller's again after it.
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
        self._monitor = None  # the system-metrics monitor (zoo.tracking.system)
        self._heartbeat = None  # who runs the run, and that it still runs (zoo.tracking.liveness)
        self._outer: tuple[str | None, str | None] | None = None  # the caller's tracking URI and MLFLOW_TRACKING_URI

    # -- lifecycle -----------------------------------------------------------------------------
    @staticmethod
    def warm_up() -> None:
        """Start what a run will need before it starts (the metric writer process), so that its
        start-up overlaps the caller's own (loading the data, building the model)."""
        from zoo.tracking.writer import prestart

        prestart()

    def start(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None) -> str:
        writer = Writer(None, None, writer_mode())  # its process imports MLflow while this one opens the store
        try:
            self._start(run_name, params, tags, run_id)
        except BaseException:
            writer.discard()
            raise
        if self.journal_dir is not None:
            self._journal = Journal(journal_path(self.journal_dir, self.run_id), self.run_id, self.uri)
        writer.open(self.client, self.uri, self.run_id, self._journal)
        self._writer = writer
        writer.start()
        return self.run_id

    def _start(self, run_name: str | None, params: dict, tags: dict, run_id: str | None) -> None:
        import mlflow
        from mlflow.entities import Param

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # a refused write is Zoo's one line (or the journal's warning), not MLflow's traceback in the log
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        outer = mlflow.active_run()  # the caller's own run (Zoo's runs always end): Zoo's nests under it
        self.uri = self.uri or (mlflow.get_tracking_uri() if outer else default_uri())
        self.experiment_id = prepare_store(self.uri, self.experiment)
        self.client = mlflow.MlflowClient(self.uri)
        if outer is not None:
            check_parent(self.client, outer.info.run_id, self.uri)
        self._use_store()
        try:
            run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else self.experiment_id,
                                   run_name=run_name, tags=None if run_id else {k: str(v) for k, v in tags.items()},
                                   nested=outer is not None, log_system_metrics=False)
        except BaseException:
            self._restore_store()
            raise
        self.run_id = run.info.run_id
        self._continued = run_id is not None
        try:
            if run_id is not None:
                self._stored = stored_steps(self.client, self.run_id)
            if run_id is None:
                items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
                for i in range(0, len(items), 100):
                    self.client.log_batch(self.run_id, params=items[i:i + 100])
            self._heartbeat = liveness.start(self.client, self.run_id)
            if self.system_metrics:
                self._monitor = system.start(self.uri, self.run_id, self.interval, resume=run_id is not None)
        except BaseException as exc:  # no run is left RUNNING, nor the caller's store changed
            self.run_id = None
            if self._heartbeat is not None:
                self._heartbeat.stop()
            with contextlib.suppress(Exception):
                self.client.set_tag(run.info.run_id, tag.ERROR, f"could not start: {one_line(exc, 300)}")
            mlflow.end_run("FAILED")
            self._restore_store()
            raise

    def _use_store(self) -> None:
        """Make Zoo's store MLflow's process-wide one (``mlflow.pytorch.log_model`` logs there), noting the caller's."""
        import mlflow

        previous, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
        if previous != self.uri:
            # the caller's own setting, or None where it came from MLFLOW_TRACKING_URI or MLflow's default
            # (given back as it was, not as a path resolved now, which would outlive a later chdir or export)
            mine = previous if mlflow.is_tracking_uri_set() and previous != env else None
            self._outer = (mine, env)
            mlflow.set_tracking_uri(self.uri)  # which also sets MLFLOW_TRACKING_URI for child processes

    def _restore_store(self) -> None:
        """Give the caller back its tracking URI (and MLFLOW_TRACKING_URI as it was)."""
        import mlflow

        if self._outer is None:
            return
        previous, env = self._outer
        self._outer = None
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env

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
        writer, monitor, self._monitor = self._writer, self._monitor, None
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            if monitor is not None:
                monitor.finish()  # its last sample goes in while the run is RUNNING
            self.flush(stop=True)
            self._log_writer_cost(writer)
        finally:
            try:
                if self.journaling:  # FAILED (or KILLED) saying where the rows are; raises its one line
                    self._journal.end(self.client, "KILLED" if status == "KILLED" else "FAILED", error, mlflow.end_run)
                else:
                    if error:
                        try:
                            self.client.set_tag(self.run_id, tag.ERROR, error[:5000])
                        except Exception:  # the store itself may be the problem; the status still matters more
                            log.exception("could not record the error tag")
                    if status == "FINISHED" and self._continued:
                        self._forget_old_error()
                    mlflow.end_run(status)  # Zoo's run; the caller's, if any, is active again
            finally:
                self._restore_store()

    @property
    def journaling(self) -> bool:
        """The store refused rows: from now on, everything this run sends goes to its journal."""
        return self._journal is not None and self._journal.active

    def _journaled(self, record: dict) -> bool:
        return self._journal is not None and self._journal.keep(record)

    def _forget_old_error(self) -> None:
        """A continued run that FINISHED keeps no stale ``zoo.error``: it becomes ``zoo.resumed_after``."""
        try:
            old = self.client.get_run(self.run_id).data.tags
            if tag.ERROR in old:
                self.client.set_tag(self.run_id, tag.RESUMED_AFTER, old[tag.ERROR][:5000])
            for key in (tag.ERROR, tag.FAILURE, tag.FAILURE_STEP):
                if key in old:
                    self.client.delete_tag(self.run_id, key)
        except Exception as exc:  # the run's end matters more
            log.warning("could not clear the earlier error of run %s: %s", self.run_id, one_line(exc, 200))

    def _log_writer_cost(self, w: Writer | None) -> None:
        """``perf/metric_rows`` written, ``perf/writer_s`` spent writing them, and where (``zoo.metric_writer``)."""
        if w is None or not w.rows:
            return
        from mlflow.entities import Metric, RunTag

        ts, step = int(time.time() * 1000), w.last_step
        if self._journaled({"metrics": [["perf/writer_s", w.seconds, ts, step], ["perf/metric_rows", float(w.rows), ts, step]],
                            "tags": {tag.METRIC_WRITER: w.where}}):
            return
        try:
            self.client.log_batch(self.run_id, metrics=[Metric("perf/writer_s", w.seconds, ts, step),
                                                        Metric("perf/metric_rows", float(w.rows), ts, step)],
                                  tags=[RunTag(tag.METRIC_WRITER, w.where)])
        except Exception as exc:  # a figure about the run, never a reason to fail it
            log.warning("could not record the metric writer's cost: %s", one_line(exc, 200))

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
        if self._writer is not None and self._writer.error is not None:
            self.flush()  # raises the writer's error
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
        if self._journaled({"tags": values}):
            return
        try:
            for k, v in values.items():
                self.client.set_tag(self.run_id, k, v)
        except Exception as exc:
            if self._journal is None or isinstance(exc, ZooError):
                raise
            self._journal.refused(one_line(exc), self._writer.last_step if self._writer else None, {"tags": values})

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        if self._journaled({"artifact": str(Path(path).resolve()), "folder": folder}):
            return
        with self._storing(os.path.basename(path)):
            self.client.log_artifact(self.run_id, str(path), folder)

    def text(self, text: str, name: str) -> None:
        if self._journaled({"text": text, "name": name}):
            return
        with self._storing(name):
            self.client.log_text(self.run_id, text, name)

    @contextlib.contextmanager
    def _storing(self, name: str):
        """An artifact the store's disk refuses (full, read-only) is one line naming the folder."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            where = self.client.get_run(self.run_id).info.artifact_uri
            raise ZooError(f"cannot store the artifact {name} in {where}: {exc.strerror}; free some space there "
                           "or choose another tracking.uri") from None

    def model(self, folder, **kwargs) -> str:
        """Log the model saved in ``folder`` as this run's pyfunc model; return its model id.

        See :func:`zoo.tracking.models.log_pyfunc` for the keyword arguments.
        """
        from zoo.tracking.models import log_pyfunc

        if self.journaling:  # a model is not journaled: its checkpoints are kept
            log.warning("the model is not logged: the store refused rows earlier (see %s)", self._journal.path)
            return None
        with warnings.catch_warnings():  # torch's export warns about cuDNN's flat RNN weights; harmless here
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            with self._storing("model"):
                return log_pyfunc(folder, **kwargs)

    def datasets(self, records) -> dict[str, tuple[str, str]]:
        """The run's data as MLflow dataset inputs; ``split -> (name, digest)`` (see :func:`~zoo.tracking.models.log_datasets`)."""
        from zoo.tracking.models import log_datasets

        if self.journaling:
            return {}
        return log_datasets(self.client, self.run_id, records)

    def linked_metrics(self, values: dict[str, float], step: int, model_id: str | None, dataset) -> None:
        """Metrics of ``model_id`` on ``dataset`` (name, digest), written now (MLflow 3's model metrics)."""
        from zoo.tracking.models import log_linked_metrics

        values = {k: v for k, v in values.items() if step > self._stored.get(k, -1)}
        if values and self.journaling:  # plain metrics, in the journal (no model to link them to)
            self.metrics(values, step)
        elif values:
            self.flush()  # after the metrics queued before them
            log_linked_metrics(self.client, self.run_id, values, step, model_id, dataset)

    def model_input(self, model_id: str) -> None:
        """``model_id`` is where this run started from (``init_from=``) or what it evaluated."""
        from zoo.tracking.models import log_model_input

        if self.journaling:
            return
        log_model_input(self.client, self.run_id, model_id)
