"""The learning loop of the notes: forward pass, loss, backpropagation, weight update; repeated.

Everything the loop measures per step (the loss, gradient and weight norms) accumulates in
tensors on the training device and is fetched every ``trainer.log_every`` steps, so there is no
host-device synchronisation per step; the tracker then writes it off the training thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from zoo._runtime import Interrupted, StopRequest, frozen_collector, stop_on_signals
from zoo.training.distributed import Dist, wrap

log = logging.getLogger(__name__)

GRAD_BUDGET = 0.05  # gradient norms may cost at most this fraction of a step when grad_every=auto
GRAD_PROBE = 5  # grad_every=auto computes norms at every step until it has timed this many, then adapts
# Checkpoint files are written at the end of an epoch when that costs under 1% of the time since the
# last write, and at the end; a better epoch in between is kept in memory (a copy of its state, when that
# is under SNAPSHOT_BYTES; a larger state is written at once) and written as best.pt with the next last.pt.
CHECKPOINT_BUDGET = 0.01
SNAPSHOT_BYTES = 256 * 2**20
HIST_BINS = 32


def _copied(obj):
    """``obj`` with every tensor cloned, so later steps do not change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return obj


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
    hist: dict[str, list] = field(default_factory=dict)


class Loop:
    """Trains ``model`` on ``splits`` for a :class:`zoo.tasks.Task`, reporting to ``tracker``.

    Args:
        model: the module; its output for a batch's inputs goes to ``task.loss``.
        splits: train/val/test splits already on ``device``.
        task: the task (loss, metrics, monitored metric).
        optimizer, scheduler: built from the config (the scheduler steps once per epoch).
        trainer: the ``trainer`` config as a dict.
        tracker: a :class:`zoo.tracking.Tracker` (or any object with the same methods).
        grad_every: ``"auto"``, 0 (off) or N; hist_every: 0 (off) or N.
        checkpoint_dir: where ``last.pt`` and ``best.pt`` are written after each epoch.
        state: a checkpoint to continue from (resume), or ``None``.
    """

    def __init__(self, model, splits, task, optimizer, scheduler, trainer: dict, tracker, *,
                 device: torch.device, seed: int, grad_every="auto", hist_every: int = 0,
                 checkpoint_dir: Path, state: dict | None = None, extra_state: dict | None = None,
                 dist: Dist | None = None):
        self.model, self.splits, self.task = model, splits, task
        self.optimizer, self.scheduler = optimizer, scheduler
        self.t, self.tracker, self.device = trainer, tracker, device
        self.batch_size = None if trainer["batch_size"] == "full" else int(trainer["batch_size"])
        self.log_every = int(trainer["log_every"])
        self.grad_auto = grad_every == "auto"
        self.grad_every = 1 if self.grad_auto else int(grad_every)
        self.hist_every = int(hist_every)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.extra_state = extra_state or {}
        self.generator = torch.Generator().manual_seed(seed)
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.metrics = {k: m.to(device) for k, m in task.metrics(splits.info).items()}
        self.monitor = f"val/{task.monitor}"
        self.better = task.better
        precision = str(trainer.get("precision", "32"))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.dist = dist or Dist()
        self.forward_model = wrap(model, self.dist, device)  # DDP under torchrun, else the model
        if trainer.get("compile"):
            self.forward_model = torch.compile(self.forward_model)
        self.history = History()
        self.step, self.epoch, self.best, self.bad_epochs = 0, 0, None, 0
        self.batch_in_epoch, self.epoch_rng, self.epoch_sum, self.epoch_count = 0, None, 0.0, 0
        self.stop_requested = StopRequest()
        self._norm_seconds, self._norm_count = 0.0, 0
        self.perf = {"eval_s": 0.0, "checkpoint_s": 0.0, "fetch_s": 0.0}  # seconds of fit() spent on each
        self._saved_at, self._save_seconds = time.perf_counter(), 0.0
        self._best_state: tuple[int, dict] | None = None  # (step, state) of a best epoch not yet in best.pt
        self._last_saved_step: int | None = None  # the step last.pt holds
        if state is not None:
            self._restore(state)

    # ------------------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _norms(self) -> torch.Tensor:
        """Per-parameter gradient norms, their total, and per-parameter weight norms, on the device."""
        t0 = time.perf_counter()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in self.params]
        g = torch.stack(torch._foreach_norm(grads)).float()
        w = torch.stack(torch._foreach_norm([p.detach() for _, p in self.params])).float()
        row = torch.cat([g.norm().reshape(1), g, w])
        self._norm_seconds += time.perf_counter() - t0
        self._norm_count += 1
        return row

    def _histograms(self) -> None:
        for name, p in self.params:
            for kind, t in (("weight", p.detach()), ("grad", p.grad)):
                if t is None:
                    continue
                t = t.float()
                lo, hi = t.min(), t.max()
                counts = torch.histc(t, bins=HIST_BINS, min=float(lo), max=float(hi))
                self.history.hist.setdefault(f"{kind}/{name}", []).append(
                    (self.step, float(lo), float(hi), counts.cpu().tolist()))

    def train_epoch(self, bar) -> float:
        """One pass over the shuffled training split (or the rest of it, after a resume)."""
        model, opt = self.model, self.optimizer
        model.train()
        n = self.log_every
        pending: list[torch.Tensor] = []  # this window's losses, left on the device until the fetch
        norm_rows = torch.zeros(n, 1 + 2 * len(self.params), device=self.device)
        norm_steps: list[int] = []
        steps, times = [], []
        if self.batch_in_epoch == 0:  # a fresh epoch: remember how its order was drawn
            self.epoch_rng = self.generator.get_state()
            self.epoch_sum, self.epoch_count = 0.0, 0
        else:  # resuming mid-epoch: draw the same order again and skip what was done
            self.generator.set_state(self.epoch_rng)
        skip = self.batch_in_epoch
        check_each_step = self.device.type == "cpu" and self.dist.world == 1  # a host sync costs nothing there
        window_start = time.perf_counter()
        i = 0
        batches = self.splits.train.batches(self.batch_size, shuffle=True, generator=self.generator)
        for x, y in itertools.islice(batches, skip, None):
            x, y = self.dist.shard(x), self.dist.shard(y)  # under DDP: this rank's part of the global batch
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.task.loss(self.forward_model(x), y, x)
            if check_each_step and not math.isfinite(loss.item()):
                self._flush(pending, steps, times, norm_rows[:len(norm_steps)], norm_steps, 0.0, bar)
                raise NonFiniteLoss(self.step + 1, loss.item())
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(opt)
            else:
                loss.backward()
            self.step += 1
            if self.grad_every and self.step % self.grad_every == 0:
                norm_rows[len(norm_steps)] = self._norms()
                norm_steps.append(self.step)
                if self.grad_auto and self._norm_count == GRAD_PROBE:  # timed enough: adapt now, not at the fetch
                    self._adapt_grad_every((time.perf_counter() - window_start) / (i + 1))
            if self.hist_every and self.step % self.hist_every == 0:
                self._histograms()
            if self.t.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.t["grad_clip"])
            if self.scaler is not None:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
            pending.append(loss.detach())
            self.batch_in_epoch += 1
            steps.append(self.step)
            times.append(time.time())
            i += 1
            bar.update()
            if i == n or self.stop_requested:
                self.epoch_sum += sum(self._flush(pending, steps, times, norm_rows[:len(norm_steps)], norm_steps,
                                                  time.perf_counter() - window_start, bar))
                self.epoch_count += i
                i, pending, steps, times, norm_steps = 0, [], [], [], []
                window_start = time.perf_counter()
                if self.stop_requested:
                    raise Interrupted(f"stopped by signal {self.stop_requested.signum} at step {self.step}")
        if i:
            self.epoch_sum += sum(self._flush(pending, steps, times, norm_rows[:len(norm_steps)], norm_steps,
                                              time.perf_counter() - window_start, bar))
            self.epoch_count += i
        self.batch_in_epoch = 0
        return self.epoch_sum / max(self.epoch_count, 1)

    def _flush(self, losses: list, steps, times, norm_rows, norm_steps, seconds, bar) -> list[float]:
        """Fetch what accumulated on the device (one sync), hand it to the tracker; return the losses."""
        if not losses:
            return []
        t0 = time.perf_counter()
        try:
            return self._flush_now(torch.stack(losses), steps, times, norm_rows, norm_steps, seconds, bar)
        finally:
            self.perf["fetch_s"] += time.perf_counter() - t0

    def _flush_now(self, losses, steps, times, norm_rows, norm_steps, seconds, bar) -> list[float]:
        values = self.dist.mean(losses.float()).tolist()  # the global batch's loss under DDP
        bad = [k for k, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            good = bad[0]
            self.tracker.series("train/loss", values[:good], steps[:good], times[:good])
            raise NonFiniteLoss(steps[good], values[good])
        self.tracker.series("train/loss", values, steps, times)
        self.history.steps += steps
        self.history.losses += values
        self.history.times += times
        if norm_steps:
            rows = norm_rows.tolist()
            names = ["grad_norm/total"] + [f"grad_norm/{n}" for n, _ in self.params] + \
                    [f"weight_norm/{n}" for n, _ in self.params]
            ts = times[-1]
            for s, row in zip(norm_steps, rows):
                self.tracker.metrics(dict(zip(names, row)), step=s, timestamp=ts)
        if self.grad_auto and self._norm_count and steps:
            self._adapt_grad_every(seconds / len(steps))
        bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
        return values

    def _adapt_grad_every(self, step_seconds: float) -> None:
        """The cheapest cadence whose norms and their metric rows cost under GRAD_BUDGET of a step."""
        rows = 1 + 2 * len(self.params)
        cost = self._norm_seconds / self._norm_count + rows * self.tracker.row_cost
        self.grad_every = max(1, math.ceil(cost / (GRAD_BUDGET * max(step_seconds, 1e-6))))

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split, prefix: str) -> dict[str, float]:
        self.model.eval()
        for m in self.metrics.values():
            m.reset()
        total = torch.zeros((), device=self.device)
        count = 0
        bs = None if self.batch_size is None else max(self.batch_size, 1024)
        for x, y in split.batches(bs):
            x, y = self.dist.shard(x), self.dist.shard(y)
            with self._autocast():
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

    # ------------------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch, "step": self.step, "best": self.best, "bad_epochs": self.bad_epochs,
            "grad_every": self.grad_every,
            "batch_in_epoch": self.batch_in_epoch, "epoch_sum": self.epoch_sum, "epoch_count": self.epoch_count,
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                    "epoch": self.epoch_rng if self.epoch_rng is not None else self.generator.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            **self.extra_state,
        }

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        self.grad_every = state.get("grad_every", self.grad_every)
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self.epoch_sum, self.epoch_count = state.get("epoch_sum", 0.0), state.get("epoch_count", 0)
        self.epoch_rng = state["rng"].get("epoch")
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        if state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self, name: str) -> Path:
        path = self.checkpoint_dir / name
        if not self.dist.main:  # one writer: rank 0
            return path
        t0 = time.perf_counter()
        self._write(self.state(), path)
        if name == "last.pt":
            self._last_saved_step = self.step
            self.save_best()
        self._saved_at = time.perf_counter()
        self._save_seconds = self._saved_at - t0
        return path

    @staticmethod
    def _write(state: dict, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind, never rewrite a file in place

    def keep_best(self) -> None:
        """This epoch is the best so far: best.pt is written with the next last.pt (or now, for a large state)."""
        if not self.dist.main:
            return
        size = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        if 3 * size > SNAPSHOT_BYTES:  # weights and the optimizer's state: too large to copy, write them now
            self._best_state = (self.step, None)
            self.save("last.pt")
            return
        self._best_state = (self.step, _copied(self.state()))

    def save_best(self) -> None:
        """Write the best epoch kept in memory as best.pt (a link to last.pt when that holds the same step)."""
        if self._best_state is None or not self.dist.main:
            return
        (step, state), self._best_state = self._best_state, None
        best, last = self.checkpoint_dir / "best.pt", self.checkpoint_dir / "last.pt"
        if step == self._last_saved_step:  # last.pt holds this very state: no second write
            tmp = best.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(last, tmp)
            except OSError:  # a file system without hard links
                shutil.copyfile(last, tmp)
            tmp.replace(best)
        else:
            self._write(state, best)

    def _checkpoint_due(self) -> bool:
        """Whether writing ``last.pt`` now costs under CHECKPOINT_BUDGET of the time since the last write."""
        return (time.perf_counter() - self._saved_at) * CHECKPOINT_BUDGET >= self._save_seconds

    # ------------------------------------------------------------------------------ the loop
    @contextlib.contextmanager
    def stop_on_signals(self):
        """Ctrl-C or SIGTERM asks the loop to stop after the current step; a second one stops now."""
        with stop_on_signals() as self.stop_requested:
            yield

    def fit(self) -> dict[str, float]:
        max_epochs = int(self.t["max_epochs"])
        patience = self.t.get("patience")
        per_epoch = self.splits.train.num_batches(self.batch_size)
        started, first_step = time.perf_counter(), self.step
        with frozen_collector():
            try:
                self._epochs(max_epochs, patience, per_epoch)
            except BaseException:  # a failed or interrupted run keeps its best epoch too
                with contextlib.suppress(Exception):
                    self.save_best()
                raise
        self._log_perf(time.perf_counter() - started, self.step - first_step)
        return self.finish()

    def _epochs(self, max_epochs: int, patience, per_epoch: int) -> None:
        with tqdm(total=max_epochs, initial=self.epoch, desc="epochs", unit="epoch", disable=None, leave=False) as ebar:
            while self.epoch < max_epochs:
                with tqdm(total=per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}", unit="step",
                          disable=None, leave=False) as bar:
                    train_loss = self.train_epoch(bar)
                self.epoch += 1
                t0 = time.perf_counter()
                val = self.evaluate(self.splits.val, "val")
                self.perf["eval_s"] += time.perf_counter() - t0
                now = time.time()
                row = {"train/loss_epoch": train_loss, "epoch": self.epoch, **val,
                       "lr": self.optimizer.param_groups[0]["lr"]}
                self.tracker.metrics(row, step=self.step, timestamp=now)
                self.history.epochs.append({"step": self.step, **row})
                if self.scheduler is not None:
                    self.scheduler.step()
                score = val[self.monitor]
                improved = self.best is None or self.better(score, self.best)
                if improved:
                    self.best, self.bad_epochs = score, 0
                else:
                    self.bad_epochs += 1
                t0 = time.perf_counter()
                if improved:
                    self.keep_best()
                final = self.epoch >= max_epochs or (patience and self.bad_epochs >= patience)
                if (final or self._checkpoint_due()) and self._last_saved_step != self.step:
                    self.save("last.pt")  # and best.pt, when a better epoch is waiting in memory
                self.perf["checkpoint_s"] += time.perf_counter() - t0
                ebar.set_postfix({self.monitor: f"{score:.4f}"}, refresh=False)
                ebar.update()
                if patience and self.bad_epochs >= patience:
                    log.info("early stopping at epoch %d: %s has not improved for %d epochs",
                             self.epoch, self.monitor, patience)
                    break

    def _log_perf(self, seconds: float, steps: int) -> None:
        """How fast this process trained, and where the loop's time went (``perf/*``, one row each)."""
        if steps <= 0 or seconds <= 0:
            return
        self.tracker.metrics({"perf/fit_s": seconds, "perf/steps": steps, "perf/steps_per_s": steps / seconds,
                              "perf/norms_s": self._norm_seconds, **{f"perf/{k}": v for k, v in self.perf.items()}},
                             step=self.step)

    def finish(self) -> dict[str, float]:
        """Evaluate the best checkpoint on the test split and log the summary metrics."""
        best = self.checkpoint_dir / "best.pt"
        if self.dist.main and best.exists():
            self.model.load_state_dict(torch.load(best, map_location=self.device, weights_only=True)["model"])
        if self.dist.world > 1:  # every rank evaluates rank 0's best weights
            for t in self.model.state_dict().values():
                torch.distributed.broadcast(t, 0)
        test = self.evaluate(self.splits.test, "test")
        summary = {f"best/val_{self.task.monitor}": self.best, **test}
        final = self.history.epochs[-1] if self.history.epochs else {}
        summary.update({f"final/{k.replace('/', '_')}": v for k, v in final.items()
                        if k.startswith(("train/", "val/"))})
        self.tracker.metrics(summary, step=self.step)
        return summary
