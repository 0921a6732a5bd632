"""The seams of tracking and experiments: MLflow behind ``zoo/tracking`` only, tag names spelled once,
one Hydra-quoting function, and the public routes taken through Hydra and Optuna.

The scans read the source with ``ast``; the round trips go through Hydra's real parser; the
sweeper checks compose the real config.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus

from zoo.config import CONF_DIR, override_value
from zoo.experiments.objective import direction_of, monitored
from zoo.tracking import NullTracker, Tracker, tags

ROOT = Path(__file__).resolve().parent.parent


def _modules(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_tracking_package_imports_mlflow():
    """Anywhere in the file (inside functions too): zoo/ and hydra_plugins/ reach MLflow through zoo.tracking."""
    offenders = [str(path.relative_to(ROOT)) for path, tree in _modules("zoo", "hydra_plugins")
                 if "mlflow" in _imported(tree) and (ROOT / "zoo" / "tracking") not in path.parents]
    assert offenders == []
    # the scan does see an import of mlflow where there is one
    assert "mlflow" in _imported(ast.parse((ROOT / "zoo" / "tracking" / "runs.py").read_text()))


def test_zoo_core_never_imports_optuna():
    """Optuna is the sweeper's: a search trial's training reports through the reporter the sweep provides
    (hydra_plugins/zoo_sweepers/reporter.py), so nothing in zoo/ imports it, not even inside a function."""
    offenders = [str(path.relative_to(ROOT)) for path, tree in _modules("zoo") if "optuna" in _imported(tree)]
    assert offenders == []
    assert "optuna" in _imported(ast.parse((ROOT / "hydra_plugins" / "zoo_sweepers" / "reporter.py").read_text()))


def test_a_trial_reporter_reports_to_its_optuna_trial(tmp_path, monkeypatch):
    """The sweep's reporter, as a trial's job gets it from ZOO_OPTUNA_TRIAL: ``report(epoch, value) -> should_stop``
    against a real study (the best value so far when asked to), and None outside a pruned search's trial."""
    import json

    import optuna

    from hydra_plugins.zoo_sweepers.reporter import ENV, from_env

    monkeypatch.delenv(ENV, raising=False)
    assert from_env() is None
    monkeypatch.setenv(ENV, "not json")
    assert from_env() is None
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    monkeypatch.setenv(ENV, json.dumps({"storage": storage, "study": "s", "trial": trial.number, "pruner": "median",
                                        "pruner_settings": {}, "key": "val/accuracy", "best": True,
                                        "direction": "maximize"}))
    report = from_env()
    assert report.key == "val/accuracy"
    assert [report(1, 0.5), report(2, 0.25), report(3, 0.75)] == [False, False, False]  # no other trial to compare
    assert optuna.load_study(study_name="s", storage=storage).trials[0].intermediate_values == {1: 0.5, 2: 0.5, 3: 0.75}


def test_tag_names_are_spelled_once():
    """In tracking, experiments and the sweepers, a tag's name is a constant of zoo.tracking.tags, never a literal."""
    names = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)}
    assert "mlflow.parentRunId" in names and "zoo.sweep" in names and "zoo.optuna_study" in names
    found = []
    for path, tree in _modules("zoo/tracking", "zoo/experiments", "hydra_plugins"):
        if path.name == "tags.py":
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.value}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names]
    assert found == []


def test_importing_tracking_loads_no_mlflow():
    code = "import sys, zoo.tracking, zoo.tracking.runs, zoo.tracking.parents; print(sorted(m for m in sys.modules if m.startswith('mlflow')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_null_tracker_has_every_method_of_the_tracker():
    public = {n for n in dir(Tracker) if not n.startswith("_")}
    assert public <= set(dir(NullTracker))
    for name in public:
        real = getattr(Tracker, name)
        if callable(real):
            null = inspect.signature(getattr(NullTracker, name)).parameters
            assert null == inspect.signature(real).parameters, name
    null = NullTracker()
    assert null.row_cost == 2e-4 and null.run_id is None
    with null.run(run_name="x", params={}, tags={}) as t:  # nothing happens, nothing is stored
        t.metrics({"a": 1.0}, step=1)
        t.tags({"b": 2})
    assert "__getattr__" not in vars(NullTracker)


@pytest.mark.parametrize("value", [
    0.1, 1e-05, 3e-300, 1.0, -2.5, 12345678901234.5, float("inf"), 7, -3, True, False, None,
    [64], [128, 64], [0.001, [1, 2]], {"a": 1, "b": [2.5]},
    "relu", "a b", "cuda:1", "x,y", "it's", "back\\slash", "trailing\\", "1e-3", "true", "null", "", "[64]", "=",
])
def test_override_value_round_trips_through_hydras_parser(value):
    parsed = OverridesParser.create().parse_override(f"key={override_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_failure_of_reads_a_failed_jobs_exception_quietly(capsys):
    """Hydra's public JobReturn.return_value re-raises a failed job's error and writes a line to stderr:
    the sweepers get the exception itself, and nothing on the terminal."""
    from hydra_plugins.zoo_sweepers._common import failure_of

    error = ValueError("the job's own error")
    failed = JobReturn(status=JobStatus.FAILED)
    failed.return_value = error
    assert failure_of(failed) is error
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.5
    assert failure_of(done) is None
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError):  # what the public property does, and why failure_of quiets it
        failed.return_value


def test_search_space_choices_are_plain_values():
    from optuna.distributions import CategoricalDistribution

    from hydra_plugins.zoo_sweepers.search_space import search_space

    dists, _, raw = search_space({"a": "'x y',z", "b": r"choice('it\'s', 1, 2.5, true)", "c": "choice(['p q', r])"}, [])
    assert dists["a"] == CategoricalDistribution(["x y", "z"])
    assert dists["b"] == CategoricalDistribution(["it's", 1, 2.5, True])
    assert dists["c"] == CategoricalDistribution(["['p q',r]"]) and raw == {"c"}


def test_zoos_sweeper_opens_the_parent_run_itself_and_hydras_does_not(registry):
    from zoo.experiments.sweep import sweeper_opens_the_run

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        zoo_cfg = compose("config", overrides=["model=mlp"], return_hydra_config=True)
        basic = compose("config", overrides=["hydra/sweeper=basic"], return_hydra_config=True)
    assert sweeper_opens_the_run(zoo_cfg) is True
    assert sweeper_opens_the_run(basic) is False


def test_direction_comes_from_the_runs_tags_then_the_task():
    tagged = {tags.MONITOR: "best/val_accuracy", tags.DIRECTION: "minimize", tags.TASK: "classification"}
    assert monitored(tagged) == ("best/val_accuracy", "minimize")  # the run's own word wins
    assert monitored({tags.TASK: "regression"}) == ("best/val_mse", "minimize")  # older runs: the task's
    assert monitored({tags.TASK: "no such task"}) is None
    assert direction_of("test/accuracy", [{tags.TASK: "classification"}]) == "maximize"
    assert direction_of("val/accuracy", [tagged]) == "minimize"
    assert direction_of("test/loss", [{tags.TASK: "classification"}]) is None  # not the monitored measure
    assert direction_of("test/perplexity", [{}, {tags.TASK: "next_token"}]) == "minimize"
