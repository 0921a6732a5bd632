"""The command line's ``group=name`` choices, checked before Hydra composes anything.

Hydra's own error for an unknown option is a page long, and it crashes on a number or null
where a group takes a name; :func:`check_choices` says it in one line, with the closest name and
the choices: every YAML file of the group, plus every registered architecture (``model``) or
dataset (``data``).
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING

from zoo.config.overrides import override_key
from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.plugin.registry import Registry

GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "tracking", "experiment", "hparams_search")
NAMES = {"model": "model (architecture)", "data": "dataset"}  # what an unknown name is called in the error


def plugin_dirs(args: list[str]) -> list[str]:
    """The plugin folders ``plugins.dir=`` (or ``ZOO_PLUGIN_DIR``) names: known before Hydra composes,
    since plugins add config nodes."""
    dirs = [a.split("=", 1)[1] for a in args if "=" in a and override_key(a) == "plugins.dir"]
    if not dirs and os.environ.get("ZOO_PLUGIN_DIR"):
        dirs = [os.environ["ZOO_PLUGIN_DIR"]]
    return [d for d in dirs if d and d != "null"]


def group_choices(group: str, registry: Registry) -> list[str]:
    """The names ``group=<name>`` accepts: the group's YAML files, and the registry's architectures or datasets."""
    from zoo.config import CONF_DIR

    names = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    if group == "model":
        names |= set(registry.architectures)
    if group == "data":
        names |= set(registry.datasets)
    return sorted(names)


def names_a_config(arg: str) -> bool:
    """Whether Hydra reads the value of ``group=value`` as names: Hydra crashes on a number or null."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
    except Exception:  # malformed: Hydra says so itself, on one line
        return True
    if override.is_sweep_override():
        return True
    values = override.value() if isinstance(override.value(), list) else [override.value()]
    return all(isinstance(v, str) and "${" not in v for v in values)  # an interpolation is not a name


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


def check_choices(args: list[str], registry: Registry) -> None:
    """One clear line for an override Hydra cannot read, or an unknown ``group=name``, before Hydra composes anything."""
    check_syntax(args)
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~").split("@", 1)[0]  # group@package=option is a group choice too
        if not group:  # Hydra itself crashes on some of these (+=1, @=1)
            raise ZooError(f"{arg} names no config key before '=': write key=value, e.g. trainer.max_epochs=5")
        if (group in GROUPS or "/" in group) and not names_a_config(arg):  # hydra/launcher=... too
            hint = f"; write ~{group} to go without one" if value == "null" else ""
            raise ZooError(f"{arg}: a config group takes the name of a config, not {value!r}{hint}")
        if group not in GROUPS or value == "" or (value.split("(", 1)[0].isidentifier() and "(" in value):
            continue  # a sweep (choice(...), range(...)) is Hydra's to read
        options = group_choices(group, registry)
        for v in value.split(","):
            if v not in options:
                close = difflib.get_close_matches(v, options, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ZooError(f"unknown {NAMES.get(group, group)} '{v}' in {arg}.{hint} "
                               f"Available: {', '.join(options) or 'none'}")
