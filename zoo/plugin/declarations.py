"""What a plugin declares: architectures, datasets, tasks, and the data they exchange.

These are small frozen dataclasses. The core validates every declaration a plugin returns, so a
malformed one is reported against the plugin that returned it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

#: A target with this value does not count: the built-in tasks' losses and metrics skip it
#: (the unlabelled nodes of a node-level graph, padding). ``torch.nn.functional.cross_entropy``'s default.
IGNORE_INDEX = -100


@dataclass(frozen=True)
class DataInfo:
    """What a builder needs to know about the data.

    Args:
        kind: the data kind (``tabular``, ``sequence``, ``graph``, ``text``, ``image`` ...).
        task: the name of the :class:`Task` that turns a batch into a loss.
        input_shape: the shape of one example's input, without the batch dimension
            (``(64,)`` for digits as features, ``(T, F)`` for sequences, ``(F,)`` node features).
        output_dim: classes for classification, targets for regression, vocabulary size for
            next-token prediction, features for reconstruction.
        meta: anything else a builder or a report may want (class names, vocabulary, image
            shape, graph level ``"node"`` or ``"graph"``; ``per_token`` says whether a sequence's
            targets are one per position, overriding the task's ``per_position``). A dataset read
            from the user's files records ``source`` (``{"path", "size", "digest"}``:
            :func:`zoo.source_of`; the run is tagged with it) and ``preprocessing`` (a JSON-able
            dict of what it did to the data: statistics, categories, class names, image size and
            mode, the window).
    """

    kind: str
    task: str
    input_shape: tuple[int, ...]
    output_dim: int
    meta: Mapping[str, Any] = field(default_factory=dict)


class Split(Protocol):
    """One split of a dataset. ``zoo.TensorSplit`` is the in-memory implementation, ``zoo.StreamSplit``
    the one that reads from disk while training."""

    def __len__(self) -> int: ...

    def to(self, device) -> "Split": ...

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None) -> Iterator[tuple]:
        """Yield ``(inputs, target)`` pairs; ``batch_size=None`` means the whole split at once.

        The shuffled order must come from ``generator`` alone (a resumed epoch draws it again). A
        split may also take ``start=N``: begin at the N-th batch of that order without reading the
        ones before it (a resume mid-epoch); without it the loop draws and drops them.
        """

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


def keyword_defaults(fn: Callable, skip: int = 0) -> dict[str, Any]:
    """The keyword defaults of ``fn``'s signature, in order, after its first ``skip`` parameters.

    A tuple becomes a list, the type the value has in the config (``hidden_sizes=(256, 256)``
    is the default ``[256, 256]``).
    """
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):  # not a callable, or a builtin without a signature
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: list(p.default) if isinstance(p.default, tuple) else p.default
            for p in params if p.kind in kinds and p.default is not inspect.Parameter.empty}


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
            type is the type a command-line override must have. Not given: the keyword
            defaults of ``build``'s signature (after ``info``), so a value is declared once.
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
    defaults: Mapping[str, Any] | None = None
    description: str = ""
    tasks: tuple[str, ...] | None = None
    report: Callable[..., Sequence[Any]] | None = None
    smoke: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.defaults is None:
            object.__setattr__(self, "defaults", keyword_defaults(self.build, skip=1))


@dataclass(frozen=True)
class Dataset:
    """A dataset a plugin provides.

    Args:
        name: the registry name, used as ``data=<name>``.
        kind: its data kind (``tabular``, ``sequence``, ``graph``, ``text``, ``image``, or a new one).
        task: the name of the :class:`Task` it poses (``classification``, ``regression`` ...). A
            dataset whose task is a setting (``data=csv data.task=regression``) declares its
            default; a run trains on the task its ``DataInfo.task`` names.
        load: ``load(seed: int, **params) -> Splits``; generated, read from an installed package
            or from the user's files (``data.path``), never downloaded. Raise ``ValueError``
            naming the setting for bad params. A default of ``None`` or ``"auto"`` lets the
            setting take a value of any type, which ``load`` checks itself.
        defaults: default parameters; each becomes ``data.<key>`` in the config. Not given:
            the keyword defaults of ``load``'s signature (besides ``seed``).
        description: one line for ``zoo list``.
        smoke: parameter overrides that make a tiny version for tests (e.g. ``{"n_samples": 64}``).
    """

    name: str
    kind: str
    task: str
    load: Callable[..., Splits]
    defaults: Mapping[str, Any] | None = None
    description: str = ""
    smoke: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.defaults is None:
            found = keyword_defaults(self.load)
            found.pop("seed", None)
            object.__setattr__(self, "defaults", found)


def _identity(output, target, inputs):
    return output, target


@dataclass(frozen=True)
class Task:
    """How a batch becomes a loss, what to measure, and what a model must output for it.

    For each batch ``(inputs, target)`` the loop computes ``loss(output, target, inputs)`` and
    feeds ``prepare(output, target, inputs)`` to every metric.

    Args:
        name: the registry name, as datasets declare it (``Dataset.task``, ``DataInfo.task``).
        loss: ``loss(output, target, inputs) -> scalar tensor``.
        metrics: ``metrics(info) -> dict[name, metric]``, reported as ``val/<name>`` and
            ``test/<name>``; a metric is a ``torchmetrics.Metric`` or any object with ``to(device)``,
            ``reset()``, ``update(preds, target)`` and ``compute()``, e.g. ``zoo.metrics.Accuracy()``;
            they accumulate on the device and ``compute()`` reduces across processes.
        monitor: the metric (one of ``metrics``) that picks the best checkpoint and drives early
            stopping and sweeps.
        mode: ``max`` or ``min``: which way ``monitor`` improves.
        prepare: ``prepare(output, target, inputs) -> (preds, target)`` given to every metric.
        per_position: a sequence model predicts one output per position (``next_token``,
            ``reconstruction``) instead of one per sequence; a dataset overrides it with
            ``DataInfo.meta["per_token"]`` (see :func:`zoo.per_position`).
        output_shape: ``output_shape(info, input_shape, target_shape) -> (shapes, why)``: the
            output shapes a model may give for a batch with these shapes (the first is the
            natural one; a shape is ``None`` when the batch's input or target is not a tensor)
            and a few words saying why, e.g. ``([(16, 3)], "target (16,) + 3 classes")``; the
            contract kit checks every architecture against it. ``None``: only the loss decides.
        target_names: names of the target values when the task fixes them (``anomaly``:
            ``("normal", "anomaly")``); otherwise a dataset's ``meta["class_names"]`` name them.
        description: one line for ``zoo list``.
        targets: ``targets(info, target) -> str | None``: why a split's targets cannot be used for
            this task (their dtype, a label outside ``0..output_dim-1``, say), or ``None``; checked
            on every split before a run starts, and by the contract kit over every dataset of the
            task. ``None``: not checked.
        predict: ``predict(output, inputs) -> {name: tensor}``: what a trained model's output means
            to a person, each tensor with the batch first (``label`` and ``probabilities`` for
            classification, ``prediction`` for regression, ``reconstruction`` and an anomaly score
            for autoencoders). The logged model returns these (docs/models.md): Zoo names ``label``
            and ``next_token`` indices after ``meta["class_names"]`` (or the vocabulary), and turns a
            ``prediction`` and a ``reconstruction`` back into the data's own units
            (``meta["preprocessing"]``). ``None``: the output as it is, named ``output``.
    """

    name: str
    loss: Callable[..., Any]
    metrics: Callable[[DataInfo], Mapping[str, Any]]
    monitor: str
    mode: str
    prepare: Callable[..., tuple] = _identity
    per_position: bool = False
    output_shape: Callable[..., tuple[Sequence[tuple[int, ...]], str] | None] | None = None
    target_names: tuple[str, ...] = ()
    description: str = ""
    targets: Callable[..., str | None] | None = None
    predict: Callable[..., Mapping[str, Any]] | None = None

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``: which way ``monitor`` improves (Optuna's words)."""
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is a better value of ``monitor`` than ``b``."""
        return a > b if self.mode == "max" else a < b

    def expected_output(self, info: DataInfo, input_shape, target_shape):
        """``(shapes, why)`` for a batch with these input and target shapes, or ``None`` when the task does not say."""
        return None if self.output_shape is None else self.output_shape(info, input_shape, target_shape)

    def output_problem(self, info: DataInfo, inputs, target, output, where: str = "") -> str | None:
        """Why ``output`` (a model's, for the batch ``(inputs, target)``) does not fit this task, or ``None``.

        It must be a floating-point tensor of a shape :attr:`output_shape` allows; ``where`` is
        added after the shapes (``" for data=iris"``).
        """
        import torch

        if not isinstance(output, torch.Tensor):
            return f"expected a tensor, got {type(output).__name__}{where}"
        if not output.is_floating_point():
            return f"expected floating-point scores, got {output.dtype}{where}"
        got = tuple(output.shape)
        target = tuple(target.shape) if isinstance(target, torch.Tensor) else None
        inputs = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else None
        expected = self.expected_output(info, inputs, target)
        if expected is None:
            return None  # a task that does not say: the loss decides
        shapes, why = expected
        shapes = list(dict.fromkeys(tuple(s) for s in shapes))
        if got in shapes:
            return None
        alt = "".join(f" (or {s})" for s in shapes[1:])
        return f"expected {shapes[0]}{alt}, got {got}{where} ({self.name}: {why})"

    def target_problem(self, info: DataInfo, target) -> str | None:
        """What is wrong with ``target`` (one batch's) for this task, or ``None`` (also when the task does not say)."""
        return None if self.targets is None else self.targets(info, target)


def check_declaration(obj: Any, cls: type) -> str | None:
    """Why ``obj`` is not a valid ``cls`` declaration, or ``None`` when it is."""
    if not isinstance(obj, cls):
        return f"expected zoo.{cls.__name__}, got {type(obj).__name__}: {obj!r:.80}"
    if not isinstance(obj.name, str) or not obj.name.isidentifier():
        return f"name {obj.name!r} is not a valid identifier"
    if cls is Task:
        return _check_task(obj)
    if not callable(obj.build if cls is Architecture else obj.load):
        return f"{obj.name}: {'build' if cls is Architecture else 'load'} is not callable"
    if not isinstance(obj.defaults, Mapping) or not all(isinstance(k, str) for k in obj.defaults):
        return f"{obj.name}: defaults must be a mapping of setting names to values"
    if "name" in obj.defaults or (cls is Architecture and "freeze" in obj.defaults):
        word = "name" if "name" in obj.defaults else "freeze"
        return f"{obj.name}: '{word}' is reserved and cannot be a default setting"
    if cls is Architecture and (isinstance(obj.kinds, str) or not obj.kinds):
        return f"{obj.name}: kinds must be a non-empty tuple of data kinds, got {obj.kinds!r}"
    return None


def _check_task(task: Task) -> str | None:
    for key in ("loss", "metrics", "prepare"):
        if not callable(getattr(task, key)):
            return f"{task.name}: {key} is not callable"
    for key in ("output_shape", "targets", "predict"):
        if getattr(task, key) is not None and not callable(getattr(task, key)):
            return f"{task.name}: {key} must be callable or None"
    if not isinstance(task.monitor, str) or not task.monitor:
        return f"{task.name}: monitor must name one of its metrics, got {task.monitor!r}"
    if task.mode not in ("max", "min"):
        return f"{task.name}: mode={task.mode!r} must be 'max' or 'min'"
    return None
