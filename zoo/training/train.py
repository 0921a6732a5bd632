"""``train(cfg) -> metrics``: data, model, optimizer and task from the config, then the loop.

Everything that can be wrong with the input is checked before the MLflow run is created, so a
bad value never leaves a run behind; once the run exists, a ``try/finally`` ends it FINISHED,
FAILED (error tag and traceback artifact) or KILLED (Ctrl-C or SIGTERM), never RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

import zoo

from zoo.training import distributed
from zoo.config import validate
from zoo.errors import ConfigError, ZooError
from zoo.training.loop import Loop, NonFiniteLoss
from zoo.plugin.registry import Registry, call_plugin, load_registry
from zoo.plugin.tasks import get_task
from zoo.tracking import NullTracker, Tracker, default_uri, git_commit

log = logging.getLogger(__name__)


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


def registry_for(cfg: DictConfig | dict) -> Registry:
    folder = (cfg.get("plugins") or {}).get("dir")
    return load_registry([folder] if folder else [])


def find_checkpoint(resume: str, uri: str) -> Path:
    """The ``last.pt`` to continue from: ``resume`` is a run id, a run's output folder or a file."""
    path = Path(str(resume)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise ZooError(f"resume={resume}: no checkpoints/last.pt in that folder; give a run id or the run's output folder")
    from zoo.tracking.runs import checkpoint_of

    return checkpoint_of(uri, str(resume))


REQUIRED_STATE = {"model", "optimizer", "epoch", "step", "rng", "run_id", "config"}


def load_checkpoint(path: Path) -> dict:
    """Load a Zoo checkpoint safely (``weights_only=True``: tensors and plain data, never code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"checkpoint {path} is corrupt or not a Zoo checkpoint ({msg}); "
                       f"resume from another run or start a new one") from None
    if not isinstance(state, dict) or not REQUIRED_STATE <= set(state):
        missing = sorted(REQUIRED_STATE - set(state)) if isinstance(state, dict) else "everything"
        raise ZooError(f"checkpoint {path} is not a Zoo checkpoint (missing {missing}); resume from a run's last.pt")
    return state


def train(cfg: DictConfig, registry: Registry | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train the configured model on the configured dataset and record the run in MLflow.

    Args:
        cfg: the composed config (``conf/config.yaml`` plus overrides). With ``resume=<run id
            or folder>`` the run's own config and last checkpoint are used instead, and the same
            MLflow run continues.
        registry: the plugin registry (default: discovered from ``cfg.plugins.dir``).
        overrides: the command-line overrides, recorded with the run.

    Returns:
        the final metrics (``test/<metric>``, ``best/val_<metric>``, ...) and ``run_id``.
    """
    registry = registry or registry_for(cfg)
    state, checkpoint_dir = None, None
    if cfg.get("resume"):
        uri = cfg.tracking.get("uri") or default_uri()
        path = find_checkpoint(cfg.resume, uri)
        state = load_checkpoint(path)
        checkpoint_dir = path.parent
        config = dict(state["config"], resume=None)
        config["tracking"] = dict(config["tracking"], uri=uri)
        cfg = OmegaConf.create(config)
    plain = validate(cfg, registry)
    arch, dataset = registry.check_pair(plain["model"]["name"], plain["data"]["name"])
    device = resolve_device(plain["trainer"]["device"])
    dist, device = distributed.setup(plain["trainer"], device)
    try:
        return _train(cfg, plain, registry, arch, dataset, device, dist, state, checkpoint_dir, overrides)
    finally:
        dist.close()


def _train(cfg, plain, registry, arch, dataset, device, dist, state, checkpoint_dir, overrides) -> dict[str, Any]:
    task = get_task(dataset.decl.task)
    seed = plain["seed"]

    torch.manual_seed(seed)
    data_params = {k: v for k, v in plain["data"].items() if k != "name"}
    splits = registry.load_dataset(dataset.decl.name, seed, **data_params)
    hparams = {k: v for k, v in plain["model"].items() if k != "name"}
    torch.manual_seed(seed)
    model = registry.create_model(arch.decl.name, splits.info, **hparams).to(device)
    splits = zoo.Splits(splits.train.to(device), splits.val.to(device), splits.test.to(device), splits.info)
    if dist.world > 1:
        distributed.check_splittable(splits.train.example(1))
    from hydra.utils import instantiate

    try:
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer) if cfg.get("scheduler") else None
    except Exception as exc:
        msg = str(exc).splitlines()[0]
        group = "scheduler" if "optimizer" in locals() else "optimizer"
        raise ZooError(f"{group}: cannot build {plain[group].get('_target_')}: {msg}") from None

    if checkpoint_dir is not None:
        out_dir = checkpoint_dir.parent
    else:
        out_dir = Path(plain.get("paths", {}).get("output_dir") or tempfile.mkdtemp(prefix="zoo-"))
        checkpoint_dir = out_dir / "checkpoints"
    tr = plain["tracking"]
    uri = tr["uri"] or default_uri()
    tracker = Tracker(uri, tr["experiment"], tr["system_metrics"], tr["system_metrics_interval"]) \
        if dist.main else NullTracker()
    tags = {
        "zoo.model": arch.decl.name, "zoo.family": arch.decl.family, "zoo.plugin": arch.plugin,
        "zoo.plugin_source": arch.source, "zoo.dataset": dataset.decl.name, "zoo.data_plugin": dataset.plugin,
        "zoo.task": task.name, "zoo.device": str(device), "zoo.torch_version": torch.__version__,
        "zoo.version": zoo.__version__, "zoo.output_dir": str(out_dir),
        "zoo.overrides": " ".join(overrides)[:5000], "zoo.world_size": dist.world,
    }
    commit = git_commit(os.getcwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if tr.get("parent_run_id"):  # a sweep's job, nested under the sweep's parent run (zoo/sweep.py)
        tags["mlflow.parentRunId"] = str(tr["parent_run_id"])
    run_name = tr.get("run_name") or f"{arch.decl.name}-{dataset.decl.name}"
    tracker.start(run_name=run_name, params=plain, tags=tags, run_id=state["run_id"] if state else None)
    # -- from here on a run exists: it must end FINISHED, FAILED or KILLED ------------------
    status, error, loop = "FAILED", None, None
    started = time.time()
    try:
        if state is None:
            tracker.text(OmegaConf.to_yaml(OmegaConf.create(plain)), "config.yaml")
            tracker.text("\n".join(overrides) + "\n", "overrides.txt")
        else:
            tracker.tags({"zoo.resumed_from_step": state["step"]})
        loop = Loop(model, splits, task, optimizer, scheduler, plain["trainer"], tracker,
                    device=device, seed=seed, grad_every=tr["grad_every"], hist_every=tr["hist_every"],
                    checkpoint_dir=checkpoint_dir, state=state, dist=dist,
                    extra_state={"run_id": tracker.run_id, "config": plain})
        tracker.tags({"zoo.checkpoint_dir": loop.checkpoint_dir})
        try:
            with loop.stop_on_signals():
                metrics = loop.fit()
        except NonFiniteLoss as exc:
            error = f"non-finite loss at step {exc.step}: {exc.value}"
            tracker.tags({"zoo.failure": "non_finite_loss", "zoo.failure_step": exc.step})
            raise ZooError(f"{error}; lower optimizer.lr or set trainer.grad_clip "
                           f"(run {tracker.run_id} ended FAILED, last good checkpoint kept)") from None
        finally:
            tracker.tags({"zoo.grad_every": loop.grad_every})
        if dist.main:
            _log_outputs(tracker, loop, model, splits, arch, out_dir, tr)
        metrics["duration_s"] = time.time() - started
        tracker.metrics({"duration_s": metrics["duration_s"]}, step=loop.step)
        status = "FINISHED"
    except KeyboardInterrupt as exc:
        exc.zoo_run_id = tracker.run_id  # the command line prints how to resume
        status, error = "KILLED", f"interrupted at step {loop.step if loop else 0}; continue with: zoo train resume={tracker.run_id}"
        _save_on_interrupt(tracker, loop)
        raise
    except BaseException as exc:
        error = error or f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            tracker.text(traceback.format_exc(), "error/traceback.txt")
            for name in ("best.pt", "last.pt"):
                if loop is not None and (loop.checkpoint_dir / name).exists():
                    tracker.artifact(loop.checkpoint_dir / name, "checkpoints")
        raise
    finally:
        tracker.finish(status, error)
    metrics["objective"] = metrics.get(f"best/val_{task.monitor}")  # what a sweeper optimises
    metrics["run_id"] = tracker.run_id
    metrics["experiment_id"] = tracker.experiment_id
    return metrics


def _save_on_interrupt(tracker: Tracker, loop: Loop | None) -> None:
    if loop is None:
        return
    with contextlib.suppress(Exception):
        path = loop.save("last.pt")
        tracker.artifact(path, "checkpoints")


def _log_outputs(tracker: Tracker, loop: Loop, model, splits, arch, out_dir: Path, tr: dict) -> None:
    """Checkpoint, plots, the family's own report, and the model itself."""
    from zoo import plots

    tracker.artifact(loop.checkpoint_dir / "best.pt", "checkpoints")
    figs = out_dir / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    tracker.artifact(plots.loss_curve(loop.history, figs / "loss_curve.png"), "plots")
    if loop.history.hist:
        npz, png = plots.histograms(loop.history.hist, figs / "histograms.npz", figs / "histograms.png")
        tracker.artifact(npz, "histograms")
        tracker.artifact(png, "plots")
    if arch.decl.report is not None:
        model.eval()
        for path in call_plugin(f"model={arch.decl.name} report", arch.decl.report, model, splits, figs) or ():
            tracker.artifact(path, "plots")
    if tr["log_model"]:
        import copy

        cpu_model = copy.deepcopy(model).cpu().eval()
        example = splits.test.example(2)
        if isinstance(example, torch.Tensor):
            example = example.cpu()
            with torch.no_grad():
                output = cpu_model(example)
            tracker.model(cpu_model, example, output)
        else:  # inputs that are not one tensor (graphs): the state dict is the model
            path = out_dir / "model_state_dict.pt"
            torch.save(cpu_model.state_dict(), path)
            tracker.artifact(path, "model")
