"""The plugin registry: built-ins, installed distributions, a plugin folder, broken plugins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

import zoo
from zoo.plugin.registry import load_registry

from .conftest import ROOT, run_zoo, runs_in, zoo_here

TINY_PLUGIN = '''
import torch
import zoo

class Tiny(torch.nn.Module):
    def __init__(self, d_in, d_out, hidden):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d_out))

    def forward(self, x):
        return self.net(x)

@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="{name}", family="third_party", kinds=("tabular",), defaults={{"hidden": 8}},
                             build=lambda info, hidden: Tiny(info.input_shape[-1], info.output_dim, hidden))]
'''


def write_plugin(folder, stem, name):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.py").write_text(TINY_PLUGIN.format(name=name))
    return folder


def write_distribution(site, dist="zoo-extra", version="1.2.3", module="zoo_extra_nets", name="extra_net"):
    """A real installed distribution: a module and its .dist-info with a zoo.plugins entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(TINY_PLUGIN.format(name=name))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\nextra = {module}\n")
    return site


def test_builtins_come_through_entry_points(registry):
    assert {"mlp", "perceptron"} <= set(registry.architectures)
    assert {"digits", "iris", "wine", "breast_cancer", "diabetes", "moons", "circles"} <= set(registry.datasets)
    mlp = registry.architecture("mlp")
    assert (mlp.plugin, mlp.source, mlp.decl.family) == ("ann", "built-in", "ann")
    assert "tabular" in mlp.decl.kinds
    assert not registry.failures


def test_lookup_suggests_closest_name(registry):
    with pytest.raises(zoo.ZooError, match=r"unknown model 'mpl'\. Did you mean 'mlp'\?.*Available: .*perceptron"):
        registry.architecture("mpl")


def test_plugin_folder(tmp_path):
    folder = write_plugin(tmp_path / "plugs", "mine", "folder_net")
    reg = load_registry([folder])
    entry = reg.architecture("folder_net")
    assert entry.source == str(folder / "mine.py")
    assert entry.decl.family == "third_party"


def test_installed_distribution_is_discovered(tmp_path, monkeypatch):
    site = write_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    reg = load_registry()
    entry = reg.architecture("extra_net")
    assert (entry.plugin, entry.source) == ("extra", "zoo-extra 1.2.3")


def test_distribution_listed_and_trained_from_the_command_line(tmp_path):
    site = write_distribution(tmp_path / "site")
    env = {"PYTHONPATH": str(site)}
    listed = run_zoo("list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.startswith("extra_net"))
    assert "third_party" in line and "zoo-extra 1.2.3" in line
    trained = run_zoo("train", "model=extra_net", "model.hidden=4", "trainer.max_epochs=1",
                      "tracking.system_metrics=false", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr
    assert "zoo: extra_net on digits" in trained.stdout


def test_folder_plugin_from_env_and_config_key(tmp_path):
    folder = write_plugin(tmp_path / "plugs", "mine", "folder_net")
    by_env = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert "folder_net" in by_env.stdout and str(folder / "mine.py") in by_env.stdout
    trained = run_zoo("train", f"plugins.dir={folder}", "model=folder_net", "trainer.max_epochs=1",
                      "tracking.system_metrics=false", "tracking.log_model=false", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "zoo: folder_net on digits" in trained.stdout


BROKEN = {
    "raises": "raise RuntimeError('boom at import')\n",
    "not_a_declaration": "import zoo\n@zoo.hookimpl\ndef zoo_architectures():\n    return ['mlp-ish']\n",
    "not_a_list": "import zoo\n@zoo.hookimpl\ndef zoo_datasets():\n    return 42\n",
    "misspelt_hook": "import zoo\n@zoo.hookimpl\ndef zoo_architecture():\n    return []\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_reported_and_the_rest_works(tmp_path, kind):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / f"{kind}.py").write_text(BROKEN[kind])
    reg = load_registry([folder])
    assert [f.plugin for f in reg.failures] == [kind]
    assert "mlp" in reg.architectures  # everything else keeps working
    with pytest.raises(zoo.ZooError, match=f"plugin '{kind}'"):
        load_registry([folder], strict=True)


def test_broken_plugin_on_the_command_line(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "raises.py").write_text(BROKEN["raises"])
    listed = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert listed.returncode == 0
    assert "warning: plugin 'raises'" in listed.stderr and "boom at import" in listed.stderr
    assert "FAILED PLUGIN" in listed.stdout and "boom at import" in listed.stdout
    strict = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder), "ZOO_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [strict.stderr.strip()]  # one line
    assert "plugin 'raises'" in strict.stderr and "Traceback" not in strict.stderr


def test_duplicate_name_names_both_plugins(tmp_path):
    folder = write_plugin(tmp_path / "plugs", "copycat", "mlp")
    with pytest.raises(zoo.ZooError, match=r"'mlp' is declared twice: by plugin 'ann' \(built-in\) and by plugin 'copycat'"):
        load_registry([folder])
    listed = zoo_here("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert listed.returncode == 2 and "declared twice" in listed.stderr and "Traceback" not in listed.stderr


def test_missing_plugin_folder(tmp_path):
    with pytest.raises(zoo.ZooError, match="plugins.dir=.*is not a directory"):
        load_registry([tmp_path / "nope"])


def test_hookspecs_are_documented():
    from zoo.plugin import hookspecs

    hooks = sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec"))
    assert hooks == ["zoo_architectures", "zoo_datasets", "zoo_tasks"]
    docs = (ROOT / "docs" / "plugin-contract.md").read_text() + (ROOT / "README.md").read_text()
    for name in ("zoo_architectures", "zoo_datasets", *hooks):
        doc = getattr(hookspecs, name).__doc__
        assert doc and "Return" in doc and "Example" in doc
        assert f"{name}()" in docs, f"{name} is missing from docs/plugin-contract.md and the README"


# ----------------------------------------------------------------------------- tasks

def hookspec_example(hook: str) -> str:
    """The example plugin in a hook's docstring, as source (the tests run what the docs show)."""
    from zoo.plugin import hookspecs

    return textwrap.dedent(getattr(hookspecs, hook).__doc__.split("Example::", 1)[1]).strip() + "\n"


def write_task_plugin(tmp_path, stem: str, task: str):
    """A plugin folder whose ``stem.py`` declares one task, ``task`` being a ``zoo.Task(...)`` call."""
    folder = tmp_path / "plugs"
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.py").write_text(f"import zoo\n\n\n@zoo.hookimpl\ndef zoo_tasks():\n    return [{task}]\n")
    return folder


# the zoo_tasks example of the hookspec, a dataset posing its task, and an architecture whose
# settings are its build's keyword defaults
TASK_PLUGIN = hookspec_example("zoo_tasks") + '''

def load_ramp(seed, n_samples=300, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + noise * torch.randn(n_samples, 1, generator=g)
    info = zoo.DataInfo(kind="tabular", task="median_regression", input_shape=(3,), output_dim=1)
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in zoo.split_indices(n_samples, seed)), info=info)


def build_lin(info, hidden=16, act="tanh", scale=(1.0, 1.0)):
    return torch.nn.Sequential(torch.nn.Linear(info.input_shape[-1], hidden), zoo.activation(act),
                               torch.nn.Linear(hidden, info.output_dim))


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(name="ramp", kind="tabular", task="median_regression", load=load_ramp)]


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="lin", family="third_party", kinds=("tabular",), build=build_lin)]
'''


def test_registry_finds_the_builtin_tasks(registry):
    assert set(registry.tasks) == {"classification", "regression", "next_token", "reconstruction", "anomaly"}
    assert {e.plugin for e in registry.tasks.values()} == {"tasks"}
    cls = registry.task("classification")
    assert (cls.monitor, cls.direction, cls.per_position) == ("accuracy", "maximize", False)
    assert registry.task("next_token").per_position and registry.task("anomaly").target_names == ("normal", "anomaly")
    with pytest.raises(zoo.ZooError, match=r"unknown task 'clasification'\. Did you mean 'classification'\?"):
        registry.task("clasification")


def test_a_plugin_task_trains_end_to_end(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "mine.py").write_text(TASK_PLUGIN)
    reg = load_registry([folder])
    assert reg.task("median_regression").direction == "minimize" and reg.tasks["median_regression"].plugin == "mine"
    # defaults from the signatures: build's after info, load's besides seed (a tuple becomes a list)
    assert dict(reg.architecture("lin").decl.defaults) == {"hidden": 16, "act": "tanh", "scale": [1.0, 1.0]}
    assert dict(reg.dataset("ramp").decl.defaults) == {"n_samples": 300, "noise": 0.1}
    env = {"ZOO_PLUGIN_DIR": str(folder)}
    for model in ("lin", "mlp"):  # its own architecture, and a built-in one, on the plugin's task
        trained = run_zoo("train", f"model={model}", "data=ramp", "data.n_samples=200", "trainer.max_epochs=3",
                          "tracking.system_metrics=false", "tracking.log_model=false",
                          *(["model.hidden=4"] if model == "lin" else []), cwd=tmp_path, env=env)
        assert trained.returncode == 0, trained.stderr[-2000:]
        assert f"zoo: {model} on ramp" in trained.stdout
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = {r.data.tags["zoo.model"]: r for r in runs_in(client.tracking_uri)}
    assert set(runs) == {"lin", "mlp"}
    for run in runs.values():
        assert run.info.status == "FINISHED" and run.data.tags["zoo.task"] == "median_regression"
        assert {"test/mae", "best/val_mae", "val/mae"} <= set(run.data.metrics)
        assert 0 <= run.data.metrics["best/val_mae"] <= run.data.metrics["val/mae"]
    assert runs["lin"].data.params["model.hidden"] == "4" and runs["lin"].data.params["model.act"] == "tanh"


def test_duplicate_task_names_both_plugins(tmp_path):
    folder = write_task_plugin(tmp_path, "copycat",
                               "zoo.Task('classification', lambda o, t, i: o.sum(), lambda info: {}, 'accuracy', 'max')")
    with pytest.raises(zoo.ZooError, match=r"task name 'classification' is declared twice: by plugin 'tasks' "
                                           r"\(built-in\) and by plugin 'copycat'"):
        load_registry([folder])


def test_a_malformed_task_is_reported_and_the_rest_works(tmp_path):
    folder = write_task_plugin(tmp_path, "upward", "zoo.Task('ranking', lambda o, t, i: o.sum(), lambda info: {}, 'ndcg', 'up')")
    reg = load_registry([folder])
    assert [(f.plugin, f.error) for f in reg.failures] == [
        ("upward", "zoo_tasks(): ranking: mode='up' must be 'max' or 'min'")]
    assert "ranking" not in reg.tasks and "classification" in reg.tasks and "mlp" in reg.architectures


# ------------------------------------------------------------------- defaults and the factory

def test_defaults_come_from_the_signature_unless_given():
    def build(info, hidden_sizes=(8, 4), act="relu", *, dropout=0.5, **extra):
        return info

    def load(seed, n=10, path=None):
        return seed

    assert zoo.Architecture("a", "f", ("tabular",), build).defaults == {"hidden_sizes": [8, 4], "act": "relu",
                                                                         "dropout": 0.5}
    assert zoo.Architecture("a", "f", ("tabular",), build, defaults={"act": "tanh"}).defaults == {"act": "tanh"}
    assert zoo.Architecture("a", "f", ("tabular",), build, defaults={}).defaults == {}
    assert zoo.Dataset("d", "tabular", "regression", load).defaults == {"n": 10, "path": None}
    assert zoo.Architecture("a", "f", ("tabular",), lambda info, hidden: None).defaults == {}


def test_builtin_defaults_are_declared_once_where_the_model_is_built(registry):
    # what `zoo train` used before the defaults moved into the signatures and class attributes
    assert dict(registry.architecture("mlp").decl.defaults) == {
        "hidden_sizes": [256, 256], "activation": "relu", "dropout": 0.0, "batch_norm": False}
    assert dict(registry.architecture("gcn").decl.defaults) == {
        "hidden_channels": 64, "num_layers": 2, "dropout": 0.0, "activation": "relu", "norm": "none", "jk": "none",
        "pool": "mean"}
    assert registry.architecture("gin").decl.defaults["num_layers"] == 3  # GIN's own, not GCN's 2
    assert dict(registry.architecture("rnn").decl.defaults) == {
        "hidden_size": 64, "num_layers": 1, "activation": "tanh", "dropout": 0.0, "bidirectional": False}
    assert dict(registry.architecture("lstm").decl.defaults) == {
        "hidden_size": 64, "num_layers": 1, "dropout": 0.0, "bidirectional": False}
    assert dict(registry.dataset("text").decl.defaults) == {"path": None, "block_size": 64, "stride": 32,
                                                            "max_chars": None}


def test_zoo_trains_registry_is_the_default_one_where_the_folders_are_the_same(tmp_path, monkeypatch):
    """``zoo train`` shares its registry with :func:`default_registry` (which rebuilds the logged model):
    the plugins are discovered once; a registry of other folders is not shared."""
    from zoo.plugin import registry as reg

    monkeypatch.delenv("ZOO_PLUGIN_DIR", raising=False)
    monkeypatch.setattr(reg, "_defaults", {})
    (tmp_path / "plugins").mkdir()
    other = reg.load_registry([str(tmp_path / "plugins")])
    reg.share_as_default(other, [str(tmp_path / "plugins")])
    assert reg._defaults == {}
    mine = reg.load_registry([])
    reg.share_as_default(mine, [])
    assert reg.default_registry() is mine
    monkeypatch.setenv("ZOO_PLUGIN_DIR", str(tmp_path / "plugins"))
    assert reg.default_registry() is not mine  # ZOO_PLUGIN_DIR's own registry
    reg.share_as_default(other, [str(tmp_path / "plugins")])
    assert reg.default_registry() is not other  # loaded already: the first one stays


def test_create_model_and_load_dataset(registry, tmp_path, monkeypatch):
    import torch

    from zoo.plugin.registry import default_registry

    assert default_registry() is default_registry()  # loaded once
    splits = zoo.load_dataset("moons", seed=1, n_samples=120)
    direct = registry.dataset("moons").decl.load(seed=1, n_samples=120, noise=0.2)
    assert torch.equal(splits.train.x, direct.train.x) and len(splits.train) + len(splits.val) + len(splits.test) == 120
    torch.manual_seed(0)
    model = zoo.create_model("mlp", splits.info, hidden_sizes=[8])
    assert model(splits.train.x[:5]).shape == (5, 2) and model.net[1].out_features == 8
    with pytest.raises(zoo.ZooError, match=r"model=mlp: model\.dropout=1\.5 is out of range"):
        zoo.create_model("mlp", splits.info, dropout=1.5)
    with pytest.raises(zoo.ZooError, match=r"unknown data 'mons'\. Did you mean 'moons'\?"):
        zoo.load_dataset("mons")
    assert zoo.get_task(splits.info.task).name == "classification"
    # a sequence model learns from the task whether to predict per position
    tokens = zoo.DataInfo(kind="sequence", task="next_token", input_shape=(6,), output_dim=7)
    assert zoo.per_position(tokens) and not zoo.per_position(zoo.DataInfo("sequence", "next_token", (6,), 7,
                                                                          {"per_token": False}))
    assert zoo.create_model("gru", tokens, hidden_size=4)(torch.randint(0, 7, (2, 6))).shape == (2, 6, 7)
    # ZOO_PLUGIN_DIR's plugins are in the default registry too
    monkeypatch.setenv("ZOO_PLUGIN_DIR", str(write_plugin(tmp_path / "plugs", "mine", "folder_net")))
    assert zoo.create_model("folder_net", splits.info, hidden=3)(splits.train.x[:4]).shape == (4, 2)


def test_create_model_gives_a_folder_task_to_sequence_models(tmp_path):
    """A plugins.dir task the default registry does not know still reaches the builder, through the factory."""
    import torch

    folder = write_task_plugin(tmp_path, "seq", "zoo.Task('denoise', lambda o, t, i: o.sum(), lambda info: {}, "
                                                "'mse', 'min', per_position=True)")
    reg = load_registry([folder])
    info = zoo.DataInfo(kind="sequence", task="denoise", input_shape=(5, 2), output_dim=2)
    assert reg.create_model("lstm", info, hidden_size=4)(torch.randn(3, 5, 2)).shape == (3, 5, 2)


def test_the_factory_example_in_the_docs_runs():
    doc = (ROOT / "docs" / "plugin-contract.md").read_text()
    code = doc.split("## Building a model outside a run", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if k != "ZOO_PLUGIN_DIR"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.fullmatch(r"classification maximize \(32, 2\) \d+\.\d+\n", r.stdout), r.stdout
