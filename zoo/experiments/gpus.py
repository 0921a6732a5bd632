"""GPUs for parallel sweep jobs on one machine: each worker process takes a slot, and a slot's GPUs.

Jobs running in parallel (``hydra/launcher=parallel``) each get their own GPU: every worker
process takes a free slot (a lock file in the sweep folder) and sets ``CUDA_VISIBLE_DEVICES``
from :func:`gpus_for_slot` before CUDA is initialised.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence


def gpus_for_slot(slot: int, visible: Sequence[str], per_job: int = 1) -> list[str]:
    """The GPUs a parallel worker in ``slot`` uses: ``per_job`` consecutive ones of ``visible``.

    Slots wrap around when there are more workers than GPU groups (they then share), and a job
    asking for more GPUs than there are gets them all. No GPUs: an empty list (the CPU).

    >>> gpus_for_slot(1, ["0", "1", "2", "3"])
    ['1']
    >>> gpus_for_slot(1, ["0", "1", "2", "3"], per_job=2)
    ['2', '3']
    >>> gpus_for_slot(5, ["0", "1"])
    ['1']
    """
    if not visible:
        return []
    if slot < 0 or per_job < 1:
        raise ValueError(f"slot={slot} and per_job={per_job} must be >= 0 and >= 1")
    per = min(per_job, len(visible))
    groups = len(visible) // per
    first = (slot % groups) * per
    return list(visible[first:first + per])


def visible_gpus(environ: dict | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU torch sees."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch or no driver: no GPUs
        return []


def cuda_initialized() -> bool:
    """Whether this process has started CUDA already (it then cannot move to another GPU)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


_SLOT: dict[str, Any] = {}  # this process's slot: its lock file stays open (held) while the process lives


def acquire_slot(lock_dir: str | os.PathLike, n_slots: int) -> int:
    """A slot number no other live process of the sweep holds, kept for this process's lifetime.

    Worker processes are reused for several jobs (joblib), and CUDA cannot move to another GPU
    once initialised, so the slot belongs to the process, not to the job. When every slot is
    taken (more workers than GPUs), the slot is shared: ``pid % n_slots``.
    """
    import fcntl

    if "slot" in _SLOT:
        return _SLOT["slot"]
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(max(n_slots, 1)):
        handle = open(folder / f"slot-{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        handle.write(str(os.getpid()))
        handle.flush()
        _SLOT.update(slot=slot, handle=handle)
        return slot
    _SLOT["slot"] = os.getpid() % max(n_slots, 1)
    return _SLOT["slot"]
