"""The run's tags, artifacts and texts are sent without waiting for the store's answer (issue 16), and the
writer process opens an existing store before the run starts. Faults still end the run FAILED with their
one line, a request the store refuses on its way goes to the run's journal, and a command that fails
before its run starts leaves the store as it was. Real stores, real writer processes, real files.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import mlflow
import pytest

from zoo.errors import ZooError
from zoo.tracking import Tracker

from ._faults import read_only
from .conftest import run_zoo, runs_in


@contextlib.contextmanager
def unwritable(folder: Path):
    """``folder`` refuses new files: a read-only mount as root (who writes through file modes), else its mode."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        with read_only(folder):
            yield
        return
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.usefixtures("client")
def test_an_artifact_the_store_refuses_fails_the_run_in_one_line_naming_it(tmp_path, store, monkeypatch, mode):
    """``artifact`` and ``tags`` return at once (the tag sent after the refused artifact is stored); the refusal is
    raised at the next flush, in Zoo's one line naming the file, and the run ends FAILED with it."""
    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    notes = tmp_path / "notes.txt"
    notes.write_text("notes\n")
    tracker = Tracker(store, "a", system_metrics=False)
    with pytest.raises(ZooError) as raised:
        with tracker.run(run_name="r", params={}, tags={}):
            tracker.metrics({"train/loss": 1.0}, step=1)
            with unwritable(tmp_path / "store" / "artifacts" / "a"):  # the experiment's artifacts folder
                tracker.artifact(notes, "notes")  # no error here: not waited for
                tracker.tags({"after": "1"})
                tracker.flush()
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot store the artifact notes.txt in ")
    run = mlflow.MlflowClient(store).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["zoo.error"] == f"ZooError: {message}"
    assert run.data.tags["after"] == "1"  # sent behind the refused artifact, without waiting for it
    assert [m.step for m in mlflow.MlflowClient(store).get_metric_history(tracker.run_id, "train/loss")] == [1]


@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.usefixtures("client")
def test_requests_on_their_way_when_the_store_refuses_rows_go_to_the_journal(tmp_path, store, monkeypatch, mode):
    """The store refuses the rows of step 2 (the run was deleted under it) while an artifact and a text sent after
    them are on their way: both go to the journal behind the rows, and ``zoo sync`` stores them."""
    from zoo.tracking.journal import sync

    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    client = mlflow.MlflowClient(store)
    notes = tmp_path / "notes.txt"
    notes.write_text("notes\n")
    tracker = Tracker(store, "j", system_metrics=False, journal_dir=tmp_path / "ckpt")
    with pytest.raises(ZooError) as raised:
        with tracker.run(run_name="r", params={}, tags={}):
            tracker.metrics({"train/loss": 1.0}, step=1)
            tracker.flush()
            client.delete_run(tracker.run_id)  # the store now refuses every row of the run
            tracker.metrics({"train/loss": 0.5}, step=2)
            tracker.artifact(notes, "notes")  # queued behind the rows the store is refusing
            tracker.text("hello", "notes/hello.txt")
    run_id = tracker.run_id
    assert str(raised.value).startswith("the store refused rows from step 2: ")
    records = [json.loads(x) for x in (tmp_path / "ckpt" / f"journal-{run_id}.jsonl").read_text().splitlines()][1:]
    kinds = [next(iter(r)) for r in records]
    assert kinds[:4] == ["refused", "metrics", "artifact", "text"], kinds  # in the order they were sent
    assert records[2] == {"artifact": str(notes.resolve()), "folder": "notes"}
    client.restore_run(run_id)
    done = sync(store, run_id, tmp_path / "ckpt")
    assert done.artifacts == 2 and not done.missing
    assert {a.path for a in client.list_artifacts(run_id, "notes")} == {"notes/notes.txt", "notes/hello.txt"}


def test_a_command_that_fails_before_its_run_leaves_the_store_as_it_was(tmp_path):
    """The writer process starts (and opens an existing store) while the data is built; a command that then fails
    creates no store in an empty folder, and adds no experiment or run to a store that exists."""
    from zoo.tracking.store import prepare_store

    too_big = ["train", "data=moons", "data.n_samples=100000000000", "tracking.system_metrics=false"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_zoo(*too_big, cwd=empty)
    assert r.returncode == 2 and "needs at least" in r.stderr, r.stderr[-2000:]
    assert not (empty / "mlruns").exists()

    used = tmp_path / "used"
    uri = f"sqlite:///{used / 'mlruns' / 'mlflow.db'}"
    prepare_store(uri, "mine")
    r = run_zoo(*too_big, cwd=used)
    assert r.returncode == 2 and "needs at least" in r.stderr, r.stderr[-2000:]
    assert sorted(e.name for e in mlflow.MlflowClient(uri).search_experiments()) == ["Default", "mine"]
    assert runs_in(uri) == []


@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.usefixtures("client")
def test_when_stored_runs_once_the_rows_before_it_are_stored_without_waiting_here(tmp_path, store, monkeypatch, mode):
    """``Tracker.when_stored`` (how the loop's checkpoints wait for the store without the loop waiting): the function
    runs in the writer's thread after every row queued before it is in the store, and never blocks the caller."""
    import threading

    monkeypatch.setenv("ZOO_METRIC_WRITER", mode)
    client = mlflow.MlflowClient(store)
    tracker = Tracker(store, "w", system_metrics=False)
    seen: list[list[int]] = []
    gate = threading.Event()
    with tracker.run(run_name="r", params={}, tags={}):
        tracker.when_stored(gate.wait)  # holds the writer: everything after it waits, this thread does not
        tracker.metrics({"train/loss": 1.0}, step=1)
        tracker.when_stored(lambda: seen.append([m.step for m in client.get_metric_history(tracker.run_id, "train/loss")]))
        assert seen == []  # returned at once, the writer still held
        gate.set()
        tracker.flush()
        assert seen == [[1]]  # ran after the row before it was stored
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
