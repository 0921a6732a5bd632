"""Experiments: sweeps (a parent run with nested children), searches and comparing runs.

Owns the Hydra sweep callback (:mod:`.sweep`: only the glue between Hydra's events and the
tracking package), what it is built from (:mod:`.overrides`: parsing and crossing a sweep's
overrides; :mod:`.gpus`: a GPU per parallel job; :mod:`.objective`: which metric decides and
which way; :mod:`.report`: the summary table and figure) and ``zoo compare`` (:mod:`.compare`,
its table in :mod:`.table`). It may import ``zoo.errors``, ``zoo._runtime`` (signals),
``zoo.config`` (override text), ``zoo.plugin.tasks`` (a task's monitored metric),
``zoo.tracking`` (every read and write of the store), ``zoo.text``, ``zoo.plots``, Hydra and
OmegaConf. Never ``mlflow`` (only
``zoo.tracking`` does) and never Optuna (the search space lives beside the Optuna sweeper in
``hydra_plugins/zoo_sweepers/``).
"""
