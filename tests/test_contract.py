"""The plugin contract kit (``zoo.testing``): the built-ins pass it, broken plugins fail it clearly.

The first half of this file is the kit itself: its ``test_*`` functions are imported here and the
kit parametrizes them over every registered architecture, so every built-in family (and any new
one) is checked in CI without new test code. ``zoo_contract_plugin_dirs = []`` keeps a user's
``ZOO_PLUGIN_DIR`` out of it: only entry-point plugins (the built-ins) are checked.

The second half runs the kit the way a plugin author does, in a fresh pytest process from another
directory: over the deliberately broken plugins in ``tests/plugins_broken/`` (each fails exactly
the check it breaks, with a message naming plugin, check and numbers), and over a third-party
plugin installed through an entry point.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.config import override_value
from zoo.testing import (  # noqa: F401  (collected here; the kit parametrizes them)
    test_builds_from_defaults,
    test_dataset_loads,
    test_dataset_targets,
    test_deterministic,
    test_gradients,
    test_hydra_round_trip,
    test_output_shape,
    test_overfit_one_batch,
    test_plugin_loads,
    test_report,
    test_state_dict_round_trip,
)

zoo_contract_plugin_dirs: list[str] = []  # the built-ins (entry points) only

BROKEN = Path(__file__).resolve().parent / "plugins_broken"


def run_pytest(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ZOO_PLUGIN_DIR"}
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=600)


def messages(output: str) -> dict[tuple[str, str], str]:
    """{(plugin:arch, check): message} for every one-line contract failure in pytest's output."""
    found = {}
    for m in re.finditer(r"^contract\[([^\]]+)\] ([a-z_ ]+): (.*)$", output, re.M):
        found[(m.group(1), m.group(2))] = m.group(3)
    return found


# ------------------------------------------------------------------------ broken plugins

# (plugin:arch, check) -> a pattern its one-line message must match; nothing else may fail.
EXPECTED = {
    ("broken:no_grad_net", "gradients"):
        r"^parameter head\.weight got no gradient \(grad is None\) from one backward pass on data=csv$",
    ("broken:wrong_shape_net", "output shape"):
        r"^expected \(16, 3\), got \(16, 2\) for data=csv \(classification: target \(16,\) \+ 3 classes\)$",
    ("broken:wrong_shape_net", "builds"): r"^with its defaults: expected \(16, 3\), got \(16, 2\)",
    # the loss cannot even be computed on a wrong shape: these say so, with the shapes
    ("broken:wrong_shape_net", "gradients"): r"loss on its output \(16, 2\) \(target \(16,\)\) raised IndexError",
    ("broken:wrong_shape_net", "overfit"): r"loss on its output \(16, 2\) \(target \(16,\)\) raised IndexError",
    ("broken:wrong_shape_net", "state_dict"): r"loss on its output \(16, 2\) \(target \(16,\)\) raised IndexError",
    ("broken:cant_learn_net", "overfit"):
        r"^loss 1\.099 -> 0\.\d+ \(best 0\.\d+\) after 300 Adam steps \(lr 0\.01\) on one batch of 16 examples "
        r"of data=csv: a \d+\.\d% drop, need >= 90% \(loss <= 0\.1099\)$",
    ("broken:leaky_buffer_net", "state_dict"):
        r"^a fresh build \(seed 1\) loaded with the trained model's state_dict gives different outputs on "
        r"data=csv: max \|a-b\| = [\d.e-]+ \(\d+ of 48 entries differ\)",
    ("broken:unseeded_net", "determinism"):
        r"^two builds with seed 0 differ on the CPU: body\.weight: max \|a-b\| = [\d.e-]+ \(\d+ of \d+ entries differ\)",
    ("broken:class_default_net", "hydra"):
        r"^model\.activation=<class 'torch\.nn\.modules\.activation\.ReLU'> \(type\) cannot be a Hydra config value",
    ("broken:bad_defaults_net", "builds"):
        r"^build\(info of data=csv, hidden=0\) with its defaults raised ValueError: model\.hidden=0 is out of range",
    ("broken_import", "loads"):
        r"^import failed: ModuleNotFoundError: No module named 'zoo_nonexistent_dependency' \(from .*broken_import\.py\)$",
    ("broken:missing_csv", "loads"):
        r"^load\(seed=0\) raised ValueError: data\.path is required: point it at a CSV file \(at broken\.py:\d+\)$",
    ("no_such_plugin", "loads"): r"^no plugin named 'no_such_plugin' is registered; registered plugins: .*broken",
}


def test_broken_plugins_fail_naming_plugin_check_and_numbers(tmp_path):
    r = run_pytest("--pyargs", "zoo.testing", "--zoo-plugin", "broken", "--zoo-plugin", "broken_import",
                   "--zoo-plugin", "no_such_plugin", "-q", "-rfE", cwd=tmp_path,
                   env={"ZOO_PLUGIN_DIR": str(BROKEN)})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    got = messages(out)
    assert set(got) == set(EXPECTED), f"unexpected failures: {sorted(set(got) ^ set(EXPECTED))}\n{out[-3000:]}"
    for key, pattern in EXPECTED.items():
        assert re.search(pattern, got[key]), f"{key}: {got[key]!r} does not match {pattern!r}"
    # every other check of every broken architecture passed: each bug is caught by its own check
    summary = re.search(r"(\d+) failed, (\d+) passed", out)
    assert summary and int(summary.group(1)) == len(EXPECTED) and int(summary.group(2)) >= 35, out[-500:]
    # one line each, no traceback; only the selected plugins were checked
    assert "Traceback" not in out and "During handling" not in out
    assert "ann:mlp" not in out and "[gnn:" not in out


# -------------------------------------------------------------- a third-party plugin

GOOD_PLUGIN = '''
import torch
import zoo


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(
        name="tiny", family="ann", kinds=("tabular", "audio"), defaults={"hidden": 16, "act": "tanh"},
        smoke={"hidden": 8},
        build=lambda info, hidden, act: torch.nn.Sequential(
            torch.nn.Linear(info.input_shape[-1], hidden), zoo.activation(act),
            torch.nn.Linear(hidden, info.output_dim)),
    )]
'''


def test_installed_plugin_passes_beside_its_own_tests(tmp_path):
    """A plugin installed through an entry point, checked with `-p zoo.testing --zoo-contract`."""
    site = tmp_path / "site"
    (site / "good_nets-0.1.dist-info").mkdir(parents=True)
    (site / "good_nets.py").write_text(GOOD_PLUGIN)
    (site / "good_nets-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: good-nets\nVersion: 0.1\n")
    (site / "good_nets-0.1.dist-info" / "entry_points.txt").write_text("[zoo.plugins]\ngood_nets = good_nets\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "test_own.py").write_text("def test_own():\n    assert 1 + 1 == 2\n")
    r = run_pytest("-p", "zoo.testing", "--zoo-contract", "--zoo-plugin", "good_nets", "-v", "-rs", cwd=repo,
                   env={"PYTHONPATH": str(site), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "test_own.py::test_own PASSED" in out
    for check in ("builds_from_defaults", "output_shape", "gradients", "overfit_one_batch",
                  "state_dict_round_trip", "deterministic"):
        assert f"test_{check}[good_nets:tiny-tabular] PASSED" in out, out[-3000:]
    assert "test_hydra_round_trip[good_nets:tiny] PASSED" in out and "test_plugin_loads[good_nets] PASSED" in out
    # a kind no registered dataset has is skipped, saying so, not passed
    assert "test_gradients[good_nets:tiny-audio] SKIPPED" in out
    assert "contract[good_nets:tiny]: no registered dataset of kind 'audio'; kind 'audio' is not checked" in out


def test_importing_the_kit_is_cheap_and_adds_no_tests(tmp_path):
    """pytest imports zoo.testing in every run: no torch, MLflow or registry, and no tests of its own."""
    (tmp_path / "test_other.py").write_text(
        "import sys\n\n"
        "def test_other():\n"
        "    assert 'zoo.testing' in sys.modules\n"
        "    heavy = [m for m in ('torch', 'mlflow', 'zoo.plugin.registry') if m in sys.modules]\n"
        "    assert heavy == [], heavy\n")
    r = run_pytest("-q", cwd=tmp_path)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


# ---------------------------------------------------------------- override strings

@pytest.mark.parametrize("value", [
    "relu", "a b", "true", "null", "1e3", "it's", "C:\\temp", "C:\\", "a\\'b", "x=y", "",
    0, -3, 0.1, 1e-05, 2.0, True, False, None,
    [256, 256], [], ["a", "b c"], [[1, 2], [3]], {"a": 1, "b": [True, None]},
])
def test_override_value_parses_back_to_the_same_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([f"model.k={override_value(value)}"])
    parsed = override.value()
    assert parsed == value and type(parsed) is type(value), (override_value(value), parsed)


# ------------------------------------------------------------------- a plugin's own task

PAIRS_PLUGIN = '''
import torch
import torchmetrics
import zoo


@zoo.hookimpl
def zoo_tasks():
    return [zoo.Task(
        name="pairs", loss=lambda output, target, inputs: ((output - target) ** 2).mean(),
        metrics=lambda info: {"mse": torchmetrics.MeanSquaredError()}, monitor="mse", mode="min",
        prepare=lambda output, target, inputs: (output.reshape(-1), target.reshape(-1)),
        output_shape=lambda info, inputs, target: ([target], "one value per target column"))]


def load_pairs(seed, n_samples=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, 4, generator=g)
    y = torch.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]], 1)
    info = zoo.DataInfo(kind="pairs_table", task="pairs", input_shape=(4,), output_dim=2)
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in zoo.split_indices(n_samples, seed)), info=info)


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(name="pairs_data", kind="pairs_table", task="pairs", load=load_pairs)]


@zoo.hookimpl
def zoo_architectures():
    return [
        zoo.Architecture(name="pairs_ok", family="t", kinds=("pairs_table",),
                         build=lambda info, hidden=8: torch.nn.Sequential(
                             torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, info.output_dim))),
        zoo.Architecture(name="pairs_short", family="t", kinds=("pairs_table",),
                         build=lambda info: torch.nn.Linear(4, 1)),
    ]
'''


def test_a_plugin_task_decides_the_expected_output_shape(tmp_path):
    from zoo.testing.kit import ContractFailure, Kit

    (tmp_path / "pairs.py").write_text(PAIRS_PLUGIN)
    kit = Kit((str(tmp_path),), ("pairs",))
    cases = {p.name: p for p in kit.params("zoo_case")}
    assert set(cases) == {"pairs_ok", "pairs_short"}
    for check in ("builds", "output shape", "gradients", "overfit", "state_dict", "determinism"):
        kit.run(cases["pairs_ok"], check)
    kit.run(next(p for p in kit.params("zoo_dataset")), "loads")
    with pytest.raises(ContractFailure, match=r"^contract\[pairs:pairs_short\] output shape: expected \(16, 2\), "
                                              r"got \(16, 1\) for data=pairs_data \(pairs: one value per target column\)$"):
        kit.run(cases["pairs_short"], "output shape")
