"""What ``zoo train``'s command line composes, asked of Hydra before Hydra runs it, and Hydra's
composition errors on one line.

``zoo train`` is a ``@hydra.main`` app: a composition error inside it is Hydra's own report
(several lines, exit 1). So before Hydra runs, :func:`hydra_loader` opens Hydra's config loader
over the search path the app will use (Zoo's ``conf/``, ``--config-dir``/``-cd``, an absolute
``--config-path``/``-cp``, ``hydra.searchpath``, and the ConfigStore's plugin nodes), through
Hydra's compose API; :mod:`zoo.config.choices` asks it which names a group has, and
:func:`check_composes` composes the command line once (a sweep, or a failure, twice: first as a
single run) and turns a failure into one
:class:`zoo.ZooError` line (:func:`composition_error`, shared with Zoo's sweepers).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from zoo.config.overrides import override_key, override_value
from zoo.errors import ZooError, one_line

NAMES = {"model": "model (architecture)", "data": "dataset"}  # what an unknown name is called in errors


@dataclass
class CommandLine:
    """The parts of ``zoo train``'s arguments that decide what Hydra composes."""

    overrides: list[str] = field(default_factory=list)
    config_name: str = "config"
    config_path: str | None = None
    config_dir: str | None = None
    multirun: bool = False


def parse_command_line(args: Sequence[str]) -> CommandLine:
    """Hydra's own flags (``-cd``, ``-cp``, ``-cn``, ``-m``) and the overrides, as ``@hydra.main`` reads them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--config-path", "-cp")
    parser.add_argument("--config-name", "-cn")
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--multirun", "-m", action="store_true")
    parser.add_argument("overrides", nargs="*")
    ns, _ = parser.parse_known_args(list(args))
    return CommandLine(ns.overrides, ns.config_name or "config", ns.config_path, ns.config_dir, ns.multirun)


@contextlib.contextmanager
def hydra_loader(cl: CommandLine) -> Iterator[tuple[object | None, list[str]]]:
    """Hydra's config loader (``hydra.core.config_loader.ConfigLoader``) over the search path of ``cl``,
    and the override that adds ``--config-dir`` to it; ``(None, [])`` where Zoo cannot tell (a relative
    ``--config-path``, read by Hydra against Zoo's own module: Hydra reports it itself).

    ``--config-dir DIR`` comes after Zoo's ``conf/`` and before the ConfigStore, where Hydra puts it;
    here it joins ``hydra.searchpath``, which Hydra places at the same point.
    """
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    from zoo.config import CONF_PACKAGE

    if cl.config_path and not os.path.isabs(cl.config_path):
        yield None, []
        return
    outer = get_gh_backup()  # a caller's own Hydra context (a test's initialize_config_dir) comes back after
    GlobalHydra.instance().clear()
    try:
        with (initialize_config_dir(cl.config_path, version_base="1.3") if cl.config_path
              else initialize_config_module(CONF_PACKAGE, version_base="1.3")):
            loader = GlobalHydra.instance().config_loader()
            yield loader, _searchpath(cl, loader)
    finally:
        restore_gh_from_backup(outer)


def _searchpath(cl: CommandLine, loader) -> list[str]:
    """The ``hydra.searchpath`` override that gives the loader ``--config-dir`` too (none without it)."""
    if not cl.config_dir:
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    folder = os.path.abspath(os.path.expanduser(cl.config_dir))
    if not os.path.isdir(folder):
        raise ZooError(f"--config-dir {cl.config_dir}: {folder} is not a folder")
    given = [o for o in cl.overrides if override_key(o) == "hydra.searchpath"]
    if given:
        paths = OverridesParser.create().parse_override(given[-1]).value()
    else:  # the primary config's own hydra.searchpath stays
        primary = loader.load_configuration(cl.config_name, [], run_mode=RunMode.RUN)
        paths = OmegaConf.to_container(primary.hydra, resolve=False).get("searchpath") or []
    return [f"hydra.searchpath={override_value([f'file://{folder}', *paths])}"]


def without_searchpath(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if override_key(o) != "hydra.searchpath"]


def check_composes(args: Sequence[str]) -> None:
    """Compose ``zoo train args`` as Hydra will; a composition error is one :class:`ZooError` line."""
    from hydra.types import RunMode

    cl = parse_command_line(args)
    mode = RunMode.MULTIRUN if cl.multirun else RunMode.RUN
    with hydra_loader(cl) as (loader, searchpath):
        if loader is None:
            return
        overrides = (without_searchpath(cl.overrides) + searchpath) if searchpath else cl.overrides

        def compose(items: list[str]):
            return loader.load_configuration(cl.config_name, items, run_mode=mode)

        if not cl.multirun:  # a preset's hydra.mode=MULTIRUN sweeps without -m (Hydra's own get_mode)
            try:  # the usual single run composes once
                found = compose(overrides).hydra.mode
                if (found or RunMode.RUN) == RunMode.RUN:
                    return
            except Exception:  # a sweep's overrides, or a mistake: composed as Hydra's get_mode does
                try:
                    found = loader.load_configuration(cl.config_name, overrides, run_mode=RunMode.MULTIRUN,
                                                      validate_sweep_overrides=False).hydra.mode
                except Exception:  # the composition below says what is wrong
                    found = None
            mode = found or mode

        try:
            compose(overrides)
        except ZooError:
            raise
        except Exception as exc:
            raise ZooError(composition_error(exc, overrides, compose)) from None


def composition_error(exc: BaseException, overrides: Sequence[str], compose: Callable[[list[str]], object]) -> str:
    """Hydra's composition error as one line that says what to write instead.

    ``compose(overrides)`` composes again (without the override at fault) to find the keys a
    misspelt one could have meant.
    """
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    text = str(exc)
    cause = exc.__cause__
    missing = getattr(exc, "missing_cfg_file", None)
    if missing and getattr(exc, "options", None) is not None and "/" in missing:
        group, name = missing.rsplit("/", 1)
        return unknown_name(group, name, list(exc.options), f"{group}={name}")
    m = re.match(r"Multiple values for (\S+)\. To override a value use 'override \S+: (.*)'", text)
    if m:
        group, value = m.groups()
        return (f"+{group}={value}: {group} is already in the defaults list, so it is chosen, not added: "
                f"write {group}={value} (without the +)")
    m = re.match(r"Could not append to config\. An item is already at '([^']+)'", text)
    if m:
        line = next((o for o in overrides if override_key(o) == m.group(1)), m.group(1))
        return f"{line}: {m.group(1)} is already set: write {line.lstrip('+')} (without the +) to change it"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and text.startswith("Could not override"):
        key = getattr(cause, "full_key", "") or re.findall(r"'([^']+)'", text)[0]
        return unknown_key(key, overrides, compose)
    lines = [one_line(exc)]
    if cause is not None and str(cause).strip():
        lines.append(one_line(cause))
    return ": ".join(dict.fromkeys(lines))


def unknown_name(group: str, name: str, options: Sequence[str], arg: str) -> str:
    """An unknown ``group=name``: the closest name and every choice."""
    close = difflib.get_close_matches(name, options, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown {NAMES.get(group, group)} '{name}' in {arg}.{hint} Available: {', '.join(options) or 'none'}"


def unknown_key(key: str, overrides: Sequence[str], compose: Callable[[list[str]], object]) -> str:
    """``a.b.typo=v`` without ``+``: the node's keys, the closest one, and how to add a new key."""
    from omegaconf import DictConfig, OmegaConf

    line = next((o for o in overrides if override_key(o) == key), key)
    parent, _, leaf = key.rpartition(".")
    try:
        cfg = compose([o for o in overrides if override_key(o) != key])
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # another override is wrong too: it is reported once this one is fixed
        node = None
    keys = [str(k) for k in node.keys() if k not in ("hydra", "name")] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(leaf, keys, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    if parent in NAMES and isinstance(node, DictConfig) and "name" in node:
        return (f"{line}: {parent}={node.name} has no setting '{leaf}'.{hint} "
                f"Its settings: {', '.join(keys) or 'none'}")
    where = parent or "the config"
    return f"{line}: {where} has no key '{leaf}'.{hint} To add a new key, write +{line}"
