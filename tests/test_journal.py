"""Nothing lost when the store fails: the run's journal and ``zoo sync`` (issue 17, field report 2c).

Real stores throughout: a SQLite store on a small tmpfs that fills mid-run, and a real ``zoo server``
killed and restarted mid-run. A model plugin (``gatenet``) holds training at two steps until the
test lets it go, so each fault lands mid-run whatever the machine's load; every wait is on
something observable (a file, a row in the store), never a sleep.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric

from ._faults import TINY, one_line_error, small_disk
from ._servers import free_port, zoo_env, zoo_server
from .conftest import ZOO, with_tables, zoo_here

DEADLINE_S = 300  # generous: the machine is shared
ONE_WORKER = ("--workers", "1")  # one run's requests need no second worker: each start imports MLflow's server once

GATE = textwrap.dedent('''
    import math
    import time
    from pathlib import Path

    import torch

    import zoo


    class GateNet(torch.nn.Module):
        """A linear model whose training stops at steps ``hold`` (at1, at2) until the test writes go1, go2."""

        def __init__(self, d_in, d_out, gate, hold):
            super().__init__()
            self.lin, self.gate, self.hold, self.n = torch.nn.Linear(d_in, d_out), Path(gate), list(hold), 0

        def forward(self, x):
            if self.training and torch.is_grad_enabled():
                self.n += 1
                if self.n in self.hold:
                    i = self.hold.index(self.n) + 1
                    (self.gate / f"at{i}").touch()
                    deadline = time.time() + 600
                    while not (self.gate / f"go{i}").exists() and time.time() < deadline:
                        time.sleep(0.05)
            return self.lin(x.float().flatten(1))


    def build(info, gate="", hold=(10, 25)):
        return GateNet(math.prod(info.input_shape), info.output_dim, gate, hold)


    @zoo.hookimpl
    def zoo_architectures():
        return [zoo.Architecture(name="gatenet", family="test", kinds=("tabular",), build=build)]
''')

# about 7 steps an epoch on iris: 42 steps, held at steps 10 and 25
RUN = [*TINY, "data=iris", "model=gatenet", "trainer.max_epochs=6", "trainer.batch_size=16"]


def wait_for(what: str, predicate, proc: subprocess.Popen | None = None):
    deadline = time.time() + DEADLINE_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"zoo train ended ({proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.time() > deadline:
            pytest.fail(f"no {what} after {DEADLINE_S} s")
        time.sleep(0.1)


def start_training(tmp_path: Path, uri: str) -> tuple[subprocess.Popen, Path]:
    plugins, gate = tmp_path / "plugins", tmp_path / "gate"
    plugins.mkdir()
    gate.mkdir()
    (plugins / "gate.py").write_text(GATE)
    proc = subprocess.Popen([*ZOO, "train", *RUN, f"plugins.dir={plugins}", f"model.gate={gate}", f"tracking.uri={uri}",
                             f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path, env=zoo_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, gate


def the_run(uri: str):
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return runs[0] if len(runs) == 1 else None


def stored_steps(uri: str, run_id: str, key: str = "train/loss") -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient(uri).get_metric_history(run_id, key))


def assert_every_step_once(uri: str, run_id: str) -> None:
    """Every train/loss step of the run, 1..N, exactly once, N being all the steps it trained (perf/steps)."""
    client = mlflow.MlflowClient(uri)
    steps = stored_steps(uri, run_id)
    trained = int(client.get_run(run_id).data.metrics["perf/steps"])
    assert steps == list(range(1, trained + 1)), steps
    assert trained > 25  # it trained past both holds
    assert "test/accuracy" in client.get_run(run_id).data.metrics


def the_warning_and_the_error(proc: subprocess.Popen, out: str, err: str, run_id: str) -> str:
    """One warning (the job's log, on stdout) that the store refused rows; the one error line on stderr; exit 2."""
    line = one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                          "error: the store refused rows from step ")
    assert f"run `zoo sync {run_id}` once the store is back" in line, line
    warnings = [x for x in out.splitlines() if "the store refused rows" in x]
    assert len(warnings) == 1 and "training goes on" in warnings[0] and f"zoo sync {run_id}" in warnings[0], out[-3000:]
    assert "Traceback" not in out
    return line


def fill(disk: Path) -> None:
    """Take every free byte of the tmpfs (the store's WAL emptied first, so the next write must grow a file)."""
    with sqlite3.connect(disk / "mlflow.db", timeout=60) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


# ------------------------------------------------------------------------------ the full disk (2c)
def test_a_store_whose_disk_fills_mid_run_loses_no_row_and_zoo_sync_replays_them(tmp_path):
    """2c: the disk filled mid-run: ~160 lines of tracebacks, the run RUNNING forever, no train/loss row kept.

    Now: the writer retries, then journals; training goes on; the run's end cannot be written either
    (the disk is still full), which the command says in one line; once space is freed, ``zoo sync``
    writes every step exactly once and ends the run FAILED with the reason."""
    disk = tmp_path / "disk"
    with small_disk(disk, "32m"):
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        proc, gate = start_training(tmp_path, uri)
        try:
            wait_for("hold at step 10", lambda: (gate / "at1").exists(), proc)
            run_id = the_run(uri).info.run_id
            wait_for("train/loss rows in the store", lambda: stored_steps(uri, run_id), proc)
            fill(disk)
            (gate / "go1").touch()
            journal = tmp_path / "out" / "checkpoints" / f"journal-{run_id}.jsonl"
            wait_for("journal", journal.exists, proc)
            (gate / "go2").touch()
            out, err = proc.communicate(timeout=DEADLINE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        line = the_warning_and_the_error(proc, out, err, run_id)
        assert "the store could not record the run's end either" in line and "database or disk is full" in line
        records = [json.loads(x) for x in journal.read_text().splitlines()]
        assert records[0] == {"zoo_journal": 1, "run_id": run_id, "uri": uri}
        assert records[-1]["end"] == "FAILED" and "the store refused rows from step" in records[-1]["error"]
        (disk / "filler").unlink()
        assert the_run(uri).info.status == "RUNNING"  # until zoo sync writes its end
        r = zoo_here("sync", run_id, "--uri", uri, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"zoo sync: run {run_id}: "), r.stderr[-3000:]
        assert "the run ended FAILED" in r.stdout and not r.stderr.strip(), (r.stdout, r.stderr)
        run = the_run(uri)
        assert run.info.status == "FAILED"
        assert run.data.tags["zoo.error"].startswith("the store refused rows from step")
        assert_every_step_once(uri, run_id)
        assert not journal.exists() and Path(f"{journal}.replayed").exists()
        again = zoo_here("sync", run_id, "--uri", uri, cwd=tmp_path)
        assert again.returncode == 0 and again.stdout.strip() == \
            f"zoo sync: run {run_id} has no journal to replay (nothing of it waits for the store)"
        assert_every_step_once(uri, run_id)


# ------------------------------------------------------------------------------ the server goes away
def test_a_tracking_server_killed_and_restarted_mid_run_loses_no_row(tmp_path, empty_store_file):
    """The server goes away mid-run: the rows go to the journal, training goes on; the server is back
    before the run ends, so the run ends FAILED with the reason; ``zoo sync`` then writes every step once."""
    srv = tmp_path / "srv"
    with_tables(srv / "mlruns" / "mlflow.db", empty_store_file)  # the server's store (its default, in its folder)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = None
    try:
        with zoo_server(*ONE_WORKER, cwd=srv, port=port):
            proc, gate = start_training(tmp_path, uri)
            wait_for("hold at step 10", lambda: (gate / "at1").exists(), proc)
            run_id = the_run(uri).info.run_id
            wait_for("train/loss rows in the store", lambda: stored_steps(uri, run_id), proc)
        (gate / "go1").touch()  # the server and its workers are gone
        journal = tmp_path / "out" / "checkpoints" / f"journal-{run_id}.jsonl"
        wait_for("journal", journal.exists, proc)
        with zoo_server(*ONE_WORKER, cwd=srv, port=port):  # the same store, back
            (gate / "go2").touch()
            out, err = proc.communicate(timeout=DEADLINE_S)
            line = the_warning_and_the_error(proc, out, err, run_id)
            assert line.endswith(f"(run {run_id} ended FAILED)"), line
            run = the_run(uri)
            assert run.info.status == "FAILED"
            assert run.data.tags["zoo.error"] == line[len("error: "):-len(f" (run {run_id} ended FAILED)")]
            assert not any('"end"' in x for x in journal.read_text().splitlines())  # the end went to the store
            r = zoo_here("sync", run_id, "--uri", uri, cwd=tmp_path)
            assert r.returncode == 0 and r.stdout.startswith(f"zoo sync: run {run_id}: "), r.stderr[-3000:]
            assert_every_step_once(uri, run_id)
            assert the_run(uri).info.status == "FAILED"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()


# ------------------------------------------------------------------------------ either writer
@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.usefixtures("client")
def test_rows_the_store_refuses_go_to_the_journal_with_either_writer(tmp_path, store, monkeypatch, mode):
    """A store that refuses the run's rows (here: the run was deleted under it, which MLflow refuses
    to log into): after the retries the rows, and everything after, go to the journal, in order;
    the run's end goes there too; restored, ``zoo.tracking.journal.sync`` writes each step once."""
    from zoo.errors import ZooError
    from zoo.tracking import Tracker
    from zoo.tracking.journal import sync

    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    client = mlflow.MlflowClient(store)
    tracker = Tracker(store, "j", system_metrics=False, journal_dir=tmp_path / "ckpt")
    with pytest.raises(ZooError) as raised:
        with tracker.run(run_name="r", params={"a": 1}, tags={}):
            tracker.metrics({"train/loss": 1.0}, step=1)
            tracker.flush()
            client.delete_run(tracker.run_id)  # the store now refuses every write to the run
            for step in range(2, 7):
                tracker.metrics({"train/loss": 1.0 / step}, step=step)
            tracker.flush()  # no error: the rows are in the journal, and training goes on
            assert tracker.journaling
            tracker.tags({"zoo.grad_every": 3})
            tracker.text("hello", "notes/hello.txt")
    run_id = tracker.run_id
    journal = tmp_path / "ckpt" / f"journal-{run_id}.jsonl"
    message = str(raised.value)
    assert message.startswith(f"the store refused rows from step 2: ") and "must be in the 'active' state" in message
    assert message.endswith("the store could not record the run's end either (The run "
                             f"{run_id} must be in the 'active' state. Current state is deleted.): it shows RUNNING until then")
    records = [json.loads(x) for x in journal.read_text().splitlines()]
    steps = [row[3] for r in records for row in r.get("metrics", ()) if row[0] == "train/loss"]
    assert steps == [2, 3, 4, 5, 6]  # in order
    assert records[1]["refused"].startswith("The run") and records[1]["step"] == 2
    assert {"tags": {"zoo.grad_every": "3"}} in records and records[-1]["end"] == "FAILED"
    client.restore_run(run_id)
    done = sync(store, run_id, tmp_path / "ckpt")
    assert (done.rows, done.present, done.ended) == (7, 0, "FAILED")  # train/loss 2..6, perf/writer_s, perf/metric_rows
    assert stored_steps(store, run_id) == [1, 2, 3, 4, 5, 6]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["zoo.grad_every"] == "3"
    assert run.data.tags["zoo.error"].startswith("the store refused rows from step 2: ")
    assert sync(store, run_id, tmp_path / "ckpt") is None  # replayed: nothing waits any more
    assert mlflow.active_run() is None


# ------------------------------------------------------------------------------ replaying
def test_zoo_sync_skips_rows_already_stored_and_ignores_a_torn_last_line(tmp_path, store):
    """A journal that overlaps what the store holds (the writer stored some rows before it took over,
    or an earlier sync was cut short): each step ends up stored once; a last line cut short by a
    crash is left out; tags, texts and the run's end are written."""
    (tmp_path / "store").mkdir()
    client = mlflow.MlflowClient(store)
    exp = client.create_experiment("j", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(exp).info.run_id
    client.log_batch(run_id, metrics=[Metric("train/loss", 1.0 / s, 1000 + s, s) for s in range(1, 6)])
    folder = tmp_path / "ckpt"
    folder.mkdir()
    client.set_tag(run_id, "zoo.checkpoint_dir", str(folder))
    (folder / "note.txt").write_text("kept")
    lines = [{"zoo_journal": 1, "run_id": run_id, "uri": store}, {"refused": "database is locked", "step": 3},
             {"metrics": [["train/loss", 1.0 / s, 1000 + s, s] for s in range(3, 9)]},
             {"metrics": [["train/loss", 1.0 / s, 1000 + s, s] for s in range(8, 11)] + [["val/loss", 0.5, 2000, 10]]},
             {"tags": {"zoo.grad_every": "4"}}, {"artifact": str(folder / "note.txt"), "folder": "notes"},
             {"text": "hello", "name": "error/x.txt"}, {"end": "FAILED", "error": "the store refused rows from step 3"}]
    journal = folder / f"journal-{run_id}.jsonl"
    journal.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"metrics": [["train/loss", 0.1, 3')
    r = zoo_here("sync", run_id[:8], "--uri", store, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == (f"zoo sync: run {run_id}: 6 metric rows written (3 already in the store), 1 tags, "
                                f"2 artifacts, the run ended FAILED; the journal is kept as {journal}.replayed")
    assert stored_steps(store, run_id) == list(range(1, 11))
    assert stored_steps(store, run_id, "val/loss") == [10]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["zoo.error"] == "the store refused rows from step 3"
    assert run.data.tags["zoo.grad_every"] == "4" and "zoo.synced" in run.data.tags
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["error", "notes"]
    # given as a path, a journal already replayed is not replayed twice
    r = zoo_here("sync", f"{journal}.replayed", "--uri", store, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {journal}.replayed was replayed already", r.stderr


def test_zoo_sync_errors_are_one_line(tmp_path, store):
    """An unknown run, a file that is not a journal, a store that is not there: one line, exit 2."""
    (tmp_path / "store").mkdir()
    mlflow.MlflowClient(store).create_experiment("j", artifact_location=str(tmp_path / "artifacts"))
    r = zoo_here("sync", "0123456789abcdef0123456789abcdef", "--uri", store, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown run id '0123456789abcdef"), r.stderr
    bogus = tmp_path / "notes.jsonl"
    bogus.write_text('{"a": 1}\n')
    r = zoo_here("sync", str(bogus), "--uri", store, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {bogus} is not a Zoo journal (its first line is not a journal header)"
    r = zoo_here("sync", "abcd1234", "--uri", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
