"""The command line's ``group=name`` choices, checked before Hydra composes anything.

Hydra's own error for an unknown option is a page long, and it crashes on a number where a
group takes a name; :func:`check_choices` says it in one line, with the closest name and the
choices. The choices are Hydra's own: its config loader is asked which names a group has over
the search path ``zoo train`` composes from (:func:`zoo.config.composition.hydra_loader`: Zoo's
``conf/``, the user's ``--config-dir`` and ``hydra.searchpath`` folders, and every registered
architecture and dataset, stored as config nodes by :func:`zoo.config.register_configs`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from zoo.config.composition import hydra_loader, parse_command_line, unknown_name, without_searchpath
from zoo.config.overrides import override_key
from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.plugin.registry import Registry

GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "tracking", "experiment", "hparams_search")


def plugin_dirs(args: list[str]) -> list[str]:
    """The plugin folders ``plugins.dir=`` (or ``ZOO_PLUGIN_DIR``) names: known before Hydra composes,
    since plugins add config nodes."""
    dirs = [a.split("=", 1)[1] for a in args if "=" in a and override_key(a) == "plugins.dir"]
    if not dirs and os.environ.get("ZOO_PLUGIN_DIR"):
        dirs = [os.environ["ZOO_PLUGIN_DIR"]]
    return [d for d in dirs if d and d != "null"]


def without_null_choices(args: list[str]) -> list[str]:
    """``group=null`` (no config of the group: ``scheduler=null``) as Hydra takes it, ``~group``:
    Hydra 1.3 refuses a null choice on the command line (``Config group override must be a string``)."""
    out = []
    for a in args:
        key, eq, value = a.partition("=")
        out.append(f"~{key}" if eq and value == "null" and key in GROUPS else a)
    return out


def names_a_config(arg: str) -> bool:
    """Whether Hydra reads the value of ``group=value`` as names (or null: no config of the group).
    Hydra crashes on a number there."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
    except Exception:  # malformed: Hydra says so itself, on one line
        return True
    if override.is_sweep_override():
        return True
    values = override.value() if isinstance(override.value(), list) else [override.value()]
    return all(v is None or (isinstance(v, str) and "${" not in v) for v in values)  # an interpolation is not a name


def check_syntax(args: list[str]) -> None:
    """One line for an override Hydra's grammar cannot read (its own error is five lines and a caret).

    The usual case is an unquoted value with characters the grammar does not take, such as
    ``tracking.experiment=实验``: quoted, ``'tracking.experiment="实验"'``, it is read as a string.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for previous, arg in zip(["", *args], args):
        if "=" not in arg or arg.startswith("-") or previous in VALUE_FLAGS:
            continue
        try:
            parser.parse_override(arg)
        except Exception as exc:
            key, value = arg.split("=", 1)
            hint = (f"quote the value: '{key}=\"{value}\"'" if not value.isascii() or " " in value
                    else "see https://hydra.cc/docs/advanced/override_grammar/basic/")
            raise ZooError(f"the override {arg!r} cannot be read ({str(exc).splitlines()[0]}); {hint}") from None


# Hydra's flags that take the next argument as their value (it is not an override)
VALUE_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
               "--package", "-p", "--shell-completion", "-sc")


def group_choices(group: str, registry: Registry | None = None, args: list[str] = ()) -> list[str]:
    """The names ``group=<name>`` accepts, as Hydra's config loader lists them for ``zoo train args``:
    the group's YAML files on the search path, and every registered architecture (``model``) or
    dataset (``data``) once :func:`zoo.config.register_configs` has stored them."""
    cl = parse_command_line(args)
    with hydra_loader(cl) as (loader, searchpath):
        if loader is None:
            return []
        return _options(loader, cl, searchpath + without_searchpath(cl.overrides) if searchpath else cl.overrides, group)


def _options(loader, cl, overrides: list[str], group: str) -> list[str]:
    try:
        return sorted(loader.get_group_options(group, config_name=cl.config_name,
                                               overrides=[o for o in overrides if override_key(o) == "hydra.searchpath"]))
    except Exception:  # a search path Hydra cannot read: it says so itself
        return []


def check_choices(args: list[str], registry: Registry | None = None) -> None:
    """One clear line for an override Hydra cannot read, or an unknown ``group=name``, before Hydra composes anything.

    ``args`` are ``zoo train``'s arguments (overrides and Hydra's flags); the registry's names
    become config nodes first (:func:`zoo.config.register_configs`).
    """
    check_syntax(args)
    if registry is not None:  # its names become config nodes, where Hydra's loader finds them
        from zoo.config import register_configs

        register_configs(registry)
    cl = parse_command_line(args)
    with hydra_loader(cl) as (loader, searchpath):
        if loader is None:
            return
        overrides = searchpath + without_searchpath(cl.overrides) if searchpath else cl.overrides
        known: dict[str, list[str]] = {}

        def options(group: str) -> list[str]:
            if group not in known:
                known[group] = _options(loader, cl, overrides, group)
            return known[group]

        for arg in cl.overrides:
            if "=" not in arg:
                continue
            key, value = arg.split("=", 1)
            group = key.lstrip("+~").split("@", 1)[0]  # group@package=option is a group choice too
            if not group:  # Hydra itself crashes on some of these (+=1, @=1)
                raise ZooError(f"{arg} names no config key before '=': write key=value, e.g. trainer.max_epochs=5")
            if group not in GROUPS and ("." in group or ("/" not in group and not options(group))):
                continue  # a setting, not a config group
            if not names_a_config(arg):
                raise ZooError(f"{arg}: a config group takes the name of a config (or null for none), not {value!r}")
            if value in ("", "null") or (value.split("(", 1)[0].isidentifier() and "(" in value):
                continue  # no config of the group; a sweep (choice(...), glob(...)) is Hydra's to read
            names = options(group)
            for v in value.split(","):
                if v not in names:
                    raise ZooError(unknown_name(group, v, names, arg))
