"""Zoo: a plugin-based deep-learning model zoo and experiment tracker.

The public contract for plugins is what this module exports: ``hookimpl`` to mark hook
implementations (see ``zoo.plugin.hookspecs``), the declaration types (``Architecture``,
``Dataset``, ``Task``, ``DataInfo``, ``Split``, ``Splits``), the factory (``create_model``,
``load_dataset``, ``get_task``), a few helpers, and ``zoo.metrics`` (the metrics the built-in tasks
report). A plugin imports nothing else from Zoo.
In a notebook or a script, ``zoo.compose([...overrides])`` composes the config ``zoo train``
would, and ``zoo.train(cfg)`` trains it and returns its metrics (docs/python-api.md).
``zoo.load_model(MODEL)`` gives a trained model back (docs/models.md).

Every name loads on first use, so ``import zoo`` stays light: pytest imports ``zoo.testing``
(the contract kit) in every run through its pytest11 entry point.
"""

__version__ = "0.1.0"

# name -> the module (under zoo) that defines it, or "module:attribute" when it is named otherwise there
_EXPORTS = {
    **dict.fromkeys(("Architecture", "DataInfo", "Dataset", "IGNORE_INDEX", "Split", "Splits", "Task"),
                    "plugin.declarations"),
    "hookimpl": "plugin.hookspecs",
    **dict.fromkeys(("create_model", "load_dataset", "get_task"), "plugin.registry"),
    "per_position": "plugin.tasks",
    **dict.fromkeys(("ConfigError", "ZooError"), "errors"),
    **dict.fromkeys(("ACTIVATIONS", "activation", "check_range"), "plugin.nn"),
    **dict.fromkeys(("TensorSplit", "data_path", "num_batches", "scaling", "source_of", "split_indices",
                     "standardize"), "plugin.data"),
    **dict.fromkeys(("ArrayFile", "RowWriter", "keep_in_memory", "row_stats"), "plugin.arrays"),
    **dict.fromkeys(("StreamSplit", "array_splits"), "plugin.stream"),
    "pyplot": "plots",
    "train": "training.train",  # train(cfg) -> metrics, for notebooks and scripts
    "compose": "config:compose_run",  # compose([overrides]) -> the config zoo train would train
    "load_model": "models.reference",  # load_model("models:/name@alias") -> the trained torch module
}


def __getattr__(name: str):
    import importlib

    if name in ("nn", "data", "metrics"):
        return importlib.import_module(f"{__name__}.plugin.{name}")
    if name in _EXPORTS:
        module, _, attribute = _EXPORTS[name].partition(":")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute or name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = [*sorted(_EXPORTS), "__version__"]
