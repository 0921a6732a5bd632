"""Registry-driven: every registered architecture, on every dataset it accepts.

A new plugin is covered here without new test code: it composes as ``model=<name>`` from its
defaults, and trains one short epoch (with its ``smoke`` settings) into a real MLflow store.
"""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from zoo.config import override_value
from zoo.plugin.registry import load_registry
from zoo.training.train import train

REGISTRY = load_registry()
PAIRS = sorted((a, d) for a, ae in REGISTRY.architectures.items() for d, de in REGISTRY.datasets.items()
               if de.decl.kind in ae.decl.kinds and (ae.decl.tasks is None or de.decl.task in ae.decl.tasks))


def smoke_overrides(model: str, data: str) -> list[str]:
    a, d = REGISTRY.architectures[model].decl, REGISTRY.datasets[data].decl
    return ([f"model.{k}={override_value(v)}" for k, v in a.smoke.items()] +
            [f"data.{k}={override_value(v)}" for k, v in d.smoke.items()])


@pytest.mark.parametrize("name", sorted(REGISTRY.architectures))
def test_defaults_become_the_model_config(make_cfg, name):
    cfg = make_cfg(f"model={name}")
    assert OmegaConf.to_container(cfg.model) == {"name": name, "freeze": [], **{k: (list(v) if isinstance(v, tuple) else v)
                                                                  for k, v in REGISTRY.architectures[name].decl.defaults.items()}}


@pytest.mark.parametrize("name", sorted(REGISTRY.datasets))
def test_every_dataset_is_used_by_some_architecture(name):
    assert any(d == name for _, d in PAIRS), f"no registered architecture accepts data={name}"


@pytest.mark.parametrize("model, data", PAIRS, ids=[f"{a}-{d}" for a, d in PAIRS])
def test_trains_one_epoch(make_cfg, registry, client, model, data):
    cfg = make_cfg(f"model={model}", f"data={data}", "trainer.max_epochs=1", "trainer.log_every=5",
                   *smoke_overrides(model, data))
    metrics = train(cfg, registry)
    run = client.get_run(metrics["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_metric_history(run.info.run_id, "train/loss")
    tests = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
    assert tests and all(math.isfinite(v) for v in tests.values()), tests
    assert "grad_norm/total" in run.data.metrics


NUMERIC = sorted((a, k, v) for a, ae in REGISTRY.architectures.items() for k, v in ae.decl.defaults.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool))


def first_dataset(model: str) -> str:
    return next(d for a, d in PAIRS if a == model)


@pytest.mark.parametrize("model, key, default", NUMERIC, ids=[f"{a}.{k}" for a, k, _ in NUMERIC])
def test_every_numeric_setting_rejects_bad_values(make_cfg, registry, store, model, key, default):
    """A wrong type and an out-of-range value each fail in one line naming model.<key>, before any run."""
    import zoo

    data = first_dataset(model)
    base = [f"model={model}", f"data={data}", *smoke_overrides(model, data)]
    for bad in ("abc", "-1"):
        with pytest.raises(zoo.ZooError) as err:
            train(make_cfg(*base, f"model.{key}={bad}"), registry)
        assert f"model.{key}" in str(err.value) and "\n" not in str(err.value)
    assert not (store.startswith("sqlite:///") and __import__("os").path.exists(store[len("sqlite:///"):]))


DATA_NUMERIC = sorted((d, k, v) for d, de in REGISTRY.datasets.items() for k, v in de.decl.defaults.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool))


@pytest.mark.parametrize("data, key, default", DATA_NUMERIC, ids=[f"{d}.{k}" for d, k, _ in DATA_NUMERIC])
def test_every_numeric_data_setting_rejects_bad_values(make_cfg, registry, data, key, default):
    import zoo

    model = next(a for a, d in PAIRS if d == data)
    base = [f"model={model}", f"data={data}", *smoke_overrides(model, data)]
    for bad in ("abc", "-1"):
        with pytest.raises(zoo.ZooError) as err:
            train(make_cfg(*base, f"data.{key}={bad}"), registry)
        assert f"data.{key}" in str(err.value) and "\n" not in str(err.value)
