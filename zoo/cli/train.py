"""``zoo train``: a Hydra app (overrides, ``-m`` sweeps, ``--cfg``, ``--help``) over :func:`zoo.training.train.train`.

Before Hydra composes, every plugin's defaults become config nodes and each ``group=name`` is
checked (:mod:`zoo.config`). Each job then trains, or re-runs itself under torchrun for DDP
(:mod:`zoo.training.distributed`), and prints the run's summary line.
"""

from __future__ import annotations

import gc
import sys

from zoo._runtime import share_config_store, start_without_collector
from zoo.errors import ZooError, fail, full_errors

# arguments that only print (help, the config, completion): no run, so nothing to check first
PRINT_ONLY = ("--help", "-h", "--hydra-help", "--info", "--cfg", "-c", "--shell-completion")


def main(args: list[str]) -> int:
    start_without_collector()  # the loop turns it on again (zoo._runtime.frozen_collector)
    import hydra

    from zoo.cli import load_registry
    from zoo.config import CONF_PATH, check_choices, register_configs

    registry = load_registry(args)
    register_configs(registry)
    share_config_store()
    if not any(a in PRINT_ONLY for a in args):
        check_choices(args, registry)

    @hydra.main(config_path=CONF_PATH, config_name="config", version_base="1.3")
    def task(cfg) -> float | None:
        return job(cfg, registry)

    sys.argv = ["zoo train", *args]
    task()
    return 0


def job(cfg, registry) -> float | None:
    """One job of ``zoo train`` (the only one, or one of a sweep's): its objective for the sweeper."""
    # imported here, not above: --help, --cfg and the like never load torch's training stack or MLflow
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from zoo.training.distributed import join_slurm_step, launch, under_torchrun
    from zoo.training.train import train

    hydra = HydraConfig.get()
    overrides = OmegaConf.to_container(hydra.overrides.task, resolve=False)  # as typed: ${oc.env:...} unresolved
    in_sweep = hydra.mode == RunMode.MULTIRUN
    # DDP: Slurm's tasks are the processes already (srun -n N), else torchrun starts them
    if cfg.trainer.get("strategy") == "ddp" and not under_torchrun() and not join_slurm_step():
        out = f"hydra.run.dir={hydra.runtime.output_dir}"  # every rank writes into this job's output folder
        code = launch(OmegaConf.to_container(cfg.trainer, resolve=True), [*overrides, out])
        if code:
            sys.exit(code)
        return None
    try:
        metrics = train(cfg, registry, overrides)
    except ZooError as exc:
        if in_sweep and not full_errors():  # the sweeper reports it, and the other jobs go on
            raise ZooError(str(exc)) from None
        fail(str(exc))
    if metrics.get("run_id"):  # rank 0 (the only rank with a run)
        print(summary_line(cfg, metrics))
    if metrics.get("registered"):
        r = metrics["registered"]
        print(f"zoo: registered {r['name']} version {r['version']}" + (f" (alias @{r['alias']})" if r["alias"] else ""))
    if in_sweep:  # the next job runs in this process: free what this one left
        gc.collect()
    return metrics.get("objective")


def summary_line(cfg, metrics: dict) -> str:
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
    return (f"zoo: {cfg.model.name} on {cfg.data.name} | {shown} | {metrics.get('duration_s', 0):.1f}s | "
            f"run {metrics['run_id']} (experiment '{cfg.tracking.experiment}')")
