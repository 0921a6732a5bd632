"""Zoo: a plugin-based deep-learning model zoo and experiment tracker.

The public contract for plugins is what this module exports: ``hookimpl`` to mark hook
implementations (see ``zoo.hookspecs``), the declaration types, and a few helpers.
"""

__version__ = "0.1.0"

from .plugin.declarations import KINDS, Architecture, DataInfo, Dataset, Split, Splits
from .errors import ConfigError, ZooError
from .plugin.hookspecs import hookimpl

# The torch-backed helpers load on first use, so `import zoo` stays light: pytest imports
# zoo.testing (the contract kit) in every run through its pytest11 entry point.
_LAZY = {"ACTIVATIONS": "plugin.nn", "activation": "plugin.nn", "check_range": "plugin.nn",
         "TensorSplit": "plugin.data", "split_indices": "plugin.data", "standardize": "plugin.data",
         "pyplot": "plots"}


def __getattr__(name: str):
    import importlib

    if name in ("nn", "data"):
        return importlib.import_module(f"{__name__}.plugin.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ACTIVATIONS", "Architecture", "ConfigError", "DataInfo", "Dataset", "KINDS", "Split", "Splits",
    "TensorSplit", "ZooError", "activation", "check_range", "hookimpl", "pyplot", "split_indices", "standardize",
    "__version__",
]
