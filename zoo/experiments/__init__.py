"""Experiments: sweeps (a parent run with nested children), searches and comparing runs.

Owns the Hydra sweep callback, the helpers Zoo's sweepers share and ``zoo compare``. It may
import ``zoo.plugin``, ``zoo.config`` and ``zoo.tracking`` (never ``mlflow`` itself).
"""
