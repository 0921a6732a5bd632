"""A sweep's parent run, written: created before the first job, continued when a search runs
again, finished with the sweep's summary, or ended honestly when the sweep stops early.

Its children are ordinary runs tagged with ``mlflow.parentRunId`` (:data:`zoo.tracking.tags.PARENT`);
:class:`zoo.tracking.runs.Runs` finds them. The Hydra side of a sweep is
:mod:`zoo.experiments.sweep`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from zoo.errors import one_line
from zoo.tracking import tags as tag
from zoo.tracking.liveness import identity
from zoo.tracking.runs import Runs

log = logging.getLogger(__name__)


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def create_parent(uri: str, experiment_id: str, name: str, tags: dict[str, Any]) -> str:
    """A new RUNNING parent run, noting who runs it (:func:`zoo.tracking.liveness.identity`); returns its id."""
    run = _client(uri).create_run(experiment_id, tags={**{k: str(v) for k, v in tags.items()}, **identity()},
                                  run_name=name)
    return run.info.run_id


def continue_parent(uri: str, experiment_id: str, run_id: str, reason: str) -> bool:
    """Make an earlier sweep's parent run RUNNING again (tag ``zoo.resumed``), if it is still in this experiment.

    Its children left RUNNING by a process that died end KILLED, with ``reason`` as their error
    (one process runs a sweep at a time). False when the run is gone, deleted or elsewhere.
    """
    client = _client(uri)
    try:
        run = client.get_run(run_id)
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != experiment_id:
            return False
        for child in Runs(uri).children(run_id, [experiment_id]):
            if child.info.status == "RUNNING":
                client.set_tag(child.info.run_id, tag.ERROR, reason)
                client.set_terminated(child.info.run_id, "KILLED")
        client.update_run(run_id, status="RUNNING")
        for k, v in {**identity(), tag.RESUMED: time.strftime("%Y-%m-%d %H:%M:%S")}.items():
            client.set_tag(run_id, k, v)
    except Exception as exc:  # not usable: the sweep starts a new parent run
        log.info("cannot continue parent run %s: %s", run_id, one_line(exc))
        return False
    return True


def tag_run(uri: str, run_id: str, values: dict[str, Any]) -> None:
    client = _client(uri)
    for k, v in values.items():
        client.set_tag(run_id, k, str(v))


def finish_parent(uri: str, run_id: str, status: str, *, tags: dict[str, Any], metrics: dict[str, float],
                  texts: dict[str, str], artifacts: dict[str, Path], error: str | None = None) -> None:
    """Record the sweep's outcome on its parent run and end it ``status``.

    ``metrics`` are logged at step 0, ``texts`` as files (name -> content), ``artifacts`` as files in
    a folder (folder -> path; one that cannot be logged is only warned about), ``error`` as
    ``zoo.error``.
    """
    from mlflow.entities import Metric

    client = _client(uri)
    if metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v))
    for name, text in texts.items():
        client.log_text(run_id, text, name)
    for folder, path in artifacts.items():
        try:
            client.log_artifact(run_id, str(path), folder)
        except Exception as exc:  # a figure is never a reason to fail the sweep
            log.warning("could not log %s on the sweep's parent run: %s", path, one_line(exc))
    if error:
        client.set_tag(run_id, tag.ERROR, error[:5000])
    client.set_terminated(run_id, status)


def abandon_parent(uri: str, experiment_id: str, run_id: str, *, interrupted: bool, error: str) -> str | None:
    """End the parent of a sweep that stopped before its end: KILLED (interrupted, or a child was
    KILLED) or FAILED with ``error``; deleted when no job ran (bad input leaves nothing behind).
    Interrupted, its children still RUNNING (a worker that did not end its run in time) end KILLED.

    Returns the status, or None when the run was deleted.
    """
    client = _client(uri)
    children = Runs(uri).children(run_id, [experiment_id])
    if not children:
        client.set_terminated(run_id, "FAILED")
        client.delete_run(run_id)
        return None
    killed = interrupted or any(c.info.status == "KILLED" for c in children)
    if interrupted:  # a worker still ending its run when the sweep gave up waiting: nothing stays RUNNING
        for child in children:
            if child.info.status == "RUNNING":
                client.set_tag(child.info.run_id, tag.ERROR, "interrupted: the sweep stopped before this job ended")
                client.set_terminated(child.info.run_id, "KILLED")
    client.set_tag(run_id, tag.ERROR, "interrupted" if killed else error[:5000])
    status = "KILLED" if killed else "FAILED"
    client.set_terminated(run_id, status)
    return status
