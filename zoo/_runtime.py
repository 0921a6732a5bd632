"""Process-level policy in one reviewed place: signals, time limits, the garbage collector,
supervising and stopping child process groups, a fast exit, and sharing Hydra's ConfigStore.

These are the tricks a command needs to be honest (a signal stops training at a step boundary)
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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, taken at a step boundary so the checkpoint is consistent."""


class StopRequest:
    """Set by the first Ctrl-C or SIGTERM (``signum``); a loop checks it at its next step boundary."""

    def __init__(self):
        self.signum = 0

    def __bool__(self) -> bool:
        return bool(self.signum)


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Yield a :class:`StopRequest` the first of ``signals`` sets; a second one raises :class:`Interrupted` at once.

    Off the main thread (where Python cannot take signals) the request simply never comes.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signum:
            raise Interrupted(f"signal {signum}")
        request.signum = signum

    old = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield request
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


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
