"""``zoo train``: a Hydra app (overrides, ``-m`` sweeps, ``--cfg``, ``--help``) over :func:`zoo.training.train.train`.

Before Hydra composes, every plugin's defaults become config nodes, each ``group=name`` is
checked against Hydra's own config repository and the command line is composed once, so that a
mistake is one line (:mod:`zoo.config`). Each job then trains, or re-runs itself under torchrun
for DDP (:mod:`zoo.training.distributed`), prints the run's summary line and writes it, with the
run's id, to the job's log file (``<output dir>/train.log``, the logger ``zoo.run``).

Shell completion is Hydra's (``zoo train --shell-completion install=bash``): its script calls
``zoo -sc query=bash``, which :func:`complete` answers for ``zoo train``'s part of the line.
"""

from __future__ import annotations

import logging
import os
import sys

from zoo._runtime import collect_between_jobs, share_config_store, start_without_collector
from zoo.errors import ZooError, fail, full_errors

# arguments that only print (help, the config, completion): no run, so nothing to check first
PRINT_ONLY = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc", "--version")
COMPLETION = ("--shell-completion", "-sc")

run_log = logging.getLogger("zoo.run")  # the job's log file only (conf/hydra/job_logging/zoo.yaml)

# plugin folders -> their registry, in this process: a parallel launcher's worker process loads its own
_registries: dict[tuple[str, ...], object] = {}


def main(args: list[str]) -> int:
    start_without_collector()  # the loop turns it on again (zoo._runtime.frozen_collector)
    if not any(a.split("=", 1)[0] in PRINT_ONLY for a in args) and os.environ.get("RANK", "0") == "0":
        from zoo.tracking.child import prestart

        prestart()  # the run's writer process imports MLflow while this one loads torch and composes the config
    import hydra

    from zoo.cli import load_registry
    from zoo.config import CONF_PATH, check_choices, check_composes, plugin_dirs, register_configs
    from zoo.config.choices import without_null_choices
    from zoo.plugin.registry import share_as_default

    args = without_null_choices(args)  # scheduler=null: no scheduler
    completing = any(a.split("=", 1)[0] in COMPLETION for a in args)
    registry = load_registry(args, quiet=completing)
    _registries[tuple(plugin_dirs(args))] = registry
    share_as_default(registry, plugin_dirs(args))  # the logged model is rebuilt with it (no second discovery)
    register_configs(registry)
    share_config_store()
    if not any(a.split("=", 1)[0] in PRINT_ONLY for a in args):
        check_choices(args)  # its names are config nodes already (register_configs above)
        check_composes(args)

    @hydra.main(config_path=CONF_PATH, config_name="config", version_base="1.3")
    def task(cfg) -> float | None:
        return job(cfg)  # no registry in here: a worker process unpickles this function (see registry_of)

    sys.argv = ["zoo" if completing else "zoo train", *args]  # the completion script registers `zoo`
    task()
    return 0


def registry_of(cfg):
    """This process's registry for the job's ``plugins.dir``: the one ``main`` loaded, or, in a worker
    process of a parallel launcher, loaded there (folder plugins are imported in every process)."""
    from zoo.plugin.registry import load_registry

    folder = cfg.get("plugins", {}).get("dir")
    key = (str(folder),) if folder else ()
    if key not in _registries:
        _registries[key] = load_registry(list(key))
    return _registries[key]


def job(cfg) -> float | None:
    """One job of ``zoo train`` (the only one, or one of a sweep's): its objective for the sweeper."""
    # imported here, not above: --help, --cfg and the like never load torch's training stack or MLflow
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from zoo.tracking import default_uri
    from zoo.training.distributed import join_slurm_step, launch, under_torchrun
    from zoo.training.train import train

    hydra = HydraConfig.get()
    overrides = [str(o) for o in OmegaConf.to_container(hydra.overrides.task, resolve=False)]  # as typed
    in_sweep = hydra.mode == RunMode.MULTIRUN
    if not cfg.tracking.get("uri") and os.path.abspath(os.getcwd()) != os.path.abspath(hydra.runtime.cwd):
        cfg.tracking.uri = default_uri(hydra.runtime.cwd)  # hydra.job.chdir=true: the store of where zoo ran
    # DDP: Slurm's tasks are the processes already (srun -n N), else torchrun starts them
    if cfg.trainer.get("strategy") == "ddp" and not under_torchrun() and not join_slurm_step():
        from zoo.tracking.child import stop_idle

        stop_idle()  # the one main() started: rank 0 starts its own, this process trains nothing
        out = f"hydra.run.dir={hydra.runtime.output_dir}"  # every rank writes into this job's output folder
        code = launch(OmegaConf.to_container(cfg.trainer, resolve=True), [*overrides, out])
        if code:
            sys.exit(code)
        return None
    try:
        metrics = train(cfg, registry_of(cfg), overrides)
    except ZooError as exc:
        run_log.error("error: %s", exc)
        if in_sweep and not full_errors():  # the sweeper reports it, and the other jobs go on
            raise ZooError(str(exc)) from None
        fail(str(exc))
    if metrics.get("run_id"):  # rank 0 (the only rank with a run)
        line = summary_line(cfg, metrics)
        print(line)
        run_log.info(line)
    if metrics.get("registered"):
        r = metrics["registered"]
        print(f"zoo: registered {r['name']} version {r['version']}" + (f" (alias @{r['alias']})" if r["alias"] else ""))
    if in_sweep:  # the next job runs in this process: free what this one left, freeze what lives on
        collect_between_jobs()
    return metrics.get("objective")


def summary_line(cfg, metrics: dict) -> str:
    """What the run trained (a resumed run: its own model and data, not the command line's defaults) and its results."""
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
    model, data = metrics.get("model", cfg.model.name), metrics.get("data", cfg.data.name)
    return (f"zoo: {model} on {data} | {shown} | {metrics.get('duration_s', 0):.1f}s | "
            f"run {metrics['run_id']} (experiment '{metrics.get('experiment', cfg.tracking.experiment)}')")


def complete(args: list[str]) -> int:
    """``zoo -sc query=bash``, as the script of ``zoo train -sc install=bash`` calls it on each <TAB>.

    The line (``COMP_LINE``) is ``zoo train ...``: Hydra completes what follows ``train`` (groups,
    their options with every plugin's names, keys); on ``zoo <TAB>`` the commands are the choices.
    """
    from zoo.cli import COMMANDS

    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):
        print(" ".join(COMMANDS))
        return 0
    if words[1] != "train":
        return 0  # another command's arguments: the shell completes file names
    os.environ["COMP_LINE"] = "zoo " + line.split("train", 1)[1].lstrip()
    return main(args)
