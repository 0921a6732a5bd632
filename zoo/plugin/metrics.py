"""Zoo's own metrics, as ``zoo.metrics``: what the built-in tasks report, for any plugin to use.

A task's metric (``Task.metrics(info) -> {name: metric}``) is any object with ``to(device)`` (which
returns the metric), ``reset()``, ``update(preds, target)`` and ``compute()`` (a scalar tensor); a
``torchmetrics.Metric`` is one. These give torchmetrics' numbers without importing torchmetrics
(over a second: its package imports every domain, SciPy's signal module for audio):

- ``Accuracy``: torchmetrics' ``MulticlassAccuracy(average="micro", ignore_index=...)``;
- ``MeanSquaredError``, ``R2Score``: torchmetrics' (R2: uniform average over the outputs);
- ``Perplexity``: torchmetrics' ``text.Perplexity(ignore_index=...)``, logits ``(..., V)``;
- ``AUROC``: torchmetrics' ``BinaryAUROC()`` (exact; scores ranked as they are, without its sigmoid
  for scores outside [0, 1], which only changes ties it creates).

Their states stay on the device: ``update`` adds to them without waiting on the host. ``compute``
leaves them as they are; under ``torch.distributed`` with more than one process it reads them summed
over every process (``AUROC``: every process's scores), so every process must call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.plugin.declarations import IGNORE_INDEX

__all__ = ["AUROC", "Accuracy", "MeanSquaredError", "Metric", "Perplexity", "R2Score"]


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over every process (itself when there is one)."""
    if _world() > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _cat(t: torch.Tensor) -> torch.Tensor:
    """Every process's ``t`` (their lengths may differ) one after the other."""
    world = _world()
    if world == 1:
        return t
    import torch.distributed as dist

    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(t)], device=t.device))
    sizes = [int(s) for s in sizes]
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[:len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def _float(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _same_shape(name: str, preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape:
        raise ValueError(f"{name}: preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same shape")


class Metric:
    """Sums kept on the device: a metric names them in ``sums`` (float64, float32 on MPS) and ``counts``
    (int64), adds to them in ``update``, and turns them into its value in ``value(**states)``."""

    sums: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()

    def __init__(self):
        self.device = torch.device("cpu")
        self.reset()

    def _dtype(self, name: str) -> torch.dtype:
        return torch.long if name in self.counts else _float(self.device)

    def to(self, device) -> "Metric":
        self.device = torch.device(device)
        for name in (*self.sums, *self.counts):
            setattr(self, name, getattr(self, name).to(self.device, self._dtype(name)))
        return self

    def reset(self) -> None:
        for name in (*self.sums, *self.counts):
            setattr(self, name, torch.zeros((), dtype=self._dtype(name), device=self.device))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        return self.value(**{name: _sum(getattr(self, name)) for name in (*self.sums, *self.counts)})

    def value(self, **states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """The share of targets predicted right (micro average), targets equal to ``ignore_index`` not
    counted; ``preds`` are class scores with the classes last ``(..., C)``, or labels shaped like the target.

    Args:
        ignore_index: the target value that marks a target to skip (``zoo.IGNORE_INDEX``).
    """

    counts = ("correct", "total")

    def __init__(self, ignore_index: int | None = IGNORE_INDEX):
        self.ignore_index = ignore_index
        super().__init__()

    @torch.no_grad()
    def update(self, preds, target):
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(-1)
        _same_shape("Accuracy", preds, target)
        keep = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        self.correct += ((preds == target) & keep).sum()
        self.total += keep.sum()

    def value(self, correct, total):
        return correct / total.clamp_min(1)  # 0 when nothing counted, as torchmetrics


class MeanSquaredError(Metric):
    """The mean of ``(preds - target) ** 2`` over every value."""

    sums, counts = ("squared",), ("total",)

    @torch.no_grad()
    def update(self, preds, target):
        _same_shape("MeanSquaredError", preds, target)
        self.squared += (preds.to(self.squared.dtype) - target.to(self.squared.dtype)).pow(2).sum()
        self.total += target.numel()

    def value(self, squared, total):
        return squared / total


class R2Score(Metric):
    """The coefficient of determination, ``1 - RSS / TSS``, of each output (``(N,)``: one; ``(N, K)``: K),
    averaged over the outputs; as torchmetrics, an output whose RSS is about 0 scores 1, one whose TSS
    alone is about 0 scores 0."""

    sums, counts = ("target_sum", "target_squared", "residual"), ("total",)

    @torch.no_grad()
    def update(self, preds, target):
        _same_shape("R2Score", preds, target)
        if preds.ndim > 2:
            raise ValueError(f"R2Score: preds and target must be (N,) or (N, outputs), got {tuple(preds.shape)}")
        preds, target = preds.to(self.target_sum.dtype), target.to(self.target_sum.dtype)
        self.target_sum = self.target_sum + target.sum(0)
        self.target_squared = self.target_squared + (target * target).sum(0)
        self.residual = self.residual + (target - preds).pow(2).sum(0)
        self.total += len(target)

    def value(self, target_sum, target_squared, residual, total):
        if total < 2:
            raise ValueError(f"R2Score needs at least two values, got {int(total)}")
        tss = target_squared - target_sum * target_sum / total
        fits = torch.isclose(residual, torch.zeros_like(residual), atol=1e-4)
        flat = torch.isclose(tss, torch.zeros_like(tss), atol=1e-4)
        scores = torch.where(fits, 1.0, torch.where(flat, 0.0, 1 - residual / torch.where(flat, 1.0, tss)))
        return scores.mean()


class Perplexity(Metric):
    """exp of the mean cross-entropy per token: ``preds`` are logits with the vocabulary last ``(..., V)``,
    ``target`` the tokens; targets equal to ``ignore_index`` do not count.

    Args:
        ignore_index: the target value that marks a token to skip (``zoo.IGNORE_INDEX``).
    """

    sums, counts = ("nll",), ("total",)

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = ignore_index
        super().__init__()

    @torch.no_grad()
    def update(self, preds, target):
        preds, target = preds.reshape(-1, preds.shape[-1]).float(), target.reshape(-1)
        self.nll += F.cross_entropy(preds, target, ignore_index=self.ignore_index, reduction="sum").to(self.nll.dtype)
        self.total += (target != self.ignore_index).sum()

    def value(self, nll, total):
        return torch.exp(nll / total.clamp_min(1))


class AUROC(Metric):
    """The area under the ROC curve of scores ``(N,)`` (higher: more likely positive) against targets
    1 (positive) and 0, exact: every score is kept until ``compute``, and tied scores count half, as
    torchmetrics' ``BinaryAUROC`` and scikit-learn's ``roc_auc_score`` count them. 0 when the targets
    are not both 0 and 1 (as torchmetrics)."""

    def reset(self):
        self.scores, self.targets = [], []

    def to(self, device):
        self.device = torch.device(device)
        self.scores = [s.to(self.device) for s in self.scores]
        self.targets = [t.to(self.device) for t in self.targets]
        return self

    @torch.no_grad()
    def update(self, preds, target):
        _same_shape("AUROC", preds, target)
        self.scores.append(preds.reshape(-1))
        self.targets.append(target.reshape(-1))

    def compute(self):
        dtype = _float(self.device)
        empty = torch.zeros(0, device=self.device)
        scores = _cat(torch.cat(self.scores).to(dtype) if self.scores else empty.to(dtype))
        positive = _cat(torch.cat(self.targets) if self.targets else empty.long()) == 1
        n_pos = positive.sum()
        n_neg = len(positive) - n_pos
        if n_pos == 0 or n_neg == 0:
            return torch.zeros((), dtype=dtype, device=self.device)
        # Mann-Whitney: the ranks of the positives' scores (tied scores share their mean rank)
        _, group, sizes = torch.unique(scores, return_inverse=True, return_counts=True)
        last = sizes.cumsum(0).to(dtype)  # the rank of each distinct score's last value, from 1
        rank = (last - (sizes.to(dtype) - 1) / 2)[group]
        return (rank[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
