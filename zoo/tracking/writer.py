"""Metric rows, written off the training thread: a writer thread, and the writer process it feeds.

The training loop queues ``(key, value, timestamp_ms, step)`` rows; :class:`Writer` (a thread)
gathers them for up to ``WRITE_EVERY_S`` so that one ``log_batch`` carries many, then hands them
to the writer process (:mod:`zoo.tracking.writer_process`, seen from here through
:class:`WriterProcess`) or writes them itself. No row is lost when the process dies: the rows it
had not confirmed are written again here. No row is lost when the store refuses them either: after
the retries, they go to the run's journal (:mod:`zoo.tracking.journal`), and so does every row after.

A run's writer process stays, idle, for the next run of the same process (a sweep's jobs, a
notebook), which then starts no other one; it exits with the training process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time

from zoo.errors import ZooError, one_line
from zoo.tracking.writer_process import HTTP_BOUNDS, MAX_BATCH, write_patiently

log = logging.getLogger(__name__)

# Rows wait up to this long so that one log_batch carries many: a call to a SQLite store costs a
# few milliseconds of Python whatever it carries, then about 0.05 ms per row.
WRITE_EVERY_S = 1.0
# Seconds per metric row assumed until a writer has measured its own (after 100 rows).
DEFAULT_ROW_COST_S = 2e-4


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


class WriterProcess:
    """The writer process (:mod:`zoo.tracking.writer_process`) seen from the training process.

    Started before the store is opened, so that importing MLflow there overlaps the run's set-up;
    ``open(uri)`` hands it the store once it exists. Every method is called from the writer thread.
    """

    START_S = 20.0  # give up on a writer process that is not ready by then

    def __init__(self):
        from multiprocessing.connection import Connection

        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        env = {**HTTP_BOUNDS, **os.environ}  # MLflow's HTTP retries bounded there, unless the user set them
        try:  # the installed package's module, as the training process imported it
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from zoo.tracking.writer_process import main; main()", str(to_child), str(from_child)],
                pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        finally:
            os.close(to_child)
            os.close(from_child)
        self.outbox = Connection(from_parent, readable=False)
        self.inbox = Connection(to_parent, writable=False)
        self.pid = os.getpid()  # the training process it belongs to (a forked child must not use it)
        self.uri: str | None = None  # the store it was last told to open
        self.started = time.monotonic()
        self.ready = self.dead = False
        self.failure: str | None = None
        self.inflight: list[list] = []  # rows sent, not yet confirmed: written again here if it dies
        self.refused: list[tuple[list, str]] = []  # rows the store refused, and why: for the journal
        self.rows, self.seconds = 0, 0.0
        self.error: str | None = None  # the first refusal

    def open(self, uri: str) -> None:
        self.uri = uri
        self._send(("open", uri))

    # -- kept between the runs of this process -------------------------------------------------
    _idle: WriterProcess | None = None
    _lock = threading.Lock()

    @classmethod
    def reuse(cls) -> WriterProcess | None:
        """The writer process an earlier run of this process left idle, if it is still usable."""
        with cls._lock:
            child, cls._idle = cls._idle, None
        if child is None or child.pid != os.getpid():  # none, or the parent's (after a fork): not ours
            return None
        child.poll()
        if child.dead or child.proc.poll() is not None or not (child.ready or child.starting):
            child.kill()
            return None
        return child

    def keep(self) -> bool:
        """Leave this process idle for the next run (False: it cannot serve one, and was stopped)."""
        if self.dead or self.inflight or self.error or self.proc.poll() is not None \
                or not (self.ready or self.starting):
            self.kill()
            return False
        self.rows, self.seconds = 0, 0.0
        with WriterProcess._lock:
            old, WriterProcess._idle = WriterProcess._idle, self
        if old is not None:
            old.kill()
        return True

    def kill(self) -> None:
        self.proc.kill()
        self.close()

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
            rows = self.inflight.pop(0)
            if error:
                self.refused.append((rows, error))
                self.error = self.error or error
            else:
                self.rows += n
                self.seconds += seconds
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


def prestart() -> None:
    """Start the coming run's writer process now (mode ``process``, none idle): its start-up then
    overlaps the building of the run's data and model. The run's :class:`Writer` takes it."""
    if writer_mode() != "process":
        return
    with WriterProcess._lock:
        idle = WriterProcess._idle
        if idle is not None and idle.pid == os.getpid():
            return
    try:
        child = WriterProcess()
    except Exception:  # the run's own Writer says so, and writes from a thread
        return
    with WriterProcess._lock:
        old, WriterProcess._idle = WriterProcess._idle, child
    if old is not None and old.pid == os.getpid():
        old.kill()


@atexit.register
def _stop_idle() -> None:
    """At exit: stop the idle writer process now (it would otherwise finish its start-up for nothing)."""
    child, WriterProcess._idle = WriterProcess._idle, None
    if child is not None and child.pid == os.getpid():
        child.kill()


class Writer(threading.Thread):
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
        self.journal = None  # the run's Journal: where refused rows go (None: a refusal is an error)
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.rows = 0
        self.rows_here = 0  # of which this thread wrote
        self.seconds = 0.0
        self.last_step = 0
        self.child: WriterProcess | None = None
        # asked for by name: rows wait for the process (up to its START_S) even at a flush, instead of being
        # written here while it starts (what auto does, so that a short run does not wait for MLflow's import)
        self.patient = os.environ.get("ZOO_METRIC_WRITER", "").strip().lower() == "process"
        if mode == "process":
            try:
                self.child = WriterProcess.reuse() or WriterProcess()
            except Exception as exc:  # no subprocess here: write from this thread
                log.warning("metric writer process could not start (%s); writing metrics from a thread", exc)
                self.mode = "thread"

    def open(self, client, uri: str, run_id: str, journal=None) -> None:
        """The store exists and the run too: the writer process may open it."""
        self.client, self.run_id, self.journal = client, run_id, journal
        child = self.child
        if child is not None and child.uri not in (None, uri) and not child.ready:
            # an earlier run's process, still starting, would first open that run's store: start afresh
            child.kill()
            try:
                self.child = child = WriterProcess()
            except Exception as exc:
                log.warning("metric writer process could not start (%s); writing metrics from a thread", exc)
                self.child, self.mode = None, "thread"
                return
        if child is not None:
            child.open(uri)

    def run(self) -> None:
        batch: list = []
        due = 0.0
        while True:
            if batch:
                timeout = max(0.0, due - time.monotonic())
            else:  # idle: still look in on a writer process that is starting, or has rows to confirm
                child = self.child  # (a refused batch goes to the journal now, not at the next rows)
                timeout = 0.2 if child is not None and (not child.ready or child.inflight) else None
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
        if self.journal is not None and self.journal.active:  # the store refused rows: the rest follow them
            self._refuse(batch, None)
            return []
        child = self.child
        if child is not None:
            if now and self.patient:  # ZOO_METRIC_WRITER=process: a flush waits for the process to start
                while child.starting and not child.poll(0.5, until="ready"):
                    pass
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
        if self.journal is not None and self.journal.active:
            self._refuse(batch, None)
            return
        t0 = time.perf_counter()
        try:
            write_patiently(self.client, self.run_id, batch)
        except Exception as exc:
            self._refuse(batch, one_line(exc))
            return
        self.seconds += time.perf_counter() - t0
        self.rows += len(batch)
        self.rows_here += len(batch)
        self.last_step = max(self.last_step, batch[-1][3])

    def _refuse(self, batch: list, reason: str | None) -> None:
        """Rows the store refused (``reason``), or that follow refused ones (None): into the journal.

        Without a journal, or when the journal's own disk refuses them, the error reaches the
        training thread at its next flush.
        """
        self.last_step = max(self.last_step, batch[-1][3])
        if self.error is not None:
            return
        if self.journal is None:
            self.error = RuntimeError(reason or "the store refused an earlier batch")
            return
        try:
            if self.journal.active:
                self.journal.keep({"metrics": batch})
            else:
                self.journal.refused(reason, min(r[3] for r in batch), {"metrics": batch})
        except ZooError as exc:  # the journal's own disk refused them too
            self.error = exc

    def _collect(self) -> None:
        """Take the writer process's confirmed rows and errors into this writer's account."""
        child = self.child
        if child is None:
            return
        self.rows, self.seconds = self.rows + child.rows, self.seconds + child.seconds
        child.rows, child.seconds = 0, 0.0
        refused, child.refused = child.refused, []
        for rows, reason in refused:
            self._refuse(rows, reason)
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
        child.kill()
        for rows in child.inflight:
            self._write(rows)
        self.mode = "thread"

    def _settle(self, stop: bool) -> None:
        """Wait until the writer process has written everything sent; at ``stop``, leave it idle
        for the next run of this process (:meth:`WriterProcess.keep`)."""
        child = self.child
        if child is None:
            return
        if child.ready or child.inflight:
            child.wait("flush", "flushed")
        self._collect()
        if stop and self.child is not None:
            self.child = None
            if child.inflight:  # it died before confirming these
                child.kill()
                for rows in child.inflight:
                    self._write(rows)
            else:
                child.keep()

    def discard(self) -> None:
        """Stop the writer process of a run that never started."""
        child, self.child = self.child, None
        if child is not None:
            child.kill()

    @property
    def where(self) -> str:
        """Who wrote the rows: ``process``, ``thread`` or ``process+thread``."""
        if self.rows_here == 0:
            return "process"
        return "thread" if self.rows_here == self.rows else "process+thread"

    @property
    def row_cost(self) -> float:
        """Measured seconds per metric row written (about 0.1 ms on SQLite)."""
        return self.seconds / self.rows if self.rows >= 100 else DEFAULT_ROW_COST_S
