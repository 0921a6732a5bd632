"""``hydra/sweeper=zoo`` (Zoo's default): a grid sweep with arms, or an Optuna search.

* ``search: grid``: jobs are the cartesian product of ``params`` and the command line's sweeps
  (``a,b,c``, ``choice()``, ``range()``), as Hydra's basic sweeper makes them, repeated for each
  arm of ``arms`` (a list of override lists), so a preset can compare settings that are not a
  product. See :mod:`.grid`.
* ``search: optuna``: an Optuna study over ``params`` (``interval``, ``tag(log, interval)``,
  ``choice``, ``range``), resumable, settings under ``optuna``. See :mod:`.optuna_search`.

Both check every job's config before the first one starts, report a failed job and go on with
the others. One sweeper with a mode, rather than two sweeper options, because ``conf/config.yaml``
chooses Zoo's sweeper in its defaults list, and Hydra lets that choice win over the
``override /hydra/sweeper`` of a nested preset: an ``hparams_search`` preset sets
``hydra.sweeper.search: optuna`` instead.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf


@dataclass
class OptunaConf:
    # the study (default: the hparams_search preset's name); the same name continues the same study
    study_name: Optional[str] = None
    # an Optuna storage URL (default: SQLite optuna.db beside the MLflow store)
    storage: Optional[str] = None
    # the metric of a trial's run to optimise, e.g. best/val_accuracy (null: the task's monitored one)
    metric: Optional[str] = None
    # maximize or minimize; null: the metric's own way (the task knows it; a loss goes down)
    direction: Optional[str] = None
    # trials in the study in all: finished ones count, running the command again adds the missing ones
    n_trials: int = 20
    # trials running at once (in parallel with hydra/launcher=parallel or slurm)
    n_jobs: int = 1
    # true: a trial starts as soon as one ends (n_jobs always running); false: in batches of n_jobs
    asynchronous: bool = True
    # tpe or random
    sampler: str = "tpe"
    seed: Optional[int] = 0
    # none, median, hyperband or successive_halving: stop hopeless trials after an epoch
    pruner: str = "none"
    # keyword arguments of the Optuna pruner (command line: +hydra.sweeper.optuna.pruner_settings.n_startup_trials=5)
    pruner_settings: Dict[str, Any] = field(default_factory=dict)
    # stop starting trials once more than this fraction of the finished ones failed (1.0: never)
    max_failure_rate: float = 0.5


@dataclass
class ZooSweeperConf:
    _target_: str = "hydra_plugins.zoo_sweepers.sweeper.ZooSweeper"
    # grid (every combination) or optuna (a search over params)
    search: str = "grid"
    # key: values in Hydra's sweep syntax; merged with the command line's sweeps
    params: Optional[Dict[str, str]] = None
    # grid: lists of overrides; the grid runs once per arm
    arms: Optional[List[List[str]]] = None
    # grid: jobs handed to the launcher at once (null: all)
    max_batch_size: Optional[int] = None
    # every configuration (grid job, Optuna trial) runs this many times, with seeds seed, seed+1, ...
    repeats: int = 1
    # the sweep's point: the parent run's description in the MLflow UI
    description: Optional[str] = None
    optuna: OptunaConf = field(default_factory=OptunaConf)


ConfigStore.instance().store(group="hydra/sweeper", name="zoo", node=ZooSweeperConf, provider="zoo")


class ZooSweeper(Sweeper):
    """Zoo's sweeper: a grid with arms, or an Optuna search (``search``)."""

    # It checks every job's config first and then opens the sweep's parent run itself, through the
    # callback (:meth:`zoo.experiments.sweep.SweepCallback.open`), so bad input leaves no run. The
    # callback reads this when the sweep starts: Hydra calls on_multirun_start before setup().
    opens_sweep_run = True

    def __init__(self, search: str = "grid", params: Optional[Dict[str, str]] = None,
                 arms: Optional[List[List[str]]] = None, max_batch_size: Optional[int] = None,
                 description: Optional[str] = None, optuna: Any = None, repeats: Any = 1) -> None:
        self.search = search
        self.repeats = repeats
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.arms = [[str(o) for o in arm] for arm in (arms or [])]
        self.max_batch_size = max_batch_size
        self.description = description
        self.optuna = OmegaConf.to_container(optuna, resolve=True) if OmegaConf.is_config(optuna) else dict(optuna or {})
        self.hydra_context = self.config = self.launcher = self.callback = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from ._common import zoo_callback

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.callback = zoo_callback(hydra_context)  # the sweep's parent run, when hydra.callbacks has it

    def sweep(self, arguments: List[str]) -> Any:
        from zoo.errors import fail

        if self.search == "optuna":
            from .optuna_search import run_search

            return run_search(self, arguments)
        if self.search == "grid":
            from .grid import run_grid

            return run_grid(self, arguments)
        fail(f"hydra.sweeper.search={self.search!r} is invalid: expected grid or optuna")
