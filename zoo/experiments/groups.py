"""Runs of the same configuration over several seeds, as one row: mean ± std and n of each metric.

A group is the runs that share the values of some params (``zoo compare --group-by
model.name,optimizer.lr``); by default every param that differs between the runs except
``seed``, so the repeats of each configuration (``hydra.sweeper.repeats=3``) form one group. The
standard deviation is the sample's (n - 1 in the denominator); a group of one run has none.
A run that is not FINISHED (or was pruned) is counted in its group's ``n`` but not averaged.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

from zoo.experiments.table import differing_params
from zoo.tracking import tags

SEED = "seed"


@dataclass
class Group:
    """The runs sharing ``values`` (param -> value) of the grouping params."""

    values: dict[str, str]
    runs: list = field(default_factory=list)

    @property
    def finished(self) -> list:
        """The runs whose metrics count: FINISHED and not pruned."""
        return [r for r in self.runs if r.info.status == "FINISHED" and not pruned(r)]

    def label(self) -> str:
        """What the group's runs are called, less their seed: ``model=mlp optimizer.lr=0.1``."""
        names = {re.sub(r"\s*\bseed=\d+", "", r.info.run_name or "").strip() for r in self.runs}
        if len(names) == 1 and next(iter(names)):
            return names.pop()
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None for a single value
    n: int


def pruned(run) -> bool:
    return run.data.tags.get(tags.PRUNED) == "true"


def group_keys(runs, by: Sequence[str] | None) -> list[str]:
    """The params that make a group: ``by``, else the fewest of the params that differ between the
    runs (the seed aside) that still tell every configuration apart. A param that follows from the
    others is left out (``model=mlp,perceptron`` changes ``model.activation`` and ``model.dropout``
    with ``model.name``); the params whose values the run names show (``model=mlp``) are preferred,
    then those every run has."""
    if by:
        return list(by)
    keys = [p for p in differing_params(runs) if p != SEED]
    named = {t.split("=", 1)[1] for r in runs for t in (r.info.run_name or "").split() if "=" in t}

    def rank(key: str) -> tuple[int, int]:
        values = [r.data.params.get(key) for r in runs]
        shown = all(v is None or v in named for v in values)
        return (0 if shown else 1, values.count(None))

    kept: list[str] = []
    for key in sorted(keys, key=rank):  # stable: ties keep the table's order
        if len(group_runs(runs, [*kept, key])) > len(group_runs(runs, kept)):
            kept.append(key)
    return [k for k in keys if k in kept]


def group_runs(runs, keys: Sequence[str]) -> list[Group]:
    """The runs grouped by their values of ``keys`` (a missing param is ``-``), in the order first seen."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        values = {k: run.data.params.get(k, "-") for k in keys}
        groups.setdefault(tuple(values.values()), Group(values)).runs.append(run)
    return list(groups.values())


def stat(values: Sequence[float | None]) -> Stat | None:
    """Mean, sample standard deviation and count of the finite values; None when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return Stat(statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else None, len(finite))


def group_stat(group: Group, value: Callable[[object], float | None]) -> Stat | None:
    return stat([value(r) for r in group.finished])


def fmt_stat(s: Stat | None, n_runs: int | None = None) -> str:
    """``0.9630 ± 0.0052``; ``(n=2)`` after it when fewer runs than the group's have the metric."""
    from zoo.experiments.table import fmt_number

    if s is None:
        return "-"
    text = fmt_number(s.mean) + (f" ± {fmt_number(s.std)}" if s.std is not None else "")
    return text + (f" (n={s.n})" if n_runs is not None and s.n != n_runs else "")
