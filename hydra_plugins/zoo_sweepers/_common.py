"""What Zoo's sweepers share: the sweep callback, checking jobs before any runs, reading a job's failure."""

from __future__ import annotations

import contextlib
import io
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


def job_config(hydra_context, master: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """A job's composed config, without the ``hydra`` node and output paths, for checking."""
    cfg = hydra_context.config_loader.load_sweep_config(master_config=master, sweep_overrides=list(overrides))
    with open_dict(cfg):
        del cfg["hydra"]
        if "paths" in cfg:
            cfg.paths.output_dir = None
    return cfg


def task_monitor_of(cfg: DictConfig) -> tuple[str, str]:
    """``(best/val_<monitor>, maximize|minimize)`` of the task of a job's dataset (the registry's task)."""
    from zoo.plugin.registry import load_registry

    folder = OmegaConf.select(cfg, "plugins.dir")
    registry = load_registry([folder] if folder else [])
    _, dataset = registry.check_pair(str(cfg.model.name), str(cfg.data.name))
    task = registry.task(dataset.decl.task)
    return f"best/val_{task.monitor}", task.direction


def check_jobs(hydra_context, master: DictConfig, jobs: Sequence[Sequence[str]], keys: Sequence[str]) -> None:
    """Compose and validate every job before the first one starts: bad input stops the sweep with
    one line naming the job, and no run is created."""
    from zoo.config import validate
    from zoo.plugin.registry import load_registry

    registries: dict = {None: load_registry()}
    for num, overrides in enumerate(jobs):
        label = job_label(overrides, keys) or " ".join(overrides)
        try:
            cfg = job_config(hydra_context, master, overrides)
            folder = OmegaConf.select(cfg, "plugins.dir")
            if folder not in registries:
                registries[folder] = load_registry([folder] if folder else [])
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
