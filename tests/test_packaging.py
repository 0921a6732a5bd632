"""A normal (non-editable) install works: the wheel carries the configs and the built-in plugins
under names that cannot collide, and it trains from an unrelated folder in a fresh virtual
environment, its metric writer process started from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                        "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("zoo-*.whl")
    return whl


def test_wheel_ships_configs_and_builtins_under_their_own_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("zoo/config/conf/") for n in names if n.startswith("zoo/config/conf/") and n.endswith(".yaml")}
    in_repo = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == in_repo and "config.yaml" in shipped
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"zoo", "zoo_builtins", "hydra_plugins"}  # no top-level `plugins` or `conf`
    assert "zoo_builtins/data/corpus.txt" in names and "hydra_plugins/zoo_sweepers/sweeper.py" in names
    assert "zoo/testing/test_checks.py" in names and "zoo_builtins/tasks.py" in names  # the kit, the tasks
    assert not any(n.startswith("hydra_plugins/__init__") for n in names)  # Hydra's namespace stays open
    # every Python file of the source tree is in the wheel (pyproject.toml lists the packages by hand)
    sources = {f"zoo/{p.relative_to(ROOT / 'zoo').as_posix()}" for p in (ROOT / "zoo").rglob("*.py")}
    sources |= {f"zoo_builtins/{p.relative_to(ROOT / 'plugins').as_posix()}" for p in (ROOT / "plugins").rglob("*.py")}
    sources |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "hydra_plugins").rglob("*.py")}
    assert sources - set(names) == set()
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "ann = zoo_builtins.ann" in entry_points and "plugins." not in entry_points


def test_installed_wheel_trains_from_an_unrelated_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # Zoo's dependencies come from the test environment (installing torch again would take minutes);
    # a directory named in a .pth file is on sys.path, but its own .pth files (the editable
    # install's finder) are not run, so `zoo` can only come from the wheel.
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-compile",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["ZOO_METRIC_WRITER"] = "process"
    where = subprocess.run([str(py), "-c", "import zoo, zoo_builtins; print(zoo.__file__, zoo_builtins.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert where.stdout.split() == [str(site / "zoo" / "__init__.py"), str(site / "zoo_builtins" / "__init__.py")]
    zoo = str(env_dir / "bin" / "zoo")
    listed = subprocess.run([zoo, "list"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and "mlp" in listed.stdout and "built-in" in listed.stdout, listed.stderr
    assert "FAILED PLUGIN" not in listed.stdout
    r = subprocess.run([zoo, "train", "trainer.max_epochs=1", "trainer.device=cpu", "tracking.system_metrics=false"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("zoo: mlp on digits | ")
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags["zoo.metric_writer"] == "process"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) > 10
