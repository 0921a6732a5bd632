"""Process-level policy in one reviewed place: signals, time limits, the garbage collector,
supervising and stopping child process groups, a fast exit, and sharing Hydra's ConfigStore.

These are the tricks a command needs to be honest (a signal stops training at a step boundary,
the rest of a run at once, and never cuts a run's ending short; a sweep's workers stop with it)
and quick (no collector passes over a million long-lived objects, no teardown of every module at
exit). Nothing here knows about models, MLflow or plugins.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (``signum``), taken at a step boundary so the checkpoint is consistent."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


def exit_code(exc: BaseException) -> int:
    """What a shell expects of a process a signal stopped: 128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


class StopRequest:
    """The first Ctrl-C, SIGTERM or SIGHUP (``signum``), and what a signal does now (``mode``):

    * ``step``: note it; the loop stops at its next step boundary. The same signal a second time
      raises :class:`Interrupted` at once (another signal does not: a sweep's worker gets Ctrl-C from
      the terminal and SIGTERM from the sweep for one stop);
    * ``now``: raise :class:`Interrupted` at once (nothing is half-done that a checkpoint needs);
    * ``hold``: only note it (the run is being ended: nothing may cut that short).

    Once an :class:`Interrupted` is raised the process is stopping, and later signals are only noted.
    """

    def __init__(self, mode: str = "step"):
        self.signum = 0
        self.mode = mode
        self.count = 0  # signals received
        self.raised = False
        self._seen: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.signum)

    @property
    def pending(self) -> bool:
        """A signal came and nothing has raised it yet."""
        return bool(self.signum) and not self.raised

    def clear(self) -> None:
        """Forget a stop that was raised and dealt with (a sweep's worker process, before its next job)."""
        if self.raised:
            self.signum, self.raised, self._seen = 0, False, set()

    def interrupt(self, where: str = "") -> Interrupted:
        """The exception that stops for the signal received (raise it); later signals are only noted."""
        self.raised = True
        return Interrupted(f"stopped by {signal_name(self.signum)}{' ' + where if where else ''}", self.signum)

    def _take(self, signum, frame) -> None:  # the signal handler
        again = signum in self._seen
        self._seen.add(signum)
        self.count += 1
        self.signum = self.signum or signum
        if signum == getattr(signal, "SIGHUP", None):
            _detach_terminal()
        if self.raised or self.mode == "hold":
            return
        if self.mode == "now" or again:
            raise self.interrupt()


def _detach_terminal() -> None:
    """The terminal was closed: what the process still prints goes to /dev/null instead of failing on it."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                os.dup2(null, fd)
    os.close(null)


_active: StopRequest | None = None  # the request the handlers of this process report to


def _install(request: StopRequest) -> dict:
    global _active
    _active = request
    return {sig: signal.signal(sig, request._take) for sig in STOP_SIGNALS}


@contextlib.contextmanager
def stop_on_signals(mode: str = "step"):
    """Ctrl-C, SIGTERM and SIGHUP during the block: a :class:`StopRequest` in ``mode``.

    Blocks nest: an inner one shares the outer one's request in its own mode for its duration (a
    run is ``now``, its training loop ``step``, its ending ``hold``). A stop requested and not yet
    raised is raised as the block starts (no run is begun for a process told to stop) and as it
    ends normally (a signal held at the end of a run still stops the process). Off the main thread
    (where Python cannot take signals) the request never comes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield StopRequest(mode)
        return
    global _active
    outer = _active
    if outer is None:
        request = StopRequest(mode)
        old = _install(request)
    else:
        request, previous = outer, outer.mode
        request.mode = mode
    try:
        if request.pending:
            raise request.interrupt("before it started")
        yield request
        if request.pending:
            raise request.interrupt()
    finally:
        if outer is None:
            _active = None
            for sig, handler in old.items():
                signal.signal(sig, handler)
        else:
            request.mode = previous


_kept: dict = {}  # the handlers keep_stop_signals replaced


def keep_stop_signals(mode: str) -> StopRequest | None:
    """Take Ctrl-C, SIGTERM and SIGHUP until :func:`release_stop_signals` (a sweep's main process:
    ``now``, so that each is what Ctrl-C is there; a sweep's worker process, for good: ``hold``, so
    that one that comes between jobs is kept and the next job does not start). None off the main
    thread; the request already taken, if there is one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if _active is None:
        _kept.update(_install(StopRequest(mode)))
    return _active


def release_stop_signals() -> None:
    """Give back the handlers :func:`keep_stop_signals` replaced."""
    global _active
    if not _kept or threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in _kept.items():
        signal.signal(sig, handler)
    _kept.clear()
    _active = None


def start_worker() -> None:
    """A sweep's worker process, as it starts: Ctrl-C, SIGTERM and SIGHUP held for its jobs (see
    :func:`keep_stop_signals`), and, on Linux, SIGTERM when the process that started it dies, so
    that a sweep killed outright (``kill -9``) leaves no worker training: each stops its run KILLED."""
    global _active
    _active = None  # a request inherited through fork is the sweep's, not this worker's
    _kept.clear()
    keep_stop_signals("hold")
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
            if os.getppid() == 1:  # it died before that took hold
                os.kill(os.getpid(), signal.SIGTERM)


def current_stop() -> StopRequest | None:
    """The request this process's signal handlers report to, if any."""
    return _active


class TimeLimit(Exception):
    """A block of code ran past its :func:`time_limit`."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Raise :class:`TimeLimit` in the block once it has run ``seconds`` (0 or less: no limit).

    A timer signal (``SIGALRM``) interrupts Python code and the waits that Python can interrupt
    (sleeps, locks, reads); a C loop that never returns to Python is beyond it. Off the main
    thread, or inside another limit, there is none.
    """
    if (seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)):
        yield
        return

    def expired(signum, frame):
        raise TimeLimit(f"{what} did not finish within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def start_without_collector() -> None:
    """Turn the collector off for a command's start-up.

    Start-up makes about a million long-lived objects (torch, MLflow, Hydra, scikit-learn) and the
    collector's full passes over them cost about 1 s of every command; :func:`frozen_collector`
    turns it on again for training.
    """
    gc.disable()


@contextlib.contextmanager
def frozen_collector():
    """Collect during the block, but never scan what existed before it.

    Everything made before training (torch, MLflow, Hydra, the data) lives until the run ends.
    Frozen, the collector's full passes skip it: a pass over it took 0.1-0.5 s, several times a
    run, in the middle of training. Unfrozen at the end, so that a process training many runs
    collects them; on during the block even where the command turned it off for its start-up.

    Where objects are frozen already (a sweep's jobs in one process freeze what outlives each job,
    :func:`collect_between_jobs`), those stay frozen and nothing more is: the block neither
    freezes the run's own objects nor unfreezes anyone else's.
    """
    was_on = gc.isenabled()
    mine = gc.get_freeze_count() == 0
    if mine:
        gc.freeze()
    gc.enable()
    try:
        yield
    finally:
        if mine:
            gc.unfreeze()
        if not was_on:
            gc.disable()


def collect_between_jobs() -> None:
    """Between two jobs of a sweep in one process: free what the finished job left, then freeze what is left.

    What survives a full collection at that point lives as long as the process (torch, MLflow,
    Hydra, caches); frozen, it is skipped by every later pass, so the next job's own collection
    (and its loop's, :func:`frozen_collector`) walks only that job's objects instead of a million
    long-lived ones (0.1-0.5 s per job).
    """
    gc.collect()
    gc.freeze()


def stop_group(proc) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL what is left (a server's workers included)."""
    import subprocess

    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the main process is gone; its workers may not be
            os.killpg(proc.pid, signal.SIGKILL)
        return


class ProcessGroup:
    """One command run in its own process group, stopped as a whole by Ctrl-C, SIGTERM or SIGHUP.

    Signals are taken from the moment it is made, before the command starts: one that comes while
    the caller is still printing, or while the command is being started, stops it right after.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.proc = None
        self.stopping = False
        for sig in self.SIGNALS:
            signal.signal(sig, self._stop)

    def _stop(self, signum, frame):
        self.stopping = True
        if self.proc is not None:  # else Popen is under way: run() stops it right after
            raise KeyboardInterrupt

    def run(self, cmd: list[str], env: dict | None = None) -> int:
        """The command's exit status, or 0 when a signal ended it; its whole group is stopped either way."""
        import subprocess

        try:
            self.proc = subprocess.Popen(cmd, start_new_session=True, env=env)
            if self.stopping:
                raise KeyboardInterrupt
            return self.proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            for sig in self.SIGNALS:  # a second Ctrl-C must not cut the clean-up short
                signal.signal(sig, signal.SIG_IGN)
            if self.proc is not None:
                stop_group(self.proc)


def exit_now(code) -> None:
    """End the process as Python would, minus tearing its modules down.

    Python's own shutdown collects every object of torch, MLflow and the rest before it exits,
    which takes one to two seconds here for nothing. The threads, the exit handlers and the
    output finish as usual first; then the process ends at once.
    """
    import atexit

    if hasattr(threading, "_shutdown"):  # what the interpreter does first: join the non-daemon threads
        threading._shutdown()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def share_config_store() -> None:
    """Let Hydra's copies of its config repository share the one ConfigStore instead of copying it.

    Hydra deep-copies its repository, and with it the whole ConfigStore (every plugin's model and
    data node), for each config group it looks at: about a hundred times for ``zoo train --help``,
    several seconds. The store is a singleton whose nodes Hydra copies on every load anyway, and a
    copied repository re-reads ``ConfigStore.instance()`` when it initialises its sources, so the
    copy is never used: sharing it changes nothing but the time.
    """
    from hydra.core.config_store import ConfigStore

    if "__deepcopy__" not in ConfigStore.__dict__:
        ConfigStore.__deepcopy__ = lambda self, memo: self
