"""Metrics the built-in tasks need beyond torchmetrics' own (imported by ``zoo_builtins.tasks`` when
a run asks for them, so that discovering the plugins does not load torchmetrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchmetrics

import zoo


class Perplexity(torchmetrics.Metric):
    """exp of the mean cross-entropy per token."""

    def __init__(self):
        super().__init__()
        self.add_state("nll", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds, target):
        keep = target != zoo.IGNORE_INDEX
        self.nll += F.cross_entropy(preds[keep].float(), target[keep], reduction="sum").double()
        self.count += keep.sum()

    def compute(self):
        return torch.exp(self.nll / self.count.clamp_min(1))
