"""A third-party plugin author's Zoo: folder plugins in every launcher, ZOO_TRACE_PLUGINS, a misspelt
hook, `zoo list` (descriptions, --help, unknown arguments), a report that fails after training, and the
image classification dataset.

Real processes, a real pluggy manager per registry, real MLflow stores read back through MlflowClient
(`zoo list` runs through ``zoo.cli.main`` in this process: its output is what the tests read).
"""

from __future__ import annotations

import mlflow
import pytest

import zoo
from zoo.plugin.registry import load_registry

from .conftest import run_zoo, runs_in, zoo_here

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
    r = zoo_here("list", cwd=tmp_path, env={"ZOO_TRACE_PLUGINS": "1", "ZOO_PLUGIN_DIR": str(plugin_folder)})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for hook in ("zoo_tasks", "zoo_architectures", "zoo_datasets"):
        assert any(line.startswith(f"zoo plugins: calling {hook}() of ") for line in lines), r.stderr
    assert "zoo plugins: zoo_architectures() of folder_nets returned folder_net, bad_report_net" in lines
    assert "zoo plugins: zoo_architectures() of ann returned perceptron, mlp" in lines
    quiet = zoo_here("list", cwd=tmp_path)
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
    r = zoo_here("list", f"plugins.dir={plugin_folder}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("DATASET"))
    assert header.split() == ["DATASET", "KIND", "TASK", "PLUGIN", "SOURCE", "DESCRIPTION"]
    iris = next(line for line in r.stdout.splitlines() if line.startswith("iris "))
    assert iris.endswith("iris flowers, 4 features, 3 classes (150)")
    assert "a folder plugin's net" in r.stdout
    for flag in ("--help", "-h"):
        shown = zoo_here("list", flag, cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith("usage: zoo list [plugins.dir=PATH]")
        assert "ARCHITECTURE" not in shown.stdout
    for bad, message in ((["--bogus"], "zoo list: unknown argument '--bogus'; usage: zoo list [plugins.dir=PATH]"),
                         (["--plugin-dir", "x"], "zoo list: unknown argument '--plugin-dir' (write plugins.dir=PATH)")):
        refused = zoo_here("list", *bad, cwd=tmp_path)
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


KIT_CASES = '''
import torch
import zoo


def _splits(y, output_dim):
    x = torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    info = zoo.DataInfo(kind="tabular", task="classification", input_shape=(4,), output_dim=output_dim)
    return zoo.Splits(zoo.TensorSplit(x[:24], y[:24]), zoo.TensorSplit(x[24:32], y[24:32]),
                      zoo.TensorSplit(x[32:], y[32:]), info=info)


def build(info, hidden=8):
    return torch.nn.Sequential(torch.nn.Linear(info.input_shape[-1], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, info.output_dim))


def bad_report(model, splits, out_dir):
    raise KeyError("no such panel")


def good_report(model, splits, out_dir):
    path = out_dir / "weights.txt"
    path.write_text(str(sum(p.numel() for p in model.parameters())))
    return [path]


def classified_report(model, splits, out_dir):
    if splits.info.task != "classification":  # an image classifier must be checked on labelled images
        raise ValueError(f"checked on {splits.info.task} data")
    return []


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(name="float_labels", kind="tabular", task="classification",
                        load=lambda seed: _splits(torch.arange(40) % 2 * 1.0, 2)),
            zoo.Dataset(name="short_output", kind="tabular", task="classification",
                        load=lambda seed: _splits(torch.arange(40) % 5, 3))]


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="bad_report_net", family="ann", kinds=("tabular",), tasks=("regression",),
                             build=build, report=bad_report),
            zoo.Architecture(name="good_report_net", family="ann", kinds=("tabular",), tasks=("regression",),
                             build=build, report=good_report),
            zoo.Architecture(name="image_classifier", family="ann", kinds=("image",), tasks=("classification",),
                             build=lambda info: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, info.output_dim)),
                             report=classified_report)]
'''


def test_the_kit_checks_targets_and_reports_and_suggests_plugin_names(tmp_path):
    """Float labels and labels past output_dim fail the kit (not training later); a report that raises
    fails it (not every finished run); a misspelt --zoo-plugin gets "did you mean"."""
    from .test_contract import messages, run_pytest

    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "kit_cases.py").write_text(KIT_CASES)
    r = run_pytest("--pyargs", "zoo.testing", f"--zoo-plugin-dir={folder}", "--zoo-plugin", "kit_cases",
                   "--zoo-plugin", "kit_case", "-v", "-rfE", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    got = messages(out)
    assert set(got) == {("kit_cases:float_labels", "targets"), ("kit_cases:short_output", "targets"),
                        ("kit_cases:bad_report_net", "report"), ("kit_case", "loads")}, out[-3000:]
    assert got[("kit_cases:float_labels", "targets")] == (
        "train split: targets are torch.float32: class indices must be integers (torch.long) "
        "(task classification, output_dim=2)")
    assert got[("kit_cases:short_output", "targets")] == (
        "train split: 9 labels are outside 0..2 (e.g. 3), but the data declares output_dim=3 classes "
        "(-100 marks a target to skip) (task classification, output_dim=3)")
    assert "raised KeyError" in got[("kit_cases:bad_report_net", "report")]
    assert got[("kit_case", "loads")].startswith("no plugin named 'kit_case' is registered; did you mean 'kit_cases'?")
    assert "test_report[kit_cases:good_report_net-tabular] PASSED" in out
    # an image classifier is checked on digits_image_labels (its report refuses any other task)
    for check in ("report", "overfit_one_batch", "output_shape"):
        assert f"test_{check}[kit_cases:image_classifier-image] PASSED" in out, out[-3000:]
    assert "Traceback" not in out
