"""The plugin contract kit: the same checks over every registered architecture.

A plugin author runs it in their own repository, with their plugin installed (an entry point in
``zoo.plugins``) or in a plugin folder::

    pytest --pyargs zoo.testing                              # every registered plugin
    pytest --pyargs zoo.testing --zoo-plugin my_nets         # only the plugin named my_nets
    ZOO_PLUGIN_DIR=~/my_plugins pytest --pyargs zoo.testing  # plugins from a folder too
    pytest --pyargs zoo.testing --zoo-plugin-dir=$HOME/my_plugins   # the same (write it with '=':
                                                             # a separate path moves pytest's rootdir)
    pytest --zoo-contract                                    # the kit alongside your own tests

For every architecture, on each data kind it declares (with the smallest registered dataset of
that kind it accepts, both at their ``smoke`` settings, on one batch of 16 examples, on the CPU),
built through the factory (``Registry.create_model``, what ``zoo train`` uses):

=================  ===================================================================
check              passes when
=================  ===================================================================
builds             ``build(info, **defaults)`` returns a ``torch.nn.Module`` whose
                   output on one batch has the shape the task expects
output shape       the same with the ``smoke`` settings; the dataset's task says which
                   shapes are right (:attr:`zoo.Task.output_shape`): classification
                   ``(*target.shape, classes)``, next_token ``(B, T, vocab)``,
                   regression the target's shape, reconstruction and anomaly the
                   input's shape (or it flattened)
gradients          one backward pass gives every trainable parameter a finite,
                   not entirely zero gradient
overfit            Adam (lr 0.01) on that one batch cuts the loss by >= 90% within
                   300 steps (loss measured in eval mode before and after)
state_dict         a fresh build with another seed, loaded with the state_dict (saved
                   and loaded with ``torch.save``/``torch.load(weights_only=True)``),
                   gives identical outputs
determinism        two builds with the same seed give identical parameters and outputs
report             the architecture's ``report`` (when it declares one) runs on the model
                   after a few Adam steps and returns only files it wrote
hydra              ``model=<name>`` composes to the defaults, and passing every default
                   back as an override string (``model.k=v``) gives the same values
=================  ===================================================================

plus, per plugin, ``loads`` (it imported and its hooks returned valid declarations) and, per
dataset, ``loads`` (its ``smoke`` settings give non-empty splits that match its declaration) and
``targets`` (every target of its splits is what its task expects: :attr:`zoo.Task.targets`, e.g.
class indices as integers below ``output_dim``).

A failure is one line naming the plugin, the architecture, the check and the numbers::

    contract[broken:wrong_shape_net] output shape: expected (16, 3), got (16, 2) for data=iris ...

The package: this module is the pytest plugin (options, and the hook that parametrizes the
checks); ``test_checks`` holds the checks as test functions (re-exported here); ``kit`` loads
the registry and runs the plugin, dataset and Hydra checks; ``case`` runs the checks of one
architecture on one data kind; ``report`` formats values, differences and exceptions. It may
import ``zoo.plugin``, ``zoo.config`` (the Hydra check composes Zoo's own config) and
``zoo.errors``.

Importing it is cheap (pytest imports it in every run through the ``pytest11`` entry point):
torch, Hydra and the registry are imported only when contract tests are collected, and it adds
tests only to a run that asks for them (``--pyargs zoo.testing``, ``--zoo-contract``, or a test
module that imports the ``test_*`` functions below; such a module may set
``zoo_contract_plugin_dirs = [...]`` to choose the plugin folders instead of ``ZOO_PLUGIN_DIR``).
The documentation is ``docs/plugin-contract.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.testing.test_checks import (  # noqa: F401  (the checks, for test modules to import)
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

from zoo.testing.kit import PARAMS

#: the module of test functions a run collects (``--pyargs zoo.testing``, ``--zoo-contract``)
CHECKS = str(Path(__file__).resolve().parent / "test_checks.py")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("zoo", "Zoo plugin contract kit (zoo.testing)")
    group.addoption("--zoo-contract", action="store_true", default=False,
                    help="add the contract checks over every registered architecture to this run")
    group.addoption("--zoo-plugin-dir", action="append", default=[], metavar="DIR",
                    help="a folder of *.py plugins to check as well (repeatable; default: ZOO_PLUGIN_DIR); "
                         "write --zoo-plugin-dir=DIR: pytest reads a separate DIR as where your tests are, "
                         "which moves its rootdir away from your project's config")
    group.addoption("--zoo-plugin", action="append", default=[], metavar="NAME",
                    help="check only the plugin with this name (repeatable; `zoo list` shows the names)")


def pytest_configure(config) -> None:
    # The generating hook lives on an object, not at module level, so that it runs once however
    # this plugin was loaded (entry point, -p, or a conftest).
    if not config.pluginmanager.has_plugin("zoo_contract_generator"):
        config.pluginmanager.register(_Generator(config), "zoo_contract_generator")
    # `--pyargs zoo.testing` means the checks: collect their module by its path, whatever the
    # project's python_files patterns say.
    if config.getoption("pyargs", False):
        config.args[:] = [CHECKS if a == __name__ else a for a in config.args]
    if config.getoption("zoo_contract", False) and CHECKS not in config.args:
        config.args.append(CHECKS)


class _Generator:
    def __init__(self, config):
        self.config = config

    def pytest_generate_tests(self, metafunc) -> None:
        wanted = [p for p in PARAMS if p in metafunc.fixturenames]
        if not wanted:
            return
        from zoo.testing.kit import Kit

        dirs = getattr(metafunc.module, "zoo_contract_plugin_dirs", None)
        if dirs is None:
            dirs = self.config.getoption("zoo_plugin_dir", None) or _env_dirs()
        only = tuple(self.config.getoption("zoo_plugin", None) or ())
        kit = Kit.get(tuple(str(d) for d in dirs), only)
        for name in wanted:
            params = kit.params(name)
            metafunc.parametrize(name, params, ids=[_id(p) for p in params])


def _env_dirs() -> list[str]:
    value = os.environ.get("ZOO_PLUGIN_DIR", "")  # one folder, as for `zoo train`
    return [value] if value else []


def _id(param) -> str:
    return param.id if hasattr(param, "id") else str(param)
