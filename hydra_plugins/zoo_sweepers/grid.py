"""The grid mode of Zoo's sweeper: every combination, once per arm; a failed job does not stop it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List

from omegaconf import OmegaConf

from zoo.errors import ZooError, fail
from zoo.experiments.overrides import check_repeats, grid_jobs, job_label, varying_keys, with_seeds

from ._common import check_jobs, failure_of
from .pools import launch_batch

log = logging.getLogger(__name__)


def run_grid(sweeper, arguments: List[str]) -> Any:
    callback = sweeper.callback
    try:
        keys = callback.keys if callback else varying_keys(arguments, sweeper.config.hydra.sweeper)
        repeats = callback.repeats if callback else check_repeats(sweeper.repeats, keys)  # the callback checked it
        jobs = with_seeds(grid_jobs(sweeper.params, arguments, sweeper.arms, sweeper.hydra_context.config_loader), repeats,
                          int(OmegaConf.select(sweeper.config, "seed") or 0))
    except ZooError as exc:
        fail(str(exc))
    composed: dict = {}  # each job's config, composed once: checked here, launched below
    check_jobs(sweeper.hydra_context, sweeper.config, jobs, keys, keep=composed)
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    if callback:
        callback.jobs = len(jobs)
        callback.open()
    size = sweeper.max_batch_size or len(jobs)
    returns, failures = [], []
    try:
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            results = launch_batch(sweeper.launcher, batch, start, composed)
            for overrides, ret in zip(batch, results):
                error = failure_of(ret)
                if error is not None:
                    label = job_label(overrides, keys)
                    failures.append(label)
                    if callback:
                        callback.job_failed(label, error)
                    else:
                        log.error("sweep job failed (%s): %s", label, error)
            returns.append(results)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: the running jobs ended KILLED, no other started
        if callback:
            callback.interrupted_by(exc)
        raise
    if failures and not callback:
        fail(f"{len(failures)} of {len(jobs)} sweep jobs failed: {'; '.join(failures)}")
    return returns
