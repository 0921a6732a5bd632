"""``train(cfg) -> metrics``: one run, as a short list of named steps.

1. :func:`~zoo.training.resume.resume_state`: with ``resume=...``, the run's own config and its last
   checkpoint, its folder locked for this process (which run, what may change, every step once);
2. ``validate``: everything that can be wrong with the input is checked before the MLflow run
   exists, so a bad value never leaves a run behind;
3. :func:`build`: the data, the model, its optimizer and scheduler;
4. ``tracker.run(...)``: the run, which ends FINISHED, FAILED (error tag and traceback) or KILLED
   (Ctrl-C, SIGTERM or SIGHUP at any point of it, with how to resume), never RUNNING;
5. the loop with its callbacks, :meth:`Loop.fit`;
6. :func:`~zoo.training.outputs.log_outputs`: the best checkpoint, plots, the family's report, the model;
7. the metrics, returned (and logged).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

import zoo
from zoo._runtime import signal_name, stop_on_signals
from zoo.config import override_key, override_value, validate
from zoo.errors import ConfigError, ZooError, one_line
from zoo.models.log import dataset_records
from zoo.plugin.registry import Registry, load_registry
from zoo.tracking import NullTracker, Tracker, default_uri, flatten, git_commit, tags
from zoo.training import distributed, preflight, threads
from zoo.training.callbacks import NonFiniteLoss, Perf, Progress, StepLog, TrialReport
from zoo.training.checkpoint import Checkpointer, restore
from zoo.training.loop import Loop
from zoo.training.outputs import log_outputs
from zoo.training.resume import Resumed, resume_state
from zoo.training.settings import TrainerSettings

run_log = logging.getLogger("zoo.run")  # the run's record in the job's log file (zoo train)


def train(cfg: DictConfig, registry: Registry | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train the configured model on the configured dataset and record the run in MLflow.

    Args:
        cfg: the composed config (``conf/config.yaml`` plus overrides). With ``resume=<run id,
            folder or checkpoint file>`` the run's own config and last checkpoint are used
            instead, and the same MLflow run continues.
        registry: the plugin registry (default: discovered from ``cfg.plugins.dir``).
        overrides: the command-line overrides, recorded with the run.

    Returns:
        the final metrics (``test/<metric>``, ``best/val_<metric>``, ...), ``objective`` (what a
        sweeper optimises), ``run_id``, ``experiment_id``, and what the run trained: ``model``,
        ``data`` and ``experiment`` (names; a resumed run's own).
    """
    registry = registry or registry_for(cfg)
    if cfg.get("resume") and cfg.get("init_from"):
        raise ZooError(f"resume={cfg.resume} and init_from={cfg.init_from} together: resume= continues an "
                       f"interrupted run, init_from= starts a new one from a trained model; give one of them")
    with resume_state(cfg, overrides) as resumed:
        return _train(resumed.config if resumed else cfg, registry, overrides, resumed)


def _train(cfg: DictConfig, registry: Registry, overrides: Sequence[str], resumed: Resumed | None) -> dict[str, Any]:
    state = resumed.state if resumed else None
    plain = validate(cfg, registry)
    arch, dataset = registry.check_pair(plain["model"]["name"], plain["data"]["name"])
    if resumed:
        resumed.check_run(plain["tracking"]["uri"])
    settings = TrainerSettings.from_config(plain)
    with threads.torch_threads(plain["trainer"].get("threads", "auto")) as thread_tags, \
            threads.flush_denormal(plain["trainer"].get("flush_denormal", True)), \
            distributed.process_group(plain["trainer"], resolve_device(plain["trainer"]["device"])) as (dist, device):
        if dist.main:
            Tracker.warm_up(plain["tracking"]["uri"], store=True)  # the writer process starts (and opens an existing store)
            # while the data and the model are built
        start = plain.get("init_from") if state is None else None  # a resumed run has its weights already
        splits, model, optimizer, scheduler, lineage = build(registry, cfg, plain, arch, dataset, device, dist, start)
        task = registry.task(splits.info.task)  # a dataset may pose another task than it declares (data.task)
        out_dir = resumed.out_dir if resumed else new_output_dir(plain)
        folder = resumed.folder if resumed else out_dir / "checkpoints"  # a new run's: checkpoints/<run id>, below
        tracker = open_tracker(plain["tracking"], dist, journal_dir=folder)  # its journal-<run id>.jsonl goes there
        step_log = StepLog(tracker, settings)
        # a new run's folder is checkpoints/<its run id>, known once the run exists (Checkpointer.own_folder)
        checkpointer = Checkpointer(folder, run=tracker, config=plain, dist=dist)
        trial = TrialReport.from_sweep(tracker)  # a search trial with a pruner; before the checkpointer, which
        # then writes last.pt for the epoch a pruned trial stops at
        loop = Loop(model, splits, task, optimizer, scheduler, settings, device=device, seed=plain["seed"], dist=dist,
                    callbacks=[Perf(tracker), step_log, *([trial] if trial else []), checkpointer,
                               Progress(step_log.history)])  # Perf first: timing.py
        if state is not None:
            restore(loop, state)
        shown = logged_config(cfg, plain, overrides)
        # Ctrl-C, SIGTERM and SIGHUP for the whole run (zoo._runtime): its start and its ending hold them, its
        # body stops at once (the loop at a step boundary), so that a signal ends it KILLED and nothing is lost
        with stop_on_signals("hold"), contextlib.ExitStack() as held, \
                tracker.run(run_name=shown["tracking"].get("run_name") or f"{arch.decl.name}-{dataset.decl.name}",
                            params=hydra_params(shown),
                            tags={**run_tags(plain, arch, dataset, task, device, dist, out_dir, overrides),
                                  **source_tags(splits.info), **thread_tags},
                            run_id=state["run_id"] if state else None) as run, \
                checkpointer.own_folder(None if resumed else run.run_id, held), \
                _kept_when_stopped(run, loop, checkpointer, step_log), stop_on_signals("now"):
            started = time.time()
            if run.run_id:  # rank 0
                run_log.info("MLflow run %s in experiment '%s' (%s)", run.run_id, plain["tracking"]["experiment"], run.uri)
            record_inputs(run, shown, overrides, resumed, task, checkpointer.folder)
            if lineage is not None:
                record_lineage(run, lineage)
            data = run.datasets(dataset_records(splits, dataset.decl.name, dataset.plugin,  # answered when needed
                                                _settings_of(plain["data"]), plain["seed"]), wait=False)
            metrics = loop.fit()
            tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
            run.metrics({k: v for k, v in metrics.items() if k not in tests}, step=loop.step)
            model_id = None
            try:
                if dist.main:  # a pruned trial is no candidate: its checkpoint only, no plots, no model
                    model_id = log_outputs(run, checkpointer, step_log.history, model, splits, arch, dataset, task,
                                           out_dir, settings=_settings_of(plain["model"]),
                                           data_settings=_settings_of(plain["data"]), seed=plain["seed"],
                                           with_model=plain["tracking"]["log_model"], stopped=bool(loop.stop_reason))
            finally:  # the test metrics, linked to the model (when there is one) and to the test data
                with stop_on_signals("hold"):
                    run.linked_metrics(tests, loop.step, model_id, data().get("test"))
            if model_id and plain["tracking"].get("register") and not plain["tracking"].get("parent_run_id"):
                metrics["registered"] = register_model(run, model_id, plain["tracking"])  # a sweep: its best child
            metrics["duration_s"] = time.time() - started
            run.metrics({"duration_s": metrics["duration_s"]}, step=loop.step)
            run.flush()  # the requests sent without waiting (tags, artifacts): a refusal is the run's failure
    return {**metrics, "objective": metrics.get(f"best/val_{task.monitor}"),
            "run_id": tracker.run_id, "experiment_id": tracker.experiment_id,
            "model": arch.decl.name, "data": dataset.decl.name, "experiment": plain["tracking"]["experiment"]}


# ------------------------------------------------------------------------------ before the run
def registry_for(cfg: DictConfig | dict) -> Registry:
    folder = (cfg.get("plugins") or {}).get("dir")
    return load_registry([folder] if folder else [])


def logged_config(cfg: DictConfig, plain: dict, overrides: Sequence[str]) -> dict:
    """The config as the store records it (params, run name, ``config.yaml``): ``plain``, except
    that a setting the user gave through ``${oc.env:...}`` on the command line keeps the text typed.

    An environment variable is often a secret (a token, a password); resolved, it would be stored
    in the run for anyone who can read the store. The run itself trains with the value, and the
    checkpoint keeps it (a resume trains with the same config). To record the value, let the
    shell expand it instead (``tracking.run_name=$NAME``).
    """
    keys = [override_key(o) for o in overrides if "oc.env" in o]
    if not keys:
        return plain
    import copy

    typed = OmegaConf.to_container(cfg, resolve=False)
    shown = copy.deepcopy(plain)
    for key in keys:
        *parents, last = key.split(".")
        node, source = shown, typed
        for part in parents:
            node, source = node.get(part) or {}, source.get(part) or {}
        node[last] = source.get(last, node.get(last))
    return shown


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device", name, f"cpu or auto: no CUDA GPU is available to torch {torch.__version__}")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError("trainer.device", name, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device", name, "cpu or auto: MPS is not available here")
    return torch.device(name)


def build(registry: Registry, cfg: DictConfig, plain: dict, arch, dataset, device: torch.device, dist,
          init_from: str | None = None):
    """The splits (on the device), the model (from ``init_from``'s weights where they fit; ``model.freeze``
    kept fixed), its optimizer and scheduler, each seeded with ``seed``; and where the model started from.

    What the data and the model turn out to be is checked on the way (:mod:`zoo.training.preflight`).
    """
    from zoo.models.init import freeze, load_matching

    seed, data_settings, model_settings = plain["seed"], _settings_of(plain["data"]), _settings_of(plain["model"])
    preflight.check_data_size(dataset.decl.name, data_settings)
    torch.manual_seed(seed)
    splits = registry.load_dataset(dataset.decl.name, seed, **data_settings)
    if arch.decl.tasks is not None and splits.info.task not in arch.decl.tasks:
        raise ZooError(f"model={arch.decl.name} does not accept data={dataset.decl.name} with task {splits.info.task}; "
                       f"{arch.decl.name} serves tasks {', '.join(arch.decl.tasks)}")
    task = registry.task(splits.info.task)
    preflight.check_splits(f"data={dataset.decl.name}", splits, task)
    preflight.check_model_memory(registry, arch.decl.name, splits.info, model_settings, device)
    torch.manual_seed(seed)
    model = registry.create_model(arch.decl.name, splits.info, **model_settings)
    lineage = load_matching(model, init_from, plain["tracking"]["uri"] or default_uri(), arch.decl.name) \
        if init_from else None
    freeze(model, plain["model"].get("freeze"))
    model = model.to(device)
    splits = zoo.Splits(splits.train.to(device), splits.val.to(device), splits.test.to(device), splits.info)
    preflight.check_output(f"model={arch.decl.name} on data={dataset.decl.name}", model, splits, task)
    if dist.world > 1:
        distributed.check_splittable(splits.train.example(1))
    from hydra.utils import instantiate

    group = "optimizer"
    try:
        optimizer = instantiate(cfg.optimizer)([p for p in model.parameters() if p.requires_grad])
        group = "scheduler"
        scheduler = instantiate(cfg.scheduler)(optimizer) if cfg.get("scheduler") else None
    except Exception as exc:
        raise ZooError(f"{group}: cannot build {plain[group].get('_target_')}: {one_line(exc)}") from None
    return splits, model, optimizer, scheduler, lineage


def _settings_of(group: dict) -> dict:
    """A plugin's own settings: the group without its name (and, for a model, Zoo's ``freeze``)."""
    return {k: v for k, v in group.items() if k not in ("name", "freeze")}


def new_output_dir(plain: dict) -> Path:
    return Path(plain.get("paths", {}).get("output_dir") or tempfile.mkdtemp(prefix="zoo-"))


def open_tracker(tr: dict, dist: distributed.Dist, journal_dir: Path | None = None):
    """The MLflow run's tracker; under DDP only rank 0 has one (the others report to nothing).

    ``tracking.uri`` unset: the store of the caller's active MLflow run (Python code inside
    ``with mlflow.start_run():``), else ``mlruns/mlflow.db`` (:class:`zoo.tracking.Tracker`).
    ``journal_dir``: where rows the store refuses are kept (the checkpoint folder; ``zoo sync``).
    """
    if not dist.main:
        return NullTracker()
    return Tracker(tr["uri"], tr["experiment"], bool(tr["system_metrics"]), tr["system_metrics_interval"],
                   journal_dir=journal_dir)


def hydra_params(plain: dict) -> dict[str, str]:
    """Every setting as a dotted key and its value as Hydra writes it (``false``, ``null``,
    ``[256,256]``), so that a param pastes back as an override."""
    return {k: v if isinstance(v, str) and v.startswith("${") else override_value(v)  # typed ${oc.env:...}: as typed
            for k, v in flatten(plain).items()}


def task_tags(task) -> dict[str, str]:
    """What readers of the store need to rank runs without loading plugins: the metric and its direction."""
    return {tags.MONITOR: f"best/val_{task.monitor}", tags.DIRECTION: task.direction}


def run_tags(plain: dict, arch, dataset, task, device, dist, out_dir: Path, overrides: Sequence[str]) -> dict:
    t = {tags.MODEL: arch.decl.name, tags.FAMILY: arch.decl.family, tags.PLUGIN: arch.plugin,
         tags.PLUGIN_SOURCE: arch.source, tags.DATASET: dataset.decl.name, tags.DATA_PLUGIN: dataset.plugin,
         tags.TASK: task.name, **task_tags(task), tags.DEVICE: str(device), tags.TORCH_VERSION: torch.__version__,
         tags.VERSION: zoo.__version__, tags.OUTPUT_DIR: str(out_dir), tags.OVERRIDES: " ".join(overrides)[:5000],
         tags.WORLD_SIZE: dist.world}
    commit = git_commit(os.getcwd())
    if commit:
        t[tags.GIT_COMMIT] = commit
    if plain["tracking"].get("parent_run_id"):  # a sweep's job, nested under the sweep's parent run
        t[tags.PARENT] = str(plain["tracking"]["parent_run_id"])
    return t


def source_tags(info) -> dict[str, str]:
    """The file a dataset read (``DataInfo.meta["source"]``: path, size, digest), so runs on two
    versions of a file can be told apart."""
    source = info.meta.get("source")
    if not isinstance(source, dict):
        return {}
    return {tags.DATA_SOURCE: source.get("path", ""), tags.DATA_DIGEST: source.get("digest", ""),
            tags.DATA_SIZE: source.get("size", "")}


# ------------------------------------------------------------------------------ in the run
def record_inputs(run, plain: dict, overrides: Sequence[str], resumed: Resumed | None, task, folder: Path) -> None:
    """A new run keeps its config and overrides; a continued one notes its step and what it changed; both,
    where checkpoints go."""
    noted = {tags.CHECKPOINT_DIR: folder}
    if resumed is None:
        run.text(OmegaConf.to_yaml(OmegaConf.create(plain)), "config.yaml")
        run.text("\n".join(overrides) + "\n", "overrides.txt")
        for path in hydra_files():
            run.artifact(path, ".hydra")
    else:  # a run started before zoo.monitor and zoo.direction existed gets them now
        noted.update({tags.RESUMED_FROM_STEP: resumed.state["step"], **task_tags(task)})
        if resumed.changed:
            noted[tags.RESUMED_WITH] = " ".join(resumed.changed)[:5000]
    run.tags(noted)


def record_lineage(run, start) -> None:
    """Where the run started from: a tag, MLflow's model input (the UI's lineage) and what was loaded."""
    import json

    run.tags({tags.INIT_FROM: start.ref, tags.INIT_LOADED: f"{len(start.loaded)} of "
              f"{len(start.loaded) + len(start.not_loaded)}"})
    run.text(json.dumps(start.summary(), indent=1), "init_from.json")
    if start.found.model_id:
        run.model_input(start.found.model_id)


def register_model(run, model_id: str, tr: dict) -> dict:
    """``tracking.register=NAME``: the run's model as a new version of NAME (and ``register_alias``)."""
    from zoo.models.registry import register_run_model
    from zoo.tracking.models import ModelRef

    ref = ModelRef(f"models:/{model_id}", model_id, run.run_id)
    return register_run_model(ref, tr["register"], tr.get("register_alias"), tr["uri"] or default_uri())


def hydra_files() -> list[Path]:
    """The job's ``.hydra/`` files (config, hydra, overrides) when Hydra runs this job, else none."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not HydraConfig.get().output_subdir:
        return []
    hydra = HydraConfig.get()
    return sorted((Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml"))


@contextlib.contextmanager
def _kept_when_stopped(run, loop: Loop, checkpointer: Checkpointer, step_log: StepLog):
    """A stopped run saves last.pt and says how to resume; a failed one saves last.pt where it failed (when
    training stands between two steps: a resume then continues from there), keeps its checkpoints and says why.
    A non-finite loss keeps the last good checkpoint instead.

    (The run's status, its error tag and the traceback are ``Tracker.run``'s.)
    """
    try:
        yield
    except NonFiniteLoss as exc:
        run.tags({tags.FAILURE: "non_finite_loss", tags.FAILURE_STEP: exc.step})
        run.error = f"non-finite loss at step {exc.step}: {exc.value}"
        _log_checkpoints(run, checkpointer)
        raise ZooError(f"{run.error}; lower optimizer.lr or set trainer.grad_clip "
                       f"(run {run.run_id} ended FAILED, last good checkpoint kept)") from None
    except ZooError as exc:  # a fault Zoo can name (a full disk, say): the reason as it is, and the run's end
        run.error = str(exc)
        checkpointer.save_if_settled(loop)
        _log_checkpoints(run, checkpointer)
        raise ZooError(f"{exc} (run {run.run_id} ended FAILED)") from None
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP
        exc.zoo_run_id = run.run_id  # the command line prints how to resume
        how = signal_name(getattr(exc, "signum", signal.SIGINT))
        run.error = f"interrupted ({how}) at step {loop.step}; continue with: zoo train resume={run.run_id}"
        checkpointer.save_if_settled(loop)  # after training, or mid-step: the last.pt there is the one to resume
        with contextlib.suppress(Exception):  # the run's own copy (a resume falls back on it)
            if (checkpointer.folder / "last.pt").is_file():
                run.artifact(checkpointer.folder / "last.pt", "checkpoints")
        raise
    except BaseException:
        checkpointer.save_if_settled(loop)
        _log_checkpoints(run, checkpointer)
        raise
    finally:
        run.tags({tags.GRAD_EVERY: step_log.grad_every})


def _log_checkpoints(run, checkpointer: Checkpointer) -> None:
    with contextlib.suppress(Exception):
        for path in checkpointer.saved():
            run.artifact(path, "checkpoints")
