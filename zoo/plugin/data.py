"""What dataset plugins share: in-memory splits, the seeded split, standardisation, and the checks
and records of a dataset's files.

Data that fits in memory is moved to the device once (:class:`TensorSplit`); an epoch is a
``randperm`` and index slicing, never a per-sample Python loop (no ``DataLoader`` collate on the
hot path). Data larger than its memory budget is read from disk while training
(:mod:`zoo.plugin.arrays`, :mod:`zoo.plugin.stream`). A reader checks ``data.path`` with
:func:`data_path` (one line naming it when it cannot be used) and records what it read with
:func:`source_of` (path, size, content digest) in ``DataInfo.meta["source"]``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def num_batches(n: int, batch_size: int | None) -> int:
    """Batches an epoch over ``n`` items takes (``batch_size=None``: one batch of everything)."""
    return 1 if batch_size is None else max(1, math.ceil(n / batch_size))


class TensorSplit:
    """A split made of an input tensor and a target tensor with the same first dimension.

    Args:
        x: inputs, shape ``(N, *input_shape)``.
        y: targets, shape ``(N, ...)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} != {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"TensorSplit(x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, device={self.x.device})"

    def to(self, device) -> "TensorSplit":
        device = torch.device(device)
        if device.type == "cuda" and self.x.device.type == "cpu":
            return TensorSplit(self.x.pin_memory().to(device, non_blocking=True),
                               self.y.pin_memory().to(device, non_blocking=True))
        return TensorSplit(self.x.to(device), self.y.to(device))

    def num_batches(self, batch_size: int | None) -> int:
        return num_batches(len(self), batch_size)

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None, start: int = 0) -> Iterator[tuple]:
        """Batches in order, or in the order of one ``randperm`` drawn from ``generator``; from the ``start``-th."""
        n = len(self)
        if batch_size is None or batch_size >= n:
            if start:
                return
            if shuffle:
                idx = torch.randperm(n, generator=generator).to(self.x.device)
                yield self.x[idx], self.y[idx]
            else:
                yield self.x, self.y
            return
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.x.device)
            for i in range(start * batch_size, n, batch_size):
                idx = order[i:i + batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for i in range(start * batch_size, n, batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]

    def example(self, n: int = 2) -> torch.Tensor:
        return self.x[:n]


def index_dtype(n: int) -> np.dtype:
    """The smallest signed integer type that indexes ``n`` rows: int32, or int64 past 2**31 rows."""
    return np.dtype(np.int32 if n <= np.iinfo(np.int32).max else np.int64)


def split_indices(n: int, seed: int, val: float = 0.15, test: float = 0.15, stratify=None):
    """Fixed train/val/test index arrays from the seed (stratified by ``stratify`` when given).

    The indices are scikit-learn's (``train_test_split`` with ``random_state=seed``: the test rows
    first, then the validation rows from the rest), drawn the same way in numpy at 4 bytes a row:
    :func:`index_dtype` arrays shuffled in place, no copy of the labels wider than they are and no
    Python object per row, so a split of millions of rows streamed from disk costs its index
    arrays and little more (tests/test_data_stream.py compares them with scikit-learn's).
    """
    labels = None if stratify is None else np.asarray(stratify)
    if labels is not None and labels.ndim == 2:  # multi-label rows: one class per distinct row (as scikit-learn)
        labels = np.array([" ".join(row.astype("str")) for row in labels])
    rest, test_idx = _split(np.arange(n, dtype=index_dtype(n)), test, seed, labels)
    train_idx, val_idx = _split(rest, val / (1 - test), seed, None if labels is None else labels[rest])
    return train_idx, val_idx, test_idx


def _split(idx: np.ndarray, fraction: float, seed: int, labels) -> tuple[np.ndarray, np.ndarray]:
    """``idx`` cut into (the rest, ``fraction`` of it) as scikit-learn's ``ShuffleSplit`` or
    ``StratifiedShuffleSplit`` (``labels``) with ``random_state=seed`` cuts it: the same draws of a
    fresh ``RandomState(seed)`` (a shuffle's draws depend on the length only, not on the dtype)."""
    if not 0 < fraction < 1:
        raise ValueError(f"a split fraction of {fraction} is invalid: expected a number between 0 and 1")
    n = len(idx)
    n_test = math.ceil(fraction * n)
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    if labels is None:
        shuffled = idx.copy()
        rng.shuffle(shuffled)
        return shuffled[n_test:], shuffled[:n_test].copy()
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2 or min(n_train, n_test) < len(classes):
        raise ValueError(f"a stratified split of {n} rows into {n_train} and {n_test} needs at least 2 rows of each "
                         f"class and at least {len(classes)} (the classes) on each side")
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train, test = np.empty(n_train, idx.dtype), np.empty(n_test, idx.dtype)
    a = b = 0
    for c, k, t in zip(classes, n_i.tolist(), t_i.tolist()):
        members = idx[labels == c]  # this class's rows in order (scikit-learn's stable argsort)
        rng.shuffle(members)  # the draws of rng.permutation(len(members)), applied to them
        train[a:a + k], test[b:b + t] = members[:k], members[k:k + t]
        a, b = a + k, b + t
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """How many of ``n_draws`` each class gets: scikit-learn's ``_approximate_mode`` (the floor of
    each class's share, then one more to the largest remainders, ties broken by ``rng``)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _mean_std(train: torch.Tensor, dim) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(dim, keepdim=True), train.std(dim, keepdim=True)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant feature stays as it is
    return mean, std


def standardize(train: torch.Tensor, *others: torch.Tensor, dim=0) -> list[torch.Tensor]:
    """Scale every tensor by the training split's mean and standard deviation (over ``dim``)."""
    mean, std = _mean_std(train, dim)
    return [(t - mean) / std for t in (train, *others)]


def batches_from(split, batch_size: int | None, generator, start: int) -> Iterator[tuple]:
    """The shuffled training batches of ``split`` from the ``start``-th on (a resumed epoch's rest).

    The order is drawn from ``generator`` as for a whole epoch. A split whose ``batches`` takes
    ``start`` (:class:`TensorSplit`, :class:`zoo.StreamSplit`) skips the batches before it
    without reading them; any other split's are drawn and dropped.
    """
    if start and "start" in inspect.signature(split.batches).parameters:
        return split.batches(batch_size, shuffle=True, generator=generator, start=start)
    return itertools.islice(split.batches(batch_size, shuffle=True, generator=generator), start, None)


# ------------------------------------------------------------------------------ the user's files

def data_path(path, expect: str = "file", what: str = "a file", key: str = "data.path") -> Path:
    """``path`` as a :class:`~pathlib.Path` that exists, is a file (``expect="file"``), a folder
    (``"folder"``) or either (``"any"``), and is not empty; else a one-line ``ValueError``
    naming ``key``, the value and ``what`` it should be.
    """
    if path is None or path == "":
        raise ValueError(f"{key} is not set: give {key}=PATH, {what}")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{key}={path!r} is not a path: give {what}")
    p = Path(path).expanduser().resolve()
    label = f"{key}={str(p)!r}"
    if not p.exists():
        raise ValueError(f"{label} does not exist: point {key} at {what}")
    if expect == "file" and not p.is_file():
        raise ValueError(f"{label} is not a file (it is a folder): point {key} at {what}")
    if expect == "folder" and not p.is_dir():
        raise ValueError(f"{label} is not a folder (it is a file): point {key} at {what}")
    if p.is_file() and p.stat().st_size == 0:
        raise ValueError(f"{label} is empty: point {key} at {what}")
    if p.is_dir() and not any(f for f in p.iterdir() if not f.name.startswith(".")):
        raise ValueError(f"{label} is an empty folder: point {key} at {what}")
    return p


CHUNK_BYTES = 1 << 20  # read 1 MiB at a time: a digest never holds a whole file in memory


def source_of(path) -> dict:
    """What a run read: ``{"path": absolute path, "size": bytes, "digest": sha256 hex}``.

    A folder's digest covers every file under it (hidden ones aside): each relative path and
    its content, in sorted order; its size is their total. The content is read in chunks.
    """
    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and
                                           not any(part.startswith(".") for part in f.relative_to(p).parts))
    digest, size = hashlib.sha256(), 0
    for f in files:
        if f != p:
            digest.update(f.relative_to(p).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                size += len(chunk)
    return {"path": str(p), "size": size, "digest": digest.hexdigest()}


def scaling(train: torch.Tensor, dim=0) -> dict:
    """What :func:`standardize` does to ``train`` (same ``dim``), as the record a trained model carries.

    ``{"mean": ..., "std": ...}``: nested lists shaped like one example, with size 1 along the
    dimensions averaged over, so they broadcast against a batch ``(B, *input_shape)``. A dataset
    puts it in ``DataInfo.meta["preprocessing"]["input"]`` (or ``["target"]`` for a regression
    target); see docs/plugin-contract.md.
    """
    mean, std = _mean_std(train, dim)
    return {"mean": mean[0].tolist(), "std": std[0].tolist()}
