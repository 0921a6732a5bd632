"""Metric rows, written off the training thread: a writer thread, and the writer process it feeds.

The training loop queues ``(key, value, timestamp_ms, step)`` rows; :class:`Writer` (a thread)
gathers them for up to ``WRITE_EVERY_S`` so that one ``log_batch`` carries many, then hands them
to the writer process (:mod:`zoo.tracking.writer_process`, seen from here through
:class:`WriterProcess`) or writes them itself. No row is lost when the process dies: the rows it
had not confirmed are written again here. No row is lost when the store refuses them either: after
the retries, they go to the run's journal (:mod:`zoo.tracking.journal`), and so does every row after.

The same thread makes the run's other store requests (:class:`Call`: tags, artifacts, the model,
the run's start and end), in order with the rows: in the writer process, or here (see
:mod:`zoo.tracking.runstore`). The writer process itself is :mod:`zoo.tracking.child`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from zoo.errors import ZooError, one_line
from zoo.tracking.child import WriterProcess, writer_setting
from zoo.tracking.writer_process import MAX_BATCH

log = logging.getLogger(__name__)

# Rows wait up to this long so that one log_batch carries many: a call to a SQLite store costs a
# few milliseconds of Python whatever it carries, then about 0.05 ms per row.
WRITE_EVERY_S = 1.0
# Seconds per metric row assumed until a writer has measured its own (after 100 rows).
DEFAULT_ROW_COST_S = 2e-4


class Call:
    """A request to the run's store (:class:`zoo.tracking.runstore.RunStore`), queued behind the rows before it.

    ``record``: what the run's journal keeps instead, once the store refuses rows (or this request).
    ``watched``: someone waits for its answer; an unwatched request's error waits in :attr:`Writer.failed`.
    """

    def __init__(self, op: str, args: tuple, record: dict | None = None, watched: bool = True):
        self.op, self.args, self.record, self.watched = op, args, record, watched
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None

    def wait(self, writer: Writer) -> None:
        """Wait until the writer has made the request (while the writer lives)."""
        while not self.done.wait(0.5):
            if not writer.is_alive():
                raise ZooError(f"the metric writer stopped before the store answered {self.op}")

    def answer(self, writer: Writer):
        """Wait for the answer (while the writer lives); raise the request's error."""
        self.wait(writer)
        if self.error is not None:
            raise self.error
        return self.value


class Writer(threading.Thread):
    """Writes queued metric rows to MLflow in batches, and makes the run's store requests, off the training thread.

    Rows are ``(key, value, timestamp_ms, step)`` tuples. They wait up to WRITE_EVERY_S so that
    one ``log_batch`` carries many, then go to the writer process (mode ``process``) or are
    written by this thread (mode ``thread``, and whenever the process is not ready: a run shorter
    than its start-up writes here, and one whose writer process dies goes on here, after writing
    again the rows that process had not confirmed; MLflow ignores a row it already holds).

    A request (:meth:`call`, :meth:`submit`) goes behind the rows queued before it, to the writer
    process (waiting for it to start), or to a :class:`~zoo.tracking.runstore.RunStore` of this
    process (mode ``thread``, or once the process died: only then does this process import MLflow).
    """

    def __init__(self, uri: str, mode: str = "thread"):
        super().__init__(name="zoo-metrics", daemon=True)
        self.uri, self.run_id, self.mode = uri, None, mode
        self.journal = None  # the run's Journal: where refused rows go (None: a refusal is an error)
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.rows = 0
        self.rows_here = 0  # of which this thread wrote
        self.seconds = 0.0
        self.last_step = 0
        self.child: WriterProcess | None = None
        self._store = None  # this process's RunStore (mode thread, or the process died)
        # asked for by name: rows wait for the process (up to its START_S) even at a flush, instead of being
        # written here while it starts (what auto does, so that a short run does not wait for MLflow's import)
        self.patient = mode == "process" and writer_setting() == "process"
        self.failed: Call | None = None  # the first request nobody waited for that the store refused
        if mode == "process":
            try:
                self.child = child = WriterProcess.reuse() or WriterProcess()
                if child.uri not in (None, uri) and not child.ready:
                    # an earlier run's process, still starting, would first open that run's store: start afresh
                    child.kill()
                    self.child = child = WriterProcess()
                child.open(uri)
            except Exception as exc:  # no subprocess here: write from this thread
                log.warning("metric writer process could not start (%s); writing metrics from a thread", exc)
                self.child, self.mode = None, "thread"

    @property
    def store(self):
        """This process's :class:`~zoo.tracking.runstore.RunStore` (made, and MLflow imported, when first needed)."""
        if self._store is None:
            from zoo.tracking.runstore import RunStore

            self._store = RunStore(self.uri)
        return self._store

    def submit(self, op: str, *args, record: dict | None = None, watched: bool = True) -> Call:
        """Queue a store request behind the rows queued so far; its :meth:`Call.answer` waits for it.

        ``record``: the request as the run's journal keeps it (see :meth:`_do`). ``watched=False``: nobody
        waits for the answer; a refusal is kept in :attr:`failed` for the run to raise.
        """
        call = Call(op, args, record, watched)
        self.q.put(call)
        return call

    def call(self, op: str, *args):
        """A store request, answered: its value (or its error, raised)."""
        return self.submit(op, *args).answer(self)

    def _do(self, call: Call) -> None:
        """Make ``call`` in the writer process, or here when there is none (or it died meanwhile).

        A request with a journal record goes to the run's journal instead once the store has refused rows,
        and so does one the store refuses itself (not a :class:`ZooError`, Zoo's own one line: a full disk).
        """
        try:
            call.value = self._ask(call)
        except BaseException as exc:
            call.error = exc
            self._journal_refused(call)
        finally:
            if call.error is not None and not call.watched and self.failed is None:
                self.failed = call
            call.done.set()

    def _ask(self, call: Call):
        child = self.child
        if child is not None:
            while child.starting and not child.poll(0.5, until="ready"):
                pass
            self._collect()  # the rows refused before it: the journal takes it instead
            if self._journaled(call):
                return None
            answered = child.call(call.op, call.args, call.record is not None) if child.ready else None
            self._collect()
            if answered is not None:
                from zoo.tracking.runstore import raised

                error, value = answered
                if error is not None:
                    raise raised(error)
                return value
            self._abandon()
        if self._journaled(call):
            return None
        return getattr(self.store, call.op)(*call.args)

    def _journaled(self, call: Call) -> bool:
        """The store refused rows: ``call`` goes to the journal (True), in order with them."""
        return call.record is not None and self.journal is not None and self.journal.keep(call.record)

    def _journal_refused(self, call: Call) -> None:
        """The store refused ``call``: into the journal, which starts there if it had not (else the error stays)."""
        if call.record is None or self.journal is None or isinstance(call.error, ZooError):
            return
        try:
            self.journal.refused(one_line(call.error), self.last_step, call.record)
            call.error = None
        except ZooError as exc:  # the journal's own disk refused it too
            call.error = exc

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
            elif isinstance(item, Call):  # after the rows queued before it
                self._send(batch, now=True)
                batch = []
                self._do(item)
            elif callable(item):  # Tracker.when_stored's function (a flush marker, an Event, is not callable)
                self._send(batch, now=True)
                batch = []
                self._settle(stop=False)
                self._stored(item)
            else:  # a flush marker (an Event) or None to stop
                self._send(batch, now=True)
                batch = []
                self._settle(stop=item is None)
                if item is None:
                    return
                item.set()

    def _stored(self, then) -> None:
        """Run ``then``: everything queued before it is stored (unless the store refused rows: then never)."""
        if self.error is not None:
            return
        try:
            then()
        except Exception as exc:  # (a checkpoint's rename: the next one, or the run's end, tries again)
            log.warning("after the rows were stored: %s", one_line(exc))

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
            self.store.rows(self.run_id, batch)
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
