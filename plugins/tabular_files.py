"""Tabular datasets read from the user's files (kind ``tabular``): ``csv``, ``parquet`` and ``arrays``.

* ``csv`` and ``parquet``: one example per row. ``data.target`` names the label column;
  ``data.features`` the input columns (default: every other numeric column); ``data.categorical``
  the columns to one-hot encode (inputs too); ``data.task`` is ``classification``, ``regression``
  or ``auto`` (text or at most 20 integer values: classification; other numbers: regression;
  the choice is logged); a row with a missing value in a column used is refused
  (``data.missing=refuse``: how many, and the first) or dropped (``data.missing=drop``: how many).
  A CSV is read a chunk of rows at a time, a Parquet file a row group at a time.
* ``arrays``: a ``.npz`` file, or a folder of ``.npy`` files, holding the inputs (``data.inputs``,
  default ``x``: one row per example, of any shape) and the targets (``data.targets``, default ``y``).

The split is 70/15/15 by the seed, stratified for classification; inputs are standardised by the
training rows' statistics, regression targets too. When the inputs are larger than
``data.memory_budget`` (or ``data.in_memory=false``) they are read from disk while training
(:class:`zoo.StreamSplit`): a ``.npy`` file in place, anything else decoded once into a
temporary file. ``DataInfo.meta`` records the file (``source``: path, size, digest) and
everything done to it (``preprocessing``: columns, categories, class names, statistics).
"""

from __future__ import annotations

import logging
import zipfile
from typing import Iterator

import numpy as np

import zoo
from zoo_builtins.files import (MAX_AUTO_CLASSES, MAX_CLASSES, check_classes, check_rows, choose, class_ids, column,
                                column_list, distinct, infer_task, stream_settings, where)

log = logging.getLogger(__name__)

CHUNK_ROWS = 65536
MISSING = ("refuse", "drop")
CSV = "a CSV file with a header row"
PARQUET = "a Parquet file"
ARRAYS = "a .npz file, or a folder of .npy files, with the inputs and the targets"


# ------------------------------------------------------------------------------ CSV and Parquet

class Table:
    """A CSV or Parquet file: its columns, and its rows a chunk at a time (``fmt``: ``csv`` or ``parquet``)."""

    def __init__(self, p, fmt: str):
        self.p, self.fmt = p, fmt
        try:
            if fmt == "csv":
                import pandas as pd

                self.columns = [str(c) for c in pd.read_csv(p, nrows=0).columns]
            else:
                import pyarrow.parquet as pq

                self.file = pq.ParquetFile(p)
                self.columns = list(self.file.schema_arrow.names)
        except (ValueError, OSError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
            raise self.unparsable(exc) from None

    def unparsable(self, exc) -> ValueError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return ValueError(f"{where(self.p)} cannot be parsed as {CSV if self.fmt == 'csv' else PARQUET}: {first}")

    def chunks(self, columns: list[str]) -> Iterator:
        """pandas DataFrames of ``columns``, in file order."""
        try:
            if self.fmt == "csv":
                import pandas as pd

                yield from pd.read_csv(self.p, usecols=columns, chunksize=CHUNK_ROWS)
            else:
                for batch in self.file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                    yield batch.to_pandas()
        except (ValueError, OSError) as exc:
            raise self.unparsable(exc) from None

    def row(self, i: int) -> str:
        """How a message names row ``i`` (counted from 0)."""
        return f"row {i + 1} (line {i + 2} of the file)" if self.fmt == "csv" else f"row {i + 1}"


def survey(table: Table, columns: list[str], keep_values: set[str]) -> tuple[int, dict, dict, dict]:
    """One pass: the number of rows; for each column whether it is numeric and a value that is not;
    the distinct values of the columns in ``keep_values`` (up to MAX_CLASSES + 1 of each)."""
    import pandas as pd

    rows, numeric, sample = 0, dict.fromkeys(columns, True), {}
    values: dict[str, set] = {c: set() for c in keep_values}
    for chunk in table.chunks(columns):
        rows += len(chunk)
        for c in columns:
            s = chunk[c]
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                numeric[c] = False
                sample.setdefault(c, next(iter(s.dropna()), None))
            if c in values and len(values[c]) <= MAX_CLASSES:
                values[c].update(s.dropna().unique().tolist())
    return rows, numeric, sample, values


def load_table(fmt: str, seed: int, path, target, features, categorical, task, missing, standardize,
               in_memory, memory_budget, workers) -> zoo.Splits:
    p = zoo.data_path(path, "file", CSV if fmt == "csv" else PARQUET)
    table = Table(p, fmt)
    if target is None:
        raise ValueError(f"data.target is not set: name the label column of {where(p)} with data.target=COLUMN; "
                         f"columns: {', '.join(table.columns)}")
    target = column("data.target", target, table.columns, p)
    chosen = column_list("data.features", features, table.columns, p)
    categorical = column_list("data.categorical", categorical, table.columns, p)
    choose("data.missing", missing, MISSING)
    stream_settings(workers)
    if target in chosen or target in categorical:
        raise ValueError(f"data.features includes the target column {target!r}: leave it out of "
                         f"data.{'features' if target in chosen else 'categorical'}")
    looked_at = ([target, *chosen, *categorical] if features is not None else table.columns)
    looked_at = list(dict.fromkeys(looked_at))
    rows, numeric, sample, values = survey(table, looked_at, {target, *categorical})
    if features is None:
        skipped = [c for c in table.columns if c != target and not numeric[c] and c not in categorical]
        if skipped:
            log.info("data.features: leaving out the non-numeric columns %s of %s (one-hot encode them with "
                     "data.categorical)", ", ".join(skipped), where(p))
        chosen = [c for c in table.columns if c != target and (numeric[c] or c in categorical)]
    else:
        chosen = list(dict.fromkeys([*chosen, *categorical]))
    for c in chosen:
        if not numeric[c] and c not in categorical:
            raise ValueError(f"data.features: column {c!r} of {where(p)} is not numeric (e.g. {sample[c]!r}): "
                             f"add it to data.categorical to one-hot encode it, or leave it out of data.features")
    if not chosen:
        raise ValueError(f"{where(p)} has no numeric column besides the target {target!r}: name the inputs with "
                         f"data.features and data.categorical")
    labels = np.array(sorted(values[target], key=str), dtype=object)
    task = infer_task(task, target, labels, numeric[target], p)
    categories = {c: sorted(values[c], key=str) for c in categorical}
    encoded = [name for c in chosen for name in ([f"{c}={v}" for v in categories[c]] if c in categories else [c])]
    keep = zoo.keep_in_memory(rows * len(encoded) * 4, in_memory, memory_budget)
    text = None if numeric[target] or len(values[target]) > MAX_CLASSES else sorted(str(v) for v in values[target])
    x, y, dropped = encode(table, chosen, categories, target, missing, zoo.RowWriter((len(encoded),), np.float32, not keep),
                           text)
    if dropped:
        log.info("data.missing=drop: dropped %d rows of %s with a missing value", dropped, where(p))
    prep = {"reader": fmt, "target_column": target, "feature_columns": chosen, "categories": categories,
            "encoded_features": encoded, "dropped_rows": dropped}
    y, output_dim = encode_targets(y, target, task, numeric[target], p, prep,
                                   after=" after dropping the rows with missing values" if dropped else "", text=text)
    return tabular_splits(x, y, task, output_dim, p, prep, seed=seed, standardize=standardize, workers=workers)


def encode(table: Table, chosen: list[str], categories: dict, target: str, missing: str, writer,
           text: list[str] | None = None) -> tuple:
    """Second pass: the inputs (float32, categorical columns one-hot) written to ``writer``, the targets,
    rows dropped. The targets are the column's values, or with ``text`` (the sorted labels of a text
    column) their positions in it, a chunk at a time (a byte or two a row, not a Python string)."""
    import pandas as pd

    used = list(dict.fromkeys([target, *chosen]))
    targets, start, count, first = [], 0, 0, None
    for chunk in table.chunks(used):
        bad = chunk[used].isna().any(axis=1).to_numpy()
        if bad.any():
            first = start + int(np.argmax(bad)) if first is None else first
            count += int(bad.sum())
            chunk = chunk[~bad]
        start += len(bad)
        if first is not None and missing == "refuse":
            continue  # counting only, to say how many
        parts = []
        for c in chosen:
            if c in categories:
                codes = pd.Categorical(chunk[c], categories=categories[c]).codes
                parts.append(np.eye(len(categories[c]), dtype=np.float32)[codes])
            else:
                parts.append(chunk[c].to_numpy(dtype=np.float32)[:, None])
        writer.append(np.concatenate(parts, axis=1) if parts else np.empty((0, writer.row_shape[0])))
        t = chunk[target]
        targets.append(t.to_numpy() if text is None else pd.Categorical(t.astype(str), categories=text).codes)
    if count and missing == "refuse":
        raise ValueError(f"{where(table.p)} has {count} rows with missing values in the columns used (the first: "
                         f"{table.row(first)}): fill them in, or drop those rows with data.missing=drop")
    y = np.concatenate(targets) if targets else np.empty(0)
    return writer.finish(), y, count


def encode_targets(y, target: str, task: str, numeric: bool, p, prep: dict, after: str = "",
                   text: list[str] | None = None) -> tuple[np.ndarray, int]:
    """The targets as the task reads them, and the model's output size, after the checks on rows and
    classes: class ids of the smallest type (names in ``prep["class_names"]``), or float32 columns.
    The caller rebinds its ``y`` to them, so the raw targets (int64 or text, a row each) are let go
    before the split. ``text``: ``y`` holds positions in these labels (:func:`encode`)."""
    check_rows(len(y), p, after=after)
    if task == "classification" and text is not None:
        used = np.bincount(y, minlength=len(text)) > 0  # labels seen only on rows dropped for missing values go
        ids = (np.cumsum(used) - 1).astype(np.min_scalar_type(max(int(used.sum()) - 1, 0)))[y]
        names = [name for name, u in zip(text, used) if u]
    elif task == "classification":
        if y.dtype.kind == "b" or (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            y = y.astype(np.int64)  # 1.0, 2.0 (a column with gaps reads as floats) are the classes 1 and 2
        ids, names = class_ids(target, y if numeric else y.astype(str), p)
    if task == "classification":
        check_classes(ids, names, p, label=f"data.target={target!r}")
        prep["class_names"] = names
        return ids, len(names)
    y = y.astype(np.float32).reshape(len(y), -1)
    return y, y.shape[1]


def tabular_splits(x, y, task: str, output_dim: int, p, prep: dict, *, seed: int, standardize: bool,
                   workers: int) -> zoo.Splits:
    """The splits of the inputs and the targets :func:`encode_targets` made."""
    meta = {"source": zoo.source_of(p), "preprocessing": prep}
    if task == "classification":
        meta["class_names"] = prep["class_names"]
        return zoo.array_splits(x, y, seed=seed, kind="tabular", task=task, output_dim=output_dim, meta=meta,
                                standardize=standardize, stratify=True, workers=workers)
    return zoo.array_splits(x, y, seed=seed, kind="tabular", task=task, output_dim=output_dim, meta=meta,
                            standardize=standardize, standardize_target=True, workers=workers)


def load_csv(seed: int, path=None, target=None, features=None, categorical=(), task="auto", missing="refuse",
             standardize: bool = True, in_memory="auto", memory_budget="auto", workers="auto") -> zoo.Splits:
    return load_table("csv", seed, path, target, features, categorical, task, missing, standardize,
                      in_memory, memory_budget, workers)


def load_parquet(seed: int, path=None, target=None, features=None, categorical=(), task="auto", missing="refuse",
                 standardize: bool = True, in_memory="auto", memory_budget="auto", workers="auto") -> zoo.Splits:
    return load_table("parquet", seed, path, target, features, categorical, task, missing, standardize,
                      in_memory, memory_budget, workers)


# ------------------------------------------------------------------------------ arrays

def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return shape, dtype


class ArrayFiles:
    """The arrays of a ``.npz`` file or of a folder of ``.npy`` files, by name."""

    def __init__(self, p):
        self.p = p
        if p.is_dir():
            self.names = sorted(f.stem for f in p.glob("*.npy"))
        elif p.suffix == ".npy":
            raise ValueError(f"{where(p)} is a single .npy file: give a .npz file with the inputs and the targets, "
                             f"or the folder that holds both .npy files")
        elif not zipfile.is_zipfile(p):
            raise ValueError(f"{where(p)} cannot be parsed as a .npz file (not a zip archive): point data.path at {ARRAYS}")
        else:
            with zipfile.ZipFile(p) as z:
                self.names = sorted(n[:-4] for n in z.namelist() if n.endswith(".npy"))

    def name(self, key: str, name) -> str:
        if name in self.names:
            return name
        return column(key, name, self.names, self.p, noun="array")

    def _open(self, name: str):
        if self.p.is_dir():
            return open(self.p / f"{name}.npy", "rb")
        return zipfile.ZipFile(self.p).open(f"{name}.npy")

    def header(self, key: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
        try:
            with self._open(name) as f:
                return _npy_header(f)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{key}={name!r} in {where(self.p)} cannot be parsed as a .npy array: {exc}") from None

    def load(self, key: str, name: str, in_memory: bool = True):
        """The array in memory, or (``in_memory=False``) an :class:`zoo.ArrayFile` read from disk."""
        try:
            if in_memory:
                with self._open(name) as f:
                    return np.load(f, allow_pickle=False)
            if self.p.is_dir():
                return zoo.ArrayFile.npy(self.p / f"{name}.npy")
            from zoo.plugin.arrays import temporary_npy

            with self._open(name) as f:
                return temporary_npy(f, f"{name}.npy")
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            why = "it holds Python objects, which are never unpickled" if "allow_pickle" in str(exc) else str(exc)
            raise ValueError(f"{key}={name!r} in {where(self.p)} cannot be read as a numeric array: {why}") from None


def load_arrays(seed: int, path=None, inputs: str = "x", targets: str = "y", task="auto", standardize: bool = True,
                in_memory="auto", memory_budget="auto", workers="auto") -> zoo.Splits:
    p = zoo.data_path(path, "any", ARRAYS)
    files = ArrayFiles(p)
    inputs, targets = files.name("data.inputs", inputs), files.name("data.targets", targets)
    stream_settings(workers)
    shape, dtype = files.header("data.inputs", inputs)
    if len(shape) < 2 or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ValueError(f"data.inputs={inputs!r} in {where(p)} is a {dtype} array of shape {shape}: expected numbers, "
                         f"one row per example (shape (examples, features...))")
    y = files.load("data.targets", targets)
    if len(y) != shape[0]:
        raise ValueError(f"data.targets={targets!r} in {where(p)} has {len(y)} rows but data.inputs={inputs!r} has "
                         f"{shape[0]}: give one target per example")
    numeric = np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_
    values = distinct(y, MAX_AUTO_CLASSES) if y.ndim == 1 else np.zeros(MAX_CLASSES + 1)
    task = infer_task(task, targets, values, numeric, p)
    if task == "classification" and y.ndim != 1:
        raise ValueError(f"data.targets={targets!r} in {where(p)} has shape {y.shape}: classification needs one "
                         f"label per example (shape ({len(y)},)); use data.task=regression")
    keep = zoo.keep_in_memory(shape[0] * int(np.prod(shape[1:])) * 4, in_memory, memory_budget)
    x = files.load("data.inputs", inputs, in_memory=keep)
    prep = {"reader": "arrays", "inputs": inputs, "targets": targets}
    y, output_dim = encode_targets(y, targets, task, numeric, p, prep)
    return tabular_splits(x, y, task, output_dim, p, prep, seed=seed, standardize=standardize, workers=workers)


# ------------------------------------------------------------------------------ registration

@zoo.hookimpl
def zoo_datasets():
    from importlib import resources

    samples = resources.files("zoo_builtins") / "data" / "samples"
    table = {"target": "species", "categorical": ["site"]}
    return [
        zoo.Dataset(name="csv", kind="tabular", task="classification", load=load_csv,
                    smoke={"path": str(samples / "iris.csv"), **table},
                    description="a CSV file: data.path, data.target, data.features, data.categorical, data.task "
                                "(classification or regression), data.missing; streamed when larger than data.memory_budget"),
        zoo.Dataset(name="parquet", kind="tabular", task="classification", load=load_parquet,
                    smoke={"path": str(samples / "iris.parquet"), **table},
                    description="a Parquet file, read a row group at a time: the settings of data=csv"),
        zoo.Dataset(name="arrays", kind="tabular", task="classification", load=load_arrays,
                    smoke={"path": str(samples / "digits.npz")},
                    description="arrays in a .npz file or a folder of .npy files (data.inputs, data.targets); "
                                "a .npy larger than data.memory_budget is read in place"),
    ]

