"""Which metric decides between runs, and which way it improves: the run's own word, then its task's.

Training tags every run with the metric that picks its best epoch (``zoo.monitor``, e.g.
``best/val_accuracy``) and its direction (``zoo.direction``: maximize or minimize), so a reader
of the store needs no plugin to know them. Runs recorded before those tags name their task
(``zoo.task``), and the task (:mod:`zoo.plugin.tasks`) knows its monitor and direction.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from zoo.errors import ZooError
from zoo.tracking import tags

DIRECTIONS = ("maximize", "minimize")


def task_monitor(task_name: str | None) -> tuple[str, str] | None:
    """``(best/val_<monitor>, maximize|minimize)`` of a task, as the task defines it (None for an unknown task)."""
    if not task_name:
        return None
    from zoo.plugin.tasks import get_task  # torch: only for runs recorded before the tags

    try:
        task = get_task(task_name)
    except ZooError:
        return None
    return f"best/val_{task.monitor}", task.direction


def monitored(run_tags: Mapping[str, str]) -> tuple[str, str] | None:
    """``(metric, direction)`` a run was trained to improve: its tags, else its task's."""
    monitor, direction = run_tags.get(tags.MONITOR), run_tags.get(tags.DIRECTION)
    if monitor and direction in DIRECTIONS:
        return monitor, direction
    return task_monitor(run_tags.get(tags.TASK))


def _measure(metric: str) -> str:
    """What a metric measures: ``test/accuracy``, ``val/accuracy`` and ``best/val_accuracy`` -> ``accuracy``."""
    name = metric.rsplit("/", 1)[-1]
    return name[len("val_"):] if name.startswith("val_") else name


def direction_of(metric: str, tag_sets: Iterable[Mapping[str, str]]) -> str | None:
    """Which way ``metric`` improves, when it measures what one of the runs (their tags) was trained
    to improve (``test/accuracy`` for a run monitoring ``best/val_accuracy``); else None."""
    seen: set = set()
    for run_tags in tag_sets:
        key = (run_tags.get(tags.MONITOR), run_tags.get(tags.DIRECTION), run_tags.get(tags.TASK))
        if key in seen:
            continue
        seen.add(key)
        found = monitored(run_tags)
        if found and _measure(found[0]) == _measure(metric):
            return found[1]
    return None


def pick_best(rows: Sequence[dict], metric: str, direction: str) -> dict | None:
    """The row (``{"metrics": {...}, ...}``) with the best finite ``metric``."""
    scored = [r for r in rows if isinstance(r["metrics"].get(metric), (int, float)) and math.isfinite(r["metrics"][metric])]
    if not scored:
        return None
    sign = 1 if direction == "maximize" else -1
    return max(scored, key=lambda r: sign * r["metrics"][metric])


def search_direction(metric: str | None, direction: str | None, task_monitor: tuple[str, str]) -> str:
    """Which way a search optimises ``metric`` (None: the task's monitored one), given the task's
    ``(best/val_<monitor>, direction)``.

    The direction follows the metric: the task's measure (``best/val_mse``, ``test/mse``,
    ``val/mse`` of a task monitoring mse) goes the task's way, a loss goes down. ``direction`` set
    explicitly wins for any other metric, and is an error when it contradicts a known one.
    """
    from zoo.errors import ZooError

    if direction is not None and direction not in DIRECTIONS:
        raise ZooError(f"hydra.sweeper.optuna.direction={direction!r} is invalid: expected maximize or minimize "
                       f"(or leave it unset: it follows the metric)")
    monitor, task_direction = task_monitor
    name = metric or monitor
    known = (task_direction if _measure(name) == _measure(monitor) else
             "minimize" if _measure(name) == "loss" else None)
    if known and direction and direction != known:
        raise ZooError(f"hydra.sweeper.optuna.direction={direction} contradicts the metric {name}, which improves "
                       f"by going {'down' if known == 'minimize' else 'up'} ({known}): leave direction unset, "
                       f"or set it to {known}")
    if known or direction:
        return known or direction
    raise ZooError(f"hydra.sweeper.optuna.metric={name} is not the task's measure ({_measure(monitor)}) nor a loss, so "
                   f"its direction is not known: set hydra.sweeper.optuna.direction=maximize or minimize")
