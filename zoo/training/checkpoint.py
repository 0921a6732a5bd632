"""Checkpoints: the format, when they are written, loading one to resume from, and the lock on a run's folder.

A checkpoint is one flat dict saved with ``torch.save`` and read with ``weights_only=True``
(tensors and plain data, never code): the model, optimizer, scheduler and gradient-scaler
states; where training stands (``epoch``, ``step``, ``batch_in_epoch``, ``best``,
``bad_epochs``); the random-number generators (``rng``); the top-level keys each callback adds
(the step log's ``grad_every``, ``epoch_sum``, ``epoch_count``); and the run's ``run_id`` and
resolved ``config``. The keys are those the loop wrote before its callbacks existed, so either
reads the other's files.

The :class:`Checkpointer` writes ``last.pt`` at the end of an epoch when that costs under
CHECKPOINT_BUDGET of the time since the last write, at the last epoch, and (through ``train``)
on Ctrl-C or SIGTERM. A better epoch in between is kept in memory and written as ``best.pt`` with
the next ``last.pt`` (a hard link when both hold the same step). At the end it loads the best
epoch's weights back, for the test pass. Before it writes ``last.pt`` it waits until the store
holds every metric row queued so far, so a checkpoint is never ahead of the store (a resume then
logs each step exactly once: :mod:`zoo.training.resume`). Each run has its own folder,
``<output dir>/checkpoints/<run id>/``, locked while a process trains the run (:func:`locked`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import socket
import time
from pathlib import Path

import torch

from zoo.errors import ZooError, one_line
from zoo.training.distributed import Dist
from zoo.training.loop import Callback, Loop

CHECKPOINT_BUDGET = 0.01
SNAPSHOT_BYTES = 256 * 2**20  # a better epoch's state larger than this is written at once instead of copied
REQUIRED_STATE = {"model", "optimizer", "epoch", "step", "rng", "run_id", "config"}
LOCK = "run.lock"  # in a run's checkpoint folder, held while a process trains the run (locked)


# ------------------------------------------------------------------------------ resuming
@contextlib.contextmanager
def locked(folder: Path, what: str):
    """Hold ``<folder>/run.lock`` while the block runs: one process at a time trains the run of ``folder``.

    An OS lock (``flock``): the kernel releases it when the process ends, however it ends, so a run
    killed with ``kill -9`` can be resumed at once. A second process is refused in one line naming
    the holder. Under DDP only rank 0 (``RANK``) takes it: it is the one that writes checkpoints.
    (Where ``fcntl`` does not exist, nothing is locked.)
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    if fcntl is None or os.environ.get("RANK", "0") != "0":
        yield folder
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")
    except OSError as exc:
        raise ZooError(f"{what}: cannot lock the checkpoint folder {folder} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ZooError(f"{what}: the run is being trained by {holder} (it holds {folder / LOCK}); "
                           "wait for it to end, or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield folder
    finally:
        handle.close()  # and with it the lock


def load_checkpoint(path: Path) -> dict:
    """Load a Zoo checkpoint safely (``weights_only=True``: tensors and plain data, never code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ZooError(f"checkpoint {path} is corrupt or not a Zoo checkpoint ({one_line(exc, 200)}); "
                       f"resume from another run or start a new one") from None
    if not isinstance(state, dict) or not REQUIRED_STATE <= set(state):
        missing = sorted(REQUIRED_STATE - set(state)) if isinstance(state, dict) else "everything"
        raise ZooError(f"checkpoint {path} is not a Zoo checkpoint (missing {missing}); resume from a run's last.pt")
    if not isinstance(state["config"], dict):
        raise ZooError(f"checkpoint {path} is not a Zoo checkpoint (its config is a {type(state['config']).__name__}); "
                       "resume from a run's last.pt")
    for key, value in _interpolations(state["config"]):
        raise ZooError(f"checkpoint {path} is refused: its config holds the interpolation {key}={value!r:.120}, and a "
                       "checkpoint's config is data (Zoo writes it resolved); resume from a checkpoint Zoo wrote")
    return state


def _interpolations(node, path: str = ""):
    """``(key, text)`` of every string in ``node`` that OmegaConf would resolve (``${...}``), at any depth.

    A checkpoint's config is the resolved config of its run: it never holds one. A crafted one
    could (``${oc.env:SECRET}`` names an experiment after the victim's secret), so such a file is
    refused before OmegaConf sees it.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _interpolations(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _interpolations(item, f"{path}[{i}]")
    elif isinstance(node, str) and "${" in node:
        yield path, node


# ------------------------------------------------------------------------------ the format
def state_of(loop: Loop, run_id: str | None, config: dict) -> dict:
    """The checkpoint of ``loop`` as it stands, for the run ``run_id`` trained with ``config``."""
    state = {
        "model": loop.model.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict() if loop.scheduler is not None else None,
        "scaler": loop.scaler.state_dict() if loop.scaler is not None else None,
        "epoch": loop.epoch, "step": loop.step, "best": loop.best, "bad_epochs": loop.bad_epochs,
        "batch_in_epoch": loop.batch_in_epoch,
        "rng": {"torch": torch.get_rng_state(), "generator": loop.generator.get_state(),
                "epoch": loop.epoch_rng if loop.epoch_rng is not None else loop.generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if loop.device.type == "cuda" else []},
    }
    for cb in loop.callbacks:
        state.update(cb.state_dict())
    return {**state, "run_id": run_id, "config": config}


def restore(loop: Loop, state: dict) -> None:
    """Put ``loop`` (and its callbacks) back where ``state`` was written."""
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    if loop.scheduler is not None and state.get("scheduler") is not None:
        loop.scheduler.load_state_dict(state["scheduler"])
    if loop.scaler is not None and state.get("scaler") is not None:
        loop.scaler.load_state_dict(state["scaler"])
    loop.epoch, loop.step = state["epoch"], state["step"]
    loop.best, loop.bad_epochs = state["best"], state["bad_epochs"]
    loop.batch_in_epoch = state.get("batch_in_epoch", 0)
    loop.epoch_rng = state["rng"].get("epoch")
    torch.set_rng_state(state["rng"]["torch"])
    loop.generator.set_state(state["rng"]["generator"])
    if state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    for cb in loop.callbacks:
        cb.load_state_dict(state)


def _copied(obj):
    """``obj`` with every tensor cloned, so later steps do not change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return obj


def _write(state: dict, path: Path, name: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _written(path, name) as tmp:
        torch.save(state, tmp)


@contextlib.contextmanager
def _written(path: Path, name: str | None = None):
    """Write ``path`` through ``<path>.tmp``, renamed when complete: never a half-written checkpoint,
    never a file rewritten in place. A write that fails removes the ``.tmp`` file and is one line
    (:class:`ZooError`) naming the checkpoint (``name``: the file it becomes) and the folder; a full disk says so
    (torch's own words do not)."""
    tmp = path.with_suffix(".tmp")
    try:
        yield tmp
        tmp.replace(path)
    except Exception as exc:
        free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else None  # before the .tmp goes
        tmp.unlink(missing_ok=True)
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < 2**20)
        why = f"no space left on the device ({free / 2**20:.1f} MiB free)" if full else one_line(exc, 200)
        raise ZooError(f"cannot write the checkpoint {name or path.name} in {path.parent}: {why}; free some space or point "
                       "hydra.run.dir (where checkpoints go) at another disk") from None


# ------------------------------------------------------------------------------ the policy
class Checkpointer(Callback):
    """Writes ``last.pt`` and ``best.pt`` into ``folder`` (rank 0 only) and tests the best epoch's weights.

    Args:
        folder: the checkpoint folder (created with the first checkpoint).
        run: the tracker whose ``run_id`` every checkpoint records (``zoo train resume=<run id>``).
        config: the validated config, recorded too (a resume trains with it).
        dist: this process's place in a DDP job; only rank 0 writes.
    """

    def __init__(self, folder: Path, *, run, config: dict, dist: Dist | None = None):
        self.folder = Path(folder)
        self.run, self.config, self.main = run, config, (dist or Dist()).main
        self._saved_at, self._save_seconds = time.perf_counter(), 0.0
        self._best_state: tuple[int, dict | None] | None = None  # (step, state) of a best epoch not yet in best.pt
        self._last_saved_step: int | None = None  # the step last.pt holds
        self.best_step: int | None = None  # the step of the best epoch (the weights the run's model holds)

    def on_fit_start(self, loop: Loop) -> None:
        self._saved_at = time.perf_counter()

    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        t0 = time.perf_counter()
        if loop.improved:
            self.keep_best(loop)
        if (loop.last_epoch or self._due()) and self._last_saved_step != loop.step:
            self.save(loop, "last.pt", wait=False)  # and best.pt, when a better epoch is waiting in memory
        loop.perf["checkpoint_s"] += time.perf_counter() - t0

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        self.save_best()  # a failed or interrupted run keeps its best epoch too

    def on_fit_end(self, loop: Loop) -> None:
        """Load the best epoch's weights for the test pass (under DDP: rank 0's, on every rank)."""
        best = self.folder / "best.pt"
        if self.main and best.exists():
            loop.model.load_state_dict(torch.load(best, map_location=loop.device, weights_only=True)["model"])
        loop.dist.broadcast(loop.model)

    def save(self, loop: Loop, name: str, wait: bool = True) -> Path:
        """Write the loop's state as ``name``; ``last.pt`` also writes a best epoch kept in memory.

        A checkpoint is never ahead of the store: ``name`` is the state once every row up to its step is stored.
        ``wait``: wait for that here. Else the state is written now as ``<name>.<step>.pending`` and the run's
        writer renames it ``name`` once those rows are stored (:meth:`Tracker.when_stored`), while training goes
        on; a process that dies first leaves the previous ``name`` as it was.
        """
        path = self.folder / name
        if not self.main:
            return path
        t0 = time.perf_counter()
        if wait:
            self.run.flush()  # (and the renames queued before)
            self._drop_pending(name)
            written = path
        else:
            written = self.folder / f"{name}.{loop.step}.pending"
        _write(self._state(loop), written, name)
        if not wait:
            self.run.when_stored(functools.partial(written.replace, path))
        if name == "last.pt":
            self._last_saved_step = loop.step
            self.save_best(written)
        self._saved_at = time.perf_counter()
        self._save_seconds = self._saved_at - t0
        return path

    def save_if_settled(self, loop: Loop) -> bool:
        """Write last.pt as training stands (a failure, a stop), if a resume can continue from there: not mid-step,
        at an epoch's end or after training (the weights are the best epoch's then). Else the last one stays."""
        if not loop.settled:
            with contextlib.suppress(Exception):
                self.run.flush()  # a last.pt on its way (Checkpointer.save) is in place: the one to resume
            return False
        try:
            self.save(loop, "last.pt")
        except Exception:  # the failure itself may be the disk or the store
            return False
        return True

    @contextlib.contextmanager
    def own_folder(self, run_id: str | None, held: contextlib.ExitStack):
        """A new run's checkpoints go to ``<folder>/<run id>/``, locked until ``held`` closes (after the run's end
        state is written). None: a resumed run (its folder is locked already) or a DDP rank that writes none."""
        if run_id:
            self.folder = held.enter_context(locked(self.folder / run_id, f"run {run_id}"))
        elif self.main:  # resumed, its folder locked
            self._drop_pending("*.pt")
        yield

    def _drop_pending(self, name: str) -> None:
        """Remove ``<name>.<step>.pending`` files (``name`` a glob): a process died before its writer renamed them."""
        for stale in self.folder.glob(f"{name}.*.pending"):
            stale.unlink(missing_ok=True)

    def _state(self, loop: Loop) -> dict:
        return state_of(loop, self.run.run_id, self.config)

    def state_dict(self) -> dict:
        return {"best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self.best_step = state.get("best_step")

    def keep_best(self, loop: Loop) -> None:
        """This epoch is the best so far: best.pt is written with the next last.pt (or now, for a large state)."""
        self.best_step = loop.step
        if not self.main:
            return
        size = sum(t.numel() * t.element_size() for t in loop.model.state_dict().values())
        if 3 * size > SNAPSHOT_BYTES:  # weights and the optimizer's state: too large to copy, write them now
            self._best_state = (loop.step, None)
            self.save(loop, "last.pt")
            return
        self._best_state = (loop.step, _copied(self._state(loop)))

    def save_best(self, last: Path | None = None) -> None:
        """Write the best epoch kept in memory as best.pt (a link to ``last``, the file just written as last.pt,
        when that holds the same step)."""
        if self._best_state is None or not self.main:
            return
        (step, state), self._best_state = self._best_state, None
        best, last = self.folder / "best.pt", last or self.folder / "last.pt"
        if step == self._last_saved_step:  # last.pt holds this very state: no second write
            with _written(best) as tmp:
                tmp.unlink(missing_ok=True)
                try:
                    os.link(last, tmp)
                except OSError:  # a file system without hard links
                    shutil.copyfile(last, tmp)
        else:
            _write(state, best)

    def _due(self) -> bool:
        """Whether writing ``last.pt`` now costs under CHECKPOINT_BUDGET of the time since the last write."""
        return (time.perf_counter() - self._saved_at) * CHECKPOINT_BUDGET >= self._save_seconds

    def saved(self) -> list[Path]:
        """The checkpoint files in the folder, best first."""
        return [p for p in (self.folder / "best.pt", self.folder / "last.pt") if p.exists()]
