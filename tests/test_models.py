"""A zoo of trained models: the self-contained logged model, MLflow's records, the registry, eval and predict.

One module-wide store in tmp holds two real runs (mlp on digits, registered as ``digits-mlp@champion``
by ``tracking.register``; mlp on diabetes), read back through MlflowClient, ``mlflow.pyfunc``,
``mlflow.models.evaluate``, ``mlflow models predict`` and the real ``zoo`` commands (``zoo train`` and
``zoo serve`` in their own processes; predict, eval, register, models and compare through
``zoo.cli.main`` in this one, where only their output and the store matter).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

import zoo
from zoo.config import CONF_DIR
from zoo.training.train import train

from .conftest import ROOT, ZOO, run_zoo, runs_in, zoo_here


def _raw_split(name: str, split: int = 2):
    """scikit-learn's rows of a split, raw (unstandardised), as Zoo's loader splits them."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    y = bunch.target.to_numpy()
    parts = zoo.split_indices(len(y), 0, stratify=y if name != "diabetes" else None)
    idx = parts[split]
    return bunch.data.iloc[idx].reset_index(drop=True), y[idx]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, registry):
    tmp = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"

    def run(*overrides):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"paths.output_dir={tmp / 'out'}", f"tracking.uri={uri}",
                                               "trainer.device=cpu", "tracking.system_metrics=false",
                                               "tracking.hist_every=0", *overrides])
        return train(cfg, registry)

    digits = run("trainer.max_epochs=4", "tracking.register=digits-mlp", "tracking.register_alias=champion")
    diabetes = run("data=diabetes", "trainer.max_epochs=4")
    client = mlflow.MlflowClient(uri)
    return SimpleNamespace(tmp=tmp, uri=uri, client=client, digits=digits, diabetes=diabetes, run=run,
                           env={"MLFLOW_TRACKING_URI": uri})


def test_registered_model_predicts_raw_rows_at_the_runs_accuracy(trained):
    assert trained.digits["registered"] == {"name": "digits-mlp", "version": "1", "alias": "champion",
                                            "run_id": trained.digits["run_id"],
                                            "model_id": trained.digits["registered"]["model_id"],
                                            "metric": ("test/accuracy", pytest.approx(trained.digits["test/accuracy"]))}
    x, y = _raw_split("digits")
    model = zoo.load_model("models:/digits-mlp@champion", uri=trained.uri)
    labels = model.predict(x)
    assert labels.name == "label" and len(labels) == len(y)
    accuracy = float((labels.astype(int).to_numpy() == y).mean())
    assert accuracy == pytest.approx(trained.digits["test/accuracy"], abs=1e-6)  # raw pixels 0..16, not standardised
    mlflow.set_tracking_uri(trained.uri)
    pyfunc = mlflow.pyfunc.load_model("models:/digits-mlp@champion")
    assert (pyfunc.predict(x) == labels).all()
    both = pyfunc.predict(x.head(3), params={"output": "all"})
    assert list(both.columns) == ["label", *(f"probabilities_{d}" for d in range(10))]
    np.testing.assert_allclose(both.filter(like="probabilities").sum(axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():  # the torch module itself takes raw rows too
        logits = model(torch.tensor(x.to_numpy(), dtype=torch.float32))
    assert (logits.argmax(-1).numpy() == labels.astype(int).to_numpy()).all()


def test_runs_record_dataset_inputs_and_the_training_view(trained):
    run = trained.client.get_run(trained.digits["run_id"])
    inputs = {t.value: d.dataset for d in run.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert set(inputs) == {"training", "validation", "test"}
    assert {d.name for d in inputs.values()} == {"digits"} and len({d.digest for d in inputs.values()}) == 3
    assert json.loads(inputs["test"].profile)["features_shape"] == [270, 64]
    found = trained.client.search_runs([run.info.experiment_id], "dataset.name = 'digits'")
    assert trained.digits["run_id"] in {r.info.run_id for r in found}
    experiment = trained.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_best_checkpoint_is_a_logged_model_with_linked_test_metrics(trained):
    mlflow.set_tracking_uri(trained.uri)  # mlflow.search_logged_models reads the active store
    run = trained.client.get_run(trained.digits["run_id"])
    (output,) = run.outputs.model_outputs
    assert 0 < output.step <= 4 * 20  # the best epoch's step (4 epochs of 20 steps)
    logged = trained.client.get_logged_model(output.model_id)
    linked = {m.key: m for m in logged.metrics if m.key.startswith("test/")}
    assert linked["test/accuracy"].value == pytest.approx(trained.digits["test/accuracy"])
    test_digest = next(d.dataset.digest for d in run.inputs.dataset_inputs if d.tags[0].value == "test")
    assert (linked["test/accuracy"].dataset_name, linked["test/accuracy"].dataset_digest) == ("digits", test_digest)
    ranked = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                         order_by=[{"field_name": "metrics.test/accuracy", "ascending": False}])
    assert output.model_id in [m.model_id for m in ranked]
    assert logged.tags["zoo.model"] == "mlp" and logged.tags["zoo.dataset"] == "digits"
    signature = mlflow.models.get_model_info(f"models:/{output.model_id}").signature
    assert signature.inputs.input_names()[:2] == ["pixel_0_0", "pixel_0_1"]  # a column signature, by name


MODEL_FILES = {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "python_model.pkl",
               "input_example.json", "serving_input_example.json", "artifacts/zoo/weights.pt",
               "artifacts/zoo/zoo_model.json"}


def _model_files(uri: str, model_id: str) -> dict[str, Path]:
    mlflow.set_tracking_uri(uri)  # where models:/ names are looked up
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}",
                                                      dst_path=tempfile.mkdtemp(prefix="zoo-test-model-")))
    return {str(p.relative_to(folder)): p for p in folder.rglob("*")  # less the note the download of a models:/ adds
            if p.is_file() and p.name != "registered_model_meta"}


def test_the_logged_model_holds_its_examples_environment_and_weights(trained):
    """What ``mlflow models serve`` and ``zoo predict`` read: every file, the examples and the pinned requirements."""
    run = trained.client.get_run(trained.digits["run_id"])
    (output,) = run.outputs.model_outputs
    files = _model_files(trained.uri, output.model_id)
    assert set(files) == MODEL_FILES
    pins = files["requirements.txt"].read_text().split()
    assert {p.split("==")[0] for p in pins} == {"mlflow", "torch", "numpy", "pandas"} and all("==" in p for p in pins)
    serving = json.loads(files["serving_input_example.json"].read_text())
    assert serving["dataframe_split"]["columns"][:2] == ["pixel_0_0", "pixel_0_1"] and serving["params"]
    info = mlflow.models.get_model_info(f"models:/{output.model_id}")
    assert info.saved_input_example_info["serving_input_path"] == "serving_input_example.json"
    assert info.flavors["python_function"]["artifacts"]["zoo"]["path"] == "artifacts/zoo"


def _model_request(trained, name: str):
    """A digits model saved as zoo.models.log.log_model saves it, and what log_model sends to log it: its answers
    to the first test rows, as plain arrays (zoo.models.io.answers)."""
    from zoo.models import frames, io
    from zoo.models.log import LOADER, raw_inputs, requirements

    model = zoo.load_model(trained.digits["run_id"], uri=trained.uri)
    folder = trained.tmp / name / "zoo"
    model.save(folder)
    raw = raw_inputs(model, zoo.load_dataset("digits", seed=0).test)
    kwargs = dict(loader=LOADER, examples=functools.partial(frames.examples, raw, io.answers(model, raw["rows"]),
                                                            io.default_params(model)),
                  step=0, metadata={}, requirements=requirements("tabular"))
    run = trained.client.create_run(trained.client.get_run(trained.digits["run_id"]).info.experiment_id)
    return model, folder, frames.as_example(raw), run.info.run_id, kwargs


def test_logging_a_model_leaves_loading_it_to_whoever_uses_it(trained, monkeypatch):
    """MLflow's load-and-predict check of the serving example is not run while the model is logged (the
    training process has loaded the saved model and predicted its example already): the model is loaded
    when it is used, and answers the serving example then."""
    from zoo.tracking.models import log_pyfunc
    from zoo.tracking.pyfunc import ZooPythonModel

    model, folder, example, run_id, kwargs = _model_request(trained, "saved-again")
    loads = []
    load_context = ZooPythonModel.load_context
    monkeypatch.setattr(ZooPythonModel, "load_context", lambda self, context: loads.append(context) or
                        load_context(self, context))
    mlflow.set_tracking_uri(trained.uri)
    model_id = log_pyfunc(folder, run_id=run_id, **kwargs)
    trained.client.set_terminated(run_id)
    assert loads == []
    files = _model_files(trained.uri, model_id)
    assert set(files) == MODEL_FILES
    served = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert len(loads) == 1
    serving = json.loads(files["serving_input_example.json"].read_text())["dataframe_split"]
    rows = pd.DataFrame(serving["data"], columns=serving["columns"])
    assert served.predict(rows).tolist() == model.predict(example).tolist()


def test_the_run_writer_logs_a_model_without_torch(trained):
    """The writer process logs the model from what the training process sends (the saved folder, the loader's
    name, the example's answers as arrays): it imports neither torch nor the model, and the logged model loads
    and answers as the trained one does."""
    model, folder, example, run_id, kwargs = _model_request(trained, "saved-for-the-writer")
    request = trained.tmp / "model-request.pkl"
    request.write_bytes(pickle.dumps((str(folder), run_id, kwargs)))  # as the pipe to the writer pickles it
    code = ("import pickle, sys, mlflow\nfrom zoo.tracking.runstore import RunStore\n"
            "folder, run_id, kwargs = pickle.loads(open(sys.argv[1], 'rb').read())\nmlflow.set_tracking_uri(sys.argv[2])\n"
            "print('MODEL', RunStore(sys.argv[2]).model(run_id, folder, kwargs))\nprint('TORCH', 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(request), trained.uri], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "TORCH False" in r.stdout, (r.stdout[-800:], r.stderr[-2000:])
    model_id = r.stdout.split("MODEL ", 1)[1].split()[0]
    trained.client.set_terminated(run_id)
    served = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert served.predict(example).tolist() == model.predict(example).tolist()
    assert mlflow.models.get_model_info(f"models:/{model_id}").signature.outputs.input_names() == ["label"]


def test_a_model_logged_with_its_loader_pickled_still_loads(trained):
    """Models logged before the loader was named (``ZooPythonModel`` holding ``load_folder`` itself, pickled by
    name) load and answer as before."""
    from zoo.models.packaged import load_folder
    from zoo.tracking.models import log_pyfunc

    model, folder, example, run_id, kwargs = _model_request(trained, "saved-the-old-way")
    mlflow.set_tracking_uri(trained.uri)
    model_id = log_pyfunc(folder, run_id=run_id, **{**kwargs, "loader": load_folder})
    trained.client.set_terminated(run_id)
    served = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert served.unwrap_python_model().loader is load_folder
    assert served.predict(example).tolist() == model.predict(example).tolist()


def test_mlflow_evaluate_on_a_classifier_and_a_regressor(trained):
    mlflow.set_tracking_uri(trained.uri)
    x, y = _raw_split("digits")
    data = x.assign(target=y.astype(str))  # the model answers with the class names ("0".."9")
    with mlflow.start_run(experiment_id=trained.client.get_run(trained.digits["run_id"]).info.experiment_id):
        result = mlflow.models.evaluate("models:/digits-mlp@champion", data, targets="target", model_type="classifier",
                                        evaluator_config={"log_model_explainability": False})
    assert result.metrics["accuracy_score"] == pytest.approx(trained.digits["test/accuracy"], abs=1e-6)

    x, y = _raw_split("diabetes")
    run = trained.client.get_run(trained.diabetes["run_id"])
    with mlflow.start_run(experiment_id=run.info.experiment_id):
        result = mlflow.models.evaluate(f"runs:/{run.info.run_id}/model", x.assign(target=y), targets="target",
                                        model_type="regressor", evaluator_config={"log_model_explainability": False})
    scale = float(np.std(_raw_split("diabetes", 0)[1], ddof=1))  # the training split's target std
    # MLflow measures in the target's own units, the run in standardised ones
    assert result.metrics["mean_squared_error"] == pytest.approx(trained.diabetes["test/mse"] * scale ** 2, rel=1e-3)


def test_mlflow_models_predict_reads_a_csv(trained):
    x, _ = _raw_split("digits")
    x.head(8).to_csv(trained.tmp / "rows.csv", index=False)  # as pandas writes scikit-learn's rows: 0.0, 5.0, ...
    out = trained.tmp / "predictions.json"
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "predict", "-m", "models:/digits-mlp/1",
                           "-i", str(trained.tmp / "rows.csv"), "-t", "csv", "-o", str(out), "--env-manager", "local"],
                          env={**os.environ, **trained.env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    predicted = [p["label"] if isinstance(p, dict) else p for p in json.loads(out.read_text())["predictions"]]
    model = zoo.load_model("models:/digits-mlp/1", uri=trained.uri)
    assert predicted == model.predict(x.head(8)).tolist()


def test_zoo_predict_writes_labels_and_probabilities(trained, monkeypatch):
    x, y = _raw_split("digits")
    x.to_csv(trained.tmp / "digits.csv", index=False)
    x.to_parquet(trained.tmp / "digits.parquet")
    scratch = trained.tmp / "scratch"  # the command's temporary folder: the model's files do not stay there
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # tempfile's documented setting (TMPDIR is read once)
    for source, target in (("digits.csv", "out.csv"), ("digits.parquet", "out.parquet")):
        proc = zoo_here("predict", "models:/digits-mlp@champion", "--input", str(trained.tmp / source),
                       "--output", str(trained.tmp / target), cwd=trained.tmp, env=trained.env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"answered {len(x)} rows" in proc.stderr
    assert list(scratch.iterdir()) == []
    out = pd.read_csv(trained.tmp / "out.csv")
    assert list(out.columns[:2]) == ["label", "probabilities_0"] and len(out) == len(y)
    assert float((out["label"].to_numpy() == y).mean()) == pytest.approx(trained.digits["test/accuracy"], abs=1e-6)
    assert pd.read_parquet(trained.tmp / "out.parquet")["label"].astype(int).tolist() == out["label"].tolist()
    np.save(trained.tmp / "digits.npy", x.to_numpy())  # an array in the columns' order works too
    proc = zoo_here("predict", trained.digits["run_id"], "--input", str(trained.tmp / "digits.npy"),
                   "--output", str(trained.tmp / "out.npz"), "--answers", "label", cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(trained.tmp / "out.npz")["label"].astype(int).tolist() == out["label"].tolist()


def test_zoo_eval_is_a_run_linked_to_the_model(trained):
    proc = zoo_here("eval", "models:/digits-mlp@champion", cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = proc.stdout.strip().rsplit("run ", 1)[1]
    run = trained.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "eval-mlp-digits-test"
    assert run.data.metrics["test/accuracy"] == pytest.approx(trained.digits["test/accuracy"], abs=1e-6)
    assert run.data.metrics["accuracy_score"] == pytest.approx(trained.digits["test/accuracy"], abs=1e-6)  # MLflow's
    model_id = trained.digits["registered"]["model_id"]
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
    assert run.data.tags["zoo.evaluated_model"] == "models:/digits-mlp/1"
    artifacts = {a.path for a in trained.client.list_artifacts(run_id)} | \
        {a.path for a in trained.client.list_artifacts(run_id, "plots")}
    assert {"plots/roc_pr.png", "confusion_matrix.png"} <= artifacts
    # the validation split: the model's weights are the best validation epoch's
    proc = zoo_here("eval", trained.digits["run_id"], "split=val", cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = trained.client.get_run(proc.stdout.strip().rsplit("run ", 1)[1])
    assert run.data.metrics["val/accuracy"] == pytest.approx(trained.digits["best/val_accuracy"], abs=1e-6)


def test_zoo_eval_on_a_regressor_draws_residuals(trained):
    proc = zoo_here("eval", trained.diabetes["run_id"], cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = proc.stdout.strip().rsplit("run ", 1)[1]
    assert "plots/residuals.png" in {a.path for a in trained.client.list_artifacts(run_id, "plots")}
    assert trained.client.get_run(run_id).data.metrics["test/mse"] == pytest.approx(trained.diabetes["test/mse"])


def test_zoo_register_and_zoo_models(trained):
    proc = zoo_here("register", trained.diabetes["run_id"], "--name", "diabetes-mlp", "--alias", "best",
                   cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "registered diabetes-mlp version 1 (alias @best)" in proc.stdout
    version = trained.client.get_model_version_by_alias("diabetes-mlp", "best")
    assert version.run_id == trained.diabetes["run_id"]
    assert "mlp on diabetes (regression)" in version.description and "test/mse=" in version.description
    listed = zoo_here("models", "dia*", cwd=trained.tmp, env=trained.env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:6] == ["MODEL", "VERSION", "ALIASES", "ARCHITECTURE", "DATASET", "METRIC"]
    assert rows[1][:6] == ["diabetes-mlp", "1", "@best", "mlp", "diabetes",
                           f"test/mse={trained.diabetes['test/mse']:.4f}"] and len(rows) == 2
    everything = zoo_here("models", cwd=trained.tmp, env=trained.env).stdout
    assert "digits-mlp" in everything and "@champion" in everything


def test_compare_shows_each_runs_model(trained):
    proc = zoo_here("compare", trained.digits["run_id"], trained.diabetes["run_id"], cwd=trained.tmp, env=trained.env)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[1]
    assert header.split()[-1] == "MODEL"
    assert trained.digits["registered"]["model_id"] in proc.stdout


def test_the_python_api_example_runs(tmp_path):
    """docs/examples/python_api.py, as docs/models.md shows it: compose, train, register, load by name, predict."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "python_api.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ZooModel(mlp on iris: tabular 4 -> classification" in proc.stdout
    assert "setosa" in proc.stdout and "probabilities_versicolor" in proc.stdout
    assert (ROOT / "docs" / "examples" / "python_api.py").name in (ROOT / "docs" / "models.md").read_text()
    assert Path(tmp_path / "mlruns" / "mlflow.db").is_file()


# ------------------------------------------------------------------------------ zoo serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: str, content_type: str) -> list:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())["predictions"]


def test_zoo_serve_answers_json_and_csv_bodies(trained):
    port, log = _free_port(), trained.tmp / "serve.log"
    scratch = trained.tmp / "serve-tmp"  # its temporary folders (TMPDIR): the uvicorn script's goes when it stops
    scratch.mkdir()
    with open(log, "w") as out:
        server = subprocess.Popen([*ZOO, "serve", "models:/digits-mlp@champion", "--port", str(port)], cwd=trained.tmp,
                                  env={**os.environ, **trained.env, "TMPDIR": str(scratch)}, stdout=out,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # a readiness wait, not a measurement: the server starts slowly when loaded
        while True:
            assert server.poll() is None, f"zoo serve exited {server.returncode}:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.time() < deadline, f"zoo serve did not answer /ping:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        x, _ = _raw_split("digits")
        rows = x.head(6)
        expected = zoo.load_model("models:/digits-mlp@champion", uri=trained.uri).predict(rows).tolist()
        as_json = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}})
        labels = [p["label"] if isinstance(p, dict) else p for p in _post(f"{url}/invocations", as_json,
                                                                             "application/json")]
        assert labels == expected
        labels = [p["label"] if isinstance(p, dict) else p for p in _post(f"{url}/invocations",
                                                                             rows.astype(int).to_csv(index=False),
                                                                             "text/csv")]  # whole numbers, as typed
        assert labels == expected
        both = json.dumps({"dataframe_records": rows.to_dict(orient="records"), "params": {"output": "all"}})
        answers = _post(f"{url}/invocations", both, "application/json")
        assert [a["label"] for a in answers] == expected
        assert sum(answers[0][f"probabilities_{d}"] for d in range(10)) == pytest.approx(1.0, rel=1e-5)
        assert "at http://127.0.0.1:" in log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)  # zoo serve stops the server's whole process group
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with pytest.raises(OSError):  # nothing is left listening
        urllib.request.urlopen(f"{url}/ping", timeout=5)
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("zoo-serve-")]


# ------------------------------------------------------------------------------ init_from
def test_init_from_a_registered_model_onto_data_with_other_classes(trained):
    """digits (64 pixels, 10 classes) -> wine (13 features, 3 classes): the hidden layer loads, the rest is new."""
    tuned = trained.run("data=wine", "init_from=models:/digits-mlp@champion", "model.freeze=[net.3]",
                        "trainer.max_epochs=3")
    run = trained.client.get_run(tuned["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["zoo.init_from"] == "models:/digits-mlp@champion"
    assert run.data.tags["zoo.init_loaded"] == "2 of 6"
    assert [m.model_id for m in run.inputs.model_inputs] == [trained.digits["registered"]["model_id"]]  # the lineage
    local = trained.client.download_artifacts(run.info.run_id, "init_from.json", str(trained.tmp / "init"))
    record = json.loads(Path(local).read_text())
    assert record["loaded"] == ["net.3.weight", "net.3.bias"]  # net.0 is the Flatten
    assert record["not_loaded"]["net.1.weight"] == "shape (256, 64) there, (256, 13) here"
    assert record["not_loaded"]["net.5.weight"] == "shape (10, 256) there, (3, 256) here"
    assert record["not_loaded"]["net.1.bias"] == "kept fresh with the rest of net.1"  # a layer loads whole
    source = zoo.load_model("models:/digits-mlp@champion", uri=trained.uri).net.state_dict()
    mine = zoo.load_model(run.info.run_id, uri=trained.uri).net.state_dict()
    assert torch.equal(mine["net.3.weight"], source["net.3.weight"])  # frozen: as it was loaded
    assert not torch.equal(mine["net.5.bias"][:3], source["net.5.bias"][:3])
    assert tuned["test/accuracy"] > 0.5  # it learnt wine (3 classes; chance is 0.4)


# ------------------------------------------------------------------------------ graph and text models
def test_a_graph_model_through_pyfunc(trained):
    from zoo_builtins import graph

    done = trained.run("model=gcn", "data=karate", "trainer.max_epochs=30")
    mlflow.set_tracking_uri(trained.uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{done['run_id']}/model")
    (batch, y), = graph.load_karate(seed=0).test.batches(None)
    graph_input = {"x": batch.x.numpy().astype(np.float64), "edge_index": batch.edge_index.numpy(),
                   "batch": np.zeros(len(batch.x), dtype=np.int64)}  # one graph: every node in graph 0
    answers = pyfunc.predict(graph_input)
    assert len(answers) == 34  # one label per node: the graph's members
    names = [f"community {c}" for c in range(4)]
    predicted = np.array([names.index(a) for a in answers])
    keep = (y != zoo.IGNORE_INDEX).numpy()
    assert float((predicted[keep] == y.numpy()[keep]).mean()) == pytest.approx(done["test/accuracy"], abs=1e-6)


def test_a_text_model_through_pyfunc(trained):
    done = trained.run("model=gpt", "data=text", "data.block_size=16", "data.stride=16", "data.max_chars=4000",
                       "model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.d_ff=32", "trainer.max_epochs=1")
    mlflow.set_tracking_uri(trained.uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{done['run_id']}/model")
    model = zoo.load_model(done["run_id"], uri=trained.uri)
    vocabulary = model.info.meta["itos"]
    from zoo_builtins import text

    prompt = text.read_corpus(None)[1][:16]  # characters the model knows
    nxt = pyfunc.predict(pd.DataFrame({"text": [prompt]}))  # the signature's column
    assert len(nxt) == 1 and nxt.iloc[0] in vocabulary  # the most likely next character
    both = pyfunc.predict(pd.DataFrame({"text": [prompt[:5]]}), params={"output": "all"})
    assert sum(both["probabilities"].iloc[0]) == pytest.approx(1.0, rel=1e-5)  # one list per prompt: the vocabulary's
    generated = pyfunc.predict(pd.DataFrame({"text": [prompt[:5]]}), params={"max_new_tokens": 12, "seed": 1})["generated"]
    assert len(generated.iloc[0]) == 12 and set(generated.iloc[0]) <= set(vocabulary)
    assert generated.iloc[0] == model.generate(prompt[:5], max_new_tokens=12, seed=1)


# ------------------------------------------------------------------------------ bad input
# (the zoo command, what its one line says); docs/bad-input.md lists them (tests/test_catalogue.py).
# <files> is a folder holding the files the test writes; <bare run> a run trained with tracking.log_model=false.
M = "models:/digits-mlp@champion"
BAD_MODEL_INPUT = [
    (["predict", "models:/digits-mpl@champion", "--input", "<files>/rows.csv"],
     "no registered model 'digits-mpl' in this store. Did you mean 'digits-mlp'?"),
    (["eval", "models:/digits-mlp@gold"], "model 'digits-mlp' has no alias 'gold': its aliases are champion"),
    (["serve", "models:/digits-mlp/7"], "model 'digits-mlp' has no version '7': its versions are 1"),
    (["predict", "ffffffff", "--input", "<files>/rows.csv"], "'ffffffff'"),
    (["eval", M, "data=iris"], "does not fit data=iris, whose inputs have the shape (4,)"),
    (["eval", M, "data=digits_image"], "does not fit data=digits_image (image, reconstruction)"),
    (["predict", M, "--input", "<files>/3x5.npy"], "model mlp takes inputs of shape (N, 64) (tabular data like digits), "
                                                  "got (3, 5)"),
    (["predict", M, "--input", "<files>/missing.csv"], "the input lacks the column(s) 'pixel_0_3'"),
    (["predict", M, "--input", "<files>/extra.csv"], "the input has column(s) 'colour' that model mlp was not trained on"),
    (["predict", M, "--input", "<files>/words.csv"], "column 'pixel_0_3' is not numeric (row 0: 'dark')"),
    (["predict", M, "--input", "<files>/nowhere.csv"], "nowhere.csv: no such file or folder"),
    (["predict", M, "--input", "<files>/broken.parquet"], "broken.parquet cannot be read as parquet"),
    (["register", "<bare run>", "--name", "bare"], "has no model: it was trained with tracking.log_model=false"),
    (["train", f"init_from={M}", "resume=<a run>"], "resume= continues an interrupted run, init_from= starts a new one"),
]


def test_bad_model_input_is_one_line_and_leaves_no_run(trained, capsys, monkeypatch):
    from zoo.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    files = trained.tmp / "files"
    files.mkdir()
    x, _ = _raw_split("digits")
    rows = x.head(3)
    rows.to_csv(files / "rows.csv", index=False)
    rows.drop(columns=["pixel_0_3"]).to_csv(files / "missing.csv", index=False)
    rows.assign(colour=1).to_csv(files / "extra.csv", index=False)
    rows.assign(pixel_0_3="dark").to_csv(files / "words.csv", index=False)
    np.save(files / "3x5.npy", np.zeros((3, 5)))
    (files / "broken.parquet").write_bytes(b"not a parquet file")
    bare = trained.run("trainer.max_epochs=1", "tracking.log_model=false")["run_id"]
    before = {r.info.run_id for r in runs_in(trained.uri)}
    out = files / "answers.csv"
    for args, message in BAD_MODEL_INPUT:
        args = [a.replace("<files>", str(files)).replace("<bare run>", bare).replace("<a run>", trained.digits["run_id"])
                for a in args]
        if args[0] == "predict":
            args += ["--output", str(out)]
        if args[0] == "train":  # a Hydra app: the real command, in its own process
            proc = run_zoo(*args, cwd=trained.tmp, env=trained.env)
            code, err = proc.returncode, proc.stderr.strip()
        else:
            with pytest.raises(SystemExit) as stop:
                main(args)
            code, err = stop.value.code, capsys.readouterr().err.strip()
        assert code == 2, (args, err)
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (args, err)
        assert message in err, (args, err)
    assert not out.exists()
    assert {r.info.run_id for r in runs_in(trained.uri)} == before  # no run left behind by any of them
