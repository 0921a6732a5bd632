"""Zoo: a plugin-based deep-learning model zoo and experiment tracker.

The public contract for plugins is what this module exports: ``hookimpl`` to mark hook
implementations (see ``zoo.plugin.hookspecs``), the declaration types (``Architecture``,
``Dataset``, ``Task``, ``DataInfo``, ``Split``, ``Splits``), the factory (``create_model``,
``load_dataset``, ``get_task``) and a few helpers. A plugin imports nothing else from Zoo.
``zoo.train(cfg)`` trains a composed config and returns its metrics.

Every name loads on first use, so ``import zoo`` stays light: pytest imports ``zoo.testing``
(the contract kit) in every run through its pytest11 entry point.
"""

__version__ = "0.1.0"

# name -> the module (under zoo) that defines it
_EXPORTS = {
    **dict.fromkeys(("Architecture", "DataInfo", "Dataset", "IGNORE_INDEX", "Split", "Splits", "Task"),
                    "plugin.declarations"),
    "hookimpl": "plugin.hookspecs",
    **dict.fromkeys(("create_model", "load_dataset", "get_task"), "plugin.registry"),
    "per_position": "plugin.tasks",
    **dict.fromkeys(("ConfigError", "ZooError"), "errors"),
    **dict.fromkeys(("ACTIVATIONS", "activation", "check_range"), "plugin.nn"),
    **dict.fromkeys(("TensorSplit", "data_path", "num_batches", "source_of", "split_indices", "standardize"),
                    "plugin.data"),
    **dict.fromkeys(("ArrayFile", "RowWriter", "StreamSplit", "array_splits", "keep_in_memory", "row_stats"),
                    "plugin.stream"),
    "pyplot": "plots",
    "train": "training.train",  # train(cfg) -> metrics, for notebooks and scripts
}


def __getattr__(name: str):
    import importlib

    if name in ("nn", "data"):
        return importlib.import_module(f"{__name__}.plugin.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = [*sorted(_EXPORTS), "__version__"]
