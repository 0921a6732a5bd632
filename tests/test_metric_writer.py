"""What keeps the training loop fast, checked for what it must not lose: every metric row, the
best checkpoint, the run's own timing, and a light ``zoo train --help``.

The writer process and the thread write to a real SQLite store read back with MlflowClient; the
trainings are real ``train(cfg)`` runs.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time

import mlflow
import pytest
import torch

from zoo import ZooError
from zoo.tracking import Tracker
from zoo.training.train import train

from .conftest import run_zoo, runs_in


def _rows(tracker: Tracker, start: int, n: int) -> None:
    steps = list(range(start, start + n))
    tracker.series("train/loss", [0.5 + s / 1e5 for s in steps], steps, [time.time()] * n)


def _wait_ready(tracker: Tracker, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        child = tracker._writer.child
        if child is not None and child.ready:
            return
        time.sleep(0.1)
    pytest.fail("the metric writer process never became ready")


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_every_row_is_written(store, client, monkeypatch, mode):
    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    tracker = Tracker(store, "writer", system_metrics=False)
    tracker.start(run_name="rows", params={"a": 1}, tags={})
    if mode == "process":
        _wait_ready(tracker)
    for k in range(40):
        _rows(tracker, 1 + 50 * k, 50)
    tracker.flush()  # a flush in the middle waits for the writer too
    assert len(client.get_metric_history(tracker.run_id, "train/loss")) == 2000
    _rows(tracker, 2001, 500)
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(tracker.run_id, "train/loss"))
    assert steps == list(range(1, 2501))
    assert run.data.tags["zoo.metric_writer"] == mode
    assert run.data.metrics["perf/metric_rows"] == 2500 and run.data.metrics["perf/writer_s"] > 0


def test_a_dead_writer_process_loses_no_row(store, client, monkeypatch):
    monkeypatch.setenv("ZOO_METRIC_WRITER", "process")
    tracker = Tracker(store, "writer", system_metrics=False)
    tracker.start(run_name="killed writer", params={}, tags={})
    _wait_ready(tracker)
    _rows(tracker, 1, 1000)  # a full batch: sent at once
    tracker._writer.child.proc.kill()
    _rows(tracker, 1001, 1000)
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(tracker.run_id, "train/loss"))
    assert steps == list(range(1, 2001))  # rows it never confirmed were written again, none twice
    assert run.data.tags["zoo.metric_writer"] in ("thread", "process+thread")


def test_the_next_run_of_the_process_uses_the_same_writer_process(store, client, monkeypatch):
    """A run leaves its writer process idle for the next run of the same process (a sweep's jobs in one
    process): that run starts no other one, and both keep every row."""
    monkeypatch.setenv("ZOO_METRIC_WRITER", "process")
    first = Tracker(store, "writer", system_metrics=False)
    first.start(run_name="first", params={}, tags={})
    _wait_ready(first)
    child = first._writer.child
    _rows(first, 1, 300)
    first.finish("FINISHED")
    assert child.proc.poll() is None, "the writer process stopped with the run"
    second = Tracker(store, "writer", system_metrics=False)
    second.start(run_name="second", params={}, tags={})
    assert second._writer.child is child and child.ready
    _rows(second, 1, 300)
    second.finish("FINISHED")
    for tracker in (first, second):
        run = client.get_run(tracker.run_id)
        assert run.info.status == "FINISHED" and run.data.tags["zoo.metric_writer"] == "process"
        assert sorted(m.step for m in client.get_metric_history(tracker.run_id, "train/loss")) == list(range(1, 301))
        assert run.data.metrics["perf/metric_rows"] == 300  # each run counts its own rows


def test_a_run_takes_the_writer_process_started_while_it_was_built(store, client, monkeypatch):
    """``train`` starts the writer process before it builds the data and the model (``Tracker.warm_up``);
    the run then writes through that one."""
    from zoo.tracking.writer import WriterProcess

    monkeypatch.setenv("ZOO_METRIC_WRITER", "thread")
    WriterProcess._idle, idle = None, WriterProcess._idle  # a process an earlier test left idle
    if idle is not None:
        idle.kill()
    Tracker.warm_up()
    assert WriterProcess._idle is None  # writing from a thread: no process to start
    monkeypatch.setenv("ZOO_METRIC_WRITER", "process")
    Tracker.warm_up()
    started = WriterProcess._idle
    assert started is not None and started.proc.poll() is None
    tracker = Tracker(store, "writer", system_metrics=False)
    tracker.start(run_name="warmed", params={}, tags={})
    assert tracker._writer.child is started and WriterProcess._idle is None
    _wait_ready(tracker)
    _rows(tracker, 1, 200)
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["zoo.metric_writer"] == "process"
    assert sorted(m.step for m in client.get_metric_history(tracker.run_id, "train/loss")) == list(range(1, 201))


def test_the_writer_process_exits_quietly_when_the_training_process_is_gone(store):
    """A writer process left starting (an idle one at the end of a process) answers into a closed pipe:
    it exits 0, without a BrokenPipeError traceback on the user's terminal."""
    import os

    from multiprocessing.connection import Connection

    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", "from zoo.tracking.writer_process import main; main()",
                             str(to_child), str(from_child)], pass_fds=(to_child, from_child),
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(to_child)
    os.close(from_child)
    outbox = Connection(from_parent, readable=False)
    outbox.send(("open", store))
    outbox.close()
    os.close(to_parent)  # gone before the writer answers "ready"
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err[-2000:]


def test_a_bad_writer_setting_is_one_line_and_no_run(make_cfg, registry, store, monkeypatch):
    monkeypatch.setenv("ZOO_METRIC_WRITER", "fork")
    with pytest.raises(ZooError, match=r"ZOO_METRIC_WRITER='fork' is invalid: expected auto, process or thread"):
        train(make_cfg("data=iris", "tracking.log_model=false"), registry)
    assert runs_in(store) == []


def test_the_run_times_its_loop_and_keeps_the_best_epoch(make_cfg, registry, client, tmp_path):
    m = train(make_cfg("data=iris", "trainer.max_epochs=6", "trainer.batch_size=8", "tracking.log_model=false",
                       "optimizer.lr=0.05"), registry)
    run = client.get_run(m["run_id"])
    perf = {k: v for k, v in run.data.metrics.items() if k.startswith("perf/")}
    steps = 6 * 13  # 104 training examples, batch 8
    assert perf["perf/steps"] == steps and perf["perf/fit_s"] > 0
    assert perf["perf/steps_per_s"] == pytest.approx(steps / perf["perf/fit_s"])
    for part in ("eval_s", "checkpoint_s", "norms_s", "fetch_s"):
        assert 0 <= perf[f"perf/{part}"] < perf["perf/fit_s"], part
    # best.pt holds the first epoch with the best validation accuracy, even when later epochs were
    # not written at once; last.pt holds the end
    val = client.get_metric_history(m["run_id"], "val/accuracy")
    best = max(v.value for v in val)
    best_step = min(v.step for v in val if v.value == best)
    folder = tmp_path / "out" / "checkpoints" / m["run_id"]
    assert torch.load(folder / "best.pt", weights_only=True)["step"] == best_step
    assert torch.load(folder / "last.pt", weights_only=True)["step"] == steps
    assert run.data.metrics["best/val_accuracy"] == best


def test_help_does_not_import_the_training_stack(tmp_path):
    code = ("import sys\nfrom zoo.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('mlflow', 'torch_geometric', 'matplotlib', 'torchmetrics') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, (r.stdout[-500:], r.stderr[-500:])
    assert "model: " in r.stdout  # it did print the help


# A plugin whose model notes, when it is built and at every training step, whether the garbage
# collector is on and how many objects it keeps out of its passes (frozen).
GC_PLUGIN = """
import gc, json, weakref, torch, zoo

_garbage = []  # weak references to a reference cycle each build leaves behind: only the collector frees those


class _Cycle:
    pass


class Watched(torch.nn.Module):
    def __init__(self, d_in, d_out, note):
        super().__init__()
        self.note = note
        self.lin = torch.nn.Linear(d_in, d_out)
        self._write("build", sum(r() is not None for r in _garbage))
        cycle = _Cycle()
        cycle.me = cycle
        _garbage.append(weakref.ref(cycle))

    def _write(self, when, *extra):
        with open(self.note, "a") as f:
            f.write(json.dumps([when, gc.isenabled(), gc.get_freeze_count(), *extra]) + "\\n")

    def forward(self, x):
        if self.training:
            self._write("step")
        return self.lin(x)

@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="gc_watched", family="third_party", kinds=("tabular",), defaults={"note": ""},
                             build=lambda info, note: Watched(info.input_shape[-1], info.output_dim, note))]
"""


def _notes(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_loop_keeps_what_was_set_up_out_of_the_collectors_passes(make_cfg, tmp_path):
    """Full collections over torch's, MLflow's and Hydra's objects paused training for 0.1-0.5 s at a time."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "gc_watched.py").write_text(GC_PLUGIN)
    note = tmp_path / "note.jsonl"
    from zoo.config import register_configs
    from zoo.plugin.registry import load_registry

    reg = load_registry([str(tmp_path / "plugins")])
    register_configs(reg)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    train(make_cfg(f"plugins.dir={tmp_path / 'plugins'}", "model=gc_watched", f"model.note={note}", "data=iris",
                   "tracking.log_model=false"), reg)
    steps = [n for n in _notes(note) if n[0] == "step"]
    assert steps and all(on and frozen > 10_000 for _, on, frozen in steps), steps[:3]
    assert gc.isenabled() and gc.get_freeze_count() == 0  # a later run in this process collects this one


def test_the_command_starts_without_the_collector_and_trains_with_it(tmp_path):
    """``zoo train`` turns the collector off for its start-up (about 1 s of full passes) and on for training;
    a sweep's jobs in one process collect what the job before left, and freeze what outlives it, so
    that the next job's collections skip the long-lived objects."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "gc_watched.py").write_text(GC_PLUGIN)
    note = tmp_path / "note.jsonl"
    r = run_zoo("train", "-m", f"plugins.dir={tmp_path / 'plugins'}", "model=gc_watched", f"model.note={note}",
                "data=iris", "trainer.max_epochs=1", "trainer.device=cpu", "tracking.log_model=false",
                "tracking.system_metrics=false", "seed=0,1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1000:]
    notes = _notes(note)
    builds = [n for n in notes if n[0] == "build"]
    # each job builds twice, both in start-up: the pre-flight check (on the meta device), then training
    assert [b[:2] for b in builds] == [["build", False]] * 4, builds
    assert builds[2][3] == 0, "the first job's garbage was still there when the second job started"
    assert builds[0][2] == 0 and builds[2][2] > 10_000, builds  # frozen between the jobs, not before the first
    steps = [n for n in notes if n[0] == "step"]
    assert steps and all(on and frozen > 10_000 for _, on, frozen in steps), steps[:3]
