"""What Zoo's sweepers share: the sweep callback, checking jobs before any runs, reading a job's failure."""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from zoo.config import override_key
from zoo.errors import ZooError, fail, one_line
from zoo.experiments.overrides import job_label


def zoo_callback(hydra_context) -> Any:
    """The :class:`zoo.experiments.sweep.SweepCallback` of this sweep, when ``hydra.callbacks`` has one."""
    from zoo.experiments.sweep import SweepCallback

    for cb in getattr(hydra_context.callbacks, "callbacks", []) or []:
        if isinstance(cb, SweepCallback):
            return cb
    return None


KEEP_COMPOSED = 256  # jobs whose config check_jobs keeps for the launch (each a composed config, tens of KB)


def job_config(hydra_context, master: DictConfig, overrides: Sequence[str],
               composed: DictConfig | None = None) -> DictConfig:
    """A job's composed config, without the ``hydra`` node and output paths, for checking (a copy:
    ``composed``, Hydra's config of the job when the caller has it already, stays as it is)."""
    if composed is None:
        composed = compose_job(hydra_context, master, overrides)
    cfg = OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"])
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.output_dir = None
    return cfg


def compose_job(hydra_context, master: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """A job's config as Hydra's launchers compose it (``hydra`` node included)."""
    return hydra_context.config_loader.load_sweep_config(master_config=master, sweep_overrides=list(overrides))


def registry_for(folder: str | None):
    """The plugins' registry for a job's ``plugins.dir``: without one (nor ``ZOO_PLUGIN_DIR``), the one
    ``zoo train`` discovered already (:func:`zoo.plugin.registry.share_as_default`), else a new one."""
    from zoo.plugin.registry import default_registry, load_registry

    if not folder and not os.environ.get("ZOO_PLUGIN_DIR"):
        return default_registry()
    return load_registry([folder] if folder else [])


def task_monitor_of(cfg: DictConfig) -> tuple[str, str]:
    """``(best/val_<monitor>, maximize|minimize)`` of the task of a job's dataset (the registry's task)."""
    registry = registry_for(OmegaConf.select(cfg, "plugins.dir"))
    _, dataset = registry.check_pair(str(cfg.model.name), str(cfg.data.name))
    task = registry.task(dataset.decl.task)
    return f"best/val_{task.monitor}", task.direction


def check_jobs(hydra_context, master: DictConfig, jobs: Sequence[Sequence[str]], keys: Sequence[str],
               keep: dict | None = None) -> None:
    """Compose and validate every job before the first one starts: bad input stops the sweep with
    one line naming the job, and no run is created.

    ``keep``: Hydra's composed config of each job (the first KEEP_COMPOSED jobs), by its overrides
    (a tuple), for a launch that would compose it again (:func:`.pools.launch_batch`).
    """
    from zoo.config import validate

    registries: dict = {None: registry_for(None)}
    for num, overrides in enumerate(jobs):
        label = job_label(overrides, keys) or " ".join(overrides)
        try:
            composed = compose_job(hydra_context, master, overrides)
            if keep is not None and len(keep) < KEEP_COMPOSED:
                keep[tuple(overrides)] = composed
            cfg = job_config(hydra_context, master, overrides, composed)
            folder = OmegaConf.select(cfg, "plugins.dir")
            if folder not in registries:
                registries[folder] = registry_for(folder)
            validate(cfg, registries[folder])
        except ZooError as exc:
            fail(f"sweep job {num} ({label}): {exc}")
        except Exception as exc:  # Hydra's composition errors
            fail(f"sweep job {num} ({label}): {_composition_error(exc, overrides, registries)}")


def _composition_error(exc: BaseException, overrides: Sequence[str], registries: dict) -> str:
    """Hydra's message, on one line; for a setting the job's model or dataset lacks, its settings."""
    cause = exc.__cause__
    if cause is not None and "not in struct" in str(cause):
        key = getattr(cause, "full_key", "") or ""
        group = key.split(".", 1)[0]
        choice = next((o.split("=", 1)[1] for o in overrides if override_key(o) == group), None)
        registry = next(iter(registries.values()), None)
        table = {"model": getattr(registry, "architectures", {}), "data": getattr(registry, "datasets", {})}.get(group, {})
        if choice in table:
            settings = ", ".join(table[choice].decl.defaults) or "none"
            return (f"{key} is not a setting of {group}={choice} (its settings: {settings}); "
                    f"give it to some jobs only with hydra.sweeper.arms (docs/experiments.md)")
        return f"{key} is not a key of the config; check its spelling"
    return one_line(exc)


def failure_of(ret) -> BaseException | None:
    """The exception of a failed job (a :class:`hydra.core.utils.JobReturn`), else None.

    Through Hydra's public ``JobReturn.return_value``, which re-raises a failed job's exception
    after writing "Error executing job with overrides: ..." to stderr; the sweepers report a
    failure in one line of their own, so that line is kept off the terminal here.
    """
    from hydra.core.utils import JobStatus

    if isinstance(ret, BaseException):  # the job could not run at all (a Slurm job killed, a worker lost)
        return ret
    if ret.status != JobStatus.FAILED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _ = ret.return_value
    except Exception as exc:  # the job's own exception, raised again by Hydra
        return exc
    return None
