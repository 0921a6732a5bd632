"""The progress bars: epochs, and the steps of the current epoch with the latest fetched loss.

tqdm shows them only on a terminal (``disable=None``); elsewhere each call returns at once.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from zoo.training.loop import Callback, Loop


class Progress(Callback):
    """Two tqdm bars. ``history``: the step log's, whose latest loss the step bar shows (no fetch of its own)."""

    def __init__(self, history):
        self.history = history
        self.epochs = self.steps = None
        self._shown = 0  # losses in the history when the bar last showed one

    def on_fit_start(self, loop: Loop) -> None:
        self.epochs = tqdm(total=loop.settings.max_epochs, initial=loop.epoch, desc="epochs", unit="epoch",
                           disable=None, leave=False)

    def on_epoch_start(self, loop: Loop) -> None:
        self.steps = tqdm(total=loop.splits.train.num_batches(loop.settings.batch_size), initial=loop.batch_in_epoch,
                          desc=f"epoch {loop.epoch + 1}", unit="step", disable=None, leave=False)

    def on_step_end(self, loop: Loop, loss) -> None:
        self.steps.update()
        if len(self.history.losses) != self._shown:
            self._shown = len(self.history.losses)
            self.steps.set_postfix(loss=f"{self.history.losses[-1]:.4f}", refresh=False)

    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        self._close_steps()
        self.epochs.set_postfix({loop.monitor: f"{row[loop.monitor]:.4f}"}, refresh=False)
        self.epochs.update()

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None

    def on_fit_end(self, loop: Loop) -> None:
        self._close_steps()
        self.epochs.close()

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        self.on_fit_end(loop)
