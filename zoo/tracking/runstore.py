"""One run's operations against the store, written once: :class:`RunStore`, owning an ``MlflowClient``.

Everything a :class:`~zoo.tracking.run.Tracker` does to the store is a method here: opening the
store and the experiment, starting (or continuing) the run with its name, tags and params, tags,
artifacts and texts, the dataset inputs, the model (a pyfunc), metrics linked to it, the model
input, the metric writer's cost, and ending the run. The run's heartbeat
(:mod:`zoo.tracking.liveness`) and system-metrics monitor (:mod:`zoo.tracking.system`) run beside
the store that started the run.

Where it runs (the two transports): in the writer process (:mod:`zoo.tracking.writer_process`,
mode ``process``, the default on two cores or more), which the training process asks through the
pipe, so that a plain ``zoo train`` never imports MLflow; or in the training process (mode
``thread``, or when the writer process died), called by the metric writer's thread
(:class:`zoo.tracking.writer.Writer`). Either way a request is answered in order with the metric
rows queued before it, and its error comes back as one line (:class:`StoreRefused`, or Zoo's
:class:`~zoo.errors.ZooError` as it was raised here).

Only the run's id travels: no fluent MLflow state (``mlflow.start_run``) is used, so the caller's
own active run, if any, is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
import warnings
from pathlib import Path

from zoo.errors import ZooError, one_line
from zoo.tracking import liveness, system
from zoo.tracking import tags as tag

log = logging.getLogger(__name__)

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)  # a disk that refuses an artifact
# The stores this process opened through MLflow, checked (tables, WAL): never opened by sqlite3 again here
# (closing such a connection drops the locks of MLflow's pooled ones: zoo.tracking.store._store_not_writable).
OPENED: set[str] = set()


class StoreRefused(RuntimeError):
    """The store refused a request made in the writer process: its one line, as the training process sees it."""


class RunStore:
    """A run's store operations (see the module docstring); every method takes the run's id."""

    def __init__(self, uri: str):
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # a refused write is Zoo's one line (or the journal's warning), not MLflow's traceback in the log
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        self.uri = uri
        self._client = None
        self.monitor = None  # the system-metrics monitor of the run this store started
        self.heartbeat = None

    @property
    def client(self):
        """The ``MlflowClient``, made when first needed: after :meth:`open` made the store (a new SQLite
        store's tables are created under Zoo's lock, never by several processes' clients at once)."""
        if self._client is None:
            import mlflow

            self._client = mlflow.MlflowClient(self.uri)
        return self._client

    # -- the run's lifecycle ---------------------------------------------------------------------
    def open(self, experiment: str) -> str:
        """Create (or open) the store and the experiment; its id. See :func:`zoo.tracking.store.prepare_store`."""
        from zoo.tracking.store import prepare_store

        experiment_id = prepare_store(self.uri, experiment, opened=self.uri in OPENED)
        OPENED.add(self.uri)
        return experiment_id

    def start(self, experiment_id: str, run_name: str | None, tags: dict, params: dict, run_id: str | None,
              identity: dict, system_metrics: bool, interval: float) -> tuple[str, dict]:
        """Start a new run (or continue ``run_id``): ``(run id, metric -> last stored step)``.

        ``identity``: who runs it (:func:`zoo.tracking.liveness.identity`, of the training process).
        A run that cannot be set up ends FAILED saying so, never RUNNING.
        """
        from mlflow.entities import Param, RunTag

        from zoo.tracking.runs import stored_steps

        stored: dict = {}
        continued = run_id is not None
        if continued:
            self.client.update_run(run_id, status="RUNNING")
        else:
            from mlflow.tracking.context.default_context import DefaultRunContext

            # who, as mlflow.start_run says it: the tracking server's user name (MLFLOW_TRACKING_USERNAME or
            # ~/.mlflow/credentials), else the OS user's; it is also the run's user_id
            tags = {"mlflow.user": DefaultRunContext().tags()["mlflow.user"], **tags, **identity}
            run_id = self.client.create_run(experiment_id, run_name=run_name,
                                            tags={k: str(v) for k, v in tags.items()}).info.run_id
        try:
            if continued:
                stored = stored_steps(self.client, run_id)
                self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in identity.items()])
            else:
                items = [Param(k, str(v)[:6000]) for k, v in params.items()]
                for i in range(0, len(items), 100):
                    self.client.log_batch(run_id, params=items[i:i + 100])
            self.heartbeat = liveness.Heartbeat(self.client, run_id)
            self.heartbeat.start()
            if system_metrics:
                self.monitor = system.start(self.uri, run_id, interval, resume=continued)
        except BaseException as exc:  # no run is left RUNNING
            self._stop_sampling(last=False)
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, tag.ERROR, f"could not start: {one_line(exc, 300)}")
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, "FAILED")
            raise
        return run_id, stored

    def stop_sampling(self) -> None:
        """Stop the heartbeat, and the monitor after its last sample (logged while the run is RUNNING)."""
        self._stop_sampling(last=True)

    def _stop_sampling(self, last: bool) -> None:
        beat, monitor, self.heartbeat, self.monitor = self.heartbeat, self.monitor, None, None
        if beat is not None:
            beat.stop()
        if monitor is not None:
            if last:
                monitor.finish()
            else:
                with contextlib.suppress(Exception):
                    monitor.finish()

    def end(self, run_id: str, status: str, error: str | None, forget_old_error: bool) -> None:
        """End the run ``status`` (FINISHED, FAILED, KILLED) with its error tag; a continued run that
        FINISHED keeps no stale ``zoo.error`` (it becomes ``zoo.resumed_after``)."""
        self._stop_sampling(last=False)
        if error:
            try:
                self.client.set_tag(run_id, tag.ERROR, error[:5000])
            except Exception:  # the store itself may be the problem; the status still matters more
                log.exception("could not record the error tag")
        if forget_old_error:
            self._forget_old_error(run_id)
        self.client.set_terminated(run_id, status)

    def _forget_old_error(self, run_id: str) -> None:
        try:
            old = self.client.get_run(run_id).data.tags
            if tag.ERROR in old:
                self.client.set_tag(run_id, tag.RESUMED_AFTER, old[tag.ERROR][:5000])
            for key in (tag.ERROR, tag.FAILURE, tag.FAILURE_STEP):
                if key in old:
                    self.client.delete_tag(run_id, key)
        except Exception as exc:  # the run's end matters more
            log.warning("could not clear the earlier error of run %s: %s", run_id, one_line(exc, 200))

    # -- what the run records ----------------------------------------------------------------------
    def tags(self, run_id: str, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in values.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i:i + 100])

    def artifact(self, run_id: str, path: str, folder: str | None) -> None:
        with self._storing(run_id, Path(path).name):
            self.client.log_artifact(run_id, path, folder)

    def text(self, run_id: str, text: str, name: str) -> None:
        with self._storing(run_id, name):
            self.client.log_text(run_id, text, name)

    @contextlib.contextmanager
    def _storing(self, run_id: str, name: str):
        """An artifact the store's disk refuses (full, read-only) is one line naming the folder."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in FULL:
                raise
            where = self.client.get_run(run_id).info.artifact_uri
            raise ZooError(f"cannot store the artifact {name} in {where}: {exc.strerror}; free some space there "
                           "or choose another tracking.uri") from None

    def writer_cost(self, run_id: str, seconds: float, rows: int, step: int, where: str) -> None:
        """``perf/writer_s``, ``perf/metric_rows`` and ``zoo.metric_writer``: a figure about the run, never its failure."""
        from mlflow.entities import Metric, RunTag

        ts = int(time.time() * 1000)
        try:
            self.client.log_batch(run_id, metrics=[Metric("perf/writer_s", seconds, ts, step),
                                                   Metric("perf/metric_rows", float(rows), ts, step)],
                                  tags=[RunTag(tag.METRIC_WRITER, where)])
        except Exception as exc:
            log.warning("could not record the metric writer's cost: %s", one_line(exc, 200))

    def model(self, run_id: str, folder: str, kwargs: dict) -> str:
        """Log the model saved in ``folder`` as the run's pyfunc (:func:`zoo.tracking.models.log_pyfunc`); its id."""
        from zoo.tracking.models import log_pyfunc

        with warnings.catch_warnings():  # torch's export warns about cuDNN's flat RNN weights; harmless here
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            with self._storing(run_id, "model"):
                return log_pyfunc(Path(folder), run_id=run_id, **kwargs)

    def datasets(self, run_id: str, records) -> dict:
        from zoo.tracking.models import log_datasets

        return log_datasets(self.client, run_id, records)

    def linked_metrics(self, run_id: str, values: dict, step: int, model_id: str | None, dataset) -> None:
        from zoo.tracking.models import log_linked_metrics

        log_linked_metrics(self.client, run_id, values, step, model_id, dataset)

    def model_input(self, run_id: str, model_id: str) -> None:
        from zoo.tracking.models import log_model_input

        log_model_input(self.client, run_id, model_id)

    def rows(self, run_id: str, rows: list) -> None:
        """Metric rows, written with the writer's retries (:func:`zoo.tracking.writer_process.write_patiently`)."""
        from zoo.tracking.writer_process import write_patiently

        write_patiently(self.client, run_id, rows)


def answer(store: RunStore, op: str, args: tuple):
    """``(None, value)`` or ``((kind, one line), None)``: a request's answer as it crosses the pipe."""
    try:
        return None, getattr(store, op)(*args)
    except ZooError as exc:
        return ("zoo", str(exc)), None
    except Exception as exc:
        return ("refused", one_line(exc, 1000)), None


def raised(error: tuple[str, str]) -> Exception:
    """The exception an answer's error stands for in the training process."""
    kind, text = error
    return ZooError(text) if kind == "zoo" else StoreRefused(text)
