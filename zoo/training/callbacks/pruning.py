"""A search trial's side of pruning: report the validation metric each epoch, stop when Optuna says so.

Active only in a job of an Optuna search with a pruner (``hydra.sweeper.optuna.pruner``): the
sweeper gives each trial's job the environment variable ``ZOO_OPTUNA_TRIAL`` (through Hydra's
``hydra.job.env_set``), a JSON object naming the study's storage and name, the trial's number, the
pruner and what to report. After each epoch the callback reports the value to the trial in the
study's storage (``Trial.report``) and asks the pruner (``Trial.should_prune``); a pruned trial
stops training at once, as early stopping does: ``last.pt`` is written, the test pass runs on the
best epoch, and the run ends FINISHED with the tags ``zoo.pruned=true`` and ``zoo.pruned_epoch``
(the sweeper then tells Optuna the trial was PRUNED). Under DDP rank 0 asks and every rank stops.

The one module of ``zoo`` besides the sweeper that imports Optuna, and only when a trial runs.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from zoo.errors import ZooError
from zoo.tracking import tags
from zoo.training.loop import Callback, Loop

log = logging.getLogger(__name__)

ENV = "ZOO_OPTUNA_TRIAL"
PRUNERS = ("median", "hyperband", "successive_halving")


def make_pruner(name: str, settings: dict[str, Any] | None = None):
    """Optuna's pruner called ``name`` with ``settings`` as keyword arguments; None for ``none``."""
    import inspect

    import optuna

    if name == "none":
        return None
    classes = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "successive_halving": optuna.pruners.SuccessiveHalvingPruner}
    if name not in classes:
        raise ZooError(f"hydra.sweeper.optuna.pruner={name!r} is invalid: expected none, {', '.join(PRUNERS)}")
    cls, settings = classes[name], dict(settings or {})
    known = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise ZooError(f"hydra.sweeper.optuna.pruner_settings.{unknown[0]} is not a setting of the {name} pruner; "
                       f"its settings: {', '.join(known)}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"hydra.sweeper.optuna.pruner_settings={settings}: {exc}") from None


class TrialReport(Callback):
    """Reports a search trial's validation metric to Optuna after each epoch and stops a pruned trial.

    Args:
        spec: what the sweeper put in ``ZOO_OPTUNA_TRIAL``: ``storage``, ``study``, ``trial`` (its
            number), ``pruner`` and ``pruner_settings``, ``key`` (an epoch metric such as
            ``val/accuracy``), ``best`` (report the best value so far rather than the epoch's) and
            ``direction`` (which way is better, for ``best``).
        tracker: the run's tracker (a ``NullTracker`` on ranks other than 0).
    """

    def __init__(self, spec: dict[str, Any], tracker) -> None:
        self.spec, self.tracker = spec, tracker
        self.trial = None
        self.best: float | None = None
        self.pruned_epoch: int | None = None

    @classmethod
    def from_env(cls, tracker) -> "TrialReport | None":
        text = os.environ.get(ENV)
        if not text:
            return None
        try:
            return cls(json.loads(text), tracker)
        except ValueError:
            log.warning("%s is not JSON; this trial reports nothing to its study", ENV)
            return None

    def on_fit_start(self, loop: Loop) -> None:
        if not loop.dist.main:
            return
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = self.spec
        storage = optuna.storages.get_storage(spec["storage"])
        study = optuna.load_study(study_name=spec["study"], storage=storage,
                                  pruner=make_pruner(spec["pruner"], spec.get("pruner_settings")))
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(spec["study"]),
                                                                   int(spec["trial"]))
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        prune = False
        if loop.dist.main and self.trial is not None:
            value = row.get(self.spec["key"])
            if value is not None:
                if self.spec.get("best"):
                    up = self.spec["direction"] == "maximize"
                    if self.best is None or (value > self.best if up else value < self.best):
                        self.best = value
                    value = self.best
                self.trial.report(float(value), loop.epoch)
                prune = not loop.last_epoch and self.trial.should_prune()
        if loop.dist.world > 1:  # rank 0 decides for every rank
            prune = bool(loop.dist.sum(torch.tensor(float(prune), device=loop.device)) > 0)
        if prune:
            self.pruned_epoch = loop.epoch
            loop.request_stop(f"pruned by the search after epoch {loop.epoch}")
            self.tracker.tags({tags.PRUNED: "true", tags.PRUNED_EPOCH: loop.epoch})
            log.info("trial %s pruned after epoch %d", self.spec.get("trial"), loop.epoch)
