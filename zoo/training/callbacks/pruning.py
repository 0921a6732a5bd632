"""A search trial's side of pruning: hand the validation metric to the search after each epoch, stop when told.

Active only in a job of a search with a pruner (``hydra.sweeper.optuna.pruner``): the sweep provides
the reporter (:func:`hydra_plugins.zoo_sweepers.reporter.from_env`, None in any other run). The
training side knows one thing of it: after each epoch it reads ``reporter.key`` (an epoch metric
such as ``val/accuracy``) from the epoch's metrics and calls ``reporter(epoch, value)``, which
answers whether to stop. What a report means (Optuna's trial, its pruner, the best value so far) is
the sweep's; it writes to the study after a few epochs only (``reporter.reported``). A stopped
trial stops at once, as early stopping does: ``last.pt`` is written, the test pass runs on the best
epoch, the run logs its best checkpoint only (no plots, no model), and it ends FINISHED with the
tags ``zoo.pruned=true`` and ``zoo.pruned_epoch`` (the sweeper then tells Optuna the trial was
PRUNED). Under DDP rank 0 asks and every rank stops.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

import torch

from zoo.tracking import tags
from zoo.training.loop import Callback, Loop

log = logging.getLogger(__name__)


class TrialReport(Callback):
    """Hands a search trial's validation metric to the sweep's reporter after each epoch; stops a pruned trial.

    Args:
        report: ``report(epoch, value) -> should_stop``, with a ``key`` attribute naming the epoch
            metric it wants (the sweep's reporter).
        tracker: the run's tracker (a ``NullTracker`` on ranks other than 0).
    """

    def __init__(self, report: Callable[[int, float], bool], tracker) -> None:
        self.report, self.tracker = report, tracker
        self.pruned_epoch: int | None = None

    @classmethod
    def from_sweep(cls, tracker) -> Optional["TrialReport"]:
        """The callback of a search trial with a pruner; None in any other run."""
        from hydra_plugins.zoo_sweepers.reporter import from_env

        report = from_env()
        return cls(report, tracker) if report is not None else None

    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        stop, t0 = False, time.perf_counter()
        if loop.dist.main:
            value = row.get(self.report.key)
            if value is not None:
                stop = self.report(loop.epoch, float(value)) and not loop.last_epoch
        if loop.dist.world > 1:  # rank 0 decides for every rank
            stop = bool(loop.dist.sum(torch.tensor(float(stop), device=loop.device)) > 0)
        loop.perf["report_s"] += time.perf_counter() - t0  # perf/report_s: seconds spent reporting
        if stop:
            self.pruned_epoch = loop.epoch
            loop.request_stop(f"pruned by the search after epoch {loop.epoch}")
            self.tracker.tags({tags.PRUNED: "true", tags.PRUNED_EPOCH: loop.epoch})
            log.info("trial pruned after epoch %d (%r)", loop.epoch, self.report)
