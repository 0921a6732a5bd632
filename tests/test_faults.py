"""Bad input and plugin faults: one line, exit 2, and no run where possible (or a run that ended
FAILED with the reason, where the fault comes after it started). Every case runs the real
command line against a real store, real files and real mounts (field report ``reliability.md``,
cases 2a, 2b, 3d, 3h, 5c-5am, 6e), except the many shapes of a faulty plugin's build and load:
one of each goes through the command line, the others through ``train(cfg)`` in this process
(the same checks raise the same one-line error; the command line only prints it).
"""

from __future__ import annotations

import hashlib
import os
import resource
import sqlite3
import subprocess
import textwrap
import time
import urllib.error
import urllib.request

import mlflow
import pytest
import yaml

import zoo
from zoo.config import register_configs
from zoo.plugin.registry import load_registry
from zoo.training.train import train

from ._faults import SMALL, TINY, no_run_in, one_line_error, read_only, runs_of, small_disk, the_failed_run
from ._servers import free_port, zoo_env
from .conftest import ZOO, run_zoo, runs_in, zoo_here

MEMORY_LIMIT = 8 * 2**30  # the address space a memory-hungry case may take (ulimit -v), to spare the machine


def run_limited(*args: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    """``zoo ARGS`` under an 8 GiB address-space limit: without its estimate, Zoo would try to allocate far more."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", **(env or {})}
    return subprocess.run([*ZOO, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT)))


# ------------------------------------------------------------------------------ values and memory
def test_a_huge_log_every_costs_no_more_than_an_epoch(tmp_path):
    """5c: ``trainer.log_every=1000000000`` allocated a (10**9, norms) tensor (52 GB) and the run FAILED."""
    r = run_limited("train", *TINY, *SMALL, "trainer.max_epochs=2", "trainer.log_every=1000000000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = runs_of(tmp_path / "mlruns" / "mlflow.db")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert run.info.status == "FINISHED" and sorted(steps) == list(range(1, len(steps) + 1)) and len(steps) > 2


@pytest.mark.parametrize("args, message", [
    (["model=mlp", "data=iris", "model.hidden_sizes=[100000,100000]"],
     "model=mlp needs about 149.0 GiB to train (10,000,900,003 parameters"),
    (["model=mlp", "data=moons", "data.n_samples=100000000000"], "data=moons: data.n_samples=100000000000 needs at least 1490.1 GiB"),
], ids=["model", "n_samples"])
def test_memory_is_estimated_before_allocating(tmp_path, args, message):
    """5d, 5h: the model's parameters (counted on the meta device) and the data's examples against the memory there is."""
    r = run_limited("train", *TINY, *args, cwd=tmp_path)
    line = one_line_error(r, message)
    assert "of memory is available" in line or "of cpu memory is available" in line
    assert line.endswith("lower model.hidden_sizes=[100000, 100000]" if "data=iris" in args else "lower data.n_samples")
    no_run_in(tmp_path)


def test_a_data_file_larger_than_memory_is_one_line(tmp_path):
    """5t: ``data=text data.path=<a 60 GB sparse file>`` was a MemoryError traceback."""
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(100 * 2**30)  # sparse: no disk used
    r = run_limited("train", *TINY, "model=gpt", "data=text", f"data.path={huge}", cwd=tmp_path)
    one_line_error(r, f"data=text: not enough memory (")
    assert f"use a smaller file than data.path='{huge}' (100.0 GiB)" in r.stderr
    no_run_in(tmp_path)


# ------------------------------------------------------------------------------ disks and stores
def test_a_full_disk_for_checkpoints_fails_the_run_in_one_line(tmp_path):
    """2a: checkpoints on a full disk were a 36-line traceback naming no disk, and left .tmp files behind."""
    out = tmp_path / "out"
    with small_disk(out):
        r = run_zoo("train", *TINY, "data=iris", "model=mlp", "model.hidden_sizes=[512,512]", f"hydra.run.dir={out}",
                    cwd=tmp_path)
        line = one_line_error(r, f"cannot write the checkpoint last.pt in {out / 'checkpoints'}/")  # .../<run id>
        assert "no space left on the device" in line and "ended FAILED" in line
        assert not list(out.rglob("*.tmp")), list(out.rglob("*"))
    the_failed_run(tmp_path, "no space left on the device")


def test_a_full_disk_for_artifacts_fails_the_run_in_one_line(tmp_path):
    """2b: artifacts on a full disk were a 29-line traceback; the run's metrics stay."""
    artifacts = tmp_path / "mlruns" / "artifacts"
    with small_disk(artifacts):
        r = run_zoo("train", *TINY, "data=iris", "model=mlp", "model.hidden_sizes=[512,512]", cwd=tmp_path)
        line = one_line_error(r, "cannot store the artifact ")
        assert "No space left on device" in line and "ended FAILED" in line
        run = the_failed_run(tmp_path, "No space left on device")
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
        assert client.get_metric_history(run.info.run_id, "train/loss") and "test/accuracy" in run.data.metrics


def test_a_read_only_artifacts_folder_is_refused_before_any_run(tmp_path):
    """3h: only the database's folder was probed; a read-only artifacts folder failed the run after training."""
    with read_only(tmp_path / "mlruns" / "artifacts"):
        r = run_zoo("train", *TINY, *SMALL, cwd=tmp_path)
    one_line_error(r, f"the artifacts folder {tmp_path / 'mlruns' / 'artifacts' / 'zoo'} is not writable (Read-only file system)")
    no_run_in(tmp_path)


@pytest.mark.parametrize("tables", ["create table notes(t text)", "create table experiments(x int)"],
                         ids=["notes", "experiments"])
def test_a_sqlite_file_that_is_not_an_mlflow_store_is_refused_and_left_untouched(tmp_path, tables):
    """3d: MLflow added ~70 tables to the user's own SQLite file (and a 65-line error for an `experiments` table)."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as con:
        con.executescript(f"{tables}; insert into {tables.split()[2].split('(')[0]} values (1);")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    message = "is a SQLite database but not an MLflow store (its tables: "
    one_line_error(run_zoo("train", *TINY, *SMALL, cwd=tmp_path), message)
    one_line_error(zoo_here("compare", cwd=tmp_path), message)
    one_line_error(run_zoo("server", "--port", str(free_port()), "--backend-store-uri", f"sqlite:///{db}",
                           cwd=tmp_path, env=zoo_env()), message)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.startswith(".")) == ["mlflow.db"]


def test_zoo_ui_and_zoo_server_start_together_on_a_new_store(tmp_path):
    """6e: started at once on a fresh folder, one of them crashed racing MLflow's schema migration (3 of 3 tries)."""
    ports = free_port(), free_port()
    env = zoo_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("ui", "server")]
    procs = [subprocess.Popen([*ZOO, cmd, "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
             for cmd, port, log in zip(("ui", "server"), ports, logs)]
    from zoo._runtime import stop_group

    try:
        answered = set()
        deadline = time.time() + 300
        while len(answered) < 2 and time.time() < deadline and all(p.poll() is None for p in procs):
            for port in set(ports) - answered:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    answered.add(port)
                except urllib.error.HTTPError:
                    answered.add(port)
                except OSError:
                    pass
            time.sleep(0.5)
        died = [(cmd, (tmp_path / f"{cmd}.log").read_text()[-2000:]) for cmd, p in zip(("ui", "server"), procs)
                if p.poll() is not None]
        assert not died and answered == set(ports), died
    finally:
        for p in procs:
            stop_group(p)
        for log in logs:
            log.close()
    with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as con:
        assert con.execute("select count(*) from alembic_version").fetchone()[0] == 1


# ------------------------------------------------------------------------------ plugins
FAULTY = textwrap.dedent('''
    import math
    import sys
    import time

    import torch

    import zoo


    class Net(torch.nn.Module):
        def __init__(self, d_in, d_out, mode):
            super().__init__()
            self.lin, self.mode = torch.nn.Linear(d_in, d_out), mode

        def forward(self, x):
            out = self.lin(x.float().flatten(1))
            return {"fewclasses": out[:, :-1], "batch1": out[:1], "int64": out.long(), "tuple": (out, out)}.get(self.mode, out)


    def build(info, mode="ok"):
        if mode == "print":
            print("NOISE FROM BUILD")
        if mode == "exit":
            sys.exit(4)
        if mode == "hang":
            time.sleep(10**6)
        return {"str": "not a model", "none": None}.get(mode) if mode in ("str", "none") else \\
            Net(math.prod(info.input_shape), info.output_dim, mode)


    class LyingSplit:
        """A split of its own whose inputs and targets differ in length."""

        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def to(self, device):
            return self

        def num_batches(self, batch_size):
            return 1

        def batches(self, batch_size, shuffle=False, generator=None):
            yield self.x, self.y

        def example(self, n=2):
            return self.x[:n]


    def load(seed, mode="ok"):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(60, 4, generator=g)
        y = (x[:, 0] > 0).long()
        shape = (7,) if mode == "wrongdim" else (4,)
        info = zoo.DataInfo(kind="tabular", task="classification", input_shape=shape, output_dim=2)
        if mode == "tuple":
            return x, y
        if mode == "labels":
            y = torch.full_like(y, 4)
        if mode == "nans":
            x[45, 1] = float("nan")
        parts = [zoo.TensorSplit(x[:40], y[:40]), zoo.TensorSplit(x[40:50], y[40:50]), zoo.TensorSplit(x[50:], y[50:])]
        if mode == "emptytrain":
            parts[0] = zoo.TensorSplit(x[:0], y[:0])
        if mode == "emptytest":
            parts[2] = zoo.TensorSplit(x[:0], y[:0])
        if mode == "mismatch":
            parts[0] = LyingSplit(x[:40], y[:30])
        return zoo.Splits(*parts, info=info)


    @zoo.hookimpl
    def zoo_architectures():
        return [zoo.Architecture(name="faultnet", family="test", kinds=("tabular",), build=build)]


    @zoo.hookimpl
    def zoo_datasets():
        return [zoo.Dataset(name="faultdata", kind="tabular", task="classification", load=load)]
''')


@pytest.fixture
def faulty(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "faulty.py").write_text(FAULTY)
    return f"plugins.dir={folder}"


@pytest.fixture
def faulty_registry(faulty):
    """The registry with the faulty plugin, its nodes in Hydra's config store, as ``zoo train plugins.dir=`` loads it."""
    registry = load_registry([faulty.split("=", 1)[1]])
    register_configs(registry)
    return registry


def refused_before_any_run(make_cfg, registry, store, *overrides: str) -> str:
    """``train`` of ``overrides`` (the command's TINY settings) raises a one-line ZooError and leaves no run."""
    with pytest.raises(zoo.ZooError) as err:
        train(make_cfg(*TINY, *overrides), registry)
    line = str(err.value)
    assert "\n" not in line, line
    db = store.removeprefix("sqlite:///")
    assert not os.path.exists(db) or runs_in(store) == []
    return line


MODEL_FAULTS = [
    ("str", "build returns a str", "model=faultnet: build returned str, not a torch.nn.Module (plugin 'faulty', "),
    ("none", "build returns None", "model=faultnet: build returned NoneType, not a torch.nn.Module"),
    ("exit", "build calls sys.exit(4)", "model=faultnet: the plugin called sys.exit(4)"),
    ("fewclasses", "its output has one class too few", "model=faultnet on data=iris: the model's output does not fit the classification task: "
                   "expected (2, 3), got (2, 2) for a batch of 2 (classification: target (2,) + 3 classes)"),
    ("batch1", "its output has a batch of 1", "expected (2, 3), got (1, 3) for a batch of 2"),
    ("int64", "its output is int64", "the model's output does not fit the classification task: expected floating-point scores, got torch.int64"),
    ("tuple", "its output is a tuple", "the model's output does not fit the classification task: expected a tensor, got tuple"),
]


@pytest.mark.parametrize("mode, what, message", MODEL_FAULTS, ids=[m for m, _, _ in MODEL_FAULTS])
def test_a_faulty_model_plugin_is_one_line_before_any_run(make_cfg, faulty_registry, store, mode, what, message):
    """5aa, 5ad, 5y: a build returning no module, an output of the wrong shape or kind, a sys.exit in build."""
    line = refused_before_any_run(make_cfg, faulty_registry, store, "data=iris", "model=faultnet", f"model.mode={mode}")
    assert message in line, line


DATA_FAULTS = [
    ("tuple", "load returns a tuple", "data=faultdata: load returned tuple, not zoo.Splits (plugin 'faulty', "),
    ("emptytrain", "an empty train split", "data=faultdata: the train split is empty: every split needs at least one example"),
    ("emptytest", "an empty test split", "data=faultdata: the test split is empty"),
    ("mismatch", "a split whose inputs and targets differ in length", "data=faultdata: the train split's inputs and targets differ in length: 40 != 30"),
    ("wrongdim", "info.input_shape unlike the data", "data=faultdata: info.input_shape is (7,), but the train split's examples are (4,)"),
    ("labels", "labels out of range", "data=faultdata: the train split's targets do not fit the classification task: "
               "40 labels are outside 0..1 (e.g. 4), but the data declares output_dim=2 classes"),
    ("nans", "NaN in the features", "data=faultdata: the val split's inputs hold 1 NaN or infinite values (the first in example 5): "
            "clean the data or drop those examples"),
]


@pytest.mark.parametrize("mode, what, message", DATA_FAULTS, ids=[m for m, _, _ in DATA_FAULTS])
def test_a_faulty_dataset_plugin_is_one_line_before_any_run(make_cfg, faulty_registry, store, mode, what, message):
    """5ag-5am: empty or mismatched splits, a wrong input_shape, labels out of range, NaN, a load returning a tuple."""
    line = refused_before_any_run(make_cfg, faulty_registry, store, "model=mlp", "data=faultdata", f"data.mode={mode}")
    assert message in line, line
    assert "optimizer.lr" not in line  # not the advice for a diverging run


@pytest.mark.parametrize("args, message", [
    (["data=iris", "model=faultnet", "model.mode=str"], MODEL_FAULTS[0][2]),
    (["model=mlp", "data=faultdata", "data.mode=tuple"], DATA_FAULTS[0][2]),
], ids=["model", "data"])
def test_a_faulty_plugin_on_the_command_line_is_one_line_exit_2_and_no_run(tmp_path, faulty, args, message):
    """The command line prints what the cases above raise: one line, exit 2, no traceback, no run."""
    r = run_zoo("train", *TINY, faulty, *args, cwd=tmp_path)
    one_line_error(r, message)
    assert "optimizer.lr" not in r.stderr
    no_run_in(tmp_path)


def test_a_plugin_that_hangs_in_build_is_stopped_by_the_time_limit(make_cfg, faulty_registry, store, monkeypatch):
    """5w: a build that never returned hung Zoo silently. Through ``train(cfg)`` as the other build faults
    (the command line prints what they raise): the time limit covers the build alone, so 2 s is plenty."""
    monkeypatch.setenv("ZOO_PLUGIN_TIMEOUT", "2")
    line = refused_before_any_run(make_cfg, faulty_registry, store, "data=iris", "model=faultnet", "model.mode=hang")
    assert line.startswith("model=faultnet: build did not finish within 2 s (plugin 'faulty', "), line
    assert "ZOO_PLUGIN_TIMEOUT" in line


@pytest.mark.parametrize("body, why", [
    ("import time\ntime.sleep(10**6)\n", "import did not finish within {} s; the plugin may hang"),
    ("import sys\nsys.exit(3)\n", "import failed: it called sys.exit(3)"),
], ids=["hang", "exit"])
def test_a_plugin_that_hangs_or_exits_at_import_is_skipped_with_a_warning(tmp_path, registry, body, why):
    """5v, 5x: Zoo hung silently, or exited 3 with no output at all (``zoo train`` and ``zoo list``)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "bad.py").write_text(body)
    # zoo list in this process, where the session's registry has imported the built-ins already: a limit
    # of 2 s is the bad plugin's alone. zoo train in its own process imports them under the limit too: 15 s.
    listing = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_TIMEOUT": "2", "ZOO_PLUGIN_DIR": str(folder)})
    assert listing.returncode == 0 and "mlp" in listing.stdout, listing.stderr[-2000:]
    warning = f"warning: plugin 'bad' ({folder / 'bad.py'}) was skipped: "
    assert warning + why.format(2) in listing.stderr
    r = run_zoo("train", *TINY, *SMALL, cwd=tmp_path, env={"ZOO_PLUGIN_TIMEOUT": "15", "ZOO_PLUGIN_DIR": str(folder)})
    assert r.returncode == 0 and warning + why.format(15) in r.stderr, r.stderr[-2000:]
    assert runs_of(tmp_path / "mlruns" / "mlflow.db")[0].info.status == "FINISHED"


def test_what_a_plugin_prints_stays_off_zoo_list_and_cfg_job(tmp_path, faulty):
    """5ac: a plugin printing to stdout polluted ``zoo list`` and ``zoo train --cfg job``."""
    folder = tmp_path / "plugins"
    (folder / "noisy.py").write_text("print('NOISE FROM IMPORT')\n")
    listing = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert listing.returncode == 0 and "NOISE" not in listing.stdout and "NOISE FROM IMPORT" in listing.stderr
    job = run_zoo("train", faulty, "model=faultnet", "data=iris", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0 and "NOISE" not in job.stdout and "NOISE FROM IMPORT" in job.stderr
    assert yaml.safe_load(job.stdout)["model"]["name"] == "faultnet"
    r = run_zoo("train", *TINY, "data=iris", faulty, "model=faultnet", "model.mode=print", cwd=tmp_path)
    assert r.returncode == 0 and "NOISE" not in r.stdout and "NOISE FROM BUILD" in r.stderr, r.stderr[-2000:]
    assert r.stdout.startswith("zoo: faultnet on iris")
