"""Data larger than memory: a split read from disk while training (``zoo.StreamSplit``) gives the
batches an in-memory split gives, a streamed run trains as an in-memory run of the same seed, and a
streamed run killed mid-epoch resumes bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch

import zoo
from zoo.training.train import train

from .conftest import ROOT, ZOO, last_checkpoint, run_zoo, runs_in
from .test_resume import _wait_for, assert_same_last_checkpoint


def digits_folder(folder):
    """scikit-learn's digits as a folder of ``.npy`` files (``x.npy``: float32 pixels, ``y.npy``: labels)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    folder.mkdir()
    np.save(folder / "x.npy", bunch.data.astype(np.float32))
    np.save(folder / "y.npy", bunch.target)
    return folder


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_split_gives_the_batches_of_a_tensor_split(tmp_path, workers):
    x = np.random.default_rng(0).standard_normal((103, 3, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rows = np.arange(5, 100)
    y = torch.arange(len(rows))
    mean, std = zoo.row_stats(x, rows)
    streamed = zoo.StreamSplit(zoo.ArrayFile.npy(tmp_path / "x.npy"), y, rows, mean=mean, std=std, workers=workers)
    memory = zoo.TensorSplit((torch.from_numpy(x[rows]) - mean) / std, y)
    assert len(streamed) == len(memory) and streamed.num_batches(16) == memory.num_batches(16) == 6
    for start in (0, 4):
        a = list(streamed.batches(16, shuffle=True, generator=torch.Generator().manual_seed(3), start=start))
        b = list(memory.batches(16, shuffle=True, generator=torch.Generator().manual_seed(3), start=start))
        assert len(a) == len(b) == 6 - start
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)
    (xa, ya), = streamed.batches(None)
    assert torch.equal(ya, y) and xa.shape == (95, 3, 2)
    assert torch.equal(xa, memory.x)  # the same float32 operations as in memory, bit for bit


def test_array_file_rows_reads_any_order_and_refuses_a_short_file(tmp_path):
    x = np.arange(3000 * 5, dtype=np.float32).reshape(3000, 5)
    np.save(tmp_path / "x.npy", x)
    rows = zoo.ArrayFile.npy(tmp_path / "x.npy")
    for index in ([7, 3, 4, 5, 2999, 0, 6], np.arange(2500), np.arange(3000)[::-1], [5, 5, 1], []):
        np.testing.assert_array_equal(rows.rows(index), x[np.asarray(index, dtype=np.int64)])
    with open(tmp_path / "x.npy", "r+b") as f:  # the file loses its last rows after it was opened
        f.truncate(rows.offset + 2000 * rows.row_bytes)
    with pytest.raises(ValueError, match=r"x.npy ended early: row 2\d\d\d and on are missing"):
        rows.rows([1, 2500])


def maps(pid, path) -> bool:
    """Whether process ``pid`` has ``path`` memory-mapped."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(line.rstrip("\n").endswith(" " + str(path)) for line in f)
    except (FileNotFoundError, ProcessLookupError):  # the process is gone: it maps nothing
        return False


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_epoch_never_maps_its_file(tmp_path, workers):
    """The memory a streamed pass holds does not grow with the file: no process reading it maps the file
    (the rows are read into each batch's own buffer; the file's pages stay page cache, the kernel's)."""
    import psutil

    path = (tmp_path / "x.npy").resolve()
    np.save(path, np.random.default_rng(0).standard_normal((20_000, 64)).astype(np.float32))
    split = zoo.StreamSplit(zoo.ArrayFile.npy(path), torch.zeros(20_000), workers=workers, prefetch=2)
    seen = set()
    for i, (x, _) in enumerate(split.batches(256, shuffle=True, generator=torch.Generator().manual_seed(0))):
        readers = [os.getpid(), *(p.pid for p in psutil.Process().children())]
        seen.update(readers)
        assert not any(maps(pid, path) for pid in readers), f"batch {i}"
        assert x.shape == (256, 64) or i == 78
    assert i == 78 and len(seen) >= 1 + workers  # the workers were there to look at


def test_a_reader_thread_left_early_ends(tmp_path):
    """A pass read by a thread (data.workers=0) and left after its first batch (as the pre-flight check
    does) ends its thread; an error reading a batch is raised in the training thread."""
    import threading

    np.save(tmp_path / "x.npy", np.ones((1000, 4), dtype=np.float32))
    x = zoo.ArrayFile.npy(tmp_path / "x.npy")
    split = zoo.StreamSplit(x, torch.zeros(1000), workers=0)
    first = next(iter(split.batches(10)))
    assert first[0].shape == (10, 4)
    for thread in [t for t in threading.enumerate() if t.name == "zoo-stream-reader"]:
        thread.join(60)
        assert not thread.is_alive()
    with open(tmp_path / "x.npy", "r+b") as f:
        f.truncate(x.offset + 500 * x.row_bytes)
    with pytest.raises(ValueError, match="ended early"):
        list(split.batches(10))


def test_split_indices_are_scikit_learns_at_a_few_bytes_a_row():
    """``zoo.split_indices`` draws scikit-learn's ``train_test_split`` indices (in-memory datasets split
    as they always did) in numpy, as int32 arrays: its peak stays a few bytes a row where scikit-learn's
    stratified split took about 70 (int64 copies and a Python int a row: 4,000,000 rows cost 280 MB)."""
    import tracemalloc

    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(1)
    cases = [(20, None), (37, rng.integers(0, 2, 37)), (150, rng.choice(np.array(["a", "b", "c"]), 150)),
             (1797, rng.integers(0, 10, 1797)), (5000, np.repeat(np.arange(4), 1250)),  # ties in the class shares
             (100_003, rng.integers(0, 7, 100_003)), (100_003, None)]
    for n, stratify in cases:
        for seed in (0, 7):
            rest, test = train_test_split(np.arange(n), test_size=0.15, random_state=seed, stratify=stratify)
            train_, val = train_test_split(rest, test_size=0.15 / 0.85, random_state=seed,
                                           stratify=None if stratify is None else stratify[rest])
            ours = zoo.split_indices(n, seed, stratify=stratify)
            for theirs, mine in zip((train_, val, test), ours):
                np.testing.assert_array_equal(mine, theirs)
                assert mine.dtype == np.int32
    n = 1_000_000
    labels = rng.integers(0, 10, n).astype(np.uint8)
    tracemalloc.start()
    try:
        parts = zoo.split_indices(n, 0, stratify=labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(len(p) for p in parts) == [150_000, 150_000, 700_000]
    assert peak < 12 * n, f"{peak / n:.1f} bytes a row"  # the index arrays: 4; scikit-learn's: about 70


def test_a_streamed_split_holds_its_rows_at_their_own_width(registry, tmp_path):
    """What a streamed split keeps in memory for each row: its row number as int32 and its class id as
    uint8, never an int64 or float64 array as long as the data (the int64 labels of the file are let go
    once encoded); each batch's targets are widened to int64 and equal the in-memory split's."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((3000, 5)).astype(np.float32))
    np.save(folder / "y.npy", rng.integers(0, 3, 3000) * 10)  # int64 labels 0, 10, 20
    streamed = registry.load_dataset("arrays", 0, path=str(folder), in_memory=False, workers=0)
    memory = registry.load_dataset("arrays", 0, path=str(folder), in_memory=True)
    assert streamed.info.meta["class_names"] == memory.info.meta["class_names"] == ["0", "10", "20"]
    for name in ("train", "val", "test"):
        s, m = getattr(streamed, name), getattr(memory, name)
        assert isinstance(s, zoo.StreamSplit) and s.rows.dtype == np.int32 and s.y.dtype == np.uint8
        assert m.y.dtype == torch.int64
        pairs = list(zip(s.batches(256, shuffle=True, generator=torch.Generator().manual_seed(5)),
                         m.batches(256, shuffle=True, generator=torch.Generator().manual_seed(5))))
        assert len(pairs) == m.num_batches(256)
        for (xs, ys), (xm, ym) in pairs:
            assert ys.dtype == torch.int64 and torch.equal(ys, ym) and torch.allclose(xs, xm, atol=1e-6)


def test_text_labels_are_encoded_a_chunk_at_a_time(registry, tmp_path):
    """A CSV's text labels become class ids as each chunk is read (a byte a row, no Python string kept
    a row): the names are the labels of the rows kept, in sorted order, as in memory; a label seen only
    on a row dropped for a missing value is no class."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.standard_normal(300), "b": rng.standard_normal(300),
                          "kind": rng.choice(np.array(["tulip", "rose", "iris"]), 300)})
    frame.loc[17, ["a", "kind"]] = [np.nan, "orchid"]  # the only orchid, on a row that is dropped
    frame.to_csv(tmp_path / "flowers.csv", index=False)
    settings = {"path": str(tmp_path / "flowers.csv"), "target": "kind", "missing": "drop"}
    streamed = registry.load_dataset("csv", 0, in_memory=False, workers=0, **settings)
    memory = registry.load_dataset("csv", 0, in_memory=True, **settings)
    assert streamed.info.meta["class_names"] == memory.info.meta["class_names"] == ["iris", "rose", "tulip"]
    assert streamed.train.y.dtype == np.uint8 and len(streamed.train) + len(streamed.val) + len(streamed.test) == 299
    kept = frame.drop(index=17)["kind"].to_numpy()
    ids = np.concatenate([streamed.train.y, streamed.val.y, streamed.test.y])
    rows = np.concatenate([streamed.train.rows, streamed.val.rows, streamed.test.rows])
    np.testing.assert_array_equal(np.array(["iris", "rose", "tulip"])[ids], kept[rows])
    (_, ys), = streamed.test.batches(None)
    assert torch.equal(ys, memory.test.y)


def test_the_budget_decides_what_is_streamed(registry, tmp_path):
    folder = digits_folder(tmp_path / "digits")
    small = registry.load_dataset("arrays", 0, path=str(folder), memory_budget="100KB")
    large = registry.load_dataset("arrays", 0, path=str(folder), memory_budget="1GB")
    assert isinstance(small.train, zoo.StreamSplit) and small.info.meta["streamed"]  # 1797 x 64 x 4 bytes = 460 KB
    assert isinstance(large.train, zoo.TensorSplit) and "streamed" not in large.info.meta
    forced = registry.load_dataset("arrays", 0, path=str(folder), in_memory=False, memory_budget="1GB")
    assert isinstance(forced.train, zoo.StreamSplit)
    assert small.info.meta["preprocessing"] == large.info.meta["preprocessing"]  # the same statistics


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_and_in_memory_runs_give_the_same_losses(make_cfg, registry, client, tmp_path, workers):
    folder = digits_folder(tmp_path / "digits")
    common = ["data=arrays", f"data.path={folder}", "trainer.max_epochs=2", "trainer.batch_size=64",
              "tracking.log_model=false"]
    memory = train(make_cfg(*common, "data.in_memory=true"), registry)
    streamed = train(make_cfg(*common, "data.in_memory=false", f"data.workers={workers}"), registry)
    histories = [[m.value for m in sorted(client.get_metric_history(r["run_id"], "train/loss"), key=lambda m: m.step)]
                 for r in (memory, streamed)]
    assert len(histories[0]) == len(histories[1]) > 0
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-4, atol=1e-5)
    assert streamed["test/accuracy"] == pytest.approx(memory["test/accuracy"], abs=1e-6)
    tags = client.get_run(streamed["run_id"]).data.tags
    assert tags["zoo.data_source"] == str(folder)


def test_a_streamed_run_killed_mid_epoch_resumes_bit_for_bit(tmp_path):
    folder = digits_folder(tmp_path / "digits")
    args = ["data=arrays", f"data.path={folder}", "data.in_memory=false", "data.workers=0",
            "model.hidden_sizes=[32]", "trainer.max_epochs=4", "trainer.batch_size=4", "trainer.log_every=7",
            "trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false"]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([*ZOO, "train", *args, "hydra.run.dir=interrupted"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: list((tmp_path / "interrupted" / "checkpoints").glob("*/last.pt"))), \
        "training never finished its first epoch"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err
    (run,) = runs_in(uri)
    assert run.info.status == "KILLED"
    stopped = torch.load(last_checkpoint(tmp_path / "interrupted"), weights_only=True)
    steps_per_epoch = 315  # ceil(1257 / 4)
    assert 0 < stopped["batch_in_epoch"] < steps_per_epoch and 1 <= stopped["epoch"] < 4  # mid-epoch

    resumed = run_zoo("train", f"resume={run.info.run_id}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_zoo("train", *args, "hydra.run.dir=straight", "tracking.experiment=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert_same_last_checkpoint(tmp_path, 4 * steps_per_epoch)
    client = mlflow.MlflowClient(uri)
    straight_run = client.search_runs([client.get_experiment_by_name("straight").experiment_id])[0]
    assert client.get_run(run.info.run_id).data.metrics["test/accuracy"] == straight_run.data.metrics["test/accuracy"]


def test_the_stream_benchmark_runs(tmp_path):
    """benchmarks/data_stream.py end to end on a tiny file (no timing or memory figure is asserted)."""
    import json

    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "data_stream.py"), "--rows", "30000", "--budget", "1MB",
         "--workers", "1", "--work", str(tmp_path), "--json", str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert set(report["runs"]) == {"memory", "streamed", "plain", "fixed"}
    steps = -(-21000 // 256)  # one epoch of the 70% training rows
    assert report["runs"]["memory"]["steps"] == report["runs"]["streamed"]["steps"] == steps
    assert report["runs"]["plain"]["steps"] == -(-30000 // 256)  # the plain loop reads every row
    assert report["bytes"] > 7 * report["budget"] and "| streamed |" in r.stdout and "peak PSS" in r.stdout
    memory = report["runs"]["streamed"]["memory"]
    assert 0 < memory["anon"] <= memory["pss"] <= memory["rss"]  # PSS never counts a shared page twice
    assert "data_cost" in report["runs"]["streamed"] and "the data took" in r.stdout


def test_data_workers_auto_reads_in_a_thread_on_few_cores():
    """data.workers=auto: a reader thread (0 worker processes) where the training thread and the metric
    writer already take the cores (docs/data.md, "Data larger than memory"); a number is taken as it is."""
    from zoo.plugin.stream import reader_processes

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert reader_processes("auto") == 0
    finally:
        os.sched_setaffinity(0, before)
    assert reader_processes(3) == 3 and reader_processes(0) == 0
