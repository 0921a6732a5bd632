"""``train(cfg) -> metrics``: data, model, optimizer and task from the config, then the loop.

Everything that can be wrong with the input is checked before the MLflow run is created, so a
bad value never leaves a run behind; once the run exists, a ``try/finally`` ends it FINISHED,
FAILED (error tag and traceback artifact) or KILLED (Ctrl-C or SIGTERM), never RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

import zoo

from .config import validate
from .errors import ConfigError, ZooError
from .loop import Loop, NonFiniteLoss
from .registry import Registry, load_registry
from .tasks import get_task
from .tracking import Tracker, default_uri, git_commit

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


def _build(what: str, fn, *args, **kwargs):
    """Call a plugin's builder or loader; its ValueError/TypeError becomes a one-line ZooError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(f"{what}: {msg}") from exc


class Interrupted(KeyboardInterrupt):
    """SIGTERM, treated like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading_main():
        def handler(signum, frame):
            raise Interrupted(f"signal {signum}")
        old = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, old)
    else:
        yield


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def train(cfg: DictConfig, registry: Registry | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train the configured model on the configured dataset and record the run in MLflow.

    Args:
        cfg: the composed config (``conf/config.yaml`` plus overrides).
        registry: the plugin registry (default: discovered from ``cfg.plugins.dir``).
        overrides: the command-line overrides, recorded with the run.

    Returns:
        the final metrics (``test/<metric>``, ``best/val_<metric>``, ...) and ``run_id``.
    """
    registry = registry or registry_for(cfg)
    plain = validate(cfg, registry)
    arch, dataset = registry.check_pair(plain["model"]["name"], plain["data"]["name"])
    device = resolve_device(plain["trainer"]["device"])
    task = get_task(dataset.decl.task)
    seed = plain["seed"]

    torch.manual_seed(seed)
    data_params = {k: v for k, v in plain["data"].items() if k != "name"}
    splits = _build(f"data={dataset.decl.name}", dataset.decl.load, seed=seed, **data_params)
    hparams = {k: v for k, v in plain["model"].items() if k != "name"}
    torch.manual_seed(seed)
    model = _build(f"model={arch.decl.name}", arch.decl.build, splits.info, **hparams).to(device)
    splits = zoo.Splits(splits.train.to(device), splits.val.to(device), splits.test.to(device), splits.info)
    from hydra.utils import instantiate

    try:
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer) if cfg.get("scheduler") else None
    except Exception as exc:
        msg = str(exc).splitlines()[0]
        group = "scheduler" if "optimizer" in locals() else "optimizer"
        raise ZooError(f"{group}: cannot build {plain[group].get('_target_')}: {msg}") from None

    out_dir = Path(plain.get("paths", {}).get("output_dir") or tempfile.mkdtemp(prefix="zoo-"))
    tr = plain["tracking"]
    uri = tr["uri"] or default_uri()
    tracker = Tracker(uri, tr["experiment"], tr["system_metrics"], tr["system_metrics_interval"])
    tags = {
        "zoo.model": arch.decl.name, "zoo.family": arch.decl.family, "zoo.plugin": arch.plugin,
        "zoo.plugin_source": arch.source, "zoo.dataset": dataset.decl.name, "zoo.data_plugin": dataset.plugin,
        "zoo.task": task.name, "zoo.device": str(device), "zoo.torch_version": torch.__version__,
        "zoo.version": zoo.__version__, "zoo.output_dir": str(out_dir),
        "zoo.overrides": " ".join(overrides)[:5000],
    }
    commit = git_commit(os.getcwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run_name = tr.get("run_name") or f"{arch.decl.name}-{dataset.decl.name}"
    tracker.start(run_name=run_name, params=plain, tags=tags)
    # -- from here on a run exists: it must end FINISHED, FAILED or KILLED ------------------
    status, error = "FAILED", None
    started = time.time()
    try:
        with _sigterm_as_interrupt():
            tracker.text(OmegaConf.to_yaml(OmegaConf.create(plain)), "config.yaml")
            tracker.text("\n".join(overrides) + "\n", "overrides.txt")
            loop = Loop(model, splits, task, optimizer, scheduler, plain["trainer"], tracker,
                        device=device, seed=seed, grad_every=tr["grad_every"], hist_every=tr["hist_every"],
                        checkpoint_dir=out_dir / "checkpoints",
                        extra_state={"run_id": tracker.run_id, "config": plain})
            tracker.tags({"zoo.checkpoint_dir": loop.checkpoint_dir})
            try:
                metrics = loop.fit()
            except NonFiniteLoss as exc:
                error = f"non-finite loss at step {exc.step}: {exc.value}"
                tracker.tags({"zoo.failure": "non_finite_loss", "zoo.failure_step": exc.step})
                raise ZooError(f"{error}; lower optimizer.lr or set trainer.grad_clip "
                               f"(run {tracker.run_id} ended FAILED, last good checkpoint kept)") from None
            finally:
                tracker.tags({"zoo.grad_every": loop.grad_every})
            _log_outputs(tracker, loop, model, splits, arch, out_dir, tr)
            metrics["duration_s"] = time.time() - started
            tracker.metrics({"duration_s": metrics["duration_s"]}, step=loop.step)
            status = "FINISHED"
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted"
        _save_on_interrupt(tracker, locals().get("loop"))
        raise
    except BaseException as exc:
        error = error or f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            tracker.text(traceback.format_exc(), "error/traceback.txt")
            if "loop" in locals() and (loop.checkpoint_dir / "best.pt").exists():
                tracker.artifact(loop.checkpoint_dir / "best.pt", "checkpoints")
        raise
    finally:
        tracker.finish(status, error)
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
    from . import plots

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
        for path in _build(f"model={arch.decl.name} report", arch.decl.report, model, splits, figs) or ():
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
