"""What the readers of the user's files share (``tabular_files``, ``image_files``,
``sequence_files``, ``graph_files``): naming a column, deciding and encoding the task, and
checking there are enough rows for the splits. Every problem is a one-line ``ValueError`` that
names ``data.path`` or the setting, the value, and what would work.
"""

from __future__ import annotations

import difflib
import logging

import numpy as np

log = logging.getLogger("zoo_builtins.files")

TASKS = ("auto", "classification", "regression")
MIN_ROWS = 20  # the smallest dataset a 70/15/15 split takes (as the built-in generators' data.n_samples)
MIN_PER_CLASS = 3  # a stratified split puts at least one example of each class in train, val and test
MAX_AUTO_CLASSES = 20  # an integer target with at most this many values is taken as class labels
MAX_CLASSES = 1000
ID_CHUNK = 1 << 16  # class_ids looks up this many labels at a time


def where(p) -> str:
    return f"data.path={str(p)!r}"


def choose(key: str, value, choices) -> str:
    """``value`` when it is one of ``choices``; else a ValueError naming ``key`` and listing them."""
    if value in choices:
        return value
    raise ValueError(f"{key}={value!r} is invalid: expected one of {', '.join(map(str, choices))}")


def column(key: str, name, columns, p, noun: str = "column") -> str:
    """``name`` when ``columns`` has it; else a ValueError naming ``key``, the close matches and the columns."""
    listed = ", ".join(columns) or "none"
    if not isinstance(name, str) or not name:
        raise ValueError(f"{key}={name!r} is invalid: expected the name of a {noun} of {where(p)}: {listed}")
    if name in columns:
        return name
    close = difflib.get_close_matches(name, columns, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    article = "an" if noun[0] in "aeiou" else "a"
    raise ValueError(f"{key}={name!r} is not {article} {noun} of {where(p)}.{hint} {noun.capitalize()}s: {listed}")


def column_list(key: str, names, columns, p) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"{key}={names!r} is invalid: expected a list of column names, like {key}=[a,b]")
    return [column(key, n, columns, p) for n in names]


def stream_settings(workers) -> None:
    import zoo

    if workers == "auto":
        return
    if not isinstance(workers, int) or isinstance(workers, bool):
        raise ValueError(f"data.workers={workers!r} is invalid: expected auto, or an integer >= 0 "
                         f"(worker processes; 0: a thread of the training process reads)")
    zoo.check_range("data.workers", workers, 0)


def infer_task(task: str, target: str, values: np.ndarray, numeric: bool, p) -> str:
    """The task of a target column: ``data.task`` when set, else classification for text or a few
    integer values and regression for other numbers; the choice is logged."""
    choose("data.task", task, TASKS)
    if task == "regression" and not numeric:
        sample = next(iter(values), "")
        raise ValueError(f"data.target={target!r} is not numeric (e.g. {sample!r}): regression needs numbers; "
                         f"use data.task=classification")
    if task != "auto":
        return task
    if not numeric:
        chosen, why = "classification", "holds text"
    elif len(values) <= MAX_AUTO_CLASSES and np.all(np.mod(values.astype(np.float64), 1) == 0):
        chosen, why = "classification", f"holds {len(values)} integer values"
    else:
        chosen, why = "regression", "holds numbers"
    log.info("data.task=auto: target %r in %s %s: %s (set data.task to choose)", target, where(p), why, chosen)
    return chosen


def distinct(values: np.ndarray, limit: int | None = None) -> np.ndarray:
    """The sorted distinct values of ``values``, a chunk of rows at a time (no sorted copy of them
    all); once more than ``limit`` are found it stops and returns those found so far."""
    found = np.unique(values[:ID_CHUNK])
    for start in range(ID_CHUNK, len(values), ID_CHUNK):
        if limit is not None and len(found) > limit:
            break
        found = np.union1d(found, values[start:start + ID_CHUNK])
    return found


def class_ids(target: str, labels: np.ndarray, p) -> tuple[np.ndarray, list[str]]:
    """Labels as class ids ``0..K-1`` (in the sorted order of their values) and the class names.

    The ids are of the smallest unsigned type that holds them (``uint8`` up to 256 classes: a byte
    a row), found and looked up a chunk of rows at a time: millions of labels cost no sorted copy
    and no row-sized int64 array.
    """
    names = distinct(labels, MAX_CLASSES)
    if len(names) > MAX_CLASSES:
        raise ValueError(f"data.target={target!r} in {where(p)} has more than {MAX_CLASSES} distinct values: too "
                         f"many classes; use data.task=regression for a number")
    ids = np.empty(len(labels), dtype=np.min_scalar_type(max(len(names) - 1, 0)))
    for start in range(0, len(labels), ID_CHUNK):
        ids[start:start + ID_CHUNK] = np.searchsorted(names, labels[start:start + ID_CHUNK])
    return ids, [str(n) for n in names]


def check_rows(n: int, p, what: str = "rows", after: str = "") -> None:
    if n < MIN_ROWS:
        raise ValueError(f"{where(p)} has {n} {what}{after}: the train/val/test split (70/15/15) needs at least "
                         f"{MIN_ROWS}")


def check_classes(ids: np.ndarray, names: list[str], p, label: str, unit: str = "rows") -> None:
    """At least two classes (``label`` names where they come from), each with enough examples for a stratified split."""
    if len(names) < 2:
        raise ValueError(f"{label} in {where(p)}: a single class ({names[0]!r} in {len(ids)} {unit}); "
                         f"classification needs at least two")
    counts = np.bincount(ids, minlength=len(names))
    if counts.min() < MIN_PER_CLASS:
        small = names[int(counts.argmin())]
        raise ValueError(f"class {small!r} of {label} in {where(p)} has {counts.min()} {unit}: the stratified "
                         f"split needs at least {MIN_PER_CLASS} of each class (train, val and test)")
