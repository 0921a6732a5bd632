"""The step log: what the loop measures at every step, fetched from the device every ``log_every`` steps.

Per step it only keeps tensors on the training device: the loss, and at their cadences a row of
gradient and weight norms and the histograms. Every ``trainer.log_every`` steps (and at the end of
an epoch, and when training stops) :meth:`StepLog.flush` fetches the window in one wait for the
device and hands it to the tracker, which writes it off the training thread. So a step never
waits for the device, except on the CPU, where there is nothing to wait for and each loss is read
so that a non-finite one stops the run at the step it appears, and in the few first steps that
``grad_every=auto`` times to choose its cadence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.training.loop import Callback, Loop
from zoo.training.settings import TrainerSettings

GRAD_BUDGET = 0.05  # gradient norms may cost at most this fraction of a step when grad_every=auto
GRAD_PROBE = 5  # grad_every=auto times this many steps after the first (norms at each), then keeps one N
HIST_BINS = 32


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        self.step, self.value = step, value
        super().__init__(f"loss became {value} at step {step}")


@dataclass
class History:
    """What the loop saw, kept on the host for the end-of-run plots."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    hist: dict[str, list] = field(default_factory=dict)  # "weight/<name>", "grad/<name>" -> [(step, lo, hi, counts)]


def grad_cadence(norms_s: float, rows: int, row_s: float, step_s: float, budget: float = GRAD_BUDGET) -> int:
    """The cadence ``grad_every=auto`` keeps: the smallest N at which a row of norms costs under ``budget`` of N steps.

    A row costs ``norms_s`` to compute and ``rows`` metric rows of ``row_s`` each to write; a step
    without norms takes ``step_s``.
    """
    return max(1, math.ceil((norms_s + rows * row_s) / (budget * max(step_s, 1e-6))))


def histogram(t: torch.Tensor) -> torch.Tensor:
    """``[min, max, *counts]`` of ``t`` in HIST_BINS equal bins, counted as ``torch.histc`` counts them.

    ``torch.histc`` wants its range as host numbers (two waits for the device per tensor); this
    keeps everything on the device. A tensor of one value gets the range [value - 1, value + 1], as in histc.
    """
    t = t.detach().float().flatten()
    lo, hi = torch.aminmax(t)
    flat = hi == lo
    lo_, hi_ = torch.where(flat, lo - 1, lo), torch.where(flat, hi + 1, hi)
    x = t - lo_
    x.mul_(HIST_BINS).div_(hi_ - lo_)  # histc's own arithmetic, so the same value lands in the same bin
    index = x.long().clamp_(max=HIST_BINS - 1)
    counts = torch.zeros(HIST_BINS, device=t.device).index_add_(0, index, t.new_ones(()).expand(index.shape))
    return torch.cat([lo.reshape(1), hi.reshape(1), counts])


class StepLog(Callback):
    """Losses every step, gradient and weight norms every ``grad_every`` steps, histograms, epoch rows.

    Args:
        tracker: where rows go (``series``, ``metrics``, ``row_cost``): a :class:`zoo.tracking.Tracker`.
        settings: ``log_every``, ``grad_every`` (``"auto"``, 0 or N) and ``hist_every`` (0 or N).

    The norms are logged at every step that is a multiple of ``grad_every`` and only there, so the
    tag ``zoo.grad_every`` says which steps have them. ``"auto"`` chooses N once, for the whole run:
    it computes norms at every step while it times the GRAD_PROBE steps after the first (the first
    pays for warm-up and compilation), then keeps the smallest N that costs under GRAD_BUDGET of a
    step (:func:`grad_cadence`), at most an epoch's steps; of the rows computed while timing, those on a multiple of N are
    logged. A run that ends before it has timed enough keeps N = 1: every row is logged.

    ``history`` keeps what was fetched for the end-of-run plots. The epoch row it logs gets
    ``train/loss_epoch``, the mean of the epoch's training losses.
    """

    def __init__(self, tracker, settings: TrainerSettings):
        self.tracker = tracker
        self.log_every, self.hist_every = settings.log_every, settings.hist_every
        self.grad_auto = settings.grad_every == "auto"
        self.grad_every = 1 if self.grad_auto else settings.grad_every
        self.grad_chosen = not self.grad_auto  # auto: chosen once the probe has timed enough steps
        # (steps timed, their seconds, perf norms_s and norm_count when the timing began)
        self.probe: tuple[int, float, float, int] | None = None
        self.pending: list[tuple[int, list[float], float]] = []  # fetched norm rows (step, row, time) not yet logged
        self.history = History()
        self.epoch_sum, self.epoch_count = 0.0, 0  # the training losses fetched so far in this epoch
        self.norm_count = 0
        self.clock = time.perf_counter  # what the probe times steps and norms with

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"grad_every": self.grad_every, "grad_chosen": self.grad_chosen,
                "epoch_sum": self.epoch_sum, "epoch_count": self.epoch_count}

    def load_state_dict(self, state: dict) -> None:
        if self.grad_auto and "grad_every" in state:  # a continued run keeps the cadence it chose
            self.grad_every = state["grad_every"]
            self.grad_chosen = state.get("grad_chosen", True)  # checkpoints before grad_chosen: keep theirs
        if state.get("batch_in_epoch"):  # stopped mid-epoch: its losses so far count towards the epoch's mean
            self.epoch_sum, self.epoch_count = state.get("epoch_sum", 0.0), state.get("epoch_count", 0)

    # ------------------------------------------------------------------------------ per step
    def on_fit_start(self, loop: Loop) -> None:
        self.params = [(n, p) for n, p in loop.model.named_parameters() if p.requires_grad]
        self.norm_names = ["grad_norm/total"] + [f"grad_norm/{n}" for n, _ in self.params] + \
                          [f"weight_norm/{n}" for n, _ in self.params]
        # a window never outlasts an epoch (flushed at its end): trainer.log_every=10**9 costs an epoch's rows, no more
        window = min(self.log_every, loop.splits.train.num_batches(loop.settings.batch_size))
        self.norm_rows = torch.zeros(window, len(self.norm_names), device=loop.device)
        self.check_each_step = loop.device.type == "cpu" and loop.dist.world == 1  # reading a loss costs nothing there
        self.perf = loop.perf  # norms_s and fetch_s go there
        self._new_window()

    def _new_window(self) -> None:
        self.losses, self.steps, self.times, self.norm_steps, self.hists = [], [], [], [], []

    def on_epoch_start(self, loop: Loop) -> None:
        self.step_started = self.clock()  # the probe times steps, not the validation and checkpoints between epochs

    def on_after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
        if self.check_each_step and not math.isfinite(value := float(loss)):  # the CPU only: no device to wait for
            self.flush(loop)
            raise NonFiniteLoss(loop.step, value)
        if self.grad_every and loop.step % self.grad_every == 0:
            self.norm_rows[len(self.norm_steps)] = self._norms()
            self.norm_steps.append(loop.step)
        if self.hist_every and loop.step % self.hist_every == 0:
            self.hists.append((loop.step, *self._histograms()))

    def on_step_end(self, loop: Loop, loss: torch.Tensor) -> None:
        self.losses.append(loss)
        self.steps.append(loop.step)
        self.times.append(time.time())
        if not self.grad_chosen:
            self._probe(loop)
        if len(self.steps) == self.log_every:
            self.flush(loop)

    def _probe(self, loop: Loop) -> None:
        """``grad_every=auto``: time GRAD_PROBE steps after the first, then choose N for the rest of the run."""
        if loop.device.type == "cuda":  # a few times a run: the clock must see the device's work, not its queue
            torch.cuda.synchronize(loop.device)
        now = self.clock()
        if self.probe is None:  # the run's first step pays for warm-up (and compilation): not timed
            self.probe = (0, 0.0, self.perf["norms_s"], self.norm_count)
        else:
            steps, seconds, norms_s, count = self.probe
            self.probe = (steps + 1, seconds + now - self.step_started, norms_s, count)
        self.step_started = now
        steps, seconds, norms_s, count = self.probe
        if steps >= GRAD_PROBE:
            norms_s = (self.perf["norms_s"] - norms_s) / max(self.norm_count - count, 1)
            chosen = grad_cadence(norms_s, len(self.norm_names), self.tracker.row_cost, seconds / steps - norms_s)
            # at most an epoch apart: every epoch, and a short run, has its norms
            self.grad_every = min(chosen, max(1, loop.splits.train.num_batches(loop.settings.batch_size)))
            self.grad_chosen = True

    def _norms(self) -> torch.Tensor:
        """Per-parameter gradient norms, their total, and per-parameter weight norms, on the device."""
        t0 = self.clock()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in self.params]
        g = torch.stack(torch._foreach_norm(grads)).float()
        w = torch.stack(torch._foreach_norm([p.detach() for _, p in self.params])).float()
        row = torch.cat([g.norm().reshape(1), g, w])
        self.perf["norms_s"] += self.clock() - t0
        self.norm_count += 1
        return row

    def _histograms(self) -> tuple[list[str], torch.Tensor]:
        names, rows = [], []
        for name, p in self.params:
            for kind, t in (("weight", p), ("grad", p.grad)):
                if t is not None:
                    names.append(f"{kind}/{name}")
                    rows.append(histogram(t))
        return names, torch.stack(rows)

    def _log_norms(self) -> None:
        """Hand the fetched norm rows on a multiple of ``grad_every`` to the tracker (once it is chosen)."""
        if not self.grad_chosen:
            return
        for step, row, t in self.pending:
            if step % self.grad_every == 0:
                self.tracker.metrics(dict(zip(self.norm_names, row)), step=step, timestamp=t)
        self.pending = []

    # ------------------------------------------------------------------------------ the fetch
    def flush(self, loop: Loop) -> None:
        """Fetch the window from the device (one wait), hand it to the tracker, start the next window."""
        if not self.steps:
            return
        t0 = time.perf_counter()
        try:
            self._hand_over(loop)
        finally:
            self.perf["fetch_s"] += time.perf_counter() - t0
            self._new_window()

    def _hand_over(self, loop: Loop) -> None:
        steps, times = self.steps, self.times
        values = loop.dist.mean(torch.stack(self.losses).float()).tolist()  # the global batch's loss under DDP
        bad = [k for k, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            good = bad[0]
            self.tracker.series("train/loss", values[:good], steps[:good], times[:good])
            raise NonFiniteLoss(steps[good], values[good])
        self.tracker.series("train/loss", values, steps, times)
        self.history.steps += steps
        self.history.losses += values
        self.history.times += times
        self.epoch_sum += sum(values)
        self.epoch_count += len(values)
        self.pending += [(step, row, times[-1]) for step, row in
                         zip(self.norm_steps, self.norm_rows[:len(self.norm_steps)].tolist())]
        self._log_norms()
        if self.hists:
            fetched = iter(torch.cat([rows for _, _, rows in self.hists]).tolist())
            for step, names, _ in self.hists:
                for name, (lo, hi, *counts) in zip(names, fetched):
                    self.history.hist.setdefault(name, []).append((step, lo, hi, counts))

    # ------------------------------------------------------------------------------ epochs and the end
    def on_epoch_end(self, loop: Loop, row: dict) -> None:
        self.flush(loop)
        row["train/loss_epoch"] = self.epoch_sum / max(self.epoch_count, 1)
        self.epoch_sum, self.epoch_count = 0.0, 0
        self.tracker.metrics(row, step=loop.step)
        self.history.epochs.append({"step": loop.step, **row})

    def on_fit_end(self, loop: Loop) -> None:
        self._end_probe()

    def on_exception(self, loop: Loop, exc: BaseException) -> None:
        # every step up to the stop is logged. Under DDP the fetch averages over the ranks, which only
        # ranks stopping together (a signal, at a step boundary) can do; a rank failing alone must not wait for it
        if loop.dist.world == 1 or loop.stop_requested:
            self.flush(loop)
        self._end_probe()

    def _end_probe(self) -> None:
        """A run that ended before ``grad_every=auto`` chose: every step had norms, so N is 1."""
        if not self.grad_chosen:
            self.grad_chosen = True
            self._log_norms()
