"""The loop core and its callbacks driven directly, as a notebook would: the hook contract, the order
of effects within a step, the step log's device-side histograms, and no reads from the device per step.

Everything is real: the iris split and perceptron from the registry, torch, and a real MLflow
store in tmp_path for the step log.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from zoo.tracking import Tracker
from zoo.training.callbacks import StepLog
from zoo.training.callbacks.step_log import GRAD_BUDGET, GRAD_PROBE, HIST_BINS, grad_cadence, histogram
from zoo.training.loop import Callback, Loop
from zoo.training.settings import TrainerSettings

TRAINING = str(Path(__file__).resolve().parent.parent / "zoo" / "training")
devices = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def _loop(registry, settings: TrainerSettings, callbacks, device="cpu") -> Loop:
    device = torch.device(device)
    torch.manual_seed(0)
    splits = registry.load_dataset("iris", 0)
    splits = type(splits)(splits.train.to(device), splits.val.to(device), splits.test.to(device), splits.info)
    model = registry.create_model("perceptron", splits.info).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Loop(model, splits, registry.task("classification"), optimizer, None, settings, device=device, seed=0,
                callbacks=callbacks)


class Recorder(Callback):
    """Notes every hook, and what the step looked like from inside it."""

    def __init__(self):
        self.events, self.before_step = [], None

    def on_fit_start(self, loop):
        self.events.append("fit_start")

    def on_epoch_start(self, loop):
        self.events.append(("epoch_start", loop.epoch + 1))

    def on_after_backward(self, loop, loss):
        p = loop.model.linear.weight
        assert p.grad is not None and p.grad.norm() > loop.settings.grad_clip  # not clipped yet
        self.before_step = p.detach().clone()  # not updated yet
        self.events.append(("after_backward", loop.step))

    def on_step_end(self, loop, loss):
        assert isinstance(loss, torch.Tensor) and loss.device == loop.device and not loss.requires_grad
        assert not torch.equal(loop.model.linear.weight, self.before_step)  # the optimizer stepped after the hook
        self.events.append(("step_end", loop.step))

    def on_epoch_end(self, loop, row):
        self.events.append(("epoch_end", loop.epoch, sorted(row)))

    def on_fit_end(self, loop):
        self.events.append("fit_end")


def test_the_hooks_come_in_the_notes_order(registry):
    settings = TrainerSettings(max_epochs=2, batch_size=8, grad_clip=1e-6)
    recorder = Recorder()
    loop = _loop(registry, settings, [recorder])
    results = loop.fit()
    per_epoch = 13  # 104 training examples, batch 8
    steps = [e for s in range(1, 2 * per_epoch + 1) for e in (("after_backward", s), ("step_end", s))]
    row = ["epoch", "lr", "val/accuracy", "val/loss"]
    assert recorder.events == ["fit_start", ("epoch_start", 1), *steps[:2 * per_epoch], ("epoch_end", 1, row),
                               ("epoch_start", 2), *steps[2 * per_epoch:], ("epoch_end", 2, row), "fit_end"]
    assert {"best/val_accuracy", "test/accuracy", "test/loss", "final/val_accuracy"} <= set(results)
    assert loop.step == 2 * per_epoch and loop.batch_in_epoch == 0


class HostReads(TorchFunctionMode):
    """Counts the reads of a tensor's value on the host made by Zoo's training code (not by torch or MLflow)."""

    READS = {"item", "tolist", "__bool__", "__float__", "__int__", "numpy"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS and sys._getframe(1).f_code.co_filename.startswith(TRAINING):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", devices)
@pytest.mark.usefixtures("client")
def test_the_step_path_does_not_read_from_the_device(registry, store, device):
    """Norms, histograms and losses at every step stay on the device until the fetch; only the CPU reads each
    loss (there is no device to wait for there), so that a non-finite one stops the run at once."""
    reads = {}
    for batch_size in (8, 4):  # 13 and 26 steps, one fetch each (log_every is longer than the epoch)
        settings = TrainerSettings(max_epochs=1, batch_size=batch_size, log_every=1000, grad_every=1, hist_every=1)
        tracker = Tracker(store, "host-reads", system_metrics=False)
        step_log = StepLog(tracker, settings)
        loop = _loop(registry, settings, [step_log], device)
        with tracker.run(run_name=f"batch {batch_size}", params={}, tags={}), HostReads() as counted:
            loop.fit()
        assert len(step_log.history.losses) == loop.step and len(step_log.history.hist["grad/linear.weight"]) == loop.step
        reads[loop.step] = counted.count
    per_step = 1 if device == "cpu" else 0
    assert reads[26] - reads[13] == (26 - 13) * per_step, reads


@pytest.mark.parametrize("make", [
    lambda: torch.randn(1000, generator=torch.Generator().manual_seed(0)),
    lambda: torch.randint(-5, 5, (1000,), generator=torch.Generator().manual_seed(1)).float(),  # values on bin edges
    lambda: torch.zeros(64),  # one value: histc widens the range by 1 on each side
    lambda: torch.randn(256, 64, generator=torch.Generator().manual_seed(2)) * 1e-4,
])
def test_histograms_are_counted_as_torch_histc_counts_them(make):
    t = make()
    row = histogram(t)
    assert row[0] == t.min() and row[1] == t.max()
    assert torch.equal(row[2:], torch.histc(t, bins=HIST_BINS, min=float(t.min()), max=float(t.max())))


def test_trainer_settings_are_parsed_once(make_cfg, registry):
    from zoo.config import validate

    plain = validate(make_cfg("trainer.batch_size=full", "trainer.grad_clip=0.5", "trainer.patience=3",
                              "tracking.grad_every=7", "trainer.precision=bf16"), registry)
    s = TrainerSettings.from_config(plain)
    assert (s.batch_size, s.grad_clip, s.patience, s.grad_every, s.precision) == (None, 0.5, 3, 7, "bf16")
    defaults = TrainerSettings.from_config(validate(make_cfg(), registry))
    assert (defaults.batch_size, defaults.grad_clip, defaults.patience, defaults.grad_every) == (64, None, None, "auto")
    with pytest.raises(AttributeError):
        s.max_epochs = 5  # frozen: the loop cannot change what it was told


def test_auto_grad_cadence_decisions():
    """grad_every=auto's policy on given costs: the smallest N at which norms cost under GRAD_BUDGET of N steps."""
    assert grad_cadence(norms_s=1e-5, rows=10, row_s=1e-6, step_s=0.01) == 1  # cheap: every step
    assert grad_cadence(norms_s=1e-3, rows=20, row_s=2e-4, step_s=0.01) == 10  # 5 ms of norms for a 10 ms step
    assert grad_cadence(norms_s=1e-3, rows=20, row_s=2e-4, step_s=0.1) == 1
    assert grad_cadence(norms_s=0.0, rows=5, row_s=1e-4, step_s=1e-3) == 10  # the rows' writing counts too
    assert grad_cadence(norms_s=1e-3, rows=1, row_s=0.0, step_s=1e-3, budget=0.5) == 2
    assert grad_cadence(norms_s=1e-4, rows=1, row_s=0.0, step_s=0.0) > 1000  # no measurable step: rarely
    assert GRAD_BUDGET == 0.05


class Ticks:
    """A clock that moves 1 ms each time it is read: every timed step costs the same on any machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-3
        return self.now


class FixedRowCost(Tracker):
    """The real tracker, with the writer's cost per metric row given instead of measured."""

    row_cost = 1.25e-4


@pytest.mark.parametrize("batch_size, steps_per_epoch, n", [(4, 26, 17), (8, 13, 13)])
@pytest.mark.usefixtures("client")
def test_auto_grad_cadence_is_chosen_once_and_logged_as_tagged(registry, store, batch_size, steps_per_epoch, n):
    """auto chooses N once and logs norms at the multiples of N only, the rows computed while timing included.

    Each timed step reads the clock three times (norms start and end, step end): 3 ms a step, 1 ms of it the
    norms, so the budget gives ceil((1 ms + 5 rows x 0.125 ms) / (5% of 2 ms)) = 17 whatever the machine's load;
    N is that, or an epoch's steps when an epoch is shorter (every epoch has its norms).
    log_every=4: windows are fetched before N is known, and their rows wait for it.
    """
    import mlflow

    settings = TrainerSettings(max_epochs=3, batch_size=batch_size, log_every=4, grad_every="auto")
    tracker = FixedRowCost(store, "cadence", system_metrics=False)
    step_log = StepLog(tracker, settings)
    step_log.clock = Ticks()
    loop = _loop(registry, settings, [step_log])
    with tracker.run(run_name="auto", params={}, tags={}):
        loop.fit()
    assert step_log.grad_chosen and step_log.grad_every == n and loop.step == 3 * steps_per_epoch
    assert GRAD_PROBE < n
    logged = mlflow.MlflowClient(store).get_metric_history(tracker.run_id, "grad_norm/total")
    assert sorted(m.step for m in logged) == list(range(n, loop.step + 1, n))


@pytest.mark.usefixtures("client")
def test_auto_grad_cadence_of_a_run_too_short_to_time(registry, store):
    """A run that ends before the probe has timed enough steps had norms at every step: N stays 1, all logged."""
    import mlflow

    settings = TrainerSettings(max_epochs=1, batch_size=32, log_every=50, grad_every="auto")  # 4 steps
    tracker = Tracker(store, "cadence", system_metrics=False)
    step_log = StepLog(tracker, settings)
    loop = _loop(registry, settings, [step_log])
    with tracker.run(run_name="short", params={}, tags={}):
        loop.fit()
    assert loop.step <= GRAD_PROBE and step_log.grad_every == 1
    logged = mlflow.MlflowClient(store).get_metric_history(tracker.run_id, "grad_norm/total")
    assert sorted(m.step for m in logged) == list(range(1, loop.step + 1))
