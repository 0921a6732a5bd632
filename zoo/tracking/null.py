"""The tracker of a process that records nothing (DDP ranks other than 0): :class:`NullTracker`.

It has every public method of :class:`zoo.tracking.run.Tracker` with the same signature
(``tests/test_tracking_seam.py`` checks it), and each does nothing.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable

from zoo.tracking.writer import DEFAULT_ROW_COST_S


class NullTracker:
    """What ranks other than 0 report to: nothing. Every method of :class:`Tracker`, doing nothing."""

    run_id: str | None = None
    experiment_id: str | None = None
    error: str | None = None
    row_cost = DEFAULT_ROW_COST_S
    journaling = False

    @staticmethod
    def warm_up(uri: str | None = None, *, store: bool = False) -> None:
        pass

    def start(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None) -> None:
        return None

    @contextlib.contextmanager
    def run(self, *, run_name: str | None, params: dict, tags: dict, run_id: str | None = None):
        yield self

    def finish(self, status: str, error: str | None = None) -> None:
        pass

    def flush(self, stop: bool = False) -> None:
        pass

    def when_stored(self, then) -> None:
        then()

    def metrics(self, values: dict[str, float], step: int, timestamp: float | None = None) -> None:
        pass

    def series(self, key: str, values: Iterable[float], steps: Iterable[int], timestamps: Iterable[float]) -> None:
        pass

    def tags(self, values: dict[str, Any]) -> None:
        pass

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        pass

    def text(self, text: str, name: str) -> None:
        pass

    def model(self, folder, wait: bool = True, **kwargs):
        return None if wait else (lambda: None)

    def datasets(self, records, wait: bool = True):
        return {} if wait else dict

    def linked_metrics(self, values: dict[str, float], step: int, model_id: str | None, dataset) -> None:
        pass

    def model_input(self, model_id: str) -> None:
        pass
