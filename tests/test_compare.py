"""``zoo compare`` over a real store filled by real training runs.

Three tiny runs (iris, two epochs) are trained once for the module with ``zoo.train`` into a
SQLite store in a temporary folder; the command line is then run as a user runs it (a subprocess
for the exit code and stderr, ``zoo.cli.main`` in-process where only the output matters).
"""

from __future__ import annotations

import re

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from zoo.cli import main as zoo_main
from zoo.experiments.table import lower_is_better
from zoo.config import CONF_DIR
from zoo.training.train import train

from .conftest import FAST, run_zoo

EXPERIMENT = "cmp"
# name -> overrides; the runs differ in model and optimizer.lr only
RUNS = {
    "mlp-slow": ["model=mlp", "model.hidden_sizes=[16]", "optimizer.lr=0.003"],
    "mlp-fast": ["model=mlp", "model.hidden_sizes=[16]", "optimizer.lr=0.05"],
    "perceptron": ["model=perceptron", "optimizer.lr=0.05"],
}


@pytest.fixture(scope="module")
def filled(tmp_path_factory, registry):
    """(uri, {name: run_id}): three finished runs in experiment 'cmp', one in 'other' (which logs its model)."""
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    ids = {}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for i, (name, overrides) in enumerate([*RUNS.items(), ("other", ["model=perceptron"])]):
            base = [f"paths.output_dir={root / 'out' / str(i)}", f"tracking.uri={uri}", *FAST,
                    "data=iris", f"tracking.log_model={name == 'other'}", f"tracking.run_name={name}",
                    f"tracking.experiment={'other' if name == 'other' else EXPERIMENT}"]
            cfg = compose("config", overrides=base + overrides)
            ids[name] = train(cfg, registry, overrides)["run_id"]
    return uri, ids


def table(out: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the printed table (the line under the header is dashes)."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("RUN "))
    header = lines[i].split()
    rows = []
    for line in lines[i + 2:]:
        if not re.match(r"^[0-9a-f]{8}  ", line):
            break
        rows.append(line.split())
    return header, rows


def compare(capsys, *args: str) -> str:
    assert zoo_main(["compare", *args]) == 0
    return capsys.readouterr().out


def fail(capsys, *args: str) -> str:
    """Run a compare that must fail: exit 2, one line on stderr, no traceback."""
    with pytest.raises(SystemExit) as exc:
        zoo_main(["compare", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_table_shows_differing_params_and_sorts_best_first(filled, tmp_path):
    uri, ids = filled
    r = run_zoo("compare", "--uri", uri, "--experiment", EXPERIMENT, "--sort", "test/loss", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"experiment '{EXPERIMENT}'" in r.stdout and "3 runs" in r.stdout
    assert "sorted by test/loss, ascending" in r.stdout
    header, rows = table(r.stdout)
    # the params that differ, and only those (paths.output_dir always differs: never shown)
    assert {"model.name", "optimizer.lr", "model.hidden_sizes"} <= set(header)
    assert not {"data.name", "seed", "trainer.max_epochs"} & set(header)
    # bookkeeping that differs in every run is not a param worth a column (the run name is NAME)
    assert not {"paths.output_dir", "tracking.run_name"} & set(header)
    assert {row[1] for row in rows} == set(RUNS)
    assert {"STATUS", "test/loss", "test/accuracy", "best/val_accuracy", "duration"} <= set(header)
    assert {row[0] for row in rows} == {ids[n][:8] for n in RUNS}
    # rows best first by test/loss, with the values MLflow holds
    client = mlflow.MlflowClient(uri)
    loss = {ids[n][:8]: client.get_run(ids[n]).data.metrics["test/loss"] for n in RUNS}
    assert [row[0] for row in rows] == sorted(loss, key=loss.get)
    col = header.index("test/loss")
    assert [float(row[col]) for row in rows] == pytest.approx(sorted(loss.values()), abs=1e-4)
    lr = header.index("optimizer.lr")
    by_id = {row[0]: row for row in rows}
    assert by_id[ids["mlp-slow"][:8]][lr] == "0.003"
    assert by_id[ids["perceptron"][:8]][header.index("model.name")] == "perceptron"
    assert all(row[header.index("STATUS")] == "FINISHED" for row in rows)
    assert all(re.fullmatch(r"\d+\.\ds", row[header.index("duration")]) for row in rows)


def test_sort_direction_by_name_and_explicitly(filled, capsys):
    uri, ids = filled
    client = mlflow.MlflowClient(uri)
    runs = {ids[n][:8]: client.get_run(ids[n]) for n in RUNS}
    acc = {k: r.data.metrics["test/accuracy"] for k, r in runs.items()}
    out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--sort", "test/accuracy")
    assert "sorted by test/accuracy, descending" in out
    # best first; equal accuracies in the order the runs started
    assert [row[0] for row in table(out)[1]] == sorted(acc, key=lambda k: (-acc[k], runs[k].info.start_time))
    out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--sort", "test/loss", "--desc")
    loss = {k: r.data.metrics["test/loss"] for k, r in runs.items()}
    assert [row[0] for row in table(out)[1]] == sorted(loss, key=lambda k: -loss[k])
    assert lower_is_better("best/val_loss") and lower_is_better("test/mse") and lower_is_better("duration")
    assert not lower_is_better("test/accuracy") and not lower_is_better("test/r2")
    assert lower_is_better("perf/fit_s") and not lower_is_better("perf/steps_per_s")


def test_sort_follows_the_direction_the_runs_were_trained_for(filled, capsys):
    """The tags training writes (zoo.monitor, zoo.direction) decide which way a metric of the same
    measure is sorted, before the task and before the metric's name."""
    uri, ids = filled
    client = mlflow.MlflowClient(uri)
    try:
        for name in RUNS:  # a contrived objective, so that the tags and the name disagree
            client.set_tag(ids[name], "zoo.monitor", "best/val_loss")
            client.set_tag(ids[name], "zoo.direction", "maximize")
        out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--sort", "test/loss")
        assert "sorted by test/loss, descending" in out
        loss = {ids[n][:8]: client.get_run(ids[n]).data.metrics["test/loss"] for n in RUNS}
        assert [row[0] for row in table(out)[1]] == sorted(loss, key=lambda k: -loss[k])
        out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--sort", "test/accuracy")  # the task's: classification
        assert "sorted by test/accuracy, descending" in out
    finally:
        for name in RUNS:
            client.delete_tag(ids[name], "zoo.monitor")
            client.delete_tag(ids[name], "zoo.direction")


def test_runs_by_id_and_prefix_metric_columns_and_limit(filled, capsys):
    uri, ids = filled
    out = compare(capsys, "--uri", uri, ids["mlp-fast"][:6], ids["other"], "--metrics", "val/*,train/loss")
    assert "2 runs by id" in out
    header, rows = table(out)
    assert sorted(row[0] for row in rows) == sorted([ids["mlp-fast"][:8], ids["other"][:8]])
    assert {"val/loss", "val/accuracy", "train/loss"} <= set(header)
    assert not any(h.startswith(("test/", "best/")) or h == "duration" for h in header)
    assert "tracking.experiment" in header  # the runs come from two experiments
    # --params shows a column even when every run agrees; --limit keeps the best N
    out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--params", "data.name", "--sort", "test/loss",
                  "--limit", "1")
    header, rows = table(out)
    assert "data.name" in header and len(rows) == 1 and rows[0][header.index("data.name")] == "iris"
    assert "2 more not shown" in out


def test_default_is_the_latest_experiment(filled, capsys, monkeypatch):
    uri, ids = filled
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = compare(capsys)
    assert "experiment 'other'" in out  # trained last
    assert [row[0] for row in table(out)[1]] == [ids["other"][:8]]
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)  # MLflow's default experiment, as for zoo train
    out = compare(capsys)
    assert f"experiment '{EXPERIMENT}'" in out and len(table(out)[1]) == 3
    assert len(table(compare(capsys, ids["other"]))[1]) == 1  # runs named by id: the variable does not apply


def test_model_column_says_where_the_logged_model_is(filled, capsys):
    """MLflow 3 keeps a logged model beside the run, not in its artifacts: the MODEL column gives its id."""
    uri, ids = filled
    client = mlflow.MlflowClient(uri)
    assert "model" not in {a.path for a in client.list_artifacts(ids["other"])}
    (model_id,) = [m.model_id for m in client.get_run(ids["other"]).outputs.model_outputs]
    header, rows = table(compare(capsys, "--uri", uri, "-e", "other"))
    assert header[-1] == "MODEL" and rows[0][-1] == model_id
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{rows[0][-1]}")  # what the column says is what MLflow loads
    assert loaded.model_id == model_id
    header, rows = table(compare(capsys, "--uri", uri, ids["other"], ids["perceptron"]))
    assert [row[-1] for row in rows if row[0] == ids["perceptron"][:8]] == ["-"]  # logged no model


def test_sweep_lists_its_children_only(filled, capsys):
    uri, ids = filled
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    parent = client.create_run(exp.experiment_id, run_name="sweep-parent")
    client.set_terminated(parent.info.run_id, "FINISHED")
    # what an MLflow nested run records: the tag mlflow.parentRunId on each child
    for name in ("mlp-slow", "mlp-fast"):
        client.set_tag(ids[name], "mlflow.parentRunId", parent.info.run_id)
    try:
        out = compare(capsys, "--uri", uri, "--sweep", parent.info.run_id[:8], "--sort", "test/accuracy")
        assert "sweep " + parent.info.run_id[:8] in out and "2 child runs" in out
        header, rows = table(out)
        assert sorted(row[0] for row in rows) == sorted(ids[n][:8] for n in ("mlp-slow", "mlp-fast"))
        assert "optimizer.lr" in header and "model.name" not in header  # both children are mlp
        # a finished sweep names its objective on the parent run: that is the default order
        client.set_tag(parent.info.run_id, "zoo.best_metric", "test/loss")
        client.set_tag(parent.info.run_id, "zoo.best_direction", "minimize")
        out = compare(capsys, "--uri", uri, "--sweep", parent.info.run_id)
        assert "sorted by test/loss, ascending" in out
        loss = {ids[n][:8]: client.get_run(ids[n]).data.metrics["test/loss"] for n in ("mlp-slow", "mlp-fast")}
        assert [row[0] for row in table(out)[1]] == sorted(loss, key=loss.get)
        # the experiment's table leaves the parent out and says so
        out = compare(capsys, "--uri", uri, "-e", EXPERIMENT)
        assert parent.info.run_id[:8] not in {row[0] for row in table(out)[1]}
        assert "not shown: 1 sweep parent run" in out
        err = fail(capsys, "--uri", uri, "--sweep", ids["perceptron"])
        assert "has no child runs" in err and ids["perceptron"][:8] in err
    finally:
        for name in ("mlp-slow", "mlp-fast"):
            client.delete_tag(ids[name], "mlflow.parentRunId")
        client.delete_run(parent.info.run_id)


def test_plot_overlays_curves_against_step_and_time(filled, capsys, tmp_path):
    import matplotlib.image

    from zoo.experiments.compare import curves
    from zoo.tracking.runs import Runs

    uri, ids = filled
    for x in ("step", "time"):
        png = tmp_path / "figs" / f"loss_{x}.png"
        out = compare(capsys, "--uri", uri, "-e", EXPERIMENT, "--plot", str(png), "--metric", "train/loss", "--x", x)
        assert f"wrote {png}: train/loss against {x} for 3 runs" in out
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        h, w = matplotlib.image.imread(png).shape[:2]
        assert (w, h) == (880, 495)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(ids["mlp-fast"])
    ((_, xs, ys),) = curves(Runs(uri), [run], "train/loss", "time")
    steps = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(xs) == len(ys) == len(steps) and xs == sorted(xs)
    # seconds since the run started, inside the run's own span
    assert 0 <= xs[0] and xs[-1] <= (run.info.end_time - run.info.start_time) / 1000


def test_errors_name_what_is_wrong_and_what_exists(filled, capsys, tmp_path):
    uri, ids = filled
    client = mlflow.MlflowClient(uri)
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    err = fail(capsys, "--uri", uri, "0123456789abcdef0123456789abcdef")
    assert "unknown run id '0123456789abcdef0123456789abcdef'" in err and ids["other"][:8] in err
    err = fail(capsys, "--uri", uri, "--experiment", "cpm")
    assert "unknown experiment 'cpm'" in err and "Did you mean 'cmp'?" in err and "other" in err
    err = fail(capsys, "--uri", uri, "-e", EXPERIMENT, "--sort", "test/acc")
    assert "unknown metric 'test/acc' in --sort" in err and "Did you mean 'test/accuracy'?" in err
    err = fail(capsys, "--uri", uri, "-e", EXPERIMENT, "--plot", str(tmp_path / "x.png"), "--metric", "train/los")
    assert "unknown metric 'train/los' in --metric" in err and "train/loss" in err
    assert not (tmp_path / "x.png").exists()
    err = fail(capsys, "--uri", uri, "-e", EXPERIMENT, "--metrics", "tset/*")
    assert "no metric matches 'tset/*'" in err and "test/accuracy" in err
    err = fail(capsys, "--uri", uri, "-e", EXPERIMENT, "--plot", str(tmp_path / "x.txt"))
    assert "cannot write .txt" in err and ".png" in err
    err = fail(capsys, "--uri", uri, "--experiment", EXPERIMENT, ids["other"])
    assert "not several" in err
    err = fail(capsys, "--uri", uri, "-e", EXPERIMENT, "--desc")
    assert "--desc orders the rows by a metric: add --sort METRIC" in err
    # nothing was written: no run, no experiment
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before
    # a missing store is reported, never created
    empty = tmp_path / "nothing" / "mlflow.db"
    err = fail(capsys, "--uri", f"sqlite:///{empty}")
    assert f"no MLflow store at {empty}" in err and "zoo train" in err
    assert not empty.parent.exists()


def test_unreachable_server_fails_fast(capsys, monkeypatch):
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # compare would set these for its own process; here they must not leak into other tests
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    t0 = time.time()
    err = fail(capsys, "--uri", f"http://127.0.0.1:{port}")
    assert f"cannot read the MLflow store http://127.0.0.1:{port}" in err and "check --uri" in err
    assert time.time() - t0 < 60


def test_cli_error_is_one_line_with_exit_2(filled, tmp_path):
    uri, _ = filled
    r = run_zoo("compare", "--uri", uri, "feedbeef", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: unknown run id 'feedbeef'") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
