"""Training: ``train(cfg) -> metrics`` and the learning loop.

Owns one run's steps (``train.py``: resume, validate, build, run, fit, outputs, metrics), the
loop core (``loop.py``: the notes' step, epochs with exact mid-epoch resume, evaluation, the best
epoch, early stopping; and the :class:`~zoo.training.loop.Callback` base), the typed trainer
settings (``settings.py``), the callbacks, one concern each (``callbacks/``: the step log,
progress bars, timings, a search trial's reports to Optuna for pruning), the checkpoint format and
policy, loading a checkpoint and the lock on a run's checkpoint folder (``checkpoint.py``), ``resume=``
(``resume.py``: which run a checkpoint continues, who may continue it, what may change, every step
once), what is checked of the data and
the model before a run exists (``preflight.py``: memory estimates, the splits, one forward pass),
DistributedDataParallel (``distributed.py``), and how many CPU threads torch uses during a run
(``threads.py``: ``trainer.threads``, ``OMP_NUM_THREADS`` or cores less one).

It may import ``zoo.errors``, ``zoo._runtime``, ``zoo.plugin``, ``zoo.config`` (validation) and
``zoo.tracking`` (the run and its metrics; never ``mlflow`` itself), and torch,
Hydra's ``instantiate`` and tqdm; never Optuna: a search trial's reports go to the reporter the
sweep provides (``hydra_plugins.zoo_sweepers.reporter``, asked for in ``callbacks/pruning.py``). Nothing in it imports a plugin by name. The loop core itself
knows no tracker: what a run reports goes through its callbacks.
"""
