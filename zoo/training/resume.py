"""``resume=``: which run a checkpoint continues, who may continue it, and what may change when it does.

* A checkpoint continues only the run whose id it holds, in the store that holds that run, and
  only if that run has not FINISHED, whichever form ``resume=`` takes (a run id, a run's output
  folder, a checkpoint file). A run's checkpoints live in its own folder,
  ``<output dir>/checkpoints/<run id>/``; a folder holding a checkpoint of another run is never
  used for this one (the run's logged ``checkpoints/last.pt`` is, when it has one).
* One process at a time: the run's checkpoint folder is locked (an OS lock on
  ``<folder>/run.lock``, released by the kernel when the process dies, even by ``kill -9``) before
  the checkpoint is read, and held until the run has ended.
* The run trains what it trained: its model, data, optimizer, seed and trainer settings come from
  the checkpoint, and an override that would change them is refused in one line. The settings in
  :data:`MAY_CHANGE` may change (extend a run with ``trainer.max_epochs``, move it to another
  device, ...); they are applied, and recorded on the run as the tag ``zoo.resumed_with``.
* Exactly once: steps between the checkpoint and what the store already holds are trained again
  but not logged again (:meth:`zoo.tracking.Tracker.start` reads the last stored step of each
  metric); the checkpointer flushes the metric rows before it writes ``last.pt``, so a checkpoint
  is never ahead of the store.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.config import override_key, override_value
from zoo.errors import ZooError
from zoo.training.checkpoint import load_checkpoint, locked

# Settings a resume may change, and why (README, "Resume"). Anything else that an override would change is refused.
MAY_CHANGE = {
    "resume": "the run to continue",
    "tracking.uri": "the store the run is in",
    "plugins.dir": "where the model's and the dataset's plugin code is",
    "trainer.max_epochs": "extend the run (or end it at an epoch it has not reached yet)",
    "trainer.device": "move the run to another device (a GPU run continued on the CPU is not bit-exact)",
    "trainer.threads": "torch's CPU threads",
    "trainer.flush_denormal": "denormal floats flushed to zero on the CPU (speed; numbers below 1.2e-38)",
    "trainer.log_every": "how often losses are fetched from the device (every step is logged either way)",
    "tracking.system_metrics": "CPU, memory and GPU samples",
    "tracking.system_metrics_interval": "seconds between system samples",
    "tracking.log_model": "log the model at the end",
    "tracking.register": "register the model at the end",
    "tracking.register_alias": "the alias of the registered version",
}
PRESETS = ("experiment", "hparams_search")  # groups whose choice sets keys all over the config
RUN_ID = re.compile(r"[0-9a-f]{32}")
_MISSING = object()


@dataclass
class Resumed:
    """What a ``resume=`` continues: the run's config (allowed overrides applied), its checkpoint and folder."""

    run_id: str
    config: DictConfig
    state: dict
    folder: Path  # where the run's checkpoints go on being written (locked while it trains)
    changed: list[str] = field(default_factory=list)  # the overrides applied, as typed
    ref: str = ""  # what resume= said

    def check_run(self, uri: str) -> None:
        """The run is in the store ``uri`` and has not FINISHED (checked under the lock, before it re-opens)."""
        from zoo.tracking.journal import replay_before_resume
        from zoo.tracking.runs import resumable

        what = self.ref if self.ref == self.run_id else f"{self.ref} (run {self.run_id})"
        resumable(uri, self.run_id, f"resume={what}",
                  missing=f"resume={self.ref}: the checkpoint belongs to run {self.run_id}, which is not in {uri} (a "
                          f"checkpoint of another store); resume it with tracking.uri=<the store it was trained in>")
        # rows the store once refused (the run's journal) go in first: under the lock, after the config was
        # validated (nothing is read from the store for a config that is refused), before the run re-opens and
        # reads the last stored step of each metric (Tracker.start)
        replay_before_resume(uri, self.run_id, self.folder)

    @property
    def out_dir(self) -> Path:
        """Where the run's figures go: ``<out>`` of ``<out>/checkpoints/<run id>/`` (or of ``<out>/checkpoints/``,
        a run from before per-run folders), else the checkpoint's own folder."""
        folder = self.folder.parent if self.folder.name == self.run_id else self.folder
        return folder.parent if folder.name == "checkpoints" else self.folder


@contextlib.contextmanager
def resume_state(cfg: DictConfig, overrides: Sequence[str] = ()) -> Iterator[Resumed | None]:
    """With ``resume=<run id, folder or file>``: the run it names, locked for this process until the block
    ends (else None).

    Args:
        cfg: the composed config.
        overrides: the command line's overrides as typed (checked against :data:`MAY_CHANGE`).
    """
    if not cfg.get("resume"):
        yield None
        return
    from zoo.tracking import default_uri

    uri = cfg.tracking.get("uri") or default_uri()
    ref = str(cfg.resume)
    with _locate(ref, uri, lambda: _this_output_dir(cfg)) as (path, run_id, state):
        config, changed = run_config(cfg, state, overrides, ref)
        config["tracking"] = {**config["tracking"], "uri": uri}
        config["plugins"] = {**(config.get("plugins") or {}), "dir": OmegaConf.select(cfg, "plugins.dir")}
        yield Resumed(run_id, OmegaConf.create(config), state, path.parent, changed, ref)


# ------------------------------------------------------------------------------ which checkpoint
@contextlib.contextmanager
def _locate(ref: str, uri: str, fresh_dir: Callable[[], Path]):
    """``(last.pt, run id, state)`` for ``resume=ref``, its folder locked."""
    from zoo.tracking.runs import checkpoint_folder, download_checkpoint, resumable

    path = Path(ref).expanduser()
    if path.is_file() or path.is_dir():  # a checkpoint file, or a run's output folder: the checkpoint names the run
        path = path if path.is_file() else _in_folder(path, ref)
        with locked(path.parent, f"resume={ref}"):
            state = load_checkpoint(path)
            run_id = _run_id_of(state, path)
            if RUN_ID.fullmatch(path.parent.name) and path.parent.name != run_id:
                raise ZooError(f"resume={ref}: the checkpoint in {path.parent} belongs to run {run_id}, not to run "
                               f"{path.parent.name} whose folder it is in; resume a run by its id")
            yield path, run_id, state  # the run is looked up once the config is validated (Resumed.check_run)
        return
    run = resumable(uri, ref)  # an unknown id or a FINISHED run: one line, nothing locked
    run_id = run.info.run_id
    tagged = checkpoint_folder(run)
    if tagged is not None and (tagged / "last.pt").is_file():
        with locked(tagged, f"resume={ref}"):
            state = load_checkpoint(tagged / "last.pt")
            if state.get("run_id") == run_id:  # (its status is read again under the lock: Resumed.check_run)
                yield tagged / "last.pt", run_id, state
                return
        # a folder from before per-run folders, shared with a run started in the same second: its last.pt is the
        # other run's. This run's own copy is the one it logged when it stopped.
    with locked(_own_folder(tagged, run_id, fresh_dir), f"resume={ref}") as folder:
        path = folder / "last.pt"
        if not path.is_file() or load_checkpoint(path).get("run_id") != run_id:
            path = download_checkpoint(uri, run_id, folder)
            best = folder / "best.pt"  # logged from a shared folder, it may be the other run's
            if path is not None and best.is_file() and load_checkpoint(best).get("run_id") != run_id:
                best.unlink()
        state = load_checkpoint(path) if path is not None else {}
        if state.get("run_id") != run_id:
            other = " (the checkpoint in its folder belongs to another run)" if tagged and (tagged / "last.pt").is_file() else ""
            raise ZooError(f"resume={ref}: run {run_id} has no checkpoint of its own (it stopped before saving one{other}); "
                           f"start a new run instead")
        yield path, run_id, state


def _in_folder(folder: Path, ref: str) -> Path:
    """The ``last.pt`` of a run's output folder (``checkpoints/<run id>/``), or of a checkpoint folder."""
    own = sorted(folder.glob("checkpoints/*/last.pt"))
    if len(own) > 1:
        ids = ", ".join(p.parent.name for p in own[:6])
        raise ZooError(f"resume={ref}: that folder holds the checkpoints of {len(own)} runs ({ids}); "
                       f"give the run id (resume=<run id>) to say which one to continue")
    for candidate in (*own, folder / "checkpoints" / "last.pt", folder / "last.pt"):
        if candidate.is_file():
            return candidate
    raise ZooError(f"resume={ref}: no checkpoints/last.pt in that folder; give a run id or the run's output folder")


def _run_id_of(state: dict, path: Path) -> str:
    run_id = state.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ZooError(f"checkpoint {path} names no run (run_id={run_id!r:.60}); it cannot continue one: "
                       "start a new run (init_from= starts one from a trained model)")
    return run_id


def _this_output_dir(cfg: DictConfig) -> Path:
    """This command's output folder (Hydra's job folder; from Python, a new temporary folder)."""
    import tempfile

    folder = OmegaConf.select(cfg, "paths.output_dir")
    return Path(folder) if folder else Path(tempfile.mkdtemp(prefix="zoo-"))


def _own_folder(tagged: Path | None, run_id: str, fresh_dir: Callable[[], Path]) -> Path:
    """Where a run whose folder is gone (or was shared) gets its checkpoints: its own folder made again, else a new one."""
    if tagged is not None:
        own = tagged if tagged.name == run_id else tagged / run_id
        with contextlib.suppress(OSError):
            own.mkdir(parents=True, exist_ok=True)
            return own
    return fresh_dir() / "checkpoints" / run_id


# ------------------------------------------------------------------------------ what may change
def run_config(cfg: DictConfig, state: dict, overrides: Sequence[str], ref: str) -> tuple[dict, list[str]]:
    """The run's own config with the overrides of :data:`MAY_CHANGE` applied, and those overrides.

    An override that changes anything else is refused in one line (one that sets what the run
    already has is harmless: re-running the original command with ``resume=`` appended works).
    """
    run = OmegaConf.create(dict(state["config"], resume=None))  # plain data: load_checkpoint refused any ${...}
    changed, refused = [], []
    for override in overrides:
        key = override_key(override)
        if key in MAY_CHANGE:
            if key not in ("resume", "tracking.uri", "plugins.dir") and _value(cfg, key) != _value(run, key):
                changed.append(override)
                OmegaConf.update(run, key, _value(cfg, key), force_add=True)
        elif key in PRESETS or key.startswith("hydra") or _value(cfg, key) != _value(run, key):
            refused.append(override)
    if refused:
        had = ", ".join(h for k in dict.fromkeys(override_key(o) for o in refused) if k not in PRESETS
                        for h in _had(_value(run, k), _value(cfg, k), k))
        raise ZooError(f"resume={ref}: {' '.join(refused)} would change what run {state['run_id']} trained"
                       f"{f' (it has {had})' if had else ''}; a resume trains the run's own model, data, optimizer, "
                       f"seed and trainer settings, and may change only {', '.join(k for k in MAY_CHANGE if k != 'resume')}"
                       f": start a new run to train with other settings")
    epochs = _value(run, "trainer.max_epochs")
    if isinstance(epochs, int) and epochs < state["epoch"]:
        raise ZooError(f"resume={ref}: trainer.max_epochs={epochs} is below the {state['epoch']} epochs run "
                       f"{state['run_id']} has trained; give at least {state['epoch']}")
    return OmegaConf.to_container(run), changed


def _value(config: DictConfig, key: str) -> Any:
    """The plain value at the dotted ``key`` (None when there is none)."""
    try:
        value = OmegaConf.select(config, key, default=None)
    except Exception:  # an interpolation that does not resolve: like no value the run could have
        return _MISSING
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _had(theirs: Any, mine: Any, key: str) -> list[str]:
    """What the run has for ``key``, as overrides: a group's choice, or the settings in which it differs."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        for k in ("name", "_target_"):  # model=, data= / optimizer=, scheduler=
            if k in theirs and theirs[k] != mine.get(k):
                return [f"{key}={override_value(theirs[k])}"]
        return [f"{key}.{k}={override_value(v)}" for k, v in theirs.items() if mine.get(k, _MISSING) != v]
    return [f"{key}={override_value(theirs)}"]
