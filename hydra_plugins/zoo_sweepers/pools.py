"""Where a search's jobs run: ``submit`` a job, ``wait`` for the next ones to finish.

Hydra's ``Launcher.launch(jobs)`` returns when the whole batch has finished, so a search that
launches ``n_jobs`` trials at a time waits for the slowest of each batch (Hydra issues 3091 and
3201). The asynchronous search (:mod:`.optuna_search`) keeps ``n_jobs`` jobs running instead: it
submits one job at a time to a pool and, as soon as one finishes, tells Optuna and starts the next.

* :class:`ProcessPool`, for ``hydra/launcher=parallel`` (Hydra's joblib launcher): the same loky
  worker processes that joblib uses, one job per ``submit``; a worker that finishes takes the next.
* :class:`SubmititPool`, for ``hydra/launcher=slurm`` (and ``submitit_local``): one Slurm job per
  ``submit`` through the launcher's own submitit executor and the launcher's own job function;
  followed with ``squeue`` (a cluster without an accounting database has no ``sacct``).
* :class:`BatchPool`, for every other launcher (Hydra's default runs jobs one by one in this
  process) and for ``hydra.sweeper.optuna.asynchronous=false``: the jobs submitted since the last
  ``wait`` go to ``launcher.launch`` as one batch, as Hydra's own sweepers do.

Each job runs through Hydra's ``run_job`` exactly as the launcher would run it (its callbacks, its
output folder ``<sweep dir>/<job number>``, its ``hydra.job.env_set``); a job's result is Hydra's
``JobReturn``, or the exception that kept it from running at all.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

Result = Any  # hydra.core.utils.JobReturn, or the BaseException of a job that could not run

SLURM_POLL_S = 2.0  # seconds between two looks at a Slurm job's result file and at squeue
SLURM_RESULT_GRACE_S = 60.0  # a job gone from squeue whose result file has not appeared after this failed
CANCEL_WAIT_S = 60  # how long stopped jobs may take to end their runs (at a step boundary, metrics written)


def make_pool(launcher, n_jobs: int, asynchronous: bool):
    """The pool for ``launcher``: asynchronous where the launcher allows it, else batches."""
    name = type(launcher).__module__ + "." + type(launcher).__name__
    if asynchronous and n_jobs > 1:
        if "hydra_joblib_launcher" in name:
            return ProcessPool(launcher, n_jobs)
        if "hydra_submitit_launcher" in name:
            return SubmititPool(launcher)
        log.warning("%s runs jobs in batches: the search waits for each batch of %d trials to finish", name, n_jobs)
    return BatchPool(launcher)


def launch_batch(launcher, jobs: Sequence[Sequence[str]], start: int, composed: dict | None = None) -> list[Result]:
    """All of ``jobs`` (numbered from ``start``), their results in order once every one has finished:
    the launcher's own ``launch``, except for three launchers.

    * Hydra's basic launcher (the default, every job in this process): :func:`launch_serially`, its
      own steps, with the config of each job that ``composed`` holds (by its overrides, as
      :func:`._common.check_jobs` composed it) instead of composing it a second time;

    * ``hydra/launcher=parallel``: :class:`ProcessPool`, a job to a worker as soon as one is free,
      so that a signal stops the running jobs (their runs end KILLED) and starts no other (joblib's
      ``Parallel`` SIGKILLs its workers on any exception, and has jobs queued ahead);
    * Slurm: :class:`SubmititPool` follows the jobs with ``squeue`` (Hydra's submitit launcher
      polls ``sacct``, which a cluster without an accounting database lacks: it backs off for
      minutes after each failed call).
    """
    name = type(launcher).__module__
    if composed is not None and name == BASIC_LAUNCHER:
        return launch_serially(launcher, jobs, start, composed)
    if "hydra_joblib_launcher" in name:
        pool = ProcessPool(launcher, len(jobs))
    elif "hydra_submitit_launcher" in name and getattr(launcher, "_EXECUTOR", None) == "slurm":
        pool = SubmititPool(launcher)
    else:
        return list(launcher.launch(list(jobs), initial_job_idx=start))
    results: dict[int, Result] = {}
    limit = getattr(pool, "workers", None) or len(jobs)  # jobs running at once
    submitted = 0
    try:
        while len(results) < len(jobs):
            while submitted < len(jobs) and submitted - len(results) < limit:
                pool.submit(start + submitted, jobs[submitted])
                submitted += 1
            results.update(pool.wait())
    except KeyboardInterrupt:
        pool.cancel()
        raise
    finally:
        pool.close()
    return [results[n] for n in range(start, start + len(jobs))]


BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher"  # the module of Hydra's default launcher


def launch_serially(launcher, jobs: Sequence[Sequence[str]], start: int, composed: dict) -> list[Result]:
    """What Hydra's basic launcher's ``launch`` does, step for step through Hydra's public functions,
    except that a job's config comes from ``composed`` where it is there (taken out: each is used once)."""
    from hydra.core.utils import configure_log, run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    config, context = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info(f"Launching {len(jobs)} jobs locally")
    runs = []
    for number, overrides in enumerate(jobs, start):
        _log_job(number, overrides)
        sweep_config = composed.pop(tuple(overrides), None)
        if sweep_config is None:
            sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = number
            sweep_config.hydra.job.num = number
        runs.append(run_job(hydra_context=context, task_function=launcher.task_function, config=sweep_config,
                            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return runs


def run_one_job(number: int, overrides: Sequence[str], hydra_context, config, task_function,
                singleton_state: dict) -> Result:
    """One job in a worker process, as Hydra's joblib launcher runs each of its jobs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{number}"
        sweep_config.hydra.job.num = number
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _log_job(number: int, overrides: Sequence[str]) -> None:
    from hydra.core.utils import filter_overrides

    log.info("\t#%d : %s", number, " ".join(filter_overrides(list(overrides))))


class BatchPool:
    """The launcher's own ``launch``: the jobs submitted since the last ``wait``, as one batch."""

    asynchronous = False

    def __init__(self, launcher) -> None:
        self.launcher = launcher
        self.queued: list[tuple[int, list[str]]] = []

    def submit(self, number: int, overrides: Sequence[str]) -> None:
        self.queued.append((number, list(overrides)))

    def wait(self) -> list[tuple[int, Result]]:
        """Launch the queued jobs; their results once all have finished. Job numbers that follow
        each other go in one ``launch`` (the launcher numbers them from the first)."""
        batch, self.queued = self.queued, []
        if not batch:
            return []
        numbers = [n for n, _ in batch]
        jobs = [o for _, o in batch]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return list(zip(numbers, self.launcher.launch(jobs, initial_job_idx=numbers[0])))
        return [(n, r) for n, job in batch for r in self.launcher.launch([job], initial_job_idx=n)]

    def cancel(self) -> None:
        self.queued = []

    def close(self) -> None:
        pass


class ProcessPool:
    """Jobs in loky worker processes (joblib's own executor), each one as soon as a worker is free."""

    asynchronous = True

    def __init__(self, launcher, n_jobs: int) -> None:
        from joblib import effective_n_jobs

        self.launcher = launcher
        workers = int(launcher.joblib.get("n_jobs") or n_jobs)
        self.workers = max(1, effective_n_jobs(workers))
        self.futures: dict[cf.Future, int] = {}
        self.executor = None
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def _executor(self):
        from joblib.externals.loky import get_reusable_executor

        from zoo._runtime import start_worker

        # a new one if a worker died; each worker takes Ctrl-C, SIGTERM and SIGHUP from the start (one
        # that comes before or between its jobs keeps the next one from starting, and never kills it)
        self.executor = get_reusable_executor(max_workers=self.workers, reuse=True, initializer=start_worker)
        return self.executor

    def submit(self, number: int, overrides: Sequence[str]) -> None:
        from hydra.core.singleton import Singleton

        _log_job(number, overrides)
        launcher = self.launcher
        future = self._executor().submit(run_one_job, number, list(overrides), launcher.hydra_context,
                                         launcher.config, launcher.task_function, Singleton.get_state())
        self.futures[future] = number

    def wait(self) -> list[tuple[int, Result]]:
        """The jobs that have finished, once at least one has."""
        if not self.futures:
            return []
        done, _ = cf.wait(list(self.futures), return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            number = self.futures.pop(future)
            try:
                out.append((number, future.result()))
            except BaseException as exc:  # the worker died (killed, out of memory): the job failed
                out.append((number, exc))
        return out

    def cancel(self) -> None:
        """Stop the running jobs: each worker gets SIGTERM and ends its run KILLED at a step boundary,
        every metric written (Ctrl-C in a terminal reached them already; SIGTERM to this process did
        not). Waited for up to ``CANCEL_WAIT_S``; a further signal to this process is passed on (the
        workers then stop at once). Then the workers are stopped: none outlives the sweep."""
        import signal

        from zoo._runtime import current_stop

        stop = current_stop()
        seen = stop.count if stop else 0
        self._signal_workers(signal.SIGTERM)
        running, deadline = set(self.futures), time.monotonic() + CANCEL_WAIT_S
        while running and time.monotonic() < deadline:
            _, running = cf.wait(running, timeout=0.5)
            if stop is not None and stop.count > seen:
                seen = stop.count
                self._signal_workers(signal.SIGTERM)
        if running:
            log.warning("%d job(s) did not stop within %d s; their workers are killed", len(running), CANCEL_WAIT_S)
        self.futures.clear()
        if self.executor is not None:
            self.executor.shutdown(wait=True, kill_workers=True)

    def _signal_workers(self, signum: int) -> None:
        """``signum`` to this process's worker processes (loky's resource tracker ignores it; a run's
        metric writer is in a session of its own and is left to its run)."""
        import psutil

        session = os.getsid(0)
        for child in psutil.Process().children():
            try:
                if os.getsid(child.pid) == session:
                    child.send_signal(signum)
            except (psutil.Error, OSError):  # it ended meanwhile
                pass

    def close(self) -> None:
        pass


class SubmititPool:
    """One Slurm job per ``submit``, with the submitit executor ``hydra/launcher=slurm`` configures."""

    asynchronous = True

    def __init__(self, launcher) -> None:
        self.launcher = launcher
        self.executor = submitit_executor(launcher)
        self.jobs: dict[int, Any] = {}
        self.gone: dict[int, float] = {}  # number -> when its Slurm job was first seen gone from the queue

    def submit(self, number: int, overrides: Sequence[str]) -> None:
        from hydra.core.singleton import Singleton

        _log_job(number, overrides)
        self.jobs[number] = self.executor.submit(self.launcher, list(overrides), "hydra.sweep.dir", number,
                                                 f"job_id_for_{number}", Singleton.get_state())

    def wait(self) -> list[tuple[int, Result]]:
        while self.jobs:
            finished = self._finished()
            if finished:
                return finished
            time.sleep(SLURM_POLL_S)
        return []

    def _finished(self) -> list[tuple[int, Result]]:
        queued = self._queued() if self.launcher._EXECUTOR == "slurm" else None
        out = []
        for number, job in list(self.jobs.items()):
            if job.paths.result_pickle.exists():
                out.append((number, self._result(job)))
            elif queued is not None and job.job_id not in queued:
                first = self.gone.setdefault(number, time.monotonic())
                if time.monotonic() - first < SLURM_RESULT_GRACE_S:
                    continue  # a shared file system may show the result file a little later
                out.append((number, RuntimeError(
                    f"Slurm job {job.job_id} ended without a result (cancelled, timed out or killed); "
                    f"its log: {job.paths.stderr}")))
            elif queued is None and job.done():
                out.append((number, self._result(job)))
        for number, _ in out:
            self.jobs.pop(number)
            self.gone.pop(number, None)
        return out

    @staticmethod
    def _result(job) -> Result:
        try:
            return job.result()
        except BaseException as exc:  # the job raised outside Hydra's run_job, or could not unpickle
            return exc

    def _queued(self) -> set[str] | None:
        """The Slurm job ids of this user still pending or running; None when squeue cannot say."""
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i", "-u", str(os.getuid())], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return set(out.stdout.split()) if out.returncode == 0 else None

    def cancel(self) -> None:
        """Ctrl-C: cancel the Slurm jobs still running (their runs end KILLED: Slurm sends SIGTERM)."""
        for job in self.jobs.values():
            try:
                job.cancel(check=False)
            except Exception as exc:  # the job may have ended meanwhile
                log.warning("could not cancel Slurm job %s: %s", job.job_id, exc)
        self.jobs.clear()

    def close(self) -> None:
        pass


def submitit_executor(launcher):
    """The submitit executor of a Hydra submitit launcher, set up as its ``launch`` sets it up."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    kind = launcher._EXECUTOR
    params = dict(launcher.params)
    init = {"folder": params["submitit_folder"]}
    init.update({f"{kind}_{k}": v for k, v in params.items() if k in {"max_num_timeout"}})
    executor = submitit.AutoExecutor(cluster=kind, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{kind}_{k}": v for k, v in params.items()
                                  if k not in {"max_num_timeout", "submitit_folder"}})
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return executor
