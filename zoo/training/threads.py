"""How torch's CPU operations run during a run: how many threads (``trainer.threads``, ``OMP_NUM_THREADS``
or Zoo's rule) and whether denormal numbers are flushed to zero (``trainer.flush_denormal``, :func:`flush_denormal`).

In this order:

1. ``trainer.threads=N``: N intra-op threads, whatever else is set;
2. ``OMP_NUM_THREADS`` set in the environment (by the user, or by ``torchrun`` for several
   processes): torch already read it when it started, and Zoo leaves torch's count as it is;
3. ``trainer.threads=auto`` (the default) without it: one thread per core this process may use,
   less one core left for the metric writer process and MLflow's system-metrics sampler, and never
   more than torch's own default (its count of physical cores): ``max(1, min(torch's default,
   cores - 1))``.

Why leave a core: on the 2-core development machine, the default ``zoo train`` ran its loop at
505-529 steps/s with torch's default of 2 threads and 907-928 with one, while a bare loop with
nothing beside it gained little from the second thread (1,443 against 1,329): torch's second
intra-op thread waits for the core the writer process and the sampler are using.
(docs/performance.md, "Threads"; ``benchmarks/bench.py`` measures both settings.)

The choice is recorded on the run as the tags ``zoo.threads`` (the count torch used) and
``zoo.threads_from`` (``trainer.threads``, ``OMP_NUM_THREADS`` or ``auto``). It holds for the
run only: :func:`torch_threads` gives torch its previous count back afterwards (an in-process
sweep or a notebook trains the next run with what it had).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from zoo.tracking import tags

ENV = "OMP_NUM_THREADS"
_torch_default: int | None = None  # torch's own count, before Zoo changed it in this process


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_threads() -> int:
    """Zoo's rule: one thread per available core less one (for the writer), at most torch's default, at least 1."""
    global _torch_default
    if _torch_default is None:
        _torch_default = torch.get_num_threads()
    return max(1, min(_torch_default, available_cores() - 1))


def choose(setting: int | str) -> tuple[int | None, str]:
    """``(count, where it came from)`` for ``trainer.threads``; count None: leave torch's as it is."""
    if setting != "auto":
        return int(setting), "trainer.threads"
    if os.environ.get(ENV, "").strip():
        return None, ENV
    return auto_threads(), "auto"


@contextlib.contextmanager
def torch_threads(setting: int | str = "auto") -> Iterator[dict[str, str]]:
    """Set torch's intra-op threads for the block; yields the run's tags; restores the previous count after."""
    before = torch.get_num_threads()
    count, source = choose(setting)
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield {tags.THREADS: str(torch.get_num_threads()), tags.THREADS_FROM: source}
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def flush_denormal(on: bool = True) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for the block (``trainer.flush_denormal``, default true).

    A long run drives many gradients and Adam's moments below 1.2e-38, where x86 CPUs compute
    denormal numbers many times slower: ``benchmarks/long_run.py`` (200,000 steps of the default MLP)
    slowed from 927 to 482 steps/s, and a bare loop started from that run's ``last.pt`` ran at 513
    steps/s against 1,153 with denormals flushed (docs/performance.md, "Denormal numbers"). Numbers
    that small change nothing a run learns. torch's own default (off) is set again after the block.
    """
    changed = bool(on) and torch.set_flush_denormal(True)  # False where the CPU cannot (not x86 with SSE3)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)
