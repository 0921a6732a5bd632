"""Sweeps: ``zoo train -m ...``, lesson presets and Optuna searches, recorded as one parent run.

A sweep is Hydra's multirun. :class:`SweepCallback` (configured under ``hydra.callbacks`` in
``conf/config.yaml``) turns it into MLflow structure:

* before any job starts it creates the store and the experiment (several processes opening a
  fresh SQLite store at once break it) and a **parent run** carrying the sweep's overrides;
* each job is a **child run** nested under it: the callback sets ``ZOO_PARENT_RUN_ID`` in the
  job's process, ``tracking.parent_run_id`` reads it and :func:`zoo.train.train` tags the run
  with ``mlflow.parentRunId``; ``ZOO_RUN_NAME`` names the child by what varies (``model=mlp
  optimizer.lr=0.1``), so the MLflow UI's nested view reads as a table of the sweep;
* at the end the parent gets the best child's id and metric (tags ``zoo.best_run_id``,
  ``zoo.best_metric``, and the metric itself), a summary table (its description in the UI and
  ``sweep/summary.csv``) and ``plots/sweep.png`` (training loss against steps and against wall
  time, and the metric of each child), and ends FINISHED; a sweep that stops early ends FAILED
  or KILLED, never RUNNING, and one that never ran a job is deleted.

Jobs running in parallel on one machine (``hydra/launcher=parallel``) each get their own GPU:
every worker process takes a free slot (a lock file in the sweep folder) and sets
``CUDA_VISIBLE_DEVICES`` from :func:`gpus_for_slot` before CUDA is initialised.

The two sweepers live in ``hydra_plugins/zoo_sweepers/`` (Hydra only loads plugins from the
``hydra_plugins`` package); what they share with the callback is here.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError

log = logging.getLogger(__name__)

PARENT_ENV = "ZOO_PARENT_RUN_ID"
NAME_ENV = "ZOO_RUN_NAME"
LOCAL_PARALLEL = ("joblib",)  # launchers whose jobs are processes on this machine


# ================================================================================ pure helpers

def gpus_for_slot(slot: int, visible: Sequence[str], per_job: int = 1) -> list[str]:
    """The GPUs a parallel worker in ``slot`` uses: ``per_job`` consecutive ones of ``visible``.

    Slots wrap around when there are more workers than GPU groups (they then share), and a job
    asking for more GPUs than there are gets them all. No GPUs: an empty list (the CPU).

    >>> gpus_for_slot(1, ["0", "1", "2", "3"])
    ['1']
    >>> gpus_for_slot(1, ["0", "1", "2", "3"], per_job=2)
    ['2', '3']
    >>> gpus_for_slot(5, ["0", "1"])
    ['1']
    """
    if not visible:
        return []
    if slot < 0 or per_job < 1:
        raise ValueError(f"slot={slot} and per_job={per_job} must be >= 0 and >= 1")
    per = min(per_job, len(visible))
    groups = len(visible) // per
    first = (slot % groups) * per
    return list(visible[first:first + per])


def visible_gpus(environ: dict | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU torch sees."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch or no driver: no GPUs
        return []


_SLOT: dict[str, Any] = {}  # this process's slot: its lock file stays open (held) while the process lives


def acquire_slot(lock_dir: str | os.PathLike, n_slots: int) -> int:
    """A slot number no other live process of the sweep holds, kept for this process's lifetime.

    Worker processes are reused for several jobs (joblib), and CUDA cannot move to another GPU
    once initialised, so the slot belongs to the process, not to the job. When every slot is
    taken (more workers than GPUs), the slot is shared: ``pid % n_slots``.
    """
    import fcntl

    if "slot" in _SLOT:
        return _SLOT["slot"]
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(max(n_slots, 1)):
        handle = open(folder / f"slot-{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        handle.write(str(os.getpid()))
        handle.flush()
        _SLOT.update(slot=slot, handle=handle)
        return slot
    _SLOT["slot"] = os.getpid() % max(n_slots, 1)
    return _SLOT["slot"]


def override_key(override: str) -> str:
    """``+model.dropout=0.1`` -> ``model.dropout``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def job_label(overrides: Iterable[str], keys: Sequence[str]) -> str:
    """The overrides of a job whose keys vary in the sweep, in the sweep's order of keys (long
    numbers shortened: ``optimizer.lr=0.00443``)."""
    by_key = {override_key(o): o.lstrip("+~") for o in overrides}
    return " ".join(_short(by_key[k]) for k in keys if k in by_key)


def _short(override: str) -> str:
    key, _, value = override.partition("=")
    value = re.sub(r"\\(.)", r"\1", value)  # Hydra's escapes (cuda\:1) are not part of the value
    override = f"{key}={value}"
    try:
        number = float(value)
    except ValueError:
        return override
    if "." not in value and "e" not in value.lower():
        return override
    return f"{key}={number:.3g}"


def parse_overrides(items: Iterable[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for item in items:
        try:
            out.append(parser.parse_override(item))
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ZooError(f"cannot parse the sweep override {item!r}: {msg}") from None
    return out


def varying_keys(task_overrides: Sequence[str], sweeper: DictConfig | dict | None) -> list[str]:
    """Keys whose value changes from job to job: command-line sweeps, the sweeper's params and arms."""
    sweeper = sweeper or {}
    keys: list[str] = []
    params = dict(sweeper.get("params") or {})
    for o in parse_overrides([f"{k}={v}" for k, v in params.items()] + list(task_overrides)):
        if o.is_sweep_override() and o.key_or_group not in keys:
            keys.append(o.key_or_group)
    arms = [{override_key(o): o.split("=", 1)[-1] for o in arm} for arm in sweeper.get("arms") or []]
    for arm in arms:  # an arm's key varies when the arms do not all give it the same value
        for key in arm:
            if key not in keys and len({a.get(key) for a in arms}) > 1:
                keys.append(key)
    return keys


def grid_jobs(params: dict | None, arguments: Sequence[str], arms: Sequence[Sequence[str]] | None) -> list[list[str]]:
    """Every job of a grid: the cartesian product of ``params`` and the command line's sweeps,
    once per arm (an arm's overrides come last, so they win)."""
    import itertools

    lists: dict[str, list[str]] = {}
    for o in parse_overrides([f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ZooError(f"{o.input_line}: a grid sweep takes lists (a,b,c), choice() or range(); "
                               f"interval() needs a search: hparams_search=<preset> or hydra.sweeper.search=optuna")
            lists[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            lists[key] = [f"{key}={o.get_value_element_as_str()}"]
    grid = [list(c) for c in itertools.product(*lists.values())]
    if not arms:
        return grid
    return [combo + list(arm) for arm in arms for combo in grid]


def value_string(value: Any) -> str:
    """A value as the right-hand side of a Hydra override."""
    from hydra.core.override_parser.types import Override

    if isinstance(value, float):
        return repr(value)
    return Override._get_value_element_as_str(value)


def search_space(params: dict | None, arguments: Sequence[str]):
    """Optuna distributions from Hydra's sweep syntax, and the overrides every trial shares.

    ``a,b,c`` or ``choice(a,b,c)``: categorical; ``range(lo,hi[,step])``: integers lo..hi-step;
    ``interval(lo,hi)``: floats, ``tag(log, interval(lo,hi))`` on a log scale. Anything else
    is fixed for every trial. Returns ``(distributions, fixed_overrides, raw_keys)``: the
    categorical choices of ``raw_keys`` (lists, dicts) are override strings, used as they are.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists: dict[str, Any] = {}
    raw: set[str] = set()  # categorical keys whose choices are override strings already ([64], {a:1})
    fixed: list[str] = []
    items = [f"{k}={v}" for k, v in (params or {}).items()]
    for i, o in enumerate(parse_overrides(items + list(arguments))):
        key = o.get_key_element()
        v = o.value()
        where = f"hydra.sweeper.params: {o.input_line}" if i < len(items) else o.input_line
        if not o.is_sweep_override():
            fixed = [f for f in fixed if override_key(f) != override_key(key)] + [f"{key}={o.get_value_element_as_str()}"]
            dists.pop(key, None)
            continue
        fixed = [f for f in fixed if override_key(f) != override_key(key)]
        if o.is_choice_sweep():
            choices = [_convert(x) for x in (v.list if hasattr(v, "list") else o.sweep_iterator())]
            if not choices:
                raise ZooError(f"{where} has no choices")
            plain = all(x is None or isinstance(x, (bool, int, float, str)) for x in choices)
            dists[key] = CategoricalDistribution(choices if plain else [value_string(x) for x in choices])
            if not plain:
                raw.add(key)
        elif o.is_range_sweep():
            if all(isinstance(x, int) for x in (v.start, v.stop, v.step)) and v.step > 0 and v.stop > v.start:
                last = v.start + ((v.stop - 1 - v.start) // v.step) * v.step  # range() excludes stop
                dists[key] = IntDistribution(v.start, last, step=v.step)
            else:
                values = list(o.sweep_iterator())
                if not values:
                    raise ZooError(f"{where} is an empty range")
                dists[key] = CategoricalDistribution(values)
        elif o.is_interval_sweep():
            lo, hi = v.start, v.end
            if not lo < hi:
                raise ZooError(f"{where}: the interval's low end must be below its high end")
            if "log" in v.tags and lo <= 0:
                raise ZooError(f"{where}: a log interval must be above 0")
            dists[key] = FloatDistribution(float(lo), float(hi), log="log" in v.tags)
        else:
            raise ZooError(f"{where}: expected a,b,c, choice(...), range(lo,hi) or [tag(log, )]interval(lo,hi)")
    if not dists:
        raise ZooError("the search has nothing to search: give hydra.sweeper.params (e.g. optimizer.lr: "
                       "tag(log, interval(1e-4, 1e-1))) or a sweep on the command line (optimizer.lr=interval(1e-4,0.1))")
    return dists, fixed, raw


def _convert(x: Any) -> Any:
    """A parsed sweep element as a plain value (Hydra's own conversion: QuotedString -> str)."""
    from hydra.core.override_parser.types import Override

    return Override._convert_value(x)


def store_uri(cfg: DictConfig) -> str:
    from zoo.tracking import default_uri

    uri = OmegaConf.select(cfg, "tracking.uri")
    return str(uri) if uri else default_uri()


def optuna_storage(uri: str, storage: str | None = None) -> str:
    """The Optuna study's storage: ``storage`` if given, else ``optuna.db`` beside the MLflow store
    (``mlruns/optuna.db`` for the default store; in ``./mlruns/`` for a remote MLflow server)."""
    if storage:
        return storage
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
    else:
        folder = Path.cwd() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def study_name(sweeper: DictConfig | dict, cfg: DictConfig) -> str:
    name = sweeper.get("study_name")
    if name:
        return str(name)
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.hparams_search")
    return str(choice or OmegaConf.select(cfg, "tracking.experiment") or "zoo")


def is_search(sweeper: DictConfig | dict) -> bool:
    """Is Zoo's sweeper in its Optuna mode (``hydra.sweeper.search: optuna``)?"""
    return str(sweeper.get("search", "grid")) == "optuna" and "zoo_sweepers" in str(sweeper.get("_target_", ""))


def direction_of(sweeper: DictConfig | dict) -> str:
    d = str(sweeper.get("direction", "maximize"))
    if d not in ("maximize", "minimize"):
        raise ZooError(f"hydra.sweeper.optuna.direction={d!r} is invalid: expected maximize or minimize")
    return d


def pick_best(rows: Sequence[dict], metric: str, direction: str) -> dict | None:
    """The row (``{"metrics": {...}, ...}``) with the best finite ``metric``."""
    scored = [r for r in rows if isinstance(r["metrics"].get(metric), (int, float)) and math.isfinite(r["metrics"][metric])]
    if not scored:
        return None
    sign = 1 if direction == "maximize" else -1
    return max(scored, key=lambda r: sign * r["metrics"][metric])


def monitored_metric(task_name: str | None) -> tuple[str, str] | None:
    """``(best/val_<monitor>, maximize|minimize)`` for a task, as :mod:`zoo.tasks` defines it."""
    from zoo.plugin.tasks import TASKS

    task = TASKS.get(task_name or "")
    if task is None:
        return None
    return f"best/val_{task.monitor}", "maximize" if task.mode == "max" else "minimize"


def fail(msg: str) -> None:
    """Stop the command with one line (the sweep's jobs and callbacks are outside ``zoo.cli``'s handler)."""
    if os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0"):
        raise ZooError(msg)
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(2)


# ================================================================================ the callback

class SweepCallback(Callback):
    """Hydra callback: the sweep's parent run, its children's names and GPUs, its summary.

    Args:
        gpus_per_job: GPUs each parallel job gets.
        assign_gpus: ``auto`` (when the launcher runs local processes in parallel), ``true`` or ``false``.
        plot: draw ``plots/sweep.png`` on the parent run.
    """

    def __init__(self, gpus_per_job: int = 1, assign_gpus: Any = "auto", plot: bool = True):
        self.gpus_per_job, self.assign_gpus, self.plot = int(gpus_per_job), assign_gpus, bool(plot)
        self.parent_run_id: str | None = None
        self.uri: str | None = None
        self.experiment_id: str | None = None
        self.keys: list[str] = []
        self.kind = "grid"
        self.gpus: list[str] = []
        self.slot_dir: str | None = None
        self.failures: list[str] = []
        self.jobs = 0
        self.interrupted = False
        self._open = False
        self._main_pid: int | None = None
        self._experiment = ""

    def __getstate__(self) -> dict:  # what travels to a job's process
        return {k: v for k, v in self.__dict__.items() if k not in ("failures",)}

    # -- main process ------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from zoo.tracking import prepare_store

        self._main_pid = os.getpid()
        sweeper = config.hydra.sweeper
        self.kind = "optuna" if is_search(sweeper) else "grid"
        try:
            overrides = list(config.hydra.overrides.task)
            self.keys = varying_keys(overrides, sweeper)
            if self.kind == "optuna":
                search_space(sweeper.get("params"), overrides)  # a bad search space stops before any run
                direction_of(sweeper.optuna)
            self.uri = store_uri(config)
            experiment = str(OmegaConf.select(config, "tracking.experiment"))
            self.experiment_id = prepare_store(self.uri, experiment)
            self.parent_run_id = self._open_parent(config, overrides)
        except ZooError as exc:
            fail(str(exc))
        self._open = True
        os.environ[PARENT_ENV] = self.parent_run_id
        atexit.register(self._close_abnormally)
        launcher = str(config.hydra.launcher.get("_target_", ""))
        parallel = any(name in launcher for name in LOCAL_PARALLEL)
        if self.assign_gpus is True or (str(self.assign_gpus) == "auto" and parallel):
            self.gpus = visible_gpus()
            self.slot_dir = str(Path(str(config.hydra.sweep.dir)).resolve() / ".zoo_gpu_slots")
        self._experiment = experiment
        if "zoo_sweepers" not in str(sweeper.get("_target_", "")):
            self.announce()  # Zoo's sweepers announce it once every job's config has been checked

    def announce(self) -> None:
        print(f"zoo sweep: parent run {self.parent_run_id} in experiment '{self._experiment}' ({self.uri})", flush=True)

    def _open_parent(self, config: DictConfig, overrides: list[str]) -> str:
        import mlflow

        from zoo.tracking import git_commit

        client = mlflow.MlflowClient(self.uri)
        if self.kind == "optuna":
            previous = _study_parent(config, self.uri)
            if previous:
                with contextlib.suppress(Exception):
                    run = client.get_run(previous)
                    if run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id:
                        self._kill_stale_children(client, previous)
                        client.update_run(previous, status="RUNNING")
                        client.set_tag(previous, "zoo.resumed", time.strftime("%Y-%m-%d %H:%M:%S"))
                        return previous
        sweeper = config.hydra.sweeper
        params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
        sweep_text = " ".join(overrides + [f"{k}={v}" for k, v in params.items() if f"{k}={v}" not in overrides])
        choices = config.hydra.runtime.choices
        preset = choices.get("hparams_search") or choices.get("experiment")
        name = (f"search {study_name(sweeper.optuna, config)}" if self.kind == "optuna"
                else f"sweep {preset}" if preset else
                "sweep " + (" ".join(o for o in sweep_text.split() if override_key(o) in self.keys) or sweep_text)[:200])
        tags = {
            "zoo.sweep": self.kind, "zoo.sweep_overrides": sweep_text[:5000],
            "zoo.sweep_keys": " ".join(self.keys)[:5000], "zoo.sweeper": str(sweeper.get("_target_")),
            "zoo.launcher": str(config.hydra.launcher.get("_target_")), "zoo.sweep_dir": str(Path(str(config.hydra.sweep.dir)).resolve()),
            "mlflow.note.content": str(sweeper.get("description") or f"Sweep: `zoo train -m {sweep_text}`"),
        }
        if preset:
            tags["zoo.preset"] = str(preset)
        if sweeper.get("arms"):
            tags["zoo.sweep_arms"] = " | ".join(" ".join(a) for a in sweeper.arms)[:5000]
        commit = git_commit(os.getcwd())
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run = client.create_run(self.experiment_id, tags=tags, run_name=name)
        return run.info.run_id

    def _kill_stale_children(self, client, parent: str) -> None:
        """Children left RUNNING by a process that died (one process runs a study at a time)."""
        for run in _children(client, self.experiment_id, parent):
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, "zoo.error", "its sweep process died; the search re-runs the trial")
                client.set_terminated(run.info.run_id, "KILLED")

    def job_failed(self, label: str, error: BaseException | str) -> None:
        """Called by Zoo's sweepers for a job that failed (the sweep goes on)."""
        msg = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        self.failures.append(f"{label or 'job'}: {msg}")
        print(f"error: sweep job failed ({label}): {msg}", file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self._open:
            return
        try:
            status = self._finish(config)
        finally:
            self._open = False
            os.environ.pop(PARENT_ENV, None)
            atexit.unregister(self._close_abnormally)
        if self.failures and (self.kind == "grid" or status != "FINISHED"):
            print(f"error: {len(self.failures)} of {self.jobs or len(self.failures)} sweep jobs failed; "
                  f"the others are in the parent run {self.parent_run_id}", file=sys.stderr, flush=True)
            raise SystemExit(1)

    def _finish(self, config: DictConfig) -> str:
        import mlflow
        from mlflow.entities import Metric

        client = mlflow.MlflowClient(self.uri)
        rows = [_row(client, run) for run in _children(client, self.experiment_id, self.parent_run_id)]
        rows.sort(key=lambda r: r["start"])
        metric, direction = self._objective(config, rows)
        best = pick_best([r for r in rows if r["status"] == "FINISHED"], metric, direction) if metric else None
        tags = {"zoo.sweep_runs": len(rows), "zoo.sweep_unfinished_runs": sum(r["status"] != "FINISHED" for r in rows),
                "zoo.sweep_failed_jobs": len(self.failures)}
        if metric:
            tags.update({"zoo.best_metric": metric, "zoo.best_direction": direction})
        if best:
            tags.update({"zoo.best_run_id": best["run_id"], "zoo.best_run_name": best["name"],
                         "zoo.best_value": f"{best['metrics'][metric]:.6g}"})
            client.log_batch(self.parent_run_id, metrics=[Metric(metric, float(best["metrics"][metric]),
                                                                 int(time.time() * 1000), 0)])
        table = summary_table(rows, metric, best)
        note = str(config.hydra.sweeper.get("description") or "").strip()
        tags["mlflow.note.content"] = ((note + "\n\n") if note else "") + table["markdown"]
        for k, v in tags.items():
            client.set_tag(self.parent_run_id, k, str(v))
        client.log_text(self.parent_run_id, table["markdown"], "sweep/summary.md")
        client.log_text(self.parent_run_id, table["csv"], "sweep/summary.csv")
        if self.plot and rows:
            with contextlib.suppress(Exception):
                self._plot(client, rows, metric)
        ok = bool(rows) and any(r["status"] == "FINISHED" for r in rows)
        status = "FINISHED" if ok and (self.kind == "optuna" or not self.failures) else "FAILED"
        if status == "FAILED":
            client.set_tag(self.parent_run_id, "zoo.error",
                           "; ".join(self.failures)[:5000] or "no job of the sweep finished")
        client.set_terminated(self.parent_run_id, status)
        print(table["text"], flush=True)
        if best:
            print(f"zoo sweep: best {best['name'] or best['run_id']} {metric}={best['metrics'][metric]:.4f} "
                  f"(run {best['run_id']}); parent run {self.parent_run_id}", flush=True)
        return status

    def _objective(self, config: DictConfig, rows: list[dict]) -> tuple[str | None, str]:
        sweeper = config.hydra.sweeper
        if self.kind == "optuna":
            direction = direction_of(sweeper.optuna)
            if sweeper.optuna.get("metric"):
                return str(sweeper.optuna.metric), direction
            found = monitored_metric(rows[0]["task"]) if rows else None
            return (found[0] if found else None), direction
        tasks = {r["task"] for r in rows if r["task"]}
        if len(tasks) == 1:
            found = monitored_metric(tasks.pop())
            if found:
                return found
        return None, "maximize"

    def _plot(self, client, rows: list[dict], metric: str | None) -> None:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="zoo-sweep-")) / "sweep.png"
        curves = {}
        for r in rows:
            history = client.get_metric_history(r["run_id"], "train/loss")
            if history:
                t0 = r["start"] / 1000
                curves[_plot_name(r)] = (
                    [m.step for m in history], [m.timestamp / 1000 - t0 for m in history], [m.value for m in history])
        sweep_plot(curves, {_plot_name(r): r["metrics"].get(metric) for r in rows} if metric else {},
                   metric, path)
        client.log_artifact(self.parent_run_id, str(path), "plots")

    def _close_abnormally(self) -> None:
        """At exit when the sweep did not reach its end: the parent ends FAILED or KILLED (or goes, if empty)."""
        if not self._open or os.getpid() != self._main_pid:
            return
        self._open = False
        with contextlib.suppress(Exception):
            import mlflow

            client = mlflow.MlflowClient(self.uri)
            children = _children(client, self.experiment_id, self.parent_run_id)
            if not children:  # bad input before any job: leave nothing behind
                client.set_terminated(self.parent_run_id, "FAILED")
                client.delete_run(self.parent_run_id)
                return
            killed = self.interrupted or any(c.info.status == "KILLED" for c in children)
            client.set_tag(self.parent_run_id, "zoo.error",
                           "interrupted" if killed else ("; ".join(self.failures)[:5000] or "the sweep stopped on an error"))
            client.set_terminated(self.parent_run_id, "KILLED" if killed else "FAILED")

    # -- a job's process -----------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.parent_run_id:
            return
        os.environ[PARENT_ENV] = self.parent_run_id
        num = OmegaConf.select(config, "hydra.job.num")
        label = job_label(list(config.hydra.overrides.task), self.keys)
        name = f"trial {num}: {label}" if self.kind == "optuna" else (label or f"job {num}")
        os.environ[NAME_ENV] = name[:250]
        if self.gpus and self.slot_dir and os.getpid() != self._main_pid and not _cuda_initialized():
            per = max(self.gpus_per_job, 1)
            slot = acquire_slot(self.slot_dir, max(len(self.gpus) // per, 1))
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus_for_slot(slot, self.gpus, per))
            log.info("job %s (pid %d, slot %d): CUDA_VISIBLE_DEVICES=%s", num, os.getpid(), slot,
                     os.environ["CUDA_VISIBLE_DEVICES"])

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        os.environ.pop(NAME_ENV, None)
        if os.getpid() != self._main_pid:
            os.environ.pop(PARENT_ENV, None)


def _plot_name(row: dict) -> str:
    name = row["name"] or row["run_id"][:8]
    if name.startswith("trial ") and ":" in name:
        return name.split(":", 1)[0]
    return name if len(name) <= 48 else name[:45] + "..."


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _children(client, experiment_id: str, parent: str) -> list:
    return client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                              max_results=50000)


def _row(client, run) -> dict:
    tags = run.data.tags
    return {"run_id": run.info.run_id, "name": run.info.run_name or "", "status": run.info.status,
            "task": tags.get("zoo.task"), "metrics": dict(run.data.metrics), "start": run.info.start_time or 0,
            "overrides": tags.get("zoo.overrides", "")}


def _study_parent(config: DictConfig, uri: str) -> str | None:
    """The parent run of an existing Optuna study (a search run again continues under it)."""
    import optuna

    sweeper = config.hydra.sweeper.optuna
    storage = optuna_storage(uri, sweeper.get("storage"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name(sweeper, config), storage=storage)
    except KeyError:  # no such study yet
        return None
    return study.user_attrs.get("zoo.parent_run_id")


def summary_table(rows: Sequence[dict], metric: str | None, best: dict | None) -> dict[str, str]:
    """The children side by side: markdown (the parent's description), CSV and plain text."""
    tests = sorted({k for r in rows for k in r["metrics"] if k.startswith("test/")})
    cols = ["run", "status"] + ([metric] if metric else []) + tests + ["final/train_loss_epoch", "duration_s"]

    def cell(r: dict, c: str) -> str:
        if c == "run":
            return (r["name"] or r["run_id"][:12]) + (" (best)" if best is r else "")
        if c == "status":
            return r["status"]
        v = r["metrics"].get(c)
        return "" if v is None else f"{v:.4g}" if c != "duration_s" else f"{v:.1f}"

    body = [[cell(r, c) for c in cols] for r in rows]
    md = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n" + "".join(
        "| " + " | ".join(x.replace("|", "/") for x in line) + " |\n" for line in body)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run_id"] + cols)
    for r, line in zip(rows, body):
        writer.writerow([r["run_id"]] + line)
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(cols)]
    text = "\n".join("  " + "  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [cols] + body)
    return {"markdown": md, "csv": buf.getvalue(), "text": text}


def sweep_plot(curves: dict[str, tuple[list, list, list]], values: dict[str, float | None], metric: str | None,
               path: Path) -> Path:
    """Training loss against steps and against seconds for every child, and the metric of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if metric else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    for name, (steps, seconds, losses) in curves.items():
        smooth = _moving_average(losses, max(1, len(losses) // 100))
        axes[0].plot(steps, smooth, label=name, lw=1.2)
        axes[1].plot(seconds, smooth, label=name, lw=1.2)
    for ax, xlabel in zip(axes[:2], ("optimizer step", "seconds since the run started")):
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel("train/loss (moving average)")
        ax.set_xscale("log")  # runs of 30 and of 10,000 steps on one axis
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if curves:
        axes[0].legend(fontsize=7)
    if metric:
        names = list(values)
        axes[2].barh(range(len(names)), [v if v is not None and math.isfinite(v) else 0 for v in values.values()])
        axes[2].set_yticks(range(len(names)), names, fontsize=7)
        axes[2].invert_yaxis()
        axes[2].set_xlabel(metric)
        axes[2].grid(alpha=0.3, axis="x")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _moving_average(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out
