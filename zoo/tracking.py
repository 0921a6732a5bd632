"""The MLflow side of a run: params, buffered metrics, artifacts, the model, an honest end state.

The training loop talks to a :class:`Tracker` through a handful of calls (``start``, ``metrics``,
``series``, ``artifact``, ``model``, ``finish``) and knows nothing of MLflow's API. Metrics are
queued and written by one background thread with ``log_batch`` (one SQLite transaction per batch
instead of one per value), so the training thread never waits on the store.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import ZooError

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


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


def prepare_store(uri: str, experiment: str) -> str:
    """Open (create) the store and the experiment; return the experiment id.

    Done once before training (and before parallel jobs start), so an unreachable server or a
    read-only store is a clear error now, not a crash after an hour.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(f"tracking.uri={uri}: cannot create {db.parent} ({exc.strerror}); choose a writable folder") from None
        if db.exists() and not os.access(db, os.W_OK):
            raise ZooError(f"tracking.uri={uri}: the store is read-only; choose a writable tracking.uri")
    client = mlflow.MlflowClient(uri)
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            root = artifact_root(uri)
            location = None if root is None else str(Path(root) / re.sub(r"[^\w.-]+", "_", experiment))
            try:
                return client.create_experiment(experiment, artifact_location=location)
            except MlflowException:  # another process created it first
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise ZooError(f"tracking.experiment={experiment!r} is deleted in {uri}; restore it in the UI or choose another name")
        return exp.experiment_id
    except ZooError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(f"tracking.uri={uri} is not usable: {msg[:300]}; check the address or set tracking.uri") from None


class _Writer(threading.Thread):
    """Sends queued metrics to MLflow in batches, off the training thread."""

    def __init__(self, client, run_id: str):
        super().__init__(name="zoo-metrics", daemon=True)
        self.client, self.run_id = client, run_id
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.rows = 0
        self.seconds = 0.0

    def run(self) -> None:
        batch: list = []
        while True:
            item = self.q.get()
            if isinstance(item, list):
                batch.extend(item)
                if not self.q.empty():  # coalesce whatever else is already waiting
                    continue
                self._send(batch)
                batch = []
            else:  # a flush marker (an Event) or None to stop
                self._send(batch)
                batch = []
                if item is None:
                    return
                item.set()

    def _send(self, batch: list) -> None:
        if not batch or self.error is not None:
            return
        t0 = time.perf_counter()
        try:
            for i in range(0, len(batch), MAX_BATCH):
                self.client.log_batch(self.run_id, metrics=batch[i:i + MAX_BATCH], synchronous=True)
        except BaseException as exc:  # surfaced to the training thread at the next flush
            self.error = exc
        self.seconds += time.perf_counter() - t0
        self.rows += len(batch)

    @property
    def row_cost(self) -> float:
        """Measured seconds per metric row written (0.2 ms is typical of SQLite)."""
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
                               run_name=run_name, tags=None if run_id else tags,
                               log_system_metrics=self.system_metrics)
        self.run_id = run.info.run_id
        if run_id is None:
            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])
        self._writer = _Writer(self.client, self.run_id)
        self._writer.start()
        return self.run_id

    def finish(self, status: str, error: str | None = None) -> None:
        """Flush every queued metric, then end the run as FINISHED, FAILED or KILLED."""
        import mlflow

        if self.run_id is None:
            return
        try:
            self.flush(stop=True)
        finally:
            if error:
                try:
                    self.client.set_tag(self.run_id, "zoo.error", error[:5000])
                except Exception:  # the store itself may be the problem; the status still matters more
                    log.exception("could not record the error tag")
            mlflow.end_run(status)

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
        from mlflow.entities import Metric

        ts = int((timestamp or time.time()) * 1000)
        self._put([Metric(k, float(v), ts, step) for k, v in values.items()])

    def series(self, key: str, values: Iterable[float], steps: Iterable[int], timestamps: Iterable[float]) -> None:
        from mlflow.entities import Metric

        self._put([Metric(key, float(v), int(t * 1000), s) for v, s, t in zip(values, steps, timestamps)])

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
        mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=ex,
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
