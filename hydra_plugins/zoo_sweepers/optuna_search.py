"""The Optuna mode of Zoo's sweeper (``search: optuna``): a resumable search, one child run per trial.

Why Zoo's own sweeper rather than ``hydra-optuna-sweeper``: its last release (1.3.0) pins
``optuna<3``, and Optuna 2.10's SQLite storage fails against SQLAlchemy 2 (an ``AssertionError``
in ``get_current_version``), so a study could not be kept on disk beside the MLflow store. This
sweeper is small, uses the installed Optuna (5.x) and keeps the study in ``optuna.db`` beside
``mlflow.db``; the search space uses the same syntax as that plugin (``choice``, ``range``,
``interval``, ``tag(log, ...)``).

The search is asynchronous (Optuna's ask/tell over one study storage): ``n_jobs`` jobs run at
all times, and as soon as one ends its trial is told and the next one asked for and started
(:mod:`.trials` runs that loop over a pool of :mod:`.pools`). With a pruner, each trial reports its
validation metric after epochs 1-8, then four times per doubling, and stops when pruned (the
job's :mod:`.reporter`, which :mod:`zoo.training.callbacks.pruning` calls).
With ``hydra.sweeper.repeats=K`` a trial is K jobs with seeds ``seed .. seed+K-1`` and its value
is their mean.

Run the same command again and the study continues: trials already finished are not re-run, a
trial that was interrupted (Ctrl-C, or a process that died) is run again with its parameters
first, and the new trials are nested under the same parent run. ``n_trials`` is the study's
total, so ``hydra.sweeper.optuna.n_trials=40`` on a finished 20-trial study adds 20.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, List

from omegaconf import OmegaConf

from zoo.errors import ZooError, fail, one_line
from zoo.experiments.objective import search_direction
from zoo.experiments.overrides import check_repeats
from zoo.experiments.sweep import store_uri
from zoo.tracking import parents, sqlite_path, tags

from ._common import job_config, task_monitor_of
from .search_space import search_space

log = logging.getLogger(__name__)

# what the study and its trials remember (Optuna user attributes)
INTERRUPTED = "zoo.interrupted"  # a trial stopped by Ctrl-C or a dead process: queued again
INVALID = "zoo.invalid"  # a trial whose config did not validate: not counted, not queued again
RUN_ID = "zoo.run_id"  # a trial's child run (the first seed's, with repeats)
RUN_IDS = "zoo.run_ids"  # with repeats: every seed's child run
VALUES = "zoo.values"  # with repeats: every seed's value (the trial's value is their mean)
PARENT_RUN_ID = "zoo.parent_run_id"  # the study's parent run: a search run again continues under it
SEARCH_SPACE = "zoo.search_space"
METRIC = "zoo.metric"

SAMPLERS = ("tpe", "random")


def optuna_storage(uri: str, storage: str | None = None) -> str:
    """The Optuna study's storage: ``storage`` if given, else ``optuna.db`` beside the MLflow store
    (``mlruns/optuna.db`` for the default store; in ``./mlruns/`` for a remote MLflow server)."""
    if storage:
        return storage
    db = sqlite_path(uri)
    folder = db.parent if db is not None else Path.cwd() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def study_name(name: str | None, cfg) -> str:
    """The study: ``hydra.sweeper.optuna.study_name``, else the preset's name, else the experiment's."""
    if name:
        return str(name)
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.hparams_search")
    return str(choice or OmegaConf.select(cfg, "tracking.experiment") or "zoo")


def epoch_metric(metric: str | None, monitor: str) -> tuple[str, bool]:
    """What a trial reports after each epoch for pruning: ``(epoch metric, best so far?)``.

    ``best/val_<m>`` (and no metric: the task's monitored one) reports the best ``val/<m>`` so far,
    ``val/<m>`` the epoch's value, ``test/<m>`` of the monitored measure the best ``val/<m>``.
    """
    name = metric if metric and metric != "objective" else monitor
    if name.startswith("best/val_"):
        return "val/" + name[len("best/val_"):], True
    if name.startswith("val/"):
        return name, False
    measure = monitor[len("best/val_"):]
    if name.rsplit("/", 1)[-1] == measure:
        return f"val/{measure}", True
    raise ZooError(f"hydra.sweeper.optuna.pruner needs a metric measured every epoch (best/val_*, val/*), "
                   f"not hydra.sweeper.optuna.metric={name}")


def run_search(sweeper, arguments: List[str]) -> Any:
    """Run (or continue) the study of ``sweeper.optuna`` over ``sweeper.params`` and the command line."""
    return OptunaSearch(sweeper).sweep(arguments)


class OptunaSearch:
    def __init__(self, sweeper) -> None:
        opt = sweeper.optuna
        self.study_name, self.storage, self.metric = opt.get("study_name"), opt.get("storage"), opt.get("metric")
        self.direction, self.n_trials = opt.get("direction"), opt.get("n_trials", 20)
        self.n_jobs, self.sampler_name, self.seed = opt.get("n_jobs", 1), opt.get("sampler", "tpe"), opt.get("seed", 0)
        self.asynchronous = opt.get("asynchronous", True)
        self.pruner_name, self.pruner_settings = str(opt.get("pruner") or "none"), dict(opt.get("pruner_settings") or {})
        self.max_failure_rate = opt.get("max_failure_rate", 0.5)
        self.repeats = sweeper.repeats
        self.params = sweeper.params
        self.hydra_context, self.config, self.launcher = sweeper.hydra_context, sweeper.config, sweeper.launcher
        self.callback = sweeper.callback

    # ------------------------------------------------------------------------------------------
    def _check(self) -> None:
        from .reporter import make_pruner

        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ZooError(f"hydra.sweeper.optuna.n_trials={self.n_trials!r} is invalid: expected an integer >= 1")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ZooError(f"hydra.sweeper.optuna.n_jobs={self.n_jobs!r} is invalid: expected an integer >= 1")
        if self.sampler_name not in SAMPLERS:
            raise ZooError(f"hydra.sweeper.optuna.sampler={self.sampler_name!r} is invalid: expected tpe or random")
        rate = self.max_failure_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ZooError(f"hydra.sweeper.optuna.max_failure_rate={rate!r} is invalid: expected a number from 0 to 1")
        self.pruner = make_pruner(self.pruner_name, self.pruner_settings)
        if self.pruner is not None and self.repeats > 1:
            raise ZooError(f"hydra.sweeper.optuna.pruner={self.pruner_name} with hydra.sweeper.repeats={self.repeats}: "
                           f"a trial's seeds would report over each other; use one of them")

    def _sampler(self, offset: int = 0):
        import optuna

        seed = None if self.seed is None else self.seed + offset
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _objective(self, dists: dict, fixed: list[str]) -> tuple[str, str]:
        """``(direction, the task's monitored metric)``: the direction follows the metric unless set."""
        from optuna.distributions import CategoricalDistribution

        data = dists.get("data")
        variants = [fixed + [f"data={c}"] for c in data.choices] if isinstance(data, CategoricalDistribution) else [fixed]
        found = {task_monitor_of(job_config(self.hydra_context, self.config, job)) for job in variants}
        if len(found) > 1:
            raise ZooError(f"the searched datasets' tasks monitor different metrics ({', '.join(sorted(m for m, _ in found))}): "
                           f"search one task at a time")
        monitor = found.pop()
        direction = search_direction(self.metric if self.metric != "objective" else None, self.direction, monitor)
        return direction, monitor[0]

    def _open_study(self, name: str, storage: str, direction: str):
        import optuna

        try:
            study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                        sampler=self._sampler(), load_if_exists=True)
        except Exception as exc:
            raise ZooError(f"hydra.sweeper.optuna.storage={storage}: cannot open the study storage: "
                           f"{one_line(exc, 300)}") from None
        # a resumed study must not draw the same points again: the seed moves on with the trials
        study.sampler = self._sampler(len(study.get_trials(deepcopy=False)))
        if study.direction.name.lower() != direction:
            raise ZooError(f"study '{name}' in {storage} was created to {study.direction.name.lower()}; "
                           f"choose another hydra.sweeper.optuna.study_name to {direction}")
        return study

    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        from .trials import TrialLoop, requeue_stale

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        callback = self.callback
        try:
            self._check()
            dists, fixed, raw = search_space(self.params, arguments)
            check_repeats(self.repeats, list(dists))
            direction, monitor = self._objective(dists, fixed)
            report = epoch_metric(self.metric, monitor) if self.pruner is not None else None
            storage = optuna_storage(store_uri(self.config), self.storage)
            name = study_name(self.study_name, self.config)
            study = self._open_study(name, storage, direction)
        except ZooError as exc:
            fail(str(exc))
        space = json.dumps({k: repr(d) for k, d in dists.items()}, sort_keys=True)
        known = study.user_attrs.get(SEARCH_SPACE)
        if known is not None and known != space:
            fail(f"study '{name}' in {storage} has another search space; continue it with the same "
                 f"params or start a new study with hydra.sweeper.optuna.study_name=<new name>")
        study.set_user_attr(SEARCH_SPACE, space)
        study.set_user_attr(METRIC, self.metric or "objective")
        requeue_stale(study, storage)

        done = sum(_counts(t) for t in study.get_trials(deepcopy=False))
        todo = max(self.n_trials - done, 0)
        print(f"zoo search: study '{name}' ({storage}): {done} trials done, {todo} to run, "
              f"{direction} {self.metric or 'the monitored validation metric'}"
              f"{f', {self.n_jobs} at a time' if self.n_jobs > 1 else ''}"
              f"{f', pruner {self.pruner_name}' if self.pruner is not None else ''}"
              f"{f', {self.repeats} seeds each' if self.repeats > 1 else ''}", flush=True)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if callback:
            callback.jobs = todo * self.repeats
            callback.repeats = self.repeats
            parent = callback.open(kind="optuna", name=f"search {name}", resume=study.user_attrs.get(PARENT_RUN_ID),
                                   objective=(self.metric, direction))
            study.set_user_attr(PARENT_RUN_ID, parent)
        trial_env = None
        if report is not None:
            trial_env = {"storage": storage, "study": name, "pruner": self.pruner_name,
                         "pruner_settings": self.pruner_settings, "key": report[0], "best": report[1],
                         "direction": direction}
        loop = TrialLoop(self, study, dists, fixed, raw, trial_env)
        returns = loop.run(todo)
        self._report(study, callback, storage, loop)
        return returns

    def _report(self, study, callback, storage: str, loop) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL and _counts(t) for t in trials)
        if callback and callback.parent_run_id:
            values = {tags.OPTUNA_STUDY: study.study_name, tags.OPTUNA_STORAGE: storage,
                      tags.OPTUNA_TRIALS_COMPLETE: len(complete), tags.OPTUNA_TRIALS_PRUNED: pruned,
                      tags.OPTUNA_TRIALS_FAILED: failed}
            if complete:
                best = study.best_trial
                values.update({tags.OPTUNA_BEST_TRIAL: best.number,
                               tags.OPTUNA_BEST_PARAMS: " ".join(f"{k}={v}" for k, v in best.params.items())[:5000]})
            parents.tag_run(callback.uri, callback.parent_run_id, values)
        counts = f"{len(complete)} complete, {pruned} pruned, {failed} failed"
        if complete:
            best = study.best_trial
            print(f"zoo search: best trial {best.number} value={best.value:.4f} "
                  f"{' '.join(f'{k}={v}' for k, v in best.params.items())} ({counts})", flush=True)
        else:
            print(f"zoo search: no trial completed ({counts})", flush=True)
        if loop.stopped:
            print(f"zoo search: stopped early: {loop.stopped}", flush=True)


def _counts(t) -> bool:
    """Whether a trial of the study counts towards ``n_trials``: it ran to an end (complete, pruned, or
    failed on its own; not one interrupted, nor one whose config was refused)."""
    from optuna.trial import TrialState

    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED) and not t.user_attrs.get(INVALID))
