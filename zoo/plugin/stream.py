"""Data larger than memory: splits read from disk while training.

:class:`StreamSplit` trains on the rows of an :class:`zoo.ArrayFile` (:mod:`zoo.plugin.arrays`)
a batch at a time: each batch's rows read with ``os.preadv`` (in file order, straight into the
batch's buffer; the file is never memory-mapped, so its pages stay the kernel's page cache) and
standardised in place. A thread of the training process reads a few batches ahead
(``data.workers=0``, what ``auto`` picks on a machine of two cores), or
``torch.utils.data.DataLoader`` worker processes do (``data.workers=N``), sending each batch as
numpy arrays through their pipe; on a GPU, pinned memory and a side CUDA stream bring the next
batch over while the current one trains. Its batches come in the order an in-memory split's
would (one ``randperm`` drawn from the loop's generator), so a streamed run and an in-memory run
of the same seed train on the same batches, and a resumed epoch starts at its batch without
reading the ones before it (the generator's state and the batch number are in the checkpoint).
:func:`array_splits` puts it together: the seeded split, the training rows' statistics, and
in-memory or streamed splits.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

import numpy as np
import torch

from zoo.plugin.arrays import ArrayFile, as_inputs, row_stats
from zoo.plugin.data import TensorSplit, index_dtype, num_batches, split_indices

AUTO_THREAD_CORES = 2  # data.workers=auto: up to this many cores, a thread reads (reader_processes)
AUTO_MAX_WORKERS = 4


# ------------------------------------------------------------------------------ the streamed split

def reader_processes(workers) -> int:
    """``data.workers`` as a count of DataLoader worker processes (0: a thread of the training process reads).

    ``auto``: a thread when the process has at most AUTO_THREAD_CORES cores (the training thread
    and the metric writer take them: worker processes would only queue behind both, and each batch
    they send costs the training process more than the thread's read); otherwise one process per
    core beyond those two, at most AUTO_MAX_WORKERS.
    """
    if workers != "auto":
        return int(workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= AUTO_THREAD_CORES else min(cores - 2, AUTO_MAX_WORKERS)


def targets(y) -> np.ndarray:
    """Targets as a batch carries them: integer class ids as int64 (what the losses take), others as they are."""
    y = np.asarray(y)
    return y.astype(np.int64) if y.dtype.kind in "iu" and y.dtype != np.int64 else y


class _Rows(torch.utils.data.Dataset):
    """What reads a batch: ``reader[positions]`` is ``(inputs, targets)`` as numpy arrays, the inputs
    float32 and standardised, the targets as :func:`targets` makes them (sent from a worker process by
    value: one pipe write, no shared-memory file per tensor)."""

    def __init__(self, x: ArrayFile, y: np.ndarray, rows: np.ndarray, mean, std):
        self.x, self.y, self.rows = x, y, rows
        self.mean, self.std = (None, None) if mean is None else \
            (torch.as_tensor(v, dtype=torch.float32).numpy() for v in (mean, std))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.x.rows(self.rows[positions])
        x = x if x.dtype == np.float32 else x.astype(np.float32)
        if self.mean is not None:  # in place, the same IEEE operations as as_inputs' (x - mean) / std
            np.subtract(x, self.mean, out=x)
            np.divide(x, self.std, out=x)
        return x, targets(self.y[positions])


class _Order(torch.utils.data.Sampler):
    """The batches of the epoch at hand (arrays of positions), set before each pass."""

    def __init__(self, batches=()):
        self.batches: list[np.ndarray] = list(batches)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _as_is(batch):
    return batch


def _read_ahead(read, items, depth: int) -> Iterator:
    """``read(item)`` for each of ``items`` in order, read up to ``depth`` ahead by a thread of this
    process (numpy's copies and the file reads release the GIL while the training step runs)."""
    q: queue.Queue = queue.Queue(depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((read(item), None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - raised again in the training thread
            put((None, exc))
            return
        put((end, None))

    threading.Thread(target=work, name="zoo-stream-reader", daemon=True).start()
    try:
        while True:
            batch, exc = q.get()
            if exc is not None:
                raise exc
            if batch is end:
                return
            yield batch
    finally:
        stop.set()  # the consumer left early (a check's first batch, an interrupt): the thread ends


class StreamSplit:
    """A split whose inputs stay on disk: rows of an :class:`ArrayFile`, read a batch at a time.

    It implements the Split protocol like :class:`zoo.TensorSplit`, and its batches are the
    ones a TensorSplit of the same rows would give for the same generator. What it holds in memory
    grows with its rows at their own width only: the targets as given (class ids as ``uint8``
    cost a byte a row; each batch's are widened to int64), the row numbers and each epoch's
    order as int32 (:func:`zoo.plugin.data.index_dtype`).

    Args:
        x: the inputs: every row of the dataset.
        y: this split's targets (in memory: a numpy array or a CPU tensor), one per entry of ``rows``.
        rows: which rows of ``x`` make this split (default: all of them, in order).
        mean, std: each batch becomes ``(x - mean) / std`` (float32); default: only float32.
        workers: DataLoader worker processes reading batches; ``0``: a thread of the training
            process reads them; ``auto``: :func:`reader_processes` decides from the cores.
        prefetch: batches read ahead (per worker process).
    """

    def __init__(self, x: ArrayFile, y, rows=None, *, mean=None, std=None, workers="auto",
                 prefetch: int = 4, device="cpu"):
        self.x, self.y = x, y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        self.rows = np.arange(len(x), dtype=index_dtype(len(x))) if rows is None else np.asarray(rows)
        if self.rows.dtype.kind not in "iu":
            raise ValueError(f"rows must be integers, not {self.rows.dtype}")
        if len(self.rows) != len(self.y):
            raise ValueError(f"rows and targets differ in length: {len(self.rows)} != {len(self.y)}")
        self.mean, self.std = mean, std
        self.workers, self.prefetch, self.device = workers, int(prefetch), torch.device(device)
        self._reader = _Rows(x, self.y, self.rows, mean, std)
        self._training = None  # the shuffled passes' loader: its worker processes stay between epochs

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"StreamSplit({len(self)} rows of {self.x.path}, row shape {self.x.row_shape}, "
                f"workers={self.workers}, device={self.device})")

    def to(self, device) -> StreamSplit:
        return StreamSplit(self.x, self.y, self.rows, mean=self.mean, std=self.std, workers=self.workers,
                           prefetch=self.prefetch, device=device)

    def num_batches(self, batch_size: int | None) -> int:
        return num_batches(len(self), batch_size)

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None, start: int = 0) -> Iterator[tuple]:
        """As :meth:`zoo.TensorSplit.batches`: the same order for the same generator; from the ``start``-th."""
        n = len(self)
        size = n if batch_size is None else min(int(batch_size), n)
        small = torch.int32 if index_dtype(n) == np.int32 else torch.int64  # the same draws as an int64 randperm
        order = (torch.randperm(n, generator=generator, dtype=small) if shuffle else torch.arange(n, dtype=small)).numpy()
        chosen = [order[i:i + size] for i in range(start * size, n, size)]
        if not chosen:
            return iter(())
        processes = reader_processes(self.workers)
        if processes == 0:
            read = _read_ahead(self._reader.__getitem__, chosen, self.prefetch)
        elif shuffle:  # training: the same worker processes every epoch
            if self._training is None:
                self._training = self._loader(_Order(), processes, persistent=True)
            self._training.sampler.batches = chosen
            read = iter(self._training)
        else:  # a validation or test pass, once an epoch: its workers end with it
            read = iter(self._loader(_Order(chosen), processes, persistent=False))
        return _on_device(read, self.device)

    def example(self, n: int = 2) -> torch.Tensor:
        x, _ = self._reader[np.arange(min(max(1, n), len(self)))]
        return torch.from_numpy(x).to(self.device)

    def _loader(self, sampler: _Order, processes: int, persistent: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self._reader, batch_size=None, sampler=sampler, collate_fn=_as_is, num_workers=processes,
            persistent_workers=persistent, prefetch_factor=self.prefetch,
            generator=torch.Generator().manual_seed(0))  # its workers' seeds: never drawn from the run's RNG


def _on_device(batches: Iterator[tuple], device: torch.device) -> Iterator[tuple]:
    """The batches (numpy arrays) as tensors on ``device``; on a GPU through pinned memory, the next one
    copied on a side CUDA stream while this one trains."""
    if device.type != "cuda":
        for batch in batches:
            yield tuple(torch.from_numpy(a).to(device) for a in batch)
        return
    side = torch.cuda.Stream(device)

    def send(batch):
        pinned = [torch.from_numpy(a).pin_memory() for a in batch]
        with torch.cuda.stream(side):
            return tuple(t.to(device, non_blocking=True) for t in pinned)

    upcoming = next(batches, None)
    upcoming = None if upcoming is None else send(upcoming)
    while upcoming is not None:
        current = upcoming
        main = torch.cuda.current_stream(device)
        main.wait_stream(side)  # the copy has landed before the step reads it
        for t in current:
            t.record_stream(main)  # and its memory is not reused while the step still reads it
        following = next(batches, None)
        upcoming = None if following is None else send(following)
        yield current


# ------------------------------------------------------------------------------ all together

def array_splits(x, y, *, seed: int, kind: str, task: str, output_dim: int, meta: dict | None = None,
                 standardize=True, standardize_target: bool = False, stratify: bool = False,
                 workers="auto", indices=None):
    """Train/val/test :class:`zoo.Splits` of inputs ``x`` and targets ``y``: in memory when ``x`` is
    an array (:class:`zoo.TensorSplit`), streamed when it is an :class:`ArrayFile` (:class:`StreamSplit`).

    Args:
        x: the inputs, one row per example: a numpy array, or an :class:`ArrayFile` on disk.
        y: the targets (in memory): integer class ids for classification, floats otherwise.
        seed: fixes the 70/15/15 split (:func:`zoo.split_indices`).
        kind, task, output_dim, meta: the :class:`zoo.DataInfo`; ``meta["preprocessing"]``
            (created when missing) gets the statistics used.
        standardize: ``True``: ``(x - mean) / std`` with the training rows' statistics, per
            position; a ``(mean, std)`` pair: those (``(0, 255)`` scales bytes to [0, 1]);
            ``False``: only float32.
        standardize_target: scale float targets by the training rows' mean and std too.
        stratify: keep the class balance in every split (classification).
        workers: DataLoader worker processes of a streamed split (0: a thread; ``auto``: by the cores).
        indices: the ``(train, val, test)`` row indices, instead of the seeded split.
    """
    from zoo.plugin.declarations import DataInfo, Splits

    y = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    tr, va, te = indices if indices is not None else split_indices(len(y), seed, stratify=y if stratify else None)
    meta = dict(meta or {})
    prep = meta["preprocessing"] = dict(meta.get("preprocessing") or {})
    mean = std = None
    if standardize is True:
        mean, std = row_stats(x, tr)
    elif standardize is not False and standardize is not None:
        mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in standardize)
    if mean is not None:
        prep["input_scaling"] = {"mean": mean.tolist(), "std": std.tolist(), "formula": "(x - mean) / std"}
    if standardize_target:
        y = y.astype(np.float32)
        t_mean, t_std = row_stats(y, tr)
        y = ((torch.from_numpy(y) - t_mean) / t_std).numpy()
        prep["target_scaling"] = {"mean": t_mean.tolist(), "std": t_std.tolist(), "formula": "(y - mean) / std"}
    parts = [np.asarray(i) for i in (tr, va, te)]
    if isinstance(x, ArrayFile):  # the targets at their own width, the rows as int32: nothing a row wider
        meta["streamed"] = True
        splits = [StreamSplit(x, y[i], i, mean=mean, std=std, workers=workers) for i in parts]
    else:
        inputs, y = as_inputs(x, mean, std), torch.from_numpy(targets(y))
        splits = [TensorSplit(inputs[torch.from_numpy(i)], y[torch.from_numpy(i)]) for i in parts]
    info = DataInfo(kind=kind, task=task, input_shape=tuple(x.shape[1:]), output_dim=output_dim, meta=meta)
    return Splits(*splits, info=info)
