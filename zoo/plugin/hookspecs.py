"""The plugin contract: every hook a Zoo plugin may implement.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl`` whose names are
hooks below. It reaches Zoo in one of three ways, and all three are treated alike:

* a built-in module in ``plugins/`` (declared as an entry point by Zoo's own ``pyproject.toml``),
* an installed distribution with an entry point in the group ``zoo.plugins``::

      [project.entry-points."zoo.plugins"]
      my_nets = "my_package.zoo_plugin"

* a ``*.py`` file in a plugin folder named by ``plugins.dir=PATH`` or ``ZOO_PLUGIN_DIR``.

A complete plugin is one import and one function::

    import torch
    import zoo

    @zoo.hookimpl
    def zoo_architectures():
        return [zoo.Architecture(
            name="tiny", family="ann", kinds=("tabular",),
            defaults={"hidden": 16},
            build=lambda info, hidden: torch.nn.Sequential(
                torch.nn.Linear(info.input_shape[-1], hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, info.output_dim)),
        )]

Each hook is called once per plugin and its result checked on its own, so one broken plugin
shows up in ``zoo list`` with its error while every other plugin keeps working.
"""

from __future__ import annotations

import pluggy

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_architectures() -> list:
    """Return the architectures this plugin provides, as a list of :class:`zoo.Architecture`.

    Each name becomes selectable as ``zoo train model=<name>`` with its ``defaults`` as the
    ``model`` config node; ``build(info, **hparams)`` must return a ``torch.nn.Module`` that
    maps a batch's input to the output the dataset's task expects (see :class:`zoo.DataInfo`).
    Example: ``[Architecture(name="mlp", family="ann", kinds=("tabular",), defaults={...},
    build=MLP.from_info)]``.
    """


@hookspec
def zoo_datasets() -> list:
    """Return the datasets this plugin provides, as a list of :class:`zoo.Dataset`.

    Each name becomes selectable as ``zoo train data=<name>`` with its ``defaults`` as the
    ``data`` config node; ``load(seed=..., **params)`` must return :class:`zoo.Splits`
    (train, val and test splits plus the :class:`zoo.DataInfo` that builders read).
    Example: ``[Dataset(name="moons", kind="tabular", task="classification",
    defaults={"n_samples": 1000, "noise": 0.2}, load=load_moons)]``.
    """
