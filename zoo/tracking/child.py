"""The writer process (:mod:`zoo.tracking.writer_process`) seen from the training process: :class:`WriterProcess`.

Started early (:func:`prestart`, while the run's data and model are built) so that its import of
MLflow overlaps the training process's own start-up; it answers metric rows and the run's store
requests (:mod:`zoo.tracking.runstore`) through a pipe. A run's writer process stays, idle, for the
next run of the same process (a sweep's jobs, a notebook); it exits with the training process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
import time

from zoo.tracking.writer_process import HTTP_BOUNDS


def writer_setting() -> str:
    """``ZOO_METRIC_WRITER`` as asked: ``auto`` (the default), ``process`` or ``thread``; the one reader of it."""
    from zoo.errors import ZooError

    mode = os.environ.get("ZOO_METRIC_WRITER", "auto").strip().lower() or "auto"
    if mode not in ("auto", "process", "thread"):
        raise ZooError(f"ZOO_METRIC_WRITER={mode!r} is invalid: expected auto, process or thread")
    return mode


def writer_mode() -> str:
    """``process`` or ``thread``: where metric rows and store requests go (:func:`writer_setting`).

    ``auto`` is ``process`` on a POSIX machine with at least two cores this process may use.
    """
    mode = writer_setting()
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
        self.answer: tuple | None = None  # the last request's answer: (error or None, value)

    def open(self, uri: str, early: bool = False) -> None:
        """Open ``uri`` there, as this process sees it now: its folder and its MLflow settings (a process
        left idle by an earlier run started in another folder, with other variables). ``early``: before the
        run exists (:func:`prestart`); the store is opened only if it exists, and nothing is written."""
        self.uri = uri
        env = {**HTTP_BOUNDS, **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}}
        self._send(("open", uri, os.getcwd(), env, early))

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
        elif kind == "answer":
            self.answer = msg[1:]
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

    def call(self, op: str, args: tuple, journaled: bool = False) -> tuple | None:
        """Ask the run's store (:class:`zoo.tracking.runstore.RunStore`) there; wait for the answer
        ``(error or None, value)``, confirming rows meanwhile. None: the process died first.
        ``journaled``: the run's journal takes the request, so that it is refused untried once the store
        has refused rows."""
        self.answer = None
        self._send(("call", op, args, journaled))
        while not self.dead:
            if self.poll(1.0, until="answer"):
                return self.answer
            if self.proc.poll() is not None:
                self._died(f"it exited with code {self.proc.returncode}")
        return None

    def close(self) -> None:
        for conn in (self.outbox, self.inbox):
            with contextlib.suppress(OSError):
                conn.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prestart(uri: str | None = None) -> None:
    """Start the coming run's writer process now (mode ``process``, none idle): its start-up then
    overlaps the building of the run's data and model. The run's :class:`Writer` takes it.

    ``uri``: the run's store, opened there meanwhile if it exists already (never created: the command may
    still fail before its run starts). A process started earlier without one (``zoo train`` starts it before
    Hydra composes the config) is told the store now."""
    if writer_mode() != "process":
        return
    with WriterProcess._lock:
        idle = WriterProcess._idle
        if idle is not None and idle.pid == os.getpid():
            if uri is not None and idle.uri is None:  # started before the store was known (zoo train's start)
                idle.open(uri, early=True)
            return
    try:
        child = WriterProcess()
        if uri is not None:
            child.open(uri, early=True)
    except Exception:  # the run's own Writer says so, and writes from a thread
        return
    with WriterProcess._lock:
        old, WriterProcess._idle = WriterProcess._idle, child
    if old is not None and old.pid == os.getpid():
        old.kill()


@atexit.register
def stop_idle() -> None:
    """Stop this process's idle writer process now, if it has one (at exit; or when ``zoo train`` hands its run to
    torchrun's processes): it would otherwise finish its start-up for nothing."""
    child, WriterProcess._idle = WriterProcess._idle, None
    if child is not None and child.pid == os.getpid():
        child.kill()


