"""The contract checks as test functions, parametrized by ``zoo.testing`` over the registry.

A test module that imports them gets them (``from zoo.testing import test_gradients, ...``);
``pytest --pyargs zoo.testing`` and ``--zoo-contract`` collect this module itself. Each takes one
of the kit's parameters: ``zoo_plugin``, ``zoo_dataset``, ``zoo_arch`` or ``zoo_case`` (an
architecture on one data kind).
"""

from __future__ import annotations

import pytest


def _run(param, check: str) -> None:
    """Run one check and turn a contract failure into a one-line pytest failure."""
    from zoo.testing.kit import ContractFailure, Skip

    failure = skip = None
    try:
        param.kit.run(param, check)
    except ContractFailure as exc:
        failure = str(exc)
    except Skip as exc:
        skip = str(exc)
    if failure:  # outside the except block: pytest shows the one line, not a chained traceback
        pytest.fail(failure, pytrace=False)
    if skip:
        pytest.skip(skip)


def test_plugin_loads(zoo_plugin):
    """The plugin imported, registered and returned valid declarations."""
    _run(zoo_plugin, "loads")


def test_dataset_loads(zoo_dataset):
    """The dataset loads at its smoke settings into non-empty splits matching its declaration."""
    _run(zoo_dataset, "loads")


def test_dataset_targets(zoo_dataset):
    """Every target of its splits is what its task expects (dtype, range against ``output_dim``)."""
    _run(zoo_dataset, "targets")


def test_builds_from_defaults(zoo_case):
    _run(zoo_case, "builds")


def test_output_shape(zoo_case):
    _run(zoo_case, "output shape")


def test_gradients(zoo_case):
    _run(zoo_case, "gradients")


def test_overfit_one_batch(zoo_case):
    _run(zoo_case, "overfit")


def test_state_dict_round_trip(zoo_case):
    _run(zoo_case, "state_dict")


def test_deterministic(zoo_case):
    _run(zoo_case, "determinism")


def test_hydra_round_trip(zoo_arch):
    _run(zoo_arch, "hydra")


def test_report(zoo_case):
    """The architecture's ``report`` runs on a tiny trained model and returns files it wrote."""
    _run(zoo_case, "report")
