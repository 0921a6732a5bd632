"""Data larger than memory: splits read from disk while training.

A reader decides once whether a dataset lives in memory or on disk (:func:`keep_in_memory`:
``data.in_memory`` is ``auto``, ``true`` or ``false``; ``auto`` compares the decoded size with
``data.memory_budget``). On disk, the inputs are the rows of an :class:`ArrayFile`: a ``.npy``
file memory-mapped where it is, or rows a reader decoded a chunk at a time into a temporary file
(:class:`RowWriter`); the targets, one value per row, stay in memory.

:class:`StreamSplit` batches them with a ``torch.utils.data.DataLoader``: worker processes read
and standardise each batch through a fresh memory map (so the pages a batch touched leave the
process's resident memory again), pinned memory and a side CUDA stream bring the next batch to
the GPU while the current one trains. Its batches come in the order an in-memory split's would
(one ``randperm`` drawn from the loop's generator), so a streamed run and an in-memory run of the
same seed train on the same batches, and a resumed epoch starts at its batch without reading the
ones before it (the generator's state and the batch number are in the checkpoint).
:func:`array_splits` puts it together: the seeded split, the training rows' statistics, and
in-memory or streamed splits.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zoo.plugin.data import TensorSplit, num_batches, split_indices

log = logging.getLogger("zoo.data")

STATS_CHUNK_BYTES = 8 << 20  # the training statistics read this many (float64) bytes of rows at a time
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b)\s*$", re.IGNORECASE)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


# ------------------------------------------------------------------------------ in memory or not

def budget_bytes(memory_budget="auto", key: str = "data.memory_budget") -> int:
    """A size with a unit (``512MB``, ``2GiB``) in bytes; ``auto``: half the memory available now."""
    if memory_budget == "auto":
        import psutil

        return psutil.virtual_memory().available // 2
    m = SIZE.match(memory_budget) if isinstance(memory_budget, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"{key}={memory_budget!r} is invalid: expected a size with a unit, like 512MB or 2GiB, "
                         f"or auto (half the memory available)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def keep_in_memory(nbytes: int, in_memory="auto", memory_budget="auto") -> bool:
    """Whether data of ``nbytes`` (as the model reads it) goes to the device whole.

    ``in_memory`` (``data.in_memory``) is ``true``, ``false`` or ``auto``: in memory when
    ``nbytes`` fits ``memory_budget`` (``data.memory_budget``). A ``ValueError`` names a bad value.
    """
    budget = budget_bytes(memory_budget)
    if not isinstance(in_memory, bool) and in_memory != "auto":
        raise ValueError(f"data.in_memory={in_memory!r} is invalid: expected auto (by data.memory_budget), true or false")
    keep = in_memory if isinstance(in_memory, bool) else nbytes <= budget
    how = "set by data.in_memory" if isinstance(in_memory, bool) else f"budget {human(budget)}"
    log.info("data: %s as the model reads it (%s): %s", human(nbytes), how,
             "in memory" if keep else "streamed from disk")
    return keep


# ------------------------------------------------------------------------------ arrays on disk

@dataclass(frozen=True)
class ArrayFile:
    """An array of rows stored on disk (C order), read a batch of rows at a time.

    Args:
        path: the file.
        dtype: the numpy dtype of its values (``"<f4"``, ``"|u1"`` ...).
        shape: ``(rows, *row_shape)``.
        offset: the byte where the first row starts (a ``.npy`` file's header comes before).
    """

    path: str
    dtype: str
    shape: tuple[int, ...]
    offset: int = 0

    @classmethod
    def npy(cls, path) -> ArrayFile:
        """A ``.npy`` file, read in place: only its header is read here."""
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        if a.ndim == 0 or not a.flags.c_contiguous or a.dtype.hasobject:
            raise ValueError(f"{path}: a {a.dtype} array of shape {a.shape} cannot be read by rows; "
                             f"save a C-ordered numeric array with at least one dimension")
        return cls(str(path), a.dtype.str, tuple(a.shape), int(a.offset))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def row_bytes(self) -> int:
        return math.prod(self.row_shape) * np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def rows(self, index) -> np.ndarray:
        """The rows at ``index`` (any order), through a memory map that is closed again after."""
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(index, kind="stable")  # read in file order, give back in the order asked
        out = np.empty((len(index), *self.row_shape), dtype=self.dtype)
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
        out[order] = mapped[index[order]]
        del mapped
        return out

    def chunks(self, rows_per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, rows)`` in file order, with plain reads (nothing stays mapped)."""
        count = math.prod(self.row_shape)
        with open(self.path, "rb") as f:
            for start in range(0, len(self), rows_per_chunk):
                k = min(rows_per_chunk, len(self) - start)
                f.seek(self.offset + start * self.row_bytes)
                yield start, np.fromfile(f, dtype=self.dtype, count=k * count).reshape(k, *self.row_shape)


def _remove(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # never from a DataLoader worker (a forked copy of the owner)
        shutil.rmtree(folder, ignore_errors=True)


class RowWriter:
    """Rows decoded a chunk at a time, kept in memory or written to a temporary file.

    Args:
        row_shape: the shape of one row.
        dtype: their numpy dtype.
        on_disk: write them to a temporary file (under ``TMPDIR``), removed when the last
            :class:`ArrayFile` reading it is gone, or at exit.
    """

    def __init__(self, row_shape, dtype, on_disk: bool):
        self.row_shape, self.dtype, self.n = tuple(row_shape), np.dtype(dtype), 0
        self._parts: list[np.ndarray] = []
        self._folder = tempfile.mkdtemp(prefix="zoo-rows-") if on_disk else None
        self._file = open(Path(self._folder) / "rows.bin", "wb") if on_disk else None

    def append(self, rows) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, *self.row_shape)
        if self._file is not None:
            rows.tofile(self._file)
        else:
            self._parts.append(rows)
        self.n += len(rows)

    def finish(self) -> np.ndarray | ArrayFile:
        """The rows: an array in memory, or an :class:`ArrayFile` on disk."""
        if self._file is None:
            return np.concatenate(self._parts) if self._parts else np.empty((0, *self.row_shape), self.dtype)
        self._file.close()
        out = ArrayFile(self._file.name, self.dtype.str, (self.n, *self.row_shape))
        weakref.finalize(out, _remove, self._folder, os.getpid())
        return out


def temporary_npy(source, name: str = "array.npy") -> ArrayFile:
    """A ``.npy`` stream (a member of a ``.npz``, say) copied to a temporary file, read in place there."""
    folder = tempfile.mkdtemp(prefix="zoo-rows-")
    path = Path(folder) / name
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    array = ArrayFile.npy(path)
    weakref.finalize(array, _remove, folder, os.getpid())
    return array


def _chunks(x, rows_per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    if isinstance(x, ArrayFile):
        yield from x.chunks(rows_per_chunk)
    else:
        for start in range(0, len(x), rows_per_chunk):
            yield start, np.asarray(x[start:start + rows_per_chunk])


def row_stats(x, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation (unbiased, as ``torch.std``) of ``x``'s rows ``rows``, per position.

    ``x`` is an array or an :class:`ArrayFile`; it is read in chunks and summed in float64, so an
    in-memory and a streamed split of the same data get the same statistics. A constant
    position gets a standard deviation of 1 (it stays as it is), as :func:`zoo.standardize`.
    """
    chosen = np.zeros(len(x), dtype=bool)
    chosen[np.asarray(rows, dtype=np.int64)] = True
    shape = tuple(x.shape[1:])
    per_chunk = max(1, STATS_CHUNK_BYTES // (8 * max(1, math.prod(shape))))
    n, mean, m2 = 0, np.zeros(shape), np.zeros(shape)
    for start, chunk in _chunks(x, per_chunk):
        part = chunk[chosen[start:start + len(chunk)]].astype(np.float64)
        k = len(part)
        if not k:
            continue
        part_mean = part.mean(0)
        delta, total = part_mean - mean, n + k  # Chan et al.'s merge of two groups' moments
        m2 += ((part - part_mean) ** 2).sum(0) + delta ** 2 * n * k / total
        mean += delta * k / total
        n = total
    std = np.sqrt(m2 / max(n - 1, 1))
    std = np.where(std > 1e-6, std, 1.0)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def as_inputs(rows: np.ndarray, mean=None, std=None) -> torch.Tensor:
    """Rows as the model reads them: float32, and ``(x - mean) / std`` when given (elementwise,
    so a batch comes out as the same rows of the whole array would)."""
    x = torch.from_numpy(np.ascontiguousarray(rows)).to(torch.float32)
    return x if mean is None else (x - mean) / std


# ------------------------------------------------------------------------------ the streamed split

class _Rows(torch.utils.data.Dataset):
    """What a DataLoader worker reads: ``reader[positions]`` is a batch ``(inputs, targets)``."""

    def __init__(self, x: ArrayFile, y: torch.Tensor, rows: np.ndarray, mean, std):
        self.x, self.y, self.rows, self.mean, self.std = x, y, rows, mean, std

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return as_inputs(self.x.rows(self.rows[positions]), self.mean, self.std), self.y[torch.from_numpy(positions)]


class _Order(torch.utils.data.Sampler):
    """The batches of the epoch at hand (arrays of positions), set before each pass."""

    def __init__(self):
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _as_is(batch):
    return batch


class StreamSplit:
    """A split whose inputs stay on disk: rows of an :class:`ArrayFile`, read a batch at a time.

    It implements the Split protocol like :class:`zoo.TensorSplit`, and its batches are the
    ones a TensorSplit of the same rows would give for the same generator.

    Args:
        x: the inputs: every row of the dataset.
        y: this split's targets (in memory), one per entry of ``rows``.
        rows: which rows of ``x`` make this split (default: all of them, in order).
        mean, std: each batch becomes ``(x - mean) / std`` (float32); default: only float32.
        workers: processes reading batches (``0``: the training process reads them itself).
        prefetch: batches each worker reads ahead.
    """

    def __init__(self, x: ArrayFile, y: torch.Tensor, rows=None, *, mean=None, std=None, workers: int = 2,
                 prefetch: int = 4, device="cpu"):
        self.x, self.y = x, torch.as_tensor(y).cpu()
        self.rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) != len(self.y):
            raise ValueError(f"rows and targets differ in length: {len(self.rows)} != {len(self.y)}")
        self.mean, self.std = mean, std
        self.workers, self.prefetch, self.device = int(workers), int(prefetch), torch.device(device)
        self._loader = None

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
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        loader, sampler = self._reader()
        sampler.batches = [order[i:i + size].numpy() for i in range(start * size, n, size)]
        return _on_device(iter(loader) if sampler.batches else iter(()), self.device)

    def example(self, n: int = 2) -> torch.Tensor:
        rows = self.rows[:max(1, n)]
        return as_inputs(self.x.rows(rows), self.mean, self.std).to(self.device)

    def _reader(self):
        if self._loader is None:
            sampler = _Order()
            loader = torch.utils.data.DataLoader(
                _Rows(self.x, self.y, self.rows, self.mean, self.std), batch_size=None, sampler=sampler,
                collate_fn=_as_is, num_workers=self.workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0, prefetch_factor=self.prefetch if self.workers else None,
                generator=torch.Generator().manual_seed(0))  # its workers' seeds: never drawn from the run's RNG
            self._loader = (loader, sampler)
        return self._loader


def _on_device(batches: Iterator[tuple], device: torch.device) -> Iterator[tuple]:
    """The batches on ``device``; on a GPU the next one is copied on a side stream while this one trains."""
    if device.type == "cpu":
        yield from batches
        return
    if device.type != "cuda":
        for batch in batches:
            yield tuple(t.to(device) for t in batch)
        return
    side = torch.cuda.Stream(device)

    def send(batch):
        with torch.cuda.stream(side):
            return tuple(t.to(device, non_blocking=True) for t in batch)

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
                 workers: int = 2, indices=None):
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
        workers: DataLoader worker processes of a streamed split.
        indices: the ``(train, val, test)`` row indices, instead of the seeded split.
    """
    from zoo.plugin.declarations import DataInfo, Splits

    y = torch.as_tensor(np.asarray(y))
    tr, va, te = indices if indices is not None else split_indices(len(y), seed, stratify=y.numpy() if stratify else None)
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
        y = y.to(torch.float32)
        t_mean, t_std = row_stats(y.numpy(), tr)
        y = (y - t_mean) / t_std
        prep["target_scaling"] = {"mean": t_mean.tolist(), "std": t_std.tolist(), "formula": "(y - mean) / std"}
    parts = [np.asarray(i, dtype=np.int64) for i in (tr, va, te)]
    if isinstance(x, ArrayFile):
        meta["streamed"] = True
        splits = [StreamSplit(x, y[torch.from_numpy(i)], i, mean=mean, std=std, workers=workers) for i in parts]
    else:
        inputs = as_inputs(x, mean, std)
        splits = [TensorSplit(inputs[torch.from_numpy(i)], y[torch.from_numpy(i)]) for i in parts]
    info = DataInfo(kind=kind, task=task, input_shape=tuple(x.shape[1:]), output_dim=output_dim, meta=meta)
    return Splits(*splits, info=info)
