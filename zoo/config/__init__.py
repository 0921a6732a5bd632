"""Configuration: Zoo's Hydra composition, and the checks on what it composes.

It owns three things:

* **the configs shipped inside the package**: the project's top-level ``conf/`` folder installs as
  the package ``zoo.config.conf``; ``zoo train`` reads it as :data:`CONF_PATH`
  (``pkg://zoo.config.conf``), tests as :data:`CONF_DIR`, the contract kit through :func:`compose`,
  notebooks and scripts through :func:`compose_run` (``zoo.compose``);
* **plugin defaults as ConfigStore nodes** (:func:`register_configs`), and Hydra override text
  (:func:`override_key`, :func:`override_value`);
* **each command's own output folder**: a Hydra callback that makes the time-named
  ``outputs/<date>/<time>`` (and a sweep's ``multirun/...``) unique (:mod:`zoo.config.folders`);
* **validation**: every ``group=name`` on the command line before Hydra composes
  (:mod:`zoo.config.choices`, asking Hydra's own config loader over the user's search path too),
  the command line composed once as Hydra will, its errors on one line
  (:mod:`zoo.config.composition`), then every value of the composed config before a run exists
  (:mod:`zoo.config.validation`, a table of rules).

Only this package and :mod:`zoo.cli` touch Hydra's composition (``@hydra.main``, ``compose``,
the ConfigStore's nodes). It may import :mod:`zoo.errors`, :mod:`zoo.plugin` (the registry),
Hydra and OmegaConf, and torch only to check an optimizer's class; never MLflow, training or
tracking.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from zoo.config.choices import GROUPS, check_choices, group_choices, plugin_dirs
from zoo.config.composition import check_composes
from zoo.config.overrides import override_key, override_value
from zoo.config.validation import FREEZE, check_plugin_settings, validate

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from zoo.plugin.registry import Registry

# Zoo's own configs: the project's top-level conf/ folder, installed as the package zoo.config.conf.
CONF_PACKAGE = "zoo.config.conf"
CONF_PATH = f"pkg://{CONF_PACKAGE}"  # what @hydra.main reads: found wherever Zoo is installed
CONF_DIR = Path(str(resources.files(CONF_PACKAGE)))  # the same folder, for Hydra's compose API in tests

__all__ = ["CONF_DIR", "CONF_PACKAGE", "CONF_PATH", "GROUPS", "check_choices", "check_composes", "check_plugin_settings",
           "compose", "compose_run", "group_choices", "override_key", "override_value", "plugin_dirs",
           "register_configs", "validate"]


def register_configs(registry: Registry) -> None:
    """Store each plugin's defaults as a Hydra config node (``model/<name>``, ``data/<name>``).

    The same node is also stored as ``zoo/model/<name>``, so a YAML file in ``conf/model/`` can
    extend it (``defaults: [/zoo/model/mlp@_here_, _self_]``) instead of repeating it. Every model
    node also has Zoo's own ``freeze: []`` (parameter-name prefixes kept fixed, :mod:`zoo.models.init`).
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, table in (("model", registry.architectures), ("data", registry.datasets)):
        for name, entry in table.items():
            node = {"name": name, **({FREEZE: []} if group == "model" else {}), **_plain(entry.decl.defaults)}
            cs.store(group=group, name=name, node=node, provider=entry.plugin)
            cs.store(group=f"zoo/{group}", name=name, node=node, provider=entry.plugin)


def compose(overrides: Sequence[str] = (), config_name: str | None = "config") -> DictConfig:
    """Zoo's config composed outside ``zoo train``, as ``zoo train`` composes it (the contract kit, notebooks).

    The registry's nodes must be stored first (:func:`register_configs`); ``config_name=None``
    starts from an empty config, so ``+model=<name>`` composes one group alone.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(CONF_PACKAGE, version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


def compose_run(overrides: Sequence[str] = (), registry: Registry | None = None) -> DictConfig:
    """The config ``zoo train <overrides>`` would train, for :func:`zoo.train` in a notebook or a script (``zoo.compose``).

    As ``zoo train`` does, it registers every plugin's defaults first (``registry``; default: the
    plugins ``zoo train`` finds, with ``plugins.dir=`` among the overrides or ``ZOO_PLUGIN_DIR``)
    and checks each ``group=name`` in one line. ``paths.output_dir`` is Hydra's job folder, which
    only ``zoo train`` has: unless an override sets it, the run's checkpoints go to a fresh
    temporary folder (the run's tag ``zoo.output_dir`` names it).
    """
    import warnings

    from zoo.plugin.registry import load_registry

    overrides = list(overrides)
    if registry is None:
        registry = load_registry(plugin_dirs(overrides))
        for f in registry.failures:
            warnings.warn(f"plugin '{f.plugin}' ({f.source}) was skipped: {f.error}", stacklevel=2)
    register_configs(registry)
    check_choices(overrides, registry)
    if not any("=" in o and override_key(o) == "paths.output_dir" for o in overrides):
        overrides.append("paths.output_dir=null")
    return compose(overrides)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
