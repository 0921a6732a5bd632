"""Training: ``train(cfg) -> metrics`` and the learning loop.

Owns the run's steps (``train``), the loop core (the notes' step, epochs, evaluation, early
stopping), its callbacks, the checkpoint format and DistributedDataParallel. It may import
``zoo.plugin``, ``zoo.config`` and ``zoo.tracking`` (never ``mlflow`` itself).
"""
