"""What a plugin declares: architectures, datasets, and the data they exchange.

These are small frozen dataclasses. The core validates every declaration a plugin returns, so a
malformed one is reported against the plugin that returned it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

#: Data kinds the built-ins use. Plugins may declare new kinds; these are the known ones.
KINDS = ("tabular", "sequence", "graph", "text", "image")


@dataclass(frozen=True)
class DataInfo:
    """What a builder needs to know about the data.

    Args:
        kind: the data kind (``tabular``, ``sequence``, ``graph``, ``text``, ``image`` ...).
        task: the task name that turns a batch into a loss (see ``zoo.tasks``).
        input_shape: the shape of one example's input, without the batch dimension
            (``(64,)`` for digits as features, ``(T, F)`` for sequences, ``(F,)`` node features).
        output_dim: classes for classification, targets for regression, vocabulary size for
            next-token prediction, features for reconstruction.
        meta: anything else a builder or a report may want (class names, vocabulary, image
            shape, graph level ``"node"`` or ``"graph"``).
    """

    kind: str
    task: str
    input_shape: tuple[int, ...]
    output_dim: int
    meta: Mapping[str, Any] = field(default_factory=dict)


class Split(Protocol):
    """One split of a dataset. ``zoo.TensorSplit`` is the in-memory implementation."""

    def __len__(self) -> int: ...

    def to(self, device) -> "Split": ...

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None) -> Iterator[tuple]:
        """Yield ``(inputs, target)`` pairs; ``batch_size=None`` means the whole split at once."""

    def num_batches(self, batch_size: int | None) -> int: ...

    def example(self, n: int = 2):
        """The inputs of the first ``n`` examples, as the model takes them."""


@dataclass(frozen=True)
class Splits:
    """What ``Dataset.load`` returns: three splits and the shape information."""

    train: Split
    val: Split
    test: Split
    info: DataInfo


@dataclass(frozen=True)
class Architecture:
    """An architecture a plugin provides.

    Args:
        name: the registry name, used as ``model=<name>``.
        family: the family it belongs to (``ann``, ``rnn``, ``autoencoder``, ``gnn``, ``transformer``).
        kinds: the data kinds it accepts; ``model=X data=Y`` fails early when Y's kind is not here.
        build: ``build(info: DataInfo, **hparams) -> torch.nn.Module``. Raise ``ValueError``
            naming the setting for a bad hyperparameter; Zoo reports it as ``model.<key>``.
        defaults: default hyperparameters; each becomes ``model.<key>`` in the config, and its
            type is the type a command-line override must have.
        description: one line for ``zoo list``.
        tasks: the tasks it can serve (``None``: any task of its kinds).
        report: optional ``report(model, splits, out_dir) -> list[path]`` called after
            training; the files it writes are logged as run artifacts (plots, samples).
        smoke: hyperparameter overrides that make a tiny, fast model for the registry-driven
            tests and the contract kit (e.g. ``{"hidden_size": 8}``).
    """

    name: str
    family: str
    kinds: tuple[str, ...]
    build: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    tasks: tuple[str, ...] | None = None
    report: Callable[..., Sequence[Any]] | None = None
    smoke: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A dataset a plugin provides.

    Args:
        name: the registry name, used as ``data=<name>``.
        kind: its data kind (see :data:`KINDS`).
        task: the task it poses (``classification``, ``regression`` ...; see ``zoo.tasks``).
        load: ``load(seed: int, **params) -> Splits``; generated or read from an installed
            package, never downloaded. Raise ``ValueError`` naming the setting for bad params.
        defaults: default parameters; each becomes ``data.<key>`` in the config.
        description: one line for ``zoo list``.
        smoke: parameter overrides that make a tiny version for tests (e.g. ``{"n_samples": 64}``).
    """

    name: str
    kind: str
    task: str
    load: Callable[..., Splits]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    smoke: Mapping[str, Any] = field(default_factory=dict)


def check_declaration(obj: Any, cls: type) -> str | None:
    """Why ``obj`` is not a valid ``cls`` declaration, or ``None`` when it is."""
    if not isinstance(obj, cls):
        return f"expected zoo.{cls.__name__}, got {type(obj).__name__}: {obj!r:.80}"
    if not isinstance(obj.name, str) or not obj.name.isidentifier():
        return f"name {obj.name!r} is not a valid identifier"
    if not callable(obj.build if cls is Architecture else obj.load):
        return f"{obj.name}: {'build' if cls is Architecture else 'load'} is not callable"
    if not isinstance(obj.defaults, Mapping) or not all(isinstance(k, str) for k in obj.defaults):
        return f"{obj.name}: defaults must be a mapping of setting names to values"
    if "name" in obj.defaults:
        return f"{obj.name}: 'name' is reserved and cannot be a default setting"
    if cls is Architecture and (isinstance(obj.kinds, str) or not obj.kinds):
        return f"{obj.name}: kinds must be a non-empty tuple of data kinds, got {obj.kinds!r}"
    return None


def num_batches(n: int, batch_size: int | None) -> int:
    return 1 if batch_size is None else max(1, math.ceil(n / batch_size))
