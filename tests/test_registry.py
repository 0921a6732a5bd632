"""The plugin registry: built-ins, installed distributions, a plugin folder, broken plugins."""

from __future__ import annotations

import textwrap

import pytest

import zoo
from zoo.registry import load_registry

from .conftest import run_zoo

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
    by_env = run_zoo("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
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
    listed = run_zoo("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert listed.returncode == 0
    assert "warning: plugin 'raises'" in listed.stderr and "boom at import" in listed.stderr
    assert "FAILED PLUGIN" in listed.stdout and "boom at import" in listed.stdout
    strict = run_zoo("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder), "ZOO_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [strict.stderr.strip()]  # one line
    assert "plugin 'raises'" in strict.stderr and "Traceback" not in strict.stderr


def test_duplicate_name_names_both_plugins(tmp_path):
    folder = write_plugin(tmp_path / "plugs", "copycat", "mlp")
    with pytest.raises(zoo.ZooError, match=r"'mlp' is declared twice: by plugin 'ann' \(built-in\) and by plugin 'copycat'"):
        load_registry([folder])
    listed = run_zoo("list", cwd=tmp_path, env={"ZOO_PLUGIN_DIR": str(folder)})
    assert listed.returncode == 2 and "declared twice" in listed.stderr and "Traceback" not in listed.stderr


def test_missing_plugin_folder(tmp_path):
    with pytest.raises(zoo.ZooError, match="plugins.dir=.*is not a directory"):
        load_registry([tmp_path / "nope"])


def test_hookspecs_are_documented():
    from zoo import hookspecs

    for name in ("zoo_architectures", "zoo_datasets"):
        doc = getattr(hookspecs, name).__doc__
        assert doc and "Return" in doc and "Example" in doc
