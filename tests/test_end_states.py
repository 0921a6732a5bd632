"""Honest end states under every signal, and stale runs (issue 17, part B).

Each test starts the real ``zoo`` command as a process, waits until the store (or a file a test
plugin writes) shows it reached the phase under test, then signals it: SIGTERM in the test pass and
in the logging after training, SIGHUP, a double Ctrl-C, SIGTERM to a serial and to a parallel
sweep, and ``kill -9`` (which nothing can catch: ``zoo runs --stale`` / ``--close-stale``). The end
state is read back through ``MlflowClient``: the status, the reason, every step exactly once, the
exit status a shell expects and the one line the command prints. No assertion depends on timing:
every wait is on observable state, with a generous deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import psutil
import pytest

from ._faults import SMALL, TINY
from .conftest import ZOO, run_zoo, zoo_here

GATE_PLUGIN = '''
import os
import pathlib
import sys
import time

import torch
import zoo

GATE = pathlib.Path(os.environ["ZOO_TEST_GATE"])


def wait_at(name):
    """Say where the run is (a file), then wait until the test releases it (or five minutes pass)."""
    (GATE / name).touch()
    deadline = time.monotonic() + 300
    while not (GATE / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def in_the_test_pass():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "test" and frame.f_code.co_filename.endswith("loop.py"):
            return True
        frame = frame.f_back
    return False


class Gate(torch.nn.Module):
    def __init__(self, info, hidden, where):
        super().__init__()
        self.where = where
        self.net = torch.nn.Sequential(torch.nn.Linear(info.input_shape[-1], hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, info.output_dim))

    def forward(self, x):
        if self.where == "test" and not self.training and in_the_test_pass():
            wait_at("in_test")
        return self.net(x)


def build(info, hidden=8, where="test"):
    return Gate(info, hidden, where)


def report(model, splits, out_dir):
    if model.where == "logging":
        wait_at("in_logging")
    return []


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="gate", family="ann", kinds=("tabular",), build=build, report=report)]
'''

@pytest.fixture(autouse=True)
def _store_with_tables(local_store):
    """Every test here runs commands in tmp_path: their store holds MLflow's tables already (no test is about its creation)."""


LONG = ["trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false", "tracking.hist_every=0",
        "trainer.max_epochs=100000", *SMALL]
DEADLINE_S = 240.0


def wait_for(predicate, what: str, deadline: float = DEADLINE_S):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def start(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``zoo ARGS`` in tmp_path, its own session (a signal reaches only the process it is sent to);
    output to files (a pipe nobody reads could block it)."""
    full = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", **(env or {})}
    out, err = open(tmp_path / "stdout.txt", "w"), open(tmp_path / "stderr.txt", "w")
    try:
        return subprocess.Popen([*ZOO, *args], cwd=tmp_path, env=full, stdout=out, stderr=err, start_new_session=True)
    finally:
        out.close()
        err.close()


def finish(proc: subprocess.Popen, tmp_path: Path) -> tuple[int, list[str]]:
    """The exit status and the stderr lines of a process that was told to stop."""
    try:
        rc = proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the process did not end after the signal")
    return rc, (tmp_path / "stderr.txt").read_text().strip().splitlines()


def client_of(tmp_path: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def all_runs(tmp_path: Path) -> list:
    db = tmp_path / "mlruns" / "mlflow.db"
    if not db.exists():
        return []
    c = client_of(tmp_path)
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


def store_made(tmp_path: Path) -> bool:
    """Whether the command has made its store (reading it earlier would race MLflow's creation of its tables):
    a job's log names its run, or a sweep's parent run is announced."""
    logs = [*tmp_path.glob("outputs/*/*/train.log"), *tmp_path.glob("multirun/*/*/*/train.log")]
    return any("MLflow run " in p.read_text() for p in logs) or (
        (tmp_path / "stdout.txt").exists() and "zoo sweep: parent run" in (tmp_path / "stdout.txt").read_text())


def training(tmp_path: Path, n: int = 1, at_least: int = 1):
    """The ``n`` child/plain runs once each has logged ``at_least`` train/loss rows (else None)."""
    if not store_made(tmp_path):
        return None
    runs = [r for r in all_runs(tmp_path) if "zoo.sweep" not in r.data.tags]
    if len(runs) < n:
        return None
    c = client_of(tmp_path)
    if all(len(c.get_metric_history(r.info.run_id, "train/loss")) >= at_least for r in runs):
        return runs
    return None


def steps_once(client, run_id: str, key: str = "train/loss") -> list[int]:
    """The steps of ``key``: each exactly once, from 1 without a gap."""
    steps = sorted(m.step for m in client.get_metric_history(run_id, key))
    assert steps and steps == list(range(1, steps[-1] + 1)), steps
    return steps


def epochs(client, run_id: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, "epoch"), key=lambda m: m.step)]


def the_line(lines: list[str], prefix: str) -> str:
    """The command's one line about how it stopped, and no traceback."""
    assert not any("Traceback" in line for line in lines), "\n".join(lines)[-3000:]
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, "\n".join(lines)[-3000:]
    return found[0]


@pytest.fixture
def gate(tmp_path):
    folder, plugins = tmp_path / "gate", tmp_path / "plugins"
    folder.mkdir()
    plugins.mkdir()
    (plugins / "gate.py").write_text(GATE_PLUGIN)
    return {"ZOO_TEST_GATE": str(folder), "ZOO_PLUGIN_DIR": str(plugins)}


def _killed_with_checkpoint(client, run, signame: str) -> None:
    assert run.info.status == "KILLED", run.info.status
    assert run.data.tags["zoo.error"].startswith(f"interrupted ({signame}) at step "), run.data.tags["zoo.error"]
    assert f"zoo train resume={run.info.run_id}" in run.data.tags["zoo.error"]
    assert "checkpoints/last.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert run.data.tags.get("zoo.metric_writer")  # the run's ending was not cut short


def stopped_at_the_gate(tmp_path: Path, gate: dict, where: str):
    """A 2-epoch run of the gate model, SIGTERM once it waits ``where`` (test: in its test pass; logging: in its
    report, after the best checkpoint was logged and the plots drawn): KILLED with its checkpoint, every step once."""
    proc = start(tmp_path, "train", "model=gate", f"model.where={where}", "data=iris", "trainer.max_epochs=2",
                 *TINY[:3], env=gate)
    wait_for(lambda: (tmp_path / "gate" / f"in_{where}").exists(), f"the run to wait in {where}")
    proc.send_signal(signal.SIGTERM)
    rc, lines = finish(proc, tmp_path)
    (run,) = all_runs(tmp_path)
    rid = run.info.run_id
    assert rc == 128 + signal.SIGTERM
    assert the_line(lines, "interrupted") == (f"interrupted (SIGTERM): run {rid} ended KILLED; "
                                               f"continue it with: zoo train resume={rid}")
    client = client_of(tmp_path)
    _killed_with_checkpoint(client, run, "SIGTERM")
    assert epochs(client, rid) == [1.0, 2.0]  # the last epoch's row is kept
    return run, client, steps_once(client, rid)


def test_sigterm_during_the_test_pass_ends_the_run_killed_and_resume_finishes_it(tmp_path, gate):
    run, client, steps = stopped_at_the_gate(tmp_path, gate, "test")
    rid = run.info.run_id
    assert not any(k.startswith("test/") for k in run.data.metrics)  # the test pass did not end

    (tmp_path / "gate" / "release").touch()  # resume: the test pass runs to its end this time
    resumed = run_zoo("train", f"resume={rid}", cwd=tmp_path, env=gate)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = client.get_run(rid)
    assert after.info.status == "FINISHED" and "test/accuracy" in after.data.metrics
    assert steps_once(client, rid) == steps  # nothing trained twice
    assert len(client.get_metric_history(rid, "test/accuracy")) == 1


def test_sigterm_while_logging_after_training_keeps_every_metric_and_the_checkpoint(tmp_path, gate):
    run, client, steps = stopped_at_the_gate(tmp_path, gate, "logging")
    rid = run.info.run_id
    assert sorted(m.step for m in client.get_metric_history(rid, "val/accuracy")) == [len(steps) // 2, len(steps)]
    for key in ("test/accuracy", "test/loss"):  # written before the run ended: the writer drained
        assert len(client.get_metric_history(rid, key)) == 1, key
    assert "checkpoints/best.pt" in {a.path for a in client.list_artifacts(rid, "checkpoints")}


@pytest.mark.parametrize("signals", [[signal.SIGHUP], [signal.SIGINT, signal.SIGINT]], ids=["sighup", "double-ctrl-c"])
def test_a_signal_mid_training_ends_the_run_killed_and_names_it(tmp_path, signals):
    """SIGHUP (the terminal closed) and Ctrl-C twice (the second may come in the run's ending, which holds
    it): exit 129 or 130, the run KILLED with its checkpoint and an ending not cut short (the writer's own
    figures are there), every step once, and the one line naming the run."""
    proc = start(tmp_path, "train", *LONG)
    (run,) = wait_for(lambda: training(tmp_path), "training to log its first steps")
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.1)  # a person pressing twice
        if proc.poll() is None:
            proc.send_signal(sig)
    rc, lines = finish(proc, tmp_path)
    rid, first = run.info.run_id, signals[0]
    assert rc == 128 + first
    said = "interrupted" if first == signal.SIGINT else f"interrupted ({signal.Signals(first).name})"
    assert the_line(lines, "interrupted") == f"{said}: run {rid} ended KILLED; continue it with: zoo train resume={rid}"
    client = client_of(tmp_path)
    after = client.get_run(rid)
    _killed_with_checkpoint(client, after, signal.Signals(first).name)
    assert "perf/metric_rows" in after.data.metrics
    steps_once(client, rid)


def _sweep_children(tmp_path: Path):
    runs = all_runs(tmp_path)
    parents = [r for r in runs if "zoo.sweep" in r.data.tags]
    return parents, [r for r in runs if "zoo.sweep" not in r.data.tags]


def test_sigterm_to_a_parallel_sweep_stops_its_workers_and_ends_every_run_killed(tmp_path):
    proc = start(tmp_path, "train", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1,2", *LONG)
    wait_for(lambda: training(tmp_path, n=2), "both workers to train")
    workers = [p for p in psutil.Process(proc.pid).children() if "loky" in " ".join(p.cmdline())
               and "resource_tracker" not in " ".join(p.cmdline())]
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)  # to the sweep's own process only, as a scheduler or `kill` sends it
    rc, lines = finish(proc, tmp_path)
    assert rc == 128 + signal.SIGTERM
    (parent,), children = _sweep_children(tmp_path)
    assert len(children) == 2  # the third job never started
    ids = sorted(c.info.run_id for c in children)
    line = the_line(lines, "interrupted (SIGTERM): ")
    assert line.startswith(f"interrupted (SIGTERM): the sweep's parent run {parent.info.run_id} ended KILLED; "
                           f"2 jobs stopped: continue each with zoo train resume=<run id> ("), line
    assert all(i in line for i in ids) and line.endswith("; 1 job not started"), line
    assert parent.info.status == "KILLED"
    client = client_of(tmp_path)
    for child in children:
        _killed_with_checkpoint(client, child, "SIGTERM")  # stopped by its worker, at a step boundary
        steps_once(client, child.info.run_id)

    def gone(p):
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(p) for p in workers), "the workers to end (no orphan keeps training)", 30)


def test_sigterm_to_a_serial_sweep_ends_the_job_and_the_parent_killed(tmp_path):
    proc = start(tmp_path, "train", "-m", "seed=0,1", *LONG)
    (child,) = wait_for(lambda: training(tmp_path), "the first job to train")
    proc.send_signal(signal.SIGTERM)
    rc, lines = finish(proc, tmp_path)
    assert rc == 128 + signal.SIGTERM
    (parent,), children = _sweep_children(tmp_path)
    assert [c.info.run_id for c in children] == [child.info.run_id]
    assert the_line(lines, "interrupted (SIGTERM): ") == (
        f"interrupted (SIGTERM): the sweep's parent run {parent.info.run_id} ended KILLED; 1 job stopped: "
        f"continue each with zoo train resume=<run id> ({child.info.run_id}); 1 job not started")
    assert parent.info.status == "KILLED"
    client = client_of(tmp_path)
    _killed_with_checkpoint(client, client.get_run(child.info.run_id), "SIGTERM")
    steps_once(client, child.info.run_id)


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_kill_9_leaves_a_stale_run_that_zoo_runs_finds_and_closes(tmp_path, sweep):
    args = ["train", "-m", "seed=0,1", *LONG] if sweep else ["train", *LONG]
    proc = start(tmp_path, *args)
    (run,) = wait_for(lambda: training(tmp_path), "training to log its first steps")
    assert run.data.tags["zoo.host"] == socket.gethostname() and run.data.tags["zoo.pid"] == str(proc.pid)
    assert run.data.tags["zoo.heartbeat"].isdigit()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stale = zoo_here("runs", "--stale", cwd=tmp_path)
    assert stale.returncode == 0, stale.stderr
    expected = 2 if sweep else 1  # a sweep: its job's run and its parent
    listed = [line for line in stale.stdout.splitlines() if "stale" in line.split()]
    assert len(listed) == expected and f"its process {proc.pid} on {socket.gethostname()} is gone" in listed[0], stale.stdout
    assert run.info.run_id[:12] in stale.stdout

    closed = zoo_here("runs", "--close-stale", cwd=tmp_path)
    assert closed.returncode == 0, closed.stderr
    assert f"ended {expected} stale run{'s' if expected > 1 else ''} KILLED" in closed.stdout
    for r in all_runs(tmp_path):
        assert r.info.status == "KILLED", (r.info.run_name, r.info.status)
        assert r.data.tags["zoo.error"].startswith(f"stale: its process {proc.pid} on ")
    again = zoo_here("runs", "--stale", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("no stale run in "), again.stdout


def test_zoo_runs_judges_other_hosts_by_their_heartbeat_and_a_reused_pid_as_gone(tmp_path):
    """Runs as another host, this process and a pid used again would leave them, written through MlflowClient."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("elsewhere")
    me, now = psutil.Process(), time.time()

    def running(name, host=None, pid=None, started=None, beat=None):
        t = {"zoo.host": host, "zoo.pid": pid, "zoo.pid_started": started, "zoo.heartbeat": beat}
        return client.create_run(exp, run_name=name, tags={k: str(v) for k, v in t.items() if v is not None}).info.run_id

    quiet = running("quiet", "gpu-node-7", 4242, beat=int(now - 3600))
    fresh = running("fresh", "gpu-node-7", 4243, beat=int(now))
    alive = running("alive", socket.gethostname(), me.pid, me.create_time())
    reused = running("reused", socket.gethostname(), me.pid, me.create_time() - 100)
    unknown = running("unknown")

    listed = zoo_here("runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    state = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert " alive " in state[fresh[:12]] and " alive " in state[alive[:12]]
    assert " unknown " in state[unknown[:12]]
    assert "no heartbeat from host gpu-node-7" in state[quiet[:12]]
    assert "that id is now another process's" in state[reused[:12]]

    closed = zoo_here("runs", "--close-stale", "--stale-after", "600", cwd=tmp_path)
    assert closed.returncode == 0 and "ended 2 stale runs KILLED" in closed.stdout, closed.stdout
    status = {r.info.run_id: r.info.status for r in all_runs(tmp_path)}
    assert status == {quiet: "KILLED", reused: "KILLED", fresh: "RUNNING", alive: "RUNNING", unknown: "RUNNING"}
    for rid in (fresh, alive, unknown):  # the store is left as it would be found
        client.set_terminated(rid, "FINISHED")


def test_zoo_runs_bad_input_is_one_line(tmp_path):
    from ._faults import one_line_error

    one_line_error(zoo_here("runs", "--stale-after", "0", cwd=tmp_path), "--stale-after 0 is invalid")
    one_line_error(zoo_here("runs", "--stale", "--close-stale", cwd=tmp_path), "not allowed with argument")
