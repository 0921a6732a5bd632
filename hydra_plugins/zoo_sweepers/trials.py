"""The search's loop: ask a trial, start its jobs, tell its result as soon as they end; ``n_jobs`` running.

A trial is one job, or ``repeats`` jobs (seeds ``seed .. seed+repeats-1``, job numbers
``trial * repeats + i``) whose mean value is told. A trial's value is the named metric of its
child run (or the job's returned objective); a pruned run (tag ``zoo.pruned``) is told PRUNED; a
failed job, or a run without a finite value, fails its trial. Failures are counted: once more than
``max_failure_rate`` of the trials finished in this command have failed (three at least), no new
trial starts, the running ones finish, and the parent run ends FAILED saying why.

Ctrl-C, or any error of the search itself, marks the trials still running as interrupted and
queues their parameters again: the next run of the same command runs them first.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Optional

from omegaconf import OmegaConf

from zoo.config import override_value
from zoo.experiments.overrides import job_label
from zoo.tracking.runs import Runs

from ._common import check_jobs, failure_of
from .optuna_search import INTERRUPTED, INVALID, RUN_ID, RUN_IDS, VALUES
from .pools import make_pool
from .reporter import ENV  # the job's side reads it: .reporter.from_env

log = logging.getLogger(__name__)

MIN_FAILURES = 3  # the failure rate stops a search only once this many trials have failed


class Pending:
    """A trial whose jobs are running: one per seed. (Not a dataclass: Hydra's plugin scan imports this
    module without registering it in ``sys.modules``, which ``dataclass`` needs.)"""

    def __init__(self, trial, jobs: dict[int, list[str]]) -> None:
        self.trial, self.jobs = trial, jobs  # job number -> overrides
        self.results: dict[int, tuple[Optional[float], Optional[str], Optional[str], bool]] = {}
        # job number -> (value, run id, error, pruned)


class TrialLoop:
    def __init__(self, search, study, dists: dict, fixed: list[str], raw: set, trial_env: dict | None) -> None:
        self.search, self.study, self.dists, self.fixed, self.raw = search, study, dists, fixed, raw
        self.keys = list(dists)
        self.trial_env = trial_env
        self.callback = search.callback
        self.repeats = search.repeats
        self.base_seed = int(OmegaConf.select(search.config, "seed") or 0)
        self.stopped: str | None = None
        self.finished = self.failed = 0
        self.pending: dict[int, Pending] = {}  # trial number -> its jobs

    # -- the jobs of a trial -----------------------------------------------------------------------
    def jobs_of(self, trial) -> dict[int, list[str]]:
        overrides = self.fixed + [f"{k}={trial.params[k] if k in self.raw else override_value(trial.params[k])}"
                                  for k in self.keys]
        if self.trial_env is not None:
            env = json.dumps({**self.trial_env, "trial": trial.number}, separators=(",", ":"))
            overrides = overrides + [f"++hydra.job.env_set.{ENV}={override_value(env)}"]
        if self.repeats == 1:
            return {trial.number: overrides}
        return {trial.number * self.repeats + i: overrides + [f"seed={self.base_seed + i}"] for i in range(self.repeats)}

    def label(self, pending: Pending, overrides: list[str]) -> str:
        return f"trial {pending.trial.number}: {job_label(overrides, self.keys + (['seed'] if self.repeats > 1 else []))}"

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, todo: int) -> list:
        from optuna.trial import TrialState

        pool = make_pool(self.search.launcher, self.search.n_jobs, bool(self.search.asynchronous))
        returns: list = []
        running = 0  # jobs submitted and not yet back
        try:
            while True:
                while not self.stopped and todo > 0 and running + self.repeats <= max(self.search.n_jobs, self.repeats):
                    trial = self.study.ask(self.dists)
                    pending = Pending(trial, self.jobs_of(trial))
                    try:
                        check_jobs(self.search.hydra_context, self.search.config, list(pending.jobs.values()),
                                   self.keys)
                    except BaseException:  # a value the job cannot take: the search stops; it does not count
                        trial.set_user_attr(INVALID, True)
                        self.study.tell(trial, state=TrialState.FAIL)
                        raise
                    self.pending[trial.number] = pending
                    for number, overrides in pending.jobs.items():
                        pool.submit(number, overrides)
                    running += len(pending.jobs)
                    todo -= 1
                if not running:
                    break
                for number, ret in pool.wait():
                    running -= 1
                    returns.append(ret)
                    self._job_done(number, ret)
        except BaseException as exc:  # Ctrl-C, a dead sweep: the trials still running run again next time
            pool.cancel()
            self._interrupted(exc)
            raise
        finally:
            pool.close()
        return returns

    def _job_done(self, number: int, ret) -> None:
        trial_number = number // self.repeats if self.repeats > 1 else number
        pending = self.pending[trial_number]
        overrides = pending.jobs[number]
        error = failure_of(ret)
        value, run_id, pruned = (None, None, False) if error is not None else self._value(ret)
        if error is None and not pruned and (value is None or not math.isfinite(value)):
            error = f"no finite value of {self.search.metric or 'the objective'} (got {value})"
        pending.results[number] = (value, run_id, None if error is None else str(error) or type(error).__name__, pruned)
        if error is not None:
            label = self.label(pending, overrides)
            if self.callback:
                self.callback.job_failed(label, error)
            else:
                log.error("%s failed: %s", label, error)
        if len(pending.results) == len(pending.jobs):
            del self.pending[trial_number]
            self._tell(pending)

    def _tell(self, pending: Pending) -> None:
        from optuna.trial import TrialState

        trial, results = pending.trial, [pending.results[n] for n in sorted(pending.jobs)]
        run_ids = [r[1] for r in results if r[1]]
        if run_ids:
            trial.set_user_attr(RUN_ID, run_ids[0])
            if self.repeats > 1:
                trial.set_user_attr(RUN_IDS, run_ids)
        self.finished += 1
        if any(r[2] is not None for r in results):
            self.failed += 1
            self.study.tell(trial, state=TrialState.FAIL)
            self._check_failure_rate()
        elif any(r[3] for r in results):
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            values = [r[0] for r in results]
            if self.repeats > 1:
                trial.set_user_attr(VALUES, values)
            self.study.tell(trial, sum(values) / len(values))

    def _check_failure_rate(self) -> None:
        rate = self.search.max_failure_rate
        if self.stopped or self.failed < MIN_FAILURES or self.failed <= rate * self.finished:
            return
        self.stopped = (f"{self.failed} of {self.finished} finished trials failed, more than "
                        f"hydra.sweeper.optuna.max_failure_rate={rate}; no new trial was started")
        print(f"error: the search stops: {self.stopped}", flush=True)
        if self.callback:
            self.callback.stopped = self.stopped

    def _value(self, ret) -> tuple[Optional[float], Optional[str], bool]:
        """The job's value (the named metric of its child run, else its returned objective), its run, pruned?"""
        from zoo.errors import fail
        from zoo.tracking import tags

        callback, metric = self.callback, self.search.metric
        run = None
        if callback and callback.parent_run_id:
            out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir")
            run = Runs(callback.uri).child_by_output_dir(callback.parent_run_id, str(out), [callback.experiment_id])
        run_id = run.info.run_id if run else None
        pruned = bool(run and run.data.tags.get(tags.PRUNED) == "true")
        if metric and metric != "objective":
            if run is None:
                return None, None, False
            if metric not in run.data.metrics:
                known = ", ".join(sorted(k for k in run.data.metrics if not k.startswith(("system/", "grad_norm/", "weight_norm/"))))
                fail(f"hydra.sweeper.optuna.metric={metric!r} is not a metric of the trial's run; it has: {known}")
            return float(run.data.metrics[metric]), run_id, pruned
        value = ret.return_value  # the job COMPLETED: Hydra's public property returns its value
        return (float(value) if isinstance(value, (int, float)) else None), run_id, pruned

    def _interrupted(self, exc: BaseException) -> None:
        from optuna.trial import TrialState

        for pending in self.pending.values():
            pending.trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(pending.trial, state=TrialState.FAIL)
            self.study.enqueue_trial(pending.trial.params, skip_if_exists=False)
        self.pending.clear()
        if isinstance(exc, KeyboardInterrupt) and self.callback:
            self.callback.interrupted_by(exc)


def requeue_stale(study, storage_url: str) -> None:
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
