"""Zoo's Hydra plugins: the ``zoo`` sweeper (a grid with arms, or an Optuna search), and a clear error for the
Slurm launcher preset when ``hydra-submitit-launcher`` is not installed.

Hydra discovers plugins only inside the ``hydra_plugins`` namespace package, so the classes live
here: the sweeper (:mod:`.sweeper`) with its grid (:mod:`.grid`) and Optuna (:mod:`.optuna_search`,
:mod:`.search_space`) modes, and a trial job's :mod:`.reporter` (the training side hands it each
epoch's metric and stops when it says so). They build on :mod:`zoo.experiments` (overrides, the sweep callback)
and reach MLflow only through :mod:`zoo.tracking`; Optuna is imported here and nowhere in ``zoo``.
"""
