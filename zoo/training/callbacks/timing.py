"""The loop's own timing: ``perf/*``, one row at the end of training.

``perf/fit_s`` is the loop from its first step to the end of its last epoch (validation and
checkpoints included; the test pass, plots and the logged model after it are not);
``perf/steps_per_s`` divides the steps this process trained by it. The parts are seconds of
``fit_s`` that the loop and the other callbacks add to ``loop.perf`` as they spend them.
"""

from __future__ import annotations

import time

from zoo.training.loop import Callback, Loop

PARTS = ("eval_s", "checkpoint_s", "norms_s", "fetch_s")  # logged even when nothing was spent on them


class Perf(Callback):
    """Logs ``perf/fit_s``, ``perf/steps``, ``perf/steps_per_s`` and the parts. Put it first: it stops its
    clock in ``on_fit_end``, before the other callbacks' ends (the checkpointer loads the best weights there)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def on_fit_start(self, loop: Loop) -> None:
        self.started, self.first_step = time.perf_counter(), loop.step

    def on_fit_end(self, loop: Loop) -> None:
        seconds, steps = time.perf_counter() - self.started, loop.step - self.first_step
        if steps <= 0 or seconds <= 0:
            return
        parts = {**dict.fromkeys(PARTS, 0.0), **loop.perf}
        self.tracker.metrics({"perf/fit_s": seconds, "perf/steps": steps, "perf/steps_per_s": steps / seconds,
                              **{f"perf/{k}": v for k, v in parts.items()}}, step=loop.step)
