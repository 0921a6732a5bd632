"""The plugin contract: every hook a Zoo plugin may implement.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl`` whose names are
hooks below. It reaches Zoo in one of three ways, and all three are treated alike:

* a built-in module in ``plugins/`` (installed as ``zoo_builtins``, declared as an entry point
  by Zoo's own ``pyproject.toml``),
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
shows up in ``zoo list`` with its error while every other plugin keeps working. Two plugins
declaring the same name (of an architecture, a dataset or a task) is an error naming both.
``ZOO_TRACE_PLUGINS=1`` prints every hook call.
"""

from __future__ import annotations

import pluggy

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_architectures() -> list:
    """Return the architectures this plugin provides, as a list of :class:`zoo.Architecture`.

    Each name becomes selectable as ``zoo train model=<name>`` with its ``defaults`` (by default
    the keyword defaults of ``build``'s signature) as the ``model`` config node;
    ``build(info, **hparams)`` must return a ``torch.nn.Module`` that maps a batch's input to the
    output the dataset's task expects (see :class:`zoo.DataInfo`, :class:`zoo.Task`).
    ``zoo.create_model(name, info, **overrides)`` builds one outside a run.
    Example: ``[Architecture(name="mlp", family="ann", kinds=("tabular",), build=build_mlp)]``
    with ``def build_mlp(info, hidden_sizes=(256, 256), dropout=0.0)``.
    """


@hookspec
def zoo_datasets() -> list:
    """Return the datasets this plugin provides, as a list of :class:`zoo.Dataset`.

    Each name becomes selectable as ``zoo train data=<name>`` with its ``defaults`` (by default
    the keyword defaults of ``load``'s signature, besides ``seed``) as the ``data`` config node;
    ``load(seed=..., **params)`` must return :class:`zoo.Splits` (train, val and test splits plus
    the :class:`zoo.DataInfo` that builders read). ``zoo.load_dataset(name, seed, **overrides)``
    loads one outside a run.
    Example: ``[Dataset(name="moons", kind="tabular", task="classification", load=load_moons)]``
    with ``def load_moons(seed, n_samples=1000, noise=0.2)``.
    """


@hookspec
def zoo_tasks() -> list:
    """Return the tasks this plugin provides, as a list of :class:`zoo.Task`.

    Each name becomes a task a dataset may pose (``Dataset(task=<name>)``): the loop trains on
    its ``loss``, reports its ``metrics`` as ``val/<metric>`` and ``test/<metric>`` (a metric: a
    ``torchmetrics.Metric`` or any object with ``to``/``reset``/``update``/``compute``, e.g.
    ``zoo.metrics.*``, which the built-in tasks use), keeps the
    checkpoint with the best ``monitor`` (``mode`` says which way is better, and sweeps
    optimise it), sequence models read its ``per_position``, and the contract kit checks every
    architecture's output against its ``output_shape``. The built-in tasks (classification,
    regression, next_token, reconstruction, anomaly) are declared through this hook too, by
    ``zoo_builtins.tasks``. ``zoo.get_task(name)`` finds one outside a run. Example::

        import torch
        import torchmetrics
        import zoo

        @zoo.hookimpl
        def zoo_tasks():
            return [zoo.Task(
                name="median_regression",
                loss=lambda output, target, inputs: (output.reshape(target.shape) - target).abs().mean(),
                metrics=lambda info: {"mae": torchmetrics.MeanAbsoluteError()},
                monitor="mae", mode="min",
                prepare=lambda output, target, inputs: (output.reshape(target.shape), target),
                output_shape=lambda info, inputs, target: ([target], "the target's shape"),
            )]
    """
