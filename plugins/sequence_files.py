"""A time series read from the user's CSV file (kind ``sequence``): ``series``.

One row per time step, in time order. The inputs are windows of ``data.window`` consecutive rows
of the feature columns (``data.features``, default: every numeric column, the target included);
the target is the next ``data.horizon`` values of ``data.target`` after each window (regression),
for the RNN and Transformer families. The series is split by time, not by the seed: the first 70%
of the rows train, the next 15% validate, the last 15% test, and no window crosses from one part
into the next (nothing of the future leaks into training). Features and target are standardised
by the training rows' statistics (``meta["target_std"]`` converts the MSE back to the data's units,
as for ``sine``). A series is read into memory (its windows are views, not copies, until batched).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

import zoo
from zoo_builtins.files import column, column_list, where
from zoo_builtins.tabular_files import CSV, Table

log = logging.getLogger(__name__)
PARTS = (0.70, 0.15, 0.15)


def read_series(p, target, features) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """The feature columns ``(rows, features)`` and the target column ``(rows,)`` as float32."""
    import pandas as pd

    table = Table(p, "csv")
    frame = pd.concat(list(table.chunks(table.columns)), ignore_index=True) if table.columns else pd.DataFrame()
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if target is None:
        if len(numeric) != 1:
            raise ValueError(f"data.target is not set: name the column to forecast in {where(p)} with "
                             f"data.target=COLUMN; numeric columns: {', '.join(numeric) or 'none'}")
        target = numeric[0]
    target = column("data.target", target, table.columns, p)
    chosen = column_list("data.features", features, table.columns, p) if features is not None else numeric
    if features is None and len(numeric) < len(table.columns):
        log.info("data.features: leaving out the non-numeric columns %s of %s",
                 ", ".join(c for c in table.columns if c not in numeric), where(p))
    for c in [target, *chosen]:
        if c not in numeric:
            sample = next(iter(frame[c].dropna()), None)
            raise ValueError(f"data.{'target' if c == target else 'features'}: column {c!r} of {where(p)} is not "
                             f"numeric (e.g. {sample!r}): a series' inputs and target are numbers")
    bad = frame[[target, *chosen]].isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(f"{where(p)} has {int(bad.sum())} rows with missing values in the columns used (the first: "
                         f"{table.row(int(np.argmax(bad)))}): fill them in (a series cannot skip a time step)")
    return (frame[chosen].to_numpy(np.float32, copy=True), frame[target].to_numpy(np.float32, copy=True), target, chosen)


def part_bounds(rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of train, val and test: 70/15/15 in time order."""
    train = round(rows * PARTS[0])
    val = train + round(rows * PARTS[1])
    return [(0, train), (train, val), (val, rows)]


def windows(x: torch.Tensor, y: torch.Tensor, start: int, stop: int, window: int, horizon: int) -> zoo.TensorSplit:
    """Every window of ``window`` rows inside ``[start, stop)`` and the ``horizon`` target values after it."""
    count = stop - start - window - horizon + 1
    inputs = x[start:stop - horizon].unfold(0, window, 1)[:count].transpose(1, 2)  # (count, window, features)
    targets = y[start + window:stop].unfold(0, horizon, 1)[:count]  # (count, horizon)
    return zoo.TensorSplit(inputs, targets.contiguous())


def load_series(seed: int, path=None, target=None, features=None, window: int = 32, horizon: int = 1) -> zoo.Splits:
    p = zoo.data_path(path, "file", CSV + ", one row per time step")
    zoo.check_range("data.window", window, 1)
    zoo.check_range("data.horizon", horizon, 1)
    x, y, target, chosen = read_series(p, target, features)
    need = window + horizon
    if len(y) < need:
        raise ValueError(f"data.window={window} is longer than the series: {where(p)} has {len(y)} rows, and a window "
                         f"with its forecast needs data.window + data.horizon = {need}")
    bounds = part_bounds(len(y))
    short = min(range(3), key=lambda i: bounds[i][1] - bounds[i][0])
    if bounds[short][1] - bounds[short][0] < need:
        name = ("train", "validation", "test")[short]
        raise ValueError(f"{where(p)} has {len(y)} rows: too few for the splits, whose {name} part "
                         f"({bounds[short][1] - bounds[short][0]} rows) must hold a window and its forecast "
                         f"(data.window + data.horizon = {need}): use a shorter data.window or a longer series")
    train_rows = np.arange(*bounds[0])
    mean, std = zoo.row_stats(x, train_rows)
    t_mean, t_std = zoo.row_stats(y, train_rows)
    xs, ys = (torch.from_numpy(x) - mean) / std, (torch.from_numpy(y) - t_mean) / t_std
    prep = {"reader": "series", "target_column": target, "feature_columns": chosen, "window": window,
            "horizon": horizon, "parts": "70/15/15 in time order",
            "input_scaling": {"mean": mean.tolist(), "std": std.tolist(), "formula": "(x - mean) / std"},
            "target_scaling": {"mean": float(t_mean), "std": float(t_std), "formula": "(y - mean) / std"}}
    meta = {"source": zoo.source_of(p), "preprocessing": prep, "target_mean": float(t_mean), "target_std": float(t_std)}
    info = zoo.DataInfo(kind="sequence", task="regression", input_shape=(window, len(chosen)), output_dim=horizon,
                        meta=meta)
    return zoo.Splits(*(windows(xs, ys, a, b, window, horizon) for a, b in bounds), info=info)


@zoo.hookimpl
def zoo_datasets():
    from importlib import resources

    sample = resources.files("zoo_builtins") / "data" / "samples" / "sine.csv"
    return [
        zoo.Dataset(name="series", kind="sequence", task="regression", load=load_series,
                    smoke={"path": str(sample), "target": "value", "features": ["value"], "window": 12},
                    description="a time series in a CSV file: forecast data.horizon values of data.target from "
                                "windows of data.window rows (split in time order)"),
    ]
