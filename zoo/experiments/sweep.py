"""Sweeps: ``zoo train -m ...``, lesson presets and Optuna searches, recorded as one parent run.

A sweep is Hydra's multirun. :class:`SweepCallback` (configured under ``hydra.callbacks`` in
``conf/config.yaml``) turns it into MLflow structure, through :mod:`zoo.tracking`:

* before any job starts it creates the store and the experiment (several processes opening a
  fresh SQLite store at once break it) and a **parent run** carrying the sweep's overrides;
* each job is a **child run** nested under it: the callback sets ``ZOO_PARENT_RUN_ID`` in the
  job's process, ``tracking.parent_run_id`` reads it and training tags the run with
  ``mlflow.parentRunId``; ``ZOO_RUN_NAME`` names the child by what varies (``model=mlp
  optimizer.lr=0.1``), so the MLflow UI's nested view reads as a table of the sweep;
* at the end the parent gets the best child's id and metric (tags ``zoo.best_run_id``,
  ``zoo.best_metric``, and the metric itself), a summary table (its description in the UI and
  ``sweep/summary.csv``) and ``plots/sweep.png`` (:mod:`.report`), and ends FINISHED; a sweep
  that stops early ends FAILED or KILLED, never RUNNING, and one that never ran a job is deleted.

Zoo's sweepers (``hydra_plugins/zoo_sweepers/``; Hydra only loads plugins from the
``hydra_plugins`` package) check every job's config first and then call :meth:`SweepCallback.open`
themselves, so bad input leaves no run; they say so with the class attribute
``opens_sweep_run = True``. With any other sweeper (``hydra/sweeper=basic``) the callback opens
the parent run as the sweep starts. Parallel jobs on one machine each get their own GPU
(:mod:`.gpus`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo._runtime import current_stop, keep_stop_signals, release_stop_signals, stop_on_signals
from zoo.config import override_key
from zoo.errors import ZooError, fail, one_line
from zoo.experiments.gpus import acquire_slot, cuda_initialized, gpus_for_slot, visible_gpus
from zoo.experiments.objective import monitored, pick_best
from zoo.experiments.engines import check_launcher
from zoo.experiments.groups import group_keys, group_runs
from zoo.experiments.overrides import check_repeats, job_label, varying_keys
from zoo.experiments.report import grouped_table, plot_name, summary_table, sweep_plot
from zoo.tracking import default_uri, git_commit, parents, prepare_store, tags
from zoo.tracking.runs import Runs, row

log = logging.getLogger(__name__)

PARENT_ENV = "ZOO_PARENT_RUN_ID"
NAME_ENV = "ZOO_RUN_NAME"
LOCAL_PARALLEL = ("joblib",)  # launchers whose jobs are processes on this machine
STALE_CHILD = "its sweep process died; the search re-runs the trial"


def store_uri(cfg: DictConfig) -> str:
    """The sweep's store: ``tracking.uri``, else the project's default."""
    uri = OmegaConf.select(cfg, "tracking.uri")
    return str(uri) if uri else default_uri()


def typed_overrides(config: DictConfig) -> list[str]:
    """The command line's overrides as the user typed them (``${...}`` not resolved)."""
    return [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]


def sweeper_opens_the_run(config: DictConfig) -> bool:
    """Whether the configured sweeper opens the parent run itself, after checking every job.

    Zoo's sweepers declare it (``opens_sweep_run = True`` on the class). Hydra calls
    ``on_multirun_start`` before it creates the sweeper, so the class is asked here.
    """
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(str(config.hydra.sweeper._target_)), "opens_sweep_run", False))
    except Exception:  # a sweeper Hydra cannot load: it says so itself, right after this
        return False


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
        self.objective: tuple[str | None, str] | None = None  # a search's (metric or None, direction)
        self.gpus: list[str] = []
        self.slot_dir: str | None = None
        self.failures: list[str] = []
        self.jobs = 0
        self.repeats = 1  # seeds per configuration (hydra.sweeper.repeats)
        self.stopped: str | None = None  # why a search stopped starting trials (too many failures)
        self.interrupted = False
        self._open = False
        self._own_signals = False
        self._main_pid: int | None = None
        self._experiment = ""
        self._parent: dict[str, Any] = {}  # the new parent run's name and tags

    def __getstate__(self) -> dict:  # what travels to a job's process
        return {k: v for k, v in self.__dict__.items() if k not in ("failures", "_parent")}

    # -- main process ------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._main_pid = os.getpid()
        self._own_signals = current_stop() is None  # the zoo command took them already
        keep_stop_signals("now")  # SIGTERM and SIGHUP stop the sweep as Ctrl-C does (and its workers: pools.py)
        overrides = typed_overrides(config)
        try:
            self.keys = varying_keys(overrides, config.hydra.sweeper)
            self.repeats = check_repeats(config.hydra.sweeper.get("repeats", 1), self.keys)
            check_launcher(config)
        except ZooError as exc:
            fail(str(exc))
        if self.repeats > 1:
            self.keys.append("seed")
        self.uri = store_uri(config)
        self._experiment = str(OmegaConf.select(config, "tracking.experiment"))
        try:  # before any job (several processes opening a fresh SQLite store at once break it)
            self.experiment_id = prepare_store(self.uri, self._experiment)
        except ZooError as exc:
            fail(str(exc))
        self._parent = self._describe(config, overrides)
        launcher = str(config.hydra.launcher.get("_target_", ""))
        parallel = any(name in launcher for name in LOCAL_PARALLEL)
        if self.assign_gpus is True or (str(self.assign_gpus) == "auto" and parallel):
            self.gpus = visible_gpus()
            self.slot_dir = str(Path(str(config.hydra.sweep.dir)).resolve() / ".zoo_gpu_slots")
        if not sweeper_opens_the_run(config):
            self.open()

    def open(self, kind: str = "grid", name: str | None = None, resume: str | None = None,
             objective: tuple[str | None, str] | None = None) -> str:
        """Create the parent run, or continue ``resume`` (an earlier search's), before the first job starts.

        Args:
            kind: ``grid`` or ``optuna`` (the tag ``zoo.sweep``; trials are named ``trial <n>: ...``).
            name: the parent run's name (default: ``sweep <preset>`` or ``sweep <what varies>``).
            resume: the parent run of an earlier run of the same search.
            objective: ``(metric or None, direction)`` a search optimises (None: the task's monitored metric).
        """
        self.kind, self.objective = kind, objective
        with stop_on_signals("hold"):  # a signal now stops the sweep once the parent run is known to end
            if resume and parents.continue_parent(self.uri, self.experiment_id, resume, STALE_CHILD):
                self.parent_run_id = resume
            else:
                self.parent_run_id = parents.create_parent(self.uri, self.experiment_id, name or self._parent["name"],
                                                           {tags.SWEEP: kind, **self._parent["tags"]})
            self._open = True
            os.environ[PARENT_ENV] = self.parent_run_id
            atexit.register(self._close_abnormally)
        print(f"zoo sweep: parent run {self.parent_run_id} in experiment '{self._experiment}' ({self.uri})", flush=True)
        return self.parent_run_id

    def _describe(self, config: DictConfig, overrides: list[str]) -> dict[str, Any]:
        """The name and tags of a new parent run: what the sweep runs, where, and why."""
        sweeper = config.hydra.sweeper
        params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
        sweep_text = " ".join(overrides + [f"{k}={v}" for k, v in params.items() if f"{k}={v}" not in overrides])
        choices = config.hydra.runtime.choices
        preset = choices.get("hparams_search") or choices.get("experiment")
        varying = " ".join(o for o in sweep_text.split() if override_key(o) in self.keys)
        name = f"sweep {preset}" if preset else "sweep " + (varying or sweep_text)[:200]
        values = {
            tags.SWEEP_OVERRIDES: sweep_text[:5000], tags.SWEEP_KEYS: " ".join(self.keys)[:5000],
            tags.SWEEPER: str(sweeper.get("_target_")), tags.LAUNCHER: str(config.hydra.launcher.get("_target_")),
            tags.SWEEP_DIR: str(Path(str(config.hydra.sweep.dir)).resolve()),
            tags.NOTE: str(sweeper.get("description") or f"Sweep: `zoo train -m {sweep_text}`"),
        }
        if preset:
            values[tags.PRESET] = str(preset)
        if sweeper.get("arms"):
            values[tags.SWEEP_ARMS] = " | ".join(" ".join(a) for a in sweeper.arms)[:5000]
        commit = git_commit(os.getcwd())
        if commit:
            values[tags.GIT_COMMIT] = commit
        return {"name": name, "tags": values}

    def job_failed(self, label: str, error: BaseException | str) -> None:
        """Called by Zoo's sweepers for a job that failed (the sweep goes on)."""
        msg = one_line(error)
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
            if self._own_signals:
                release_stop_signals()
        if self.stopped:
            fail(f"the search stopped early: {self.stopped}; parent run {self.parent_run_id}", code=1)
        if self.failures and (self.kind == "grid" or status != "FINISHED"):
            fail(f"{len(self.failures)} of {self.jobs or len(self.failures)} sweep jobs failed; "
                 f"the others are in the parent run {self.parent_run_id}", code=1)
        if status != "FINISHED":  # no job failed, yet none finished in this store (children nested elsewhere)
            fail(f"no job of the sweep finished a run nested under the parent run {self.parent_run_id} "
                 f"in {self.uri}; it ended {status}", code=1)

    def _finish(self, config: DictConfig) -> str:
        runs = sorted(Runs(self.uri).children(self.parent_run_id, [self.experiment_id]),
                      key=lambda r: r.info.start_time or 0)
        rows = [row(run) for run in runs]
        metric, direction = self._objective(rows)
        candidates = [r for r in rows if r["status"] == "FINISHED" and r["tags"].get(tags.PRUNED) != "true"]
        best = pick_best(candidates, metric, direction) if metric else None
        values = {tags.SWEEP_RUNS: len(rows), tags.SWEEP_UNFINISHED_RUNS: sum(r["status"] != "FINISHED" for r in rows),
                  tags.SWEEP_FAILED_JOBS: len(self.failures),
                  tags.SWEEP_PRUNED_RUNS: sum(r["tags"].get(tags.PRUNED) == "true" for r in rows)}
        if self.stopped:
            values[tags.SWEEP_STOPPED] = self.stopped
        if metric:
            values.update({tags.BEST_METRIC: metric, tags.BEST_DIRECTION: direction})
        table = summary_table(rows, metric, best)
        texts = {"sweep/summary.md": table["markdown"], "sweep/summary.csv": table["csv"]}
        best_value = best["metrics"][metric] if best else None
        grouped = None
        if self.repeats > 1 and metric:  # the configurations over their seeds: the best mean wins
            values[tags.REPEATS] = self.repeats
            grouped = grouped_table(group_runs(runs, group_keys(runs, None)), metric, direction)
            texts.update({"sweep/groups.md": grouped["markdown"], "sweep/groups.csv": grouped["csv"]})
            group = grouped["best"]
            best = pick_best([r for r in candidates if r["run_id"] in {x.info.run_id for x in group.runs}],
                             metric, direction) if group else None
            if group:
                st = grouped["stats"][id(group)][metric]
                best_value = st.mean
                values.update({tags.BEST_GROUP: group.label()[:5000], tags.BEST_N: st.n,
                               tags.BEST_STD: "" if st.std is None else f"{st.std:.6g}"})
        if best:
            values.update({tags.BEST_RUN_ID: best["run_id"], tags.BEST_RUN_NAME: best["name"],
                           tags.BEST_VALUE: f"{best_value:.6g}"})
        note = str(config.hydra.sweeper.get("description") or "").strip()
        values[tags.NOTE] = ((note + "\n\n") if note else "") + (
            grouped["markdown"] + "\n" if grouped else "") + table["markdown"]
        ok = bool(rows) and any(r["status"] == "FINISHED" for r in rows)
        status = "FINISHED" if ok and not self.stopped and (self.kind == "optuna" or not self.failures) else "FAILED"
        error = (self.stopped or "; ".join(self.failures) or "no job of the sweep finished") if status == "FAILED" else None
        with tempfile.TemporaryDirectory(prefix="zoo-sweep-") as scratch:  # the figure, until the store has it
            figures = {}
            if self.plot and rows:
                try:
                    figures["plots"] = self._plot(rows, metric, Path(scratch) / "sweep.png")
                except Exception as exc:  # a figure is never a reason to fail the sweep
                    log.warning("could not draw the sweep's figure: %s", one_line(exc))
            parents.finish_parent(self.uri, self.parent_run_id, status, tags=values,
                                  metrics={metric: best_value} if best else {}, texts=texts, artifacts=figures,
                                  error=error)
        print(table["text"], flush=True)
        if grouped:
            print(grouped["text"], flush=True)
        if best and grouped:
            print(f"zoo sweep: best {grouped['best'].label()} {metric}={best_value:.4f} (mean of {self.repeats} seeds); "
                  f"parent run {self.parent_run_id}", flush=True)
        elif best:
            print(f"zoo sweep: best {best['name'] or best['run_id']} {metric}={best_value:.4f} "
                  f"(run {best['run_id']}); parent run {self.parent_run_id}", flush=True)
            self._register(config, best["run_id"])
        return status

    def _register(self, config: DictConfig, run_id: str) -> None:
        """``tracking.register=NAME``: the best child's model as a new version of NAME."""
        name = config.tracking.get("register")
        if not name:
            return
        from zoo.models.registry import register_run_model

        try:
            done = register_run_model(run_id, name, config.tracking.get("register_alias"), self.uri)
        except ZooError as exc:
            print(f"warning: the sweep's best run was not registered: {exc}", file=sys.stderr, flush=True)
            return
        alias = f" (alias @{done['alias']})" if done["alias"] else ""
        print(f"zoo sweep: registered {name} version {done['version']}{alias} from run {run_id}", flush=True)

    def _objective(self, rows: list[dict]) -> tuple[str | None, str]:
        """The metric that picks the best child and its direction: a search's own, else what the children monitor."""
        if self.kind == "optuna" and self.objective:
            metric, direction = self.objective
            found = monitored(rows[0]["tags"]) if rows and not metric else None
            return metric or (found[0] if found else None), direction
        found = {monitored(r["tags"]) for r in rows} - {None}
        return found.pop() if len(found) == 1 else (None, "maximize")

    def _plot(self, rows: list[dict], metric: str | None, path: Path) -> Path:
        runs, curves = Runs(self.uri), {}
        for r in rows:
            history = runs.history(r["run_id"], "train/loss")
            if history:
                t0 = r["start"] / 1000
                curves[plot_name(r)] = (
                    [m.step for m in history], [m.timestamp / 1000 - t0 for m in history], [m.value for m in history])
        values = {plot_name(r): r["metrics"].get(metric) for r in rows} if metric else {}
        return sweep_plot(curves, values, metric, path)

    def interrupted_by(self, exc: BaseException) -> None:
        """A signal stopped the sweep (its running jobs ended KILLED): the parent run ends KILLED now, and
        ``exc`` carries how to go on (``zoo_message``, which the command line prints)."""
        self.interrupted = True
        if not self._open or os.getpid() != self._main_pid:
            return
        self._open = False
        atexit.unregister(self._close_abnormally)
        try:
            with stop_on_signals("hold"):
                status = parents.abandon_parent(self.uri, self.experiment_id, self.parent_run_id, interrupted=True,
                                                error="interrupted")
                children = Runs(self.uri).children(self.parent_run_id, [self.experiment_id]) if status else []
        except Exception as exc_:  # the store itself failed: say what is known
            log.warning("could not end the sweep's parent run %s: %s", self.parent_run_id, one_line(exc_))
            return
        if status is None:
            exc.zoo_message = "the sweep stopped before its first job; it left no run"
            return
        stopped = [c.info.run_id for c in children if c.info.status == "KILLED"]
        if self.kind == "optuna":
            how = "run the same command again to continue the search (its stopped trials run first)"
        else:
            how = (f"continue each with zoo train resume=<run id> ({', '.join(stopped)})" if stopped else
                   "none was stopped mid-way")
            left = max(self.jobs - len(children), 0)
            how += f"; {left} job{'s' if left != 1 else ''} not started" if self.jobs else ""
        exc.zoo_message = (f"the sweep's parent run {self.parent_run_id} ended {status}; {len(stopped)} "
                           f"job{'s' if len(stopped) != 1 else ''} stopped: {how}")

    def _close_abnormally(self) -> None:
        """At exit when the sweep did not reach its end: the parent ends FAILED or KILLED (or goes, if empty)."""
        if not self._open or os.getpid() != self._main_pid:
            return
        self._open = False
        with contextlib.suppress(Exception):
            parents.abandon_parent(self.uri, self.experiment_id, self.parent_run_id, interrupted=self.interrupted,
                                   error="; ".join(self.failures) or "the sweep stopped on an error")

    # -- a job's process -----------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.parent_run_id:
            return
        if os.getpid() != self._main_pid:  # a worker process: a signal between its jobs keeps the next from starting
            stop = keep_stop_signals("hold")
            if stop is not None:
                stop.clear()  # a stop its last job already ended with
        os.environ[PARENT_ENV] = self.parent_run_id
        num = OmegaConf.select(config, "hydra.job.num")
        label = job_label(typed_overrides(config), self.keys)
        trial = num // self.repeats if isinstance(num, int) else num
        name = f"trial {trial}: {label}" if self.kind == "optuna" else (label or f"job {num}")
        os.environ[NAME_ENV] = name[:250]
        if self.gpus and self.slot_dir and os.getpid() != self._main_pid and not cuda_initialized():
            per = max(self.gpus_per_job, 1)
            slot = acquire_slot(self.slot_dir, max(len(self.gpus) // per, 1))
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus_for_slot(slot, self.gpus, per))
            log.info("job %s (pid %d, slot %d): CUDA_VISIBLE_DEVICES=%s", num, os.getpid(), slot,
                     os.environ["CUDA_VISIBLE_DEVICES"])

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        os.environ.pop(NAME_ENV, None)
        if os.getpid() != self._main_pid:
            os.environ.pop(PARENT_ENV, None)
