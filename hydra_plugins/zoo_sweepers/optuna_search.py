"""The Optuna mode of Zoo's sweeper (``search: optuna``): a resumable search, one child run per trial.

Why Zoo's own sweeper rather than ``hydra-optuna-sweeper``: its last release (1.3.0) pins
``optuna<3``, and Optuna 2.10's SQLite storage fails against SQLAlchemy 2 (an ``AssertionError``
in ``get_current_version``), so a study could not be kept on disk beside the MLflow store. This
sweeper is small, uses the installed Optuna (5.x) and keeps the study in ``optuna.db`` beside
``mlflow.db``; the search space uses the same syntax as that plugin (``choice``, ``range``,
``interval``, ``tag(log, ...)``).

Run the same command again and the study continues: trials already finished are not re-run, a
trial that was interrupted (Ctrl-C, or a process that died) is run again with its parameters
first, and the new trials are nested under the same parent run. ``n_trials`` is the study's
total, so ``hydra.sweeper.optuna.n_trials=40`` on a finished 20-trial study adds 20.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from zoo.config import override_value
from zoo.errors import ZooError, fail
from zoo.experiments.overrides import job_label
from zoo.experiments.sweep import store_uri
from zoo.tracking import parents, sqlite_path, tags
from zoo.tracking.runs import Runs

from ._common import check_jobs, failure_of
from .search_space import search_space

log = logging.getLogger(__name__)

# what the study and its trials remember (Optuna user attributes)
INTERRUPTED = "zoo.interrupted"  # a trial stopped by Ctrl-C or a dead process: queued again
INVALID = "zoo.invalid"  # a trial whose config did not validate: not counted, not queued again
RUN_ID = "zoo.run_id"  # a trial's child run
PARENT_RUN_ID = "zoo.parent_run_id"  # the study's parent run: a search run again continues under it
SEARCH_SPACE = "zoo.search_space"
METRIC = "zoo.metric"


def optuna_storage(uri: str, storage: str | None = None) -> str:
    """The Optuna study's storage: ``storage`` if given, else ``optuna.db`` beside the MLflow store
    (``mlruns/optuna.db`` for the default store; in ``./mlruns/`` for a remote MLflow server)."""
    if storage:
        return storage
    db = sqlite_path(uri)
    folder = db.parent if db is not None else Path.cwd() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def study_name(name: str | None, cfg: DictConfig) -> str:
    """The study: ``hydra.sweeper.optuna.study_name``, else the preset's name, else the experiment's."""
    if name:
        return str(name)
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.hparams_search")
    return str(choice or OmegaConf.select(cfg, "tracking.experiment") or "zoo")


def direction_of(direction: str) -> str:
    if direction not in ("maximize", "minimize"):
        raise ZooError(f"hydra.sweeper.optuna.direction={direction!r} is invalid: expected maximize or minimize")
    return direction


def run_search(sweeper, arguments: List[str]) -> Any:
    """Run (or continue) the study of ``sweeper.optuna`` over ``sweeper.params`` and the command line."""
    return OptunaSearch(sweeper).sweep(arguments)


class OptunaSearch:
    def __init__(self, sweeper) -> None:
        opt = sweeper.optuna
        self.study_name, self.storage, self.metric = opt.get("study_name"), opt.get("storage"), opt.get("metric")
        self.direction, self.n_trials = opt.get("direction", "maximize"), opt.get("n_trials", 20)
        self.n_jobs, self.sampler_name, self.seed = opt.get("n_jobs", 1), opt.get("sampler", "tpe"), opt.get("seed", 0)
        self.params = sweeper.params
        self.hydra_context, self.config, self.launcher = sweeper.hydra_context, sweeper.config, sweeper.launcher
        self.callback = sweeper.callback

    # ------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ZooError(f"hydra.sweeper.optuna.n_trials={self.n_trials!r} is invalid: expected an integer >= 1")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ZooError(f"hydra.sweeper.optuna.n_jobs={self.n_jobs!r} is invalid: expected an integer >= 1")
        if self.sampler_name not in ("tpe", "random"):
            raise ZooError(f"hydra.sweeper.optuna.sampler={self.sampler_name!r} is invalid: expected tpe or random")

    def _sampler(self, offset: int = 0):
        import optuna

        seed = None if self.seed is None else self.seed + offset
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def sweep(self, arguments: List[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        callback = self.callback
        try:
            self._check()
            direction = direction_of(str(self.direction))
            dists, fixed, raw = search_space(self.params, arguments)
        except ZooError as exc:
            fail(str(exc))
        keys = list(dists)
        storage = optuna_storage(store_uri(self.config), self.storage)
        name = study_name(self.study_name, self.config)
        study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                    sampler=self._sampler(), load_if_exists=True)
        # a resumed study must not draw the same points again: the seed moves on with the trials
        study.sampler = self._sampler(len(study.get_trials(deepcopy=False)))
        if study.direction.name.lower() != direction:
            fail(f"study '{name}' in {storage} was created to {study.direction.name.lower()}; "
                 f"choose another hydra.sweeper.optuna.study_name to {direction}")
        space = json.dumps({k: repr(d) for k, d in dists.items()}, sort_keys=True)
        known = study.user_attrs.get(SEARCH_SPACE)
        if known is not None and known != space:
            fail(f"study '{name}' in {storage} has another search space; continue it with the same "
                 f"params or start a new study with hydra.sweeper.optuna.study_name=<new name>")
        study.set_user_attr(SEARCH_SPACE, space)
        study.set_user_attr(METRIC, self.metric or "objective")
        self._requeue_stale(study, storage)

        def finished(t) -> bool:
            return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
                t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED) and not t.user_attrs.get(INVALID))

        done = sum(finished(t) for t in study.get_trials(deepcopy=False))
        todo = max(self.n_trials - done, 0)
        print(f"zoo search: study '{name}' ({storage}): {done} trials done, {todo} to run, "
              f"{direction} {self.metric or 'the monitored validation metric'}", flush=True)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if callback:
            callback.jobs = todo
            parent = callback.open(kind="optuna", name=f"search {name}", resume=study.user_attrs.get(PARENT_RUN_ID),
                                   objective=(self.metric, direction))
            study.set_user_attr(PARENT_RUN_ID, parent)
        returns = []
        while todo > 0:
            trials = [study.ask(dists) for _ in range(min(self.n_jobs, todo))]
            jobs = [fixed + [f"{k}={t.params[k] if k in raw else override_value(t.params[k])}" for k in keys]
                    for t in trials]
            try:
                check_jobs(self.hydra_context, self.config, jobs, keys)
            except BaseException:  # a value the job cannot take: the search stops; they do not count as done
                for t in trials:
                    t.set_user_attr(INVALID, True)
                    study.tell(t, state=TrialState.FAIL)
                raise
            try:
                results = self._launch(trials, jobs)
            except BaseException as exc:  # Ctrl-C, a dead worker: the trials run again next time
                for t in trials:
                    t.set_user_attr(INTERRUPTED, True)
                    study.tell(t, state=TrialState.FAIL)
                    study.enqueue_trial(t.params, skip_if_exists=False)
                if isinstance(exc, KeyboardInterrupt) and callback:
                    callback.interrupted = True
                raise
            for t, overrides, ret in zip(trials, jobs, results):
                label = f"trial {t.number}: {job_label(overrides, keys)}"
                error = failure_of(ret)
                value, run_id = (None, None) if error is not None else self._value(ret, callback)
                if run_id:
                    t.set_user_attr(RUN_ID, run_id)
                if error is None and (value is None or not math.isfinite(value)):
                    error = f"no finite value of {self.metric or 'the objective'} (got {value})"
                if error is not None:
                    study.tell(t, state=TrialState.FAIL)
                    if callback:
                        callback.job_failed(label, error)
                    else:
                        log.error("%s failed: %s", label, error)
                else:
                    study.tell(t, value)
            returns.append(results)
            todo -= len(trials)
        self._report(study, callback, storage)
        return returns

    def _launch(self, trials, jobs):
        """Launch a batch; the job numbers are the trial numbers (the sweep folder's subfolders)."""
        numbers = [t.number for t in trials]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return list(self.launcher.launch(jobs, initial_job_idx=numbers[0]))
        return [r for t, job in zip(trials, jobs) for r in self.launcher.launch([job], initial_job_idx=t.number)]

    def _value(self, ret, callback) -> tuple[Optional[float], Optional[str]]:
        """The trial's value: the named metric of its child run, else the job's returned objective."""
        run = None
        if callback and callback.parent_run_id:
            out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir")
            run = Runs(callback.uri).child_by_output_dir(callback.parent_run_id, str(out), [callback.experiment_id])
        run_id = run.info.run_id if run else None
        if self.metric and self.metric != "objective":
            if run is None:
                return None, None
            if self.metric not in run.data.metrics:
                known = ", ".join(sorted(k for k in run.data.metrics if not k.startswith(("system/", "grad_norm/", "weight_norm/"))))
                fail(f"hydra.sweeper.optuna.metric={self.metric!r} is not a metric of the trial's run; it has: {known}")
            return float(run.data.metrics[self.metric]), run_id
        value = ret.return_value  # the job COMPLETED: Hydra's public property returns its value
        return (float(value) if isinstance(value, (int, float)) else None), run_id

    @staticmethod
    def _requeue_stale(study, storage_url: str) -> None:
        """Trials left RUNNING by a process that died: marked failed (interrupted) and queued again.

        Optuna's public API only: a trial object of this process cannot be had for a trial another
        process started, so its user attribute is written through the storage (``optuna.storages``)
        and its state through ``study.tell``.
        """
        import optuna
        from optuna.trial import TrialState

        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not stale:
            return
        storage = optuna.storages.get_storage(storage_url)
        study_id = storage.get_study_id_from_name(study.study_name)
        for t in stale:
            storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                        INTERRUPTED, True)
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
            log.warning("trial %d was left running by a process that stopped: it runs again", t.number)

    def _report(self, study, callback, storage: str) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if callback and callback.parent_run_id:
            values = {tags.OPTUNA_STUDY: study.study_name, tags.OPTUNA_STORAGE: storage,
                      tags.OPTUNA_TRIALS_COMPLETE: len(complete)}
            if complete:
                best = study.best_trial
                values.update({tags.OPTUNA_BEST_TRIAL: best.number,
                               tags.OPTUNA_BEST_PARAMS: " ".join(f"{k}={v}" for k, v in best.params.items())[:5000]})
            parents.tag_run(callback.uri, callback.parent_run_id, values)
        if complete:
            best = study.best_trial
            print(f"zoo search: best trial {best.number} value={best.value:.4f} "
                  f"{' '.join(f'{k}={v}' for k, v in best.params.items())} ({len(complete)} complete)", flush=True)
