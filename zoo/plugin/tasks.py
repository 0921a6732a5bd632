"""Tasks: the one place that knows how a batch becomes a loss and which metrics to report.

A dataset names its task; for each batch ``(inputs, target)`` the loop asks the task for
``loss(output, target, inputs)`` and feeds ``prepare(output, target, inputs)`` to the task's
metrics. Metrics are torchmetrics objects: they accumulate on the device without a host sync per
step, and reduce across processes under DDP.

=================  ==========================================  ==============================
task               loss                                        metrics (``val/``, ``test/``)
=================  ==========================================  ==============================
classification     cross-entropy over examples or positions    accuracy
regression         mean squared error                          mse, r2
next_token         cross-entropy per position (nats per token)  accuracy, perplexity
reconstruction     MSE of the output against the input         mse
anomaly            MSE against the input (train on normal      auroc of the per-example
                   data only)                                  reconstruction error
=================  ==========================================  ==============================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
import torchmetrics

from zoo.plugin.declarations import DataInfo
from zoo.errors import ZooError

IGNORE_INDEX = -100  # targets with this value do not count (unlabelled nodes, padding)


def _identity(output, target, inputs):
    return output, target


@dataclass(frozen=True)
class Task:
    """How a batch becomes a loss, and what to measure.

    Args:
        name: the task's name, as datasets declare it.
        loss: ``loss(output, target, inputs) -> scalar tensor``.
        metrics: ``metrics(info) -> dict[name, torchmetrics.Metric]``.
        monitor: the validation metric that picks the best checkpoint and drives early stopping.
        mode: ``max`` or ``min`` for ``monitor``.
        prepare: ``prepare(output, target, inputs) -> (preds, target)`` given to every metric.
    """

    name: str
    loss: Callable[..., torch.Tensor]
    metrics: Callable[[DataInfo], dict[str, torchmetrics.Metric]]
    monitor: str
    mode: str
    prepare: Callable[..., tuple] = _identity

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``: which way ``monitor`` improves (Optuna's words)."""
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is a better value of ``monitor`` than ``b``."""
        return a > b if self.mode == "max" else a < b


def _flat_logits(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification over examples (B, C) or over positions (B, T, C) -> (N, C), (N,)."""
    return output.reshape(-1, output.shape[-1]), target.reshape(-1)


def _ce(output, target, inputs=None):
    return F.cross_entropy(*_flat_logits(output, target), ignore_index=IGNORE_INDEX)


def _flat_prepare(output, target, inputs):
    return _flat_logits(output, target)


def _classification_metrics(info: DataInfo):
    return {"accuracy": torchmetrics.classification.MulticlassAccuracy(
        num_classes=info.output_dim, average="micro", ignore_index=IGNORE_INDEX)}


class Perplexity(torchmetrics.Metric):
    """exp of the mean cross-entropy per token."""

    def __init__(self):
        super().__init__()
        self.add_state("nll", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds, target):
        keep = target != IGNORE_INDEX
        self.nll += F.cross_entropy(preds[keep].float(), target[keep], reduction="sum").double()
        self.count += keep.sum()

    def compute(self):
        return torch.exp(self.nll / self.count.clamp_min(1))


def _next_token_metrics(info: DataInfo):
    return {**_classification_metrics(info), "perplexity": Perplexity()}


def _mse(output, target, inputs=None):
    return F.mse_loss(output.reshape(target.shape), target)


def _flat_regression(output, target, inputs):
    return output.reshape(-1), target.reshape(-1)


def _regression_metrics(info: DataInfo):
    return {"mse": torchmetrics.MeanSquaredError(), "r2": torchmetrics.R2Score()}


def _reconstruction_loss(output, target, inputs):
    return F.mse_loss(output.reshape(inputs.shape), inputs)


def _reconstruction_prepare(output, target, inputs):
    return output.reshape(-1), inputs.reshape(-1)


def _anomaly_prepare(output, target, inputs):
    """Score each example by its reconstruction error; the target says whether it is an anomaly."""
    err = (output.reshape(inputs.shape) - inputs).pow(2).flatten(1).mean(1)
    return err, target.reshape(-1).long()


TASKS: dict[str, Task] = {
    "classification": Task("classification", _ce, _classification_metrics, "accuracy", "max", _flat_prepare),
    "regression": Task("regression", _mse, _regression_metrics, "mse", "min", _flat_regression),
    "next_token": Task("next_token", _ce, _next_token_metrics, "perplexity", "min", _flat_prepare),
    "reconstruction": Task("reconstruction", _reconstruction_loss,
                           lambda info: {"mse": torchmetrics.MeanSquaredError()}, "mse", "min", _reconstruction_prepare),
    "anomaly": Task("anomaly", _reconstruction_loss,
                    lambda info: {"auroc": torchmetrics.classification.BinaryAUROC()}, "auroc", "max", _anomaly_prepare),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ZooError(f"unknown task '{name}' declared by the dataset; known tasks: {', '.join(TASKS)}") from None
