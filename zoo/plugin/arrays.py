"""Arrays a dataset reads from disk: whether data stays in memory, and rows on disk.

:func:`keep_in_memory` decides once whether a dataset lives in memory (``data.in_memory`` is
``auto``, ``true`` or ``false``; ``auto`` compares the decoded size with ``data.memory_budget``).
On disk, the inputs are the rows of an :class:`ArrayFile`: a ``.npy`` file read where it is, or
rows a reader decoded a chunk at a time into a temporary file (:class:`RowWriter`). Its
:meth:`ArrayFile.rows` reads any rows with ``os.preadv``, never mapping the file, so the file's
pages are the kernel's page cache (reclaimable), never the reading process's memory;
:func:`row_stats` gives the training rows' statistics a chunk at a time. The streamed split that
trains on them is :mod:`zoo.plugin.stream`.
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

log = logging.getLogger("zoo.data")

READ_ROWS = 1024  # ArrayFile.rows reads at most this many rows a call (os.preadv takes at most IOV_MAX=1024 buffers)
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
        """The rows at ``index`` (any order), read in file order with ``os.preadv``, each straight into its
        place in the result (rows next to each other in the file in one call).

        Nothing is memory-mapped: the file's pages stay in the kernel's page cache (which it
        reclaims when memory is short) and never count in the process's resident memory.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(index), *self.row_shape), dtype=self.dtype)
        if not len(index):
            return out
        if index.min() < 0 or index.max() >= len(self):
            raise IndexError(f"{self.path}: rows {index.min()}..{index.max()} asked, the file has {len(self)}")
        in_order = bool(np.all(index[1:] > index[:-1]))  # an unshuffled pass: each run is one read
        order = np.arange(len(index)) if in_order else np.argsort(index, kind="stable")
        first = index[order]
        n, size = len(index), self.row_bytes
        cuts = (np.flatnonzero((np.diff(first) != 1) | (np.arange(1, n) % READ_ROWS == 0)) + 1).tolist()
        starts, ends = [0, *cuts], [*cuts, n]  # runs of rows next to each other in the file
        at = (self.offset + first[starts] * size).tolist()
        view = memoryview(out.reshape(-1).view(np.uint8))
        places = None if in_order else [view[i * size:(i + 1) * size] for i in order.tolist()]
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for start, end, offset in zip(starts, ends, at):
                buffers = [view[start * size:end * size]] if in_order else places[start:end]
                if os.preadv(fd, buffers, offset) != (end - start) * size:
                    raise ValueError(f"{self.path} ended early: row {(offset - self.offset) // size} and on are "
                                     f"missing (the file changed after it was opened?)")
        finally:
            os.close(fd)
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
    chosen[np.asarray(rows)] = True  # the row numbers as they come (int32): no wider copy
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
