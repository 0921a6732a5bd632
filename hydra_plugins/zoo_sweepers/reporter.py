"""A search trial's reporter: what the training side calls after each epoch, with Optuna behind it.

In a search with a pruner, :class:`.trials.TrialLoop` gives each trial's job the environment
variable ``ZOO_OPTUNA_TRIAL`` (through Hydra's ``hydra.job.env_set``): a JSON object naming the
study's storage and name, the trial's number, the pruner and what to report. In the job's process
:func:`from_env` turns it into a :class:`Reporter`. The training side
(:class:`zoo.training.callbacks.TrialReport`) knows nothing of Optuna: after each epoch it reads the
reporter's ``key`` from the epoch's metrics and calls ``reporter(epoch, value)``, which reports to
the trial (``Trial.report``) and answers whether to stop (``Trial.should_prune``).

Not after every epoch: after the epochs of :func:`reported`, every one of the first 8, then four per
doubling (10, 12, 14, 16, 20, 24, 28, 32, 40, ...). Each report is a write and a read of the study
storage, 30-50 ms against SQLite (measured; benchmarks/README.md, "Searches"), as long as a whole
epoch of a small model: trials that reported every epoch trained at half their speed, and pruning
saved no time. A 300-epoch trial now reports 28 times, and a hopeless trial still stops within a
quarter of its epochs. Every trial reports after the same epochs, so the pruner compares them at
the same step. (The best value so far is still kept every epoch.)

Optuna is imported here, only once a trial reports; never in ``zoo``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any

from zoo.errors import ZooError

log = logging.getLogger(__name__)

ENV = "ZOO_OPTUNA_TRIAL"
PRUNERS = ("median", "hyperband", "successive_halving")
EVERY_EPOCH_UNTIL = 8  # then four reports per doubling of the epochs


def reported(epoch: int) -> bool:
    """Whether a trial reports after ``epoch`` (1-based): epochs 1-8, then every ``2**(k-2)``-th
    epoch between ``2**k`` and ``2**(k+1)`` (a gap of at most a quarter of the epochs trained)."""
    return epoch <= EVERY_EPOCH_UNTIL or epoch % (1 << (epoch.bit_length() - 3)) == 0


def make_pruner(name: str, settings: dict[str, Any] | None = None):
    """Optuna's pruner called ``name`` with ``settings`` as keyword arguments; None for ``none``."""
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


class Reporter:
    """``reporter(epoch, value) -> should_stop`` for one trial of an Optuna study.

    Args:
        spec: what the sweeper put in ``ZOO_OPTUNA_TRIAL``: ``storage``, ``study``, ``trial`` (its
            number), ``pruner`` and ``pruner_settings``, ``key`` (an epoch metric such as
            ``val/accuracy``), ``best`` (report the best value so far rather than the epoch's) and
            ``direction`` (which way is better, for ``best``).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.key: str = spec["key"]  # the epoch metric the training side hands in
        self.trial = None
        self.best: float | None = None

    def _trial(self):
        if self.trial is None:  # the study is opened by the first report: only rank 0 reports
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            spec = self.spec
            storage = optuna.storages.get_storage(spec["storage"])
            study = optuna.load_study(study_name=spec["study"], storage=storage,
                                      pruner=make_pruner(spec["pruner"], spec.get("pruner_settings")))
            trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(spec["study"]),
                                                                       int(spec["trial"]))
            self.trial = optuna.trial.Trial(study, trial_id)
        return self.trial

    def __call__(self, epoch: int, value: float) -> bool:
        """Report ``value`` (or the best so far) as the trial's value at ``epoch`` when :func:`reported`;
        True when the pruner stops it."""
        if self.spec.get("best"):
            up = self.spec["direction"] == "maximize"
            if self.best is None or (value > self.best if up else value < self.best):
                self.best = value
            value = self.best
        if not reported(epoch):
            return False
        trial = self._trial()
        trial.report(float(value), epoch)
        return trial.should_prune()

    def __repr__(self) -> str:
        return f"Reporter(study={self.spec.get('study')!r}, trial={self.spec.get('trial')}, key={self.key!r})"


def from_env() -> Reporter | None:
    """This job's reporter: one when the sweeper made it a trial of a search with a pruner, else None."""
    text = os.environ.get(ENV)
    if not text:
        return None
    try:
        return Reporter(json.loads(text))
    except (ValueError, KeyError, TypeError):
        log.warning("%s is not the sweeper's JSON; this trial reports nothing to its study", ENV)
        return None
