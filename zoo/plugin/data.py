"""In-memory splits: tensors that live on the training device, batched by index.

Data that fits in memory is moved to the device once; an epoch is a ``randperm`` and index
slicing, never a per-sample Python loop (no ``DataLoader`` collate on the hot path).
"""

from __future__ import annotations

import math
from typing import Iterator

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

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None) -> Iterator[tuple]:
        n = len(self)
        if batch_size is None or batch_size >= n:
            if shuffle:
                idx = torch.randperm(n, generator=generator).to(self.x.device)
                yield self.x[idx], self.y[idx]
            else:
                yield self.x, self.y
            return
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.x.device)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for i in range(0, n, batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]

    def example(self, n: int = 2) -> torch.Tensor:
        return self.x[:n]


def split_indices(n: int, seed: int, val: float = 0.15, test: float = 0.15, stratify=None):
    """Fixed train/val/test index arrays from the seed (stratified by ``stratify`` when given)."""
    from sklearn.model_selection import train_test_split

    idx = torch.arange(n).numpy()
    rest, test_idx = train_test_split(idx, test_size=test, random_state=seed,
                                      stratify=None if stratify is None else stratify)
    strat_rest = None if stratify is None else stratify[rest]
    train_idx, val_idx = train_test_split(rest, test_size=val / (1 - test), random_state=seed, stratify=strat_rest)
    return train_idx, val_idx, test_idx


def standardize(train: torch.Tensor, *others: torch.Tensor, dim=0) -> list[torch.Tensor]:
    """Scale every tensor by the training split's mean and standard deviation."""
    mean, std = train.mean(dim, keepdim=True), train.std(dim, keepdim=True)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant feature stays as it is
    return [(t - mean) / std for t in (train, *others)]
