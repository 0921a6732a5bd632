"""Zoo's Hydra plugins: the ``zoo_grid`` and ``zoo_optuna`` sweepers, and a clear error for the
Slurm launcher preset when ``hydra-submitit-launcher`` is not installed.

Hydra discovers plugins only inside the ``hydra_plugins`` namespace package, so the classes live
here; the logic they share with the sweep callback is in :mod:`zoo.sweep`.
"""
