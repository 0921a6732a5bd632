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

from omegaconf import OmegaConf

from ._common import check_jobs, failure_of, zoo_callback

log = logging.getLogger(__name__)


INTERRUPTED = "zoo.interrupted"  # a trial stopped by Ctrl-C or a dead process: queued again
INVALID = "zoo.invalid"  # a trial whose config did not validate: not counted, not queued again


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

    # ------------------------------------------------------------------------------------------
    def _check(self) -> None:
        from zoo.errors import ZooError

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

        from zoo.errors import ZooError
        from zoo.sweep import (direction_of, fail, job_label, optuna_storage, search_space, store_uri, study_name,
                               value_string)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        callback = zoo_callback(self.hydra_context)
        try:
            self._check()
            direction = direction_of({"direction": self.direction})
            dists, fixed, raw = search_space(self.params, arguments)
        except ZooError as exc:
            fail(str(exc))
        keys = list(dists)
        uri = store_uri(self.config)
        storage = optuna_storage(uri, self.storage)
        name = study_name({"study_name": self.study_name}, self.config)
        study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                    sampler=self._sampler(), load_if_exists=True)
        # a resumed study must not draw the same points again: the seed moves on with the trials
        study.sampler = self._sampler(len(study.get_trials(deepcopy=False)))
        if study.direction.name.lower() != direction:
            fail(f"study '{name}' in {storage} was created to {study.direction.name.lower()}; "
                 f"choose another hydra.sweeper.optuna.study_name to {direction}")
        space = json.dumps({k: repr(d) for k, d in dists.items()}, sort_keys=True)
        known = study.user_attrs.get("zoo.search_space")
        if known is not None and known != space:
            fail(f"study '{name}' in {storage} has another search space; continue it with the same "
                 f"params or start a new study with hydra.sweeper.optuna.study_name=<new name>")
        study.set_user_attr("zoo.search_space", space)
        study.set_user_attr("zoo.metric", self.metric or "objective")
        if callback and callback.parent_run_id:
            study.set_user_attr("zoo.parent_run_id", callback.parent_run_id)
        self._requeue_stale(study)

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
            callback.announce()
        returns = []
        while todo > 0:
            trials = [study.ask(dists) for _ in range(min(self.n_jobs, todo))]
            jobs = [fixed + [f"{k}={t.params[k] if k in raw else value_string(t.params[k])}" for k in keys]
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
                    t.set_user_attr("zoo.run_id", run_id)
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
            import mlflow

            out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir")
            client = mlflow.MlflowClient(callback.uri)
            runs = client.search_runs([callback.experiment_id], max_results=1,
                                      filter_string=f"tags.mlflow.parentRunId = '{callback.parent_run_id}' "
                                                    f"and tags.`zoo.output_dir` = '{out}'")
            run = runs[0] if runs else None
        run_id = run.info.run_id if run else None
        if self.metric and self.metric != "objective":
            if run is None:
                return None, None
            if self.metric not in run.data.metrics:
                known = ", ".join(sorted(k for k in run.data.metrics if not k.startswith(("system/", "grad_norm/", "weight_norm/"))))
                from zoo.sweep import fail

                fail(f"hydra.sweeper.optuna.metric={self.metric!r} is not a metric of the trial's run; it has: {known}")
            return float(run.data.metrics[self.metric]), run_id
        value = ret.return_value
        return (float(value) if isinstance(value, (int, float)) else None), run_id

    @staticmethod
    def _requeue_stale(study) -> None:
        """Trials left RUNNING by a process that died: marked failed (interrupted) and queued again."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
            log.warning("trial %d was left running by a process that stopped: it runs again", t.number)

    def _report(self, study, callback, storage: str) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if callback and callback.parent_run_id:
            import mlflow

            client = mlflow.MlflowClient(callback.uri)
            tags = {"zoo.optuna_study": study.study_name, "zoo.optuna_storage": storage,
                    "zoo.optuna_trials_complete": len(complete)}
            if complete:
                best = study.best_trial
                tags.update({"zoo.optuna_best_trial": best.number,
                             "zoo.optuna_best_params": " ".join(f"{k}={v}" for k, v in best.params.items())[:5000]})
            for k, v in tags.items():
                client.set_tag(callback.parent_run_id, k, str(v))
        if complete:
            best = study.best_trial
            print(f"zoo search: best trial {best.number} value={best.value:.4f} "
                  f"{' '.join(f'{k}={v}' for k, v in best.params.items())} ({len(complete)} complete)", flush=True)
