"""The learning loop of the notes: forward pass, loss, backpropagation, weight update; repeated.

:class:`Loop` is only that: the step, an epoch over shuffled mini-batches (which a resume
re-enters exactly where it stopped), the validation pass, the best epoch and early stopping.
Everything a run does around it is a :class:`Callback` with one concern: the step log (losses
and norms kept on the device until the next fetch, histograms, non-finite losses;
``callbacks/step_log.py``), checkpoints (``checkpoint.py``), the progress bar and the timings
(``callbacks/``). ``train.py`` puts them together.

The core never waits for the device: a step's loss is handed on as a device tensor.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict

import torch

from zoo._runtime import StopRequest, frozen_collector, stop_on_signals
from zoo.plugin.data import batches_from
from zoo.training.distributed import Dist, wrap
from zoo.training.settings import TrainerSettings

log = logging.getLogger(__name__)


class Callback:
    """Something the loop calls at fixed points; every method does nothing unless overridden.

    The loop calls its callbacks in the order of its list. Per-step hooks must not read a device
    tensor on the host (``.item()``, ``.tolist()``): on a GPU that waits for the device at every step.
    """

    def on_fit_start(self, loop: Loop) -> None:
        """Before the first step (after a resume, with the checkpoint's state already back)."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before the epoch's first step (after a resume mid-epoch: before the rest of it)."""

    def on_after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
        """The gradients exist; the clip and the optimizer step come next. ``loop.step`` counts this step."""

    def on_step_end(self, loop: Loop, loss: torch.Tensor) -> None:
        """After the optimizer step; ``loss`` is the step's loss, detached, on the device."""

    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        """After the validation pass; ``row`` holds the epoch's metrics, and a callback may add its own."""

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        """Training stopped with ``exc`` (Ctrl-C and SIGTERM too): keep what can be kept."""

    def on_fit_end(self, loop: Loop) -> None:
        """Training ended normally; the test pass comes next."""

    def state_dict(self) -> dict:
        """The top-level keys this callback adds to a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` wrote; ``state`` is the whole checkpoint."""


class Loop:
    """Trains ``model`` on ``splits`` for ``task``; the ``callbacks`` do everything else.

    Args:
        model: the module; its output for a batch's inputs goes to ``task.loss``.
        splits: train/val/test splits already on ``device``.
        task: the :class:`zoo.Task` (loss, metrics, the monitored metric and which way it improves).
        optimizer, scheduler: built from the config; the scheduler (or ``None``) steps once an epoch.
        settings: the :class:`~zoo.training.settings.TrainerSettings`.
        device: where the model and the splits are.
        seed: seeds the order of the training batches.
        dist: this process's place in a DDP job (default: a single process).
        callbacks: called in this order at every hook.
    """

    def __init__(self, model, splits, task, optimizer, scheduler, settings: TrainerSettings, *,
                 device: torch.device, seed: int, dist: Dist | None = None, callbacks=()):
        self.model, self.splits, self.task = model, splits, task
        self.optimizer, self.scheduler, self.settings = optimizer, scheduler, settings
        self.device, self.dist, self.callbacks = device, dist or Dist(), list(callbacks)
        self.generator = torch.Generator().manual_seed(seed)
        self.metrics = {k: m.to(device) for k, m in task.metrics(splits.info).items()}
        self.monitor = f"val/{task.monitor}"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.precision)
        self.scaler = torch.amp.GradScaler(device.type) if settings.precision == "fp16" else None
        self.forward_model = wrap(model, self.dist, device)  # DDP under torchrun, else the model
        if settings.compile:
            self.forward_model = torch.compile(self.forward_model)
        # where training stands (a checkpoint saves it: checkpoint.py)
        self.step, self.epoch, self.batch_in_epoch, self.epoch_rng = 0, 0, 0, None
        self.best, self.bad_epochs = None, 0
        # whether a checkpoint of the loop as it stands would resume it correctly: between two training steps
        # (a step that failed before its update counts as not taken), not in an epoch's end nor after training
        self.settled = True
        # the epoch that just ended, for the callbacks: a new best? the last one?
        self.improved, self.last_epoch, self.last_row = False, False, {}
        self.stop_reason: str | None = None  # a callback stopped training early (Loop.request_stop)
        self.perf = defaultdict(float)  # seconds of fit() spent on each part (perf/*: callbacks/timing.py)
        self.stop_requested = StopRequest()
        self._after_backward = self._hooked("on_after_backward")  # the per-step hooks, without the no-ops
        self._step_end = self._hooked("on_step_end")

    def _hooked(self, name: str) -> list:
        return [getattr(cb, name) for cb in self.callbacks if getattr(type(cb), name) is not getattr(Callback, name)]

    def _call(self, name: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(self, *args)

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> dict[str, float]:
        """Train for ``max_epochs`` (or until early stopping), then test; returns the summary metrics.

        Ctrl-C, SIGTERM or SIGHUP stops training at the next step boundary (the same signal again
        stops at once); one that comes in the last validation pass stops before the test pass. The
        test pass itself is the caller's to stop (``zoo.training.train`` stops it at once).
        """
        with stop_on_signals("step") as self.stop_requested, frozen_collector():
            self._call("on_fit_start")
            try:
                self.settled = True
                while self.epoch < self.settings.max_epochs:
                    self.run_epoch()
                    if self._out_of_patience():
                        log.info("early stopping at epoch %d: %s has not improved for %d epochs",
                                 self.epoch, self.monitor, self.settings.patience)
                        break
                    if self.stop_reason:
                        log.info("stopping at epoch %d: %s", self.epoch, self.stop_reason)
                        break
                if self.stop_requested.pending:  # it came in the last validation pass
                    raise self.stop_requested.interrupt(f"at step {self.step}")
            except BaseException as exc:
                for cb in self.callbacks:  # the step log flushes, the checkpointer keeps the best epoch
                    with contextlib.suppress(Exception):
                        cb.on_exception(self, exc)
                raise
            self.settled = False  # on_fit_end loads the best epoch's weights
            self._call("on_fit_end")
        return self.test()

    def request_stop(self, reason: str) -> None:
        """Make the epoch that is ending the last one (from a callback's ``on_epoch_end``; the callbacks
        after it in the list see ``last_epoch`` set, so the checkpointer writes ``last.pt``)."""
        self.stop_reason, self.last_epoch = reason, True

    def _out_of_patience(self) -> bool:
        return self.settings.patience is not None and self.bad_epochs >= self.settings.patience

    def run_epoch(self) -> None:
        """Train one epoch, validate, step the scheduler, keep the best score; then the callbacks."""
        self.train_epoch()
        self.epoch += 1
        t0 = time.perf_counter()
        val = self.evaluate(self.splits.val, "val")
        self.perf["eval_s"] += time.perf_counter() - t0
        row = {"epoch": self.epoch, **val, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.scheduler is not None:
            self.scheduler.step()
        score = val[self.monitor]
        self.improved = self.best is None or self.task.better(score, self.best)
        self.best, self.bad_epochs = (score, 0) if self.improved else (self.best, self.bad_epochs + 1)
        self.last_epoch = self.epoch >= self.settings.max_epochs or self._out_of_patience()
        self._call("on_epoch_end", row)
        self.last_row = row
        self.settled = True

    def train_epoch(self) -> None:
        """One pass over the shuffled training split (or the rest of it, after a resume)."""
        self.model.train()
        if self.batch_in_epoch == 0:  # a fresh epoch: remember how its order was drawn
            self.epoch_rng = self.generator.get_state()
        else:  # resuming mid-epoch: draw the same order again and skip what was done
            self.generator.set_state(self.epoch_rng)
        self._call("on_epoch_start")
        batches = batches_from(self.splits.train, self.settings.batch_size, self.generator, self.batch_in_epoch)
        for x, y in batches:
            # under DDP: this rank's part of the global batch
            loss = self.train_step(self.dist.shard(x), self.dist.shard(y))
            self.batch_in_epoch += 1
            self.settled = True
            for hook in self._step_end:
                hook(self, loss)
            if self.stop_requested.pending:
                raise self.stop_requested.interrupt(f"at step {self.step}")
        self.settled = False  # the epoch's end: validation, the scheduler and the epoch's callbacks
        self.batch_in_epoch = 0

    # ------------------------------------------------------------------------------ one step
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, x, y) -> torch.Tensor:
        """The notes' step: forward, loss, backward, update. Returns the loss, detached, on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.task.loss(self.forward_model(x), y, x)
        if self.scaler is None:
            loss.backward()
        else:  # fp16: a scaled loss keeps small gradients from underflowing; unscaled before norms and clip
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        self.settled = False  # counted from here on, and updated next
        self.step += 1
        loss = loss.detach()
        for hook in self._after_backward:  # norms and histograms: the gradients before clip and step
            hook(self, loss)
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split, prefix: str) -> dict[str, float]:
        """The loss and the task's metrics on ``split``, as ``{prefix}/loss``, ``{prefix}/<metric>``."""
        self.model.eval()
        for m in self.metrics.values():
            m.reset()
        total = torch.zeros((), device=self.device)
        count = 0
        bs = None if self.settings.batch_size is None else max(self.settings.batch_size, 1024)
        for x, y in split.batches(bs):
            x, y = self.dist.shard(x), self.dist.shard(y)
            with self.autocast():
                out = self.forward_model(x)
                loss = self.task.loss(out, y, x)
            total += loss.float() * len(y)
            count += len(y)
            preds, target = self.task.prepare(out.float(), y, x)
            for m in self.metrics.values():
                m.update(preds, target)
        total, count = self.dist.sum(total), float(self.dist.sum(torch.tensor(float(count), device=self.device)))
        result = {f"{prefix}/loss": float(total) / max(count, 1)}
        result.update({f"{prefix}/{k}": float(m.compute()) for k, m in self.metrics.items()})
        return result

    def test(self) -> dict[str, float]:
        """The summary: the best validation score, the test split's metrics and the last epoch's (``final/*``)."""
        results = {f"best/val_{self.task.monitor}": self.best, **self.evaluate(self.splits.test, "test")}
        results.update({f"final/{k.replace('/', '_')}": v for k, v in self.last_row.items()
                        if k.startswith(("train/", "val/"))})
        return results
