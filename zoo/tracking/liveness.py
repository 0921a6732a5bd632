"""Whether a RUNNING run's process still lives: who runs it, a heartbeat, and ending the runs whose process is gone.

A signal Zoo can catch ends a run honestly (``Tracker.run``); ``kill -9``, the out-of-memory killer
or a power cut cannot be caught, and leave the run RUNNING. So every run (and a sweep's parent)
records its host, its process id and when that process started (:func:`identity`), and refreshes
the tag ``zoo.heartbeat`` every :data:`HEARTBEAT_S` seconds while it runs (:class:`Heartbeat`, one
tag write a minute). :func:`verdicts` judges every RUNNING run of a store: on this host, stale
when its process is gone or its process id now belongs to a process that started later; on
another host, when its heartbeat (a sweep's parent: its own or its children's) is older than
``stale_after``. :func:`close` ends a stale run KILLED with the reason (``zoo runs --close-stale``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from zoo.tracking import tags

log = logging.getLogger(__name__)

HEARTBEAT_S = 60.0  # seconds between two heartbeats of a running run
STALE_AFTER_S = 600.0  # a run on another host whose heartbeat is older than this is stale


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError, ValueError):
        return None


def identity() -> dict[str, str]:
    """This process as tags: its host, its process id, when it started, and a first heartbeat."""
    started = _started(os.getpid())
    return {tags.HOST: socket.gethostname(), tags.PID: str(os.getpid()),
            tags.PID_STARTED: f"{started:.2f}" if started else "", tags.HEARTBEAT: str(int(time.time()))}


class Heartbeat(threading.Thread):
    """Sets the run's ``zoo.heartbeat`` to the time every ``every`` seconds until :meth:`stop`; a store that
    refuses it is noted in the log, never the run's failure."""

    def __init__(self, client, run_id: str, every: float = HEARTBEAT_S):
        super().__init__(name="zoo-heartbeat", daemon=True)
        self.client, self.run_id, self.every = client, run_id, every
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.client.set_tag(self.run_id, tags.HEARTBEAT, str(int(time.time())))
            except Exception as exc:  # the metric writer reports a store that fails
                log.debug("heartbeat of run %s not written: %s", self.run_id, exc)

    def stop(self) -> None:
        self._stopped.set()


@dataclass
class Verdict:
    """A RUNNING run judged: ``state`` is ``alive``, ``stale`` or ``unknown`` (no host or pid recorded)."""

    run: Any
    state: str
    reason: str
    heartbeat_age: float | None

    @property
    def stale(self) -> bool:
        return self.state == "stale"


def _beat(run) -> float | None:
    try:
        return float(run.data.tags[tags.HEARTBEAT])
    except (KeyError, ValueError):
        return None


def judge(run, children=(), stale_after: float = STALE_AFTER_S, host: str | None = None,
          now: float | None = None) -> Verdict:
    """Whether the process of RUNNING ``run`` still lives (``children``: a sweep parent's, whose heartbeats count)."""
    host, now = host or socket.gethostname(), now or time.time()
    t = run.data.tags
    beats = [b for b in [_beat(run), *(_beat(c) for c in children)] if b is not None]
    age = now - max(beats) if beats else None
    if not t.get(tags.HOST) or not t.get(tags.PID, "").isdigit():
        return Verdict(run, "unknown", "no host or process id recorded (a run of an older Zoo, or of another tool)", age)
    pid = int(t[tags.PID])
    if t[tags.HOST] == host:
        started = _started(pid)
        if started is None:
            return Verdict(run, "stale", f"its process {pid} on {host} is gone", age)
        try:
            recorded = float(t.get(tags.PID_STARTED) or 0)
        except ValueError:
            recorded = 0.0
        if recorded and abs(started - recorded) > 1.0:
            return Verdict(run, "stale", f"its process {pid} on {host} is gone (that id is now another process's)", age)
        return Verdict(run, "alive", f"process {pid} on this host", age)
    if age is None or age > stale_after:
        since = "never" if age is None else f"{age:.0f} s ago"
        return Verdict(run, "stale", f"no heartbeat from host {t[tags.HOST]} since {stale_after:.0f} s "
                                     f"(the last: {since})", age)
    return Verdict(run, "alive", f"process {pid} on host {t[tags.HOST]}, heartbeat {age:.0f} s ago", age)


def verdicts(runs, stale_after: float = STALE_AFTER_S) -> list[Verdict]:
    """Every RUNNING run of the store (:class:`zoo.tracking.runs.Runs`) judged, oldest first; a sweep's
    children come before their parent (so that closing them in this order closes the children first)."""
    running = runs.search(runs.experiment_ids(), "attributes.status = 'RUNNING'",
                          order_by=["attributes.start_time ASC"])
    out = []
    for r in running:
        children = runs.children(r.info.run_id) if r.data.tags.get(tags.SWEEP) else []
        out.append(judge(r, children, stale_after))
    return sorted(out, key=lambda v: bool(v.run.data.tags.get(tags.SWEEP)))  # stable: parents last


def close(runs, verdict: Verdict) -> str:
    """End a stale run KILLED with the reason (tag ``zoo.error``); returns the reason recorded."""
    run = verdict.run
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    reason = f"stale: {verdict.reason}; ended KILLED by zoo runs --close-stale at {when}"
    if not run.data.tags.get(tags.SWEEP):
        reason += f"; zoo train resume={run.info.run_id} continues it from its last checkpoint, if it saved one"
    runs.client.set_tag(run.info.run_id, tags.ERROR, reason[:5000])
    runs.client.set_terminated(run.info.run_id, "KILLED")
    return reason
