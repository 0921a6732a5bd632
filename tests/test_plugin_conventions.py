"""A third-party plugin author's Zoo: folder plugins in every launcher, ZOO_TRACE_PLUGINS, a misspelt
hook, `zoo list` (descriptions, --help, unknown arguments), a report that fails after training, and the
image classification dataset.

Real processes, a real pluggy manager per registry, real MLflow stores read back through MlflowClient.
"""

from __future__ import annotations

import mlflow
import pytest

import zoo
from zoo.plugin.registry import load_registry

from .conftest import run_zoo, runs_in

QUICK = ["trainer.max_epochs=1", "tracking.system_metrics=false", "tracking.log_model=false", "trainer.device=cpu"]

FOLDER_NET = '''
import torch
import zoo


def build(info, hidden=8):
    return torch.nn.Sequential(torch.nn.Linear(info.input_shape[-1], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, info.output_dim))


def report(model, splits, out_dir):
    raise KeyError("oops in report")


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="folder_net", family="ann", kinds=("tabular",), build=build,
                             description="a folder plugin's net"),
            zoo.Architecture(name="bad_report_net", family="ann", kinds=("tabular",), build=build, report=report)]
'''


@pytest.fixture
def plugin_folder(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "folder_nets.py").write_text(FOLDER_NET)
    return folder


def test_folder_plugins_work_in_the_parallel_launcher(tmp_path, plugin_folder):
    """Each worker process of hydra/launcher=parallel loads the folder's plugins itself."""
    r = run_zoo("train", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "model=folder_net", "data=iris",
                "seed=0,1", *QUICK, cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(plugin_folder)})
    assert r.returncode == 0, r.stderr[-3000:]
    runs = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    children = [x for x in runs if x.data.tags.get("zoo.model") == "folder_net"]
    assert len(children) == 2 and all(x.info.status == "FINISHED" for x in runs), [x.info.status for x in runs]
    assert {x.data.tags["zoo.plugin_source"] for x in children} == {str(plugin_folder / "folder_nets.py")}


def test_trace_plugins_prints_every_hook_call(tmp_path, plugin_folder):
    r = run_zoo("list", cwd=tmp_path, env={"ZOO_TRACE_PLUGINS": "1", "ZOO_PLUGIN_DIR": str(plugin_folder)})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for hook in ("zoo_tasks", "zoo_architectures", "zoo_datasets"):
        assert any(line.startswith(f"zoo plugins: calling {hook}() of ") for line in lines), r.stderr
    assert "zoo plugins: zoo_architectures() of folder_nets returned folder_net, bad_report_net" in lines
    assert "zoo plugins: zoo_architectures() of ann returned perceptron, mlp" in lines
    quiet = run_zoo("list", cwd=tmp_path)
    assert "zoo plugins:" not in quiet.stderr


def test_a_misspelt_hook_gets_did_you_mean(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "typo.py").write_text("import zoo\n\n@zoo.hookimpl\ndef zoo_architecture():\n    return []\n")
    (failure,) = load_registry([folder]).failures
    assert failure.plugin == "typo"
    assert failure.error == ("unknown hook 'zoo_architecture'; did you mean 'zoo_architectures'? "
                             "(hooks: zoo_architectures, zoo_datasets, zoo_tasks)")


def test_zoo_list_shows_descriptions_and_its_usage(tmp_path, plugin_folder):
    r = run_zoo("list", f"plugins.dir={plugin_folder}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("DATASET"))
    assert header.split() == ["DATASET", "KIND", "TASK", "PLUGIN", "SOURCE", "DESCRIPTION"]
    iris = next(line for line in r.stdout.splitlines() if line.startswith("iris "))
    assert iris.endswith("iris flowers, 4 features, 3 classes (150)")
    assert "a folder plugin's net" in r.stdout
    for flag in ("--help", "-h"):
        shown = run_zoo("list", flag, cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith("usage: zoo list [plugins.dir=PATH]")
        assert "ARCHITECTURE" not in shown.stdout
    for bad, message in ((["--bogus"], "zoo list: unknown argument '--bogus'; usage: zoo list [plugins.dir=PATH]"),
                         (["--plugin-dir", "x"], "zoo list: unknown argument '--plugin-dir' (write plugins.dir=PATH)")):
        refused = run_zoo("list", *bad, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout
        assert refused.stderr.strip().splitlines() == [f"error: {refused.stderr.strip()[7:]}"]
        assert message in refused.stderr


def test_a_failing_report_does_not_fail_a_run_that_trained(tmp_path, plugin_folder):
    r = run_zoo("train", "model=bad_report_net", "data=iris", *QUICK, cwd=tmp_path,
                env={"ZOO_PLUGIN_DIR": str(plugin_folder)})
    assert r.returncode == 0, r.stderr
    assert "model=bad_report_net: its report failed (KeyError: 'oops in report')" in r.stdout + r.stderr
    (run,) = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "FINISHED" and "test/accuracy" in run.data.metrics
    assert run.data.tags["zoo.report_error"] == "KeyError: 'oops in report'"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert "error/report_traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id, "error")}
    assert "zoo.error" not in run.data.tags


def test_digits_as_images_with_labels(registry):
    splits = zoo.load_dataset("digits_image_labels", seed=0)
    info = splits.info
    assert (info.kind, info.task, info.input_shape, info.output_dim) == ("image", "classification", (1, 8, 8), 10)
    inputs, y = next(iter(splits.train.batches(len(splits.train), shuffle=False)))
    assert inputs.shape[1:] == (1, 8, 8) and 0 <= float(inputs.min()) and float(inputs.max()) <= 1
    assert not y.dtype.is_floating_point and sorted(y.unique().tolist()) == list(range(10))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1257, 270, 270)
    # the same examples as the reconstruction set, now with their labels
    recon = zoo.load_dataset("digits_image", seed=0)
    assert (next(iter(recon.train.batches(8, shuffle=False)))[0] == inputs[:8]).all()
