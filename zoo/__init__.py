"""Zoo: a plugin-based deep-learning model zoo and experiment tracker.

The public contract for plugins is what this module exports: ``hookimpl`` to mark hook
implementations (see ``zoo.hookspecs``), the declaration types, and a few helpers.
"""

__version__ = "0.1.0"

from .declarations import KINDS, Architecture, DataInfo, Dataset, Split, Splits
from .errors import ConfigError, ZooError
from .hookspecs import hookimpl
from .nn import ACTIVATIONS, activation, check_range
from .data import TensorSplit, split_indices, standardize

__all__ = [
    "ACTIVATIONS", "Architecture", "ConfigError", "DataInfo", "Dataset", "KINDS", "Split", "Splits",
    "TensorSplit", "ZooError", "activation", "check_range", "hookimpl", "split_indices", "standardize",
    "__version__",
]
