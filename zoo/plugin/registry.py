"""The plugin registry: discovers plugins with pluggy and indexes what they declare.

Plugins come from entry points in the group ``zoo.plugins`` (Zoo's own built-ins are declared
there too, so they arrive exactly like third-party ones) and from ``*.py`` files in a plugin
folder. Each plugin is loaded and called on its own: one that fails to import (it raises, calls
``sys.exit`` or runs past ``ZOO_PLUGIN_TIMEOUT``) or returns a malformed declaration is recorded
in ``Registry.failures`` and everything else keeps working, unless ``ZOO_STRICT_PLUGINS=1``. Two
plugins declaring the same name is always an error. A plugin's own code (import, hooks, build,
load, report) prints to stderr, never into what a command prints; a build that exits, hangs or
runs out of memory, or returns something that is not a module, is a one-line :class:`ZooError`.

:func:`default_registry` is the registry behind ``zoo.create_model``, ``zoo.load_dataset`` and
``zoo.get_task``: the entry points and ``ZOO_PLUGIN_DIR``, loaded once and cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

import pluggy

from zoo._runtime import TimeLimit, time_limit
from zoo.plugin import hookspecs
from zoo.plugin.declarations import Architecture, DataInfo, Dataset, Splits, Task, check_declaration
from zoo.errors import ZooError, one_line

ENTRY_POINT_GROUP = "zoo.plugins"
SELF_DISTRIBUTION = "zoo"
PLUGIN_TIMEOUT_S = 300.0  # ZOO_PLUGIN_TIMEOUT's default: generous, for a plugin that builds a large model
HANGS = "the plugin may hang: fix it, or set ZOO_PLUGIN_TIMEOUT=<seconds> (0: no limit) if it is only slow"


@dataclass(frozen=True)
class Entry:
    """A declaration together with the plugin that provided it and where that came from."""

    decl: Architecture | Dataset | Task
    plugin: str
    source: str


@dataclass(frozen=True)
class Failure:
    plugin: str
    source: str
    error: str


@dataclass
class Registry:
    pm: pluggy.PluginManager
    architectures: dict[str, Entry] = field(default_factory=dict)
    datasets: dict[str, Entry] = field(default_factory=dict)
    tasks: dict[str, Entry] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def architecture(self, name: str) -> Entry:
        return _lookup(self.architectures, name, "model")

    def dataset(self, name: str) -> Entry:
        return _lookup(self.datasets, name, "data")

    def task(self, name: str) -> Task:
        """The registered :class:`zoo.Task` named ``name`` (a dataset's ``task``)."""
        return _lookup(self.tasks, name, "task").decl

    def create_model(self, name: str, info: DataInfo, **overrides):
        """Build architecture ``name`` for data described by ``info``, its defaults updated by ``overrides``.

        A dataset that does not say whether its targets are one per position gets its task's
        answer in ``info.meta["per_token"]`` (see :func:`zoo.per_position`).
        """
        import torch

        entry = self.architecture(name)
        if "per_token" not in info.meta and info.task in self.tasks:
            info = dataclasses.replace(info, meta={**info.meta, "per_token": self.tasks[info.task].decl.per_position})
        with plugin_time_limit(f"model={name}: build", entry):
            model = call_plugin(f"model={name}", entry.decl.build, info, **{**entry.decl.defaults, **overrides})
        if not isinstance(model, torch.nn.Module):
            raise ZooError(f"model={name}: build returned {type(model).__name__}, not a torch.nn.Module "
                           f"(plugin '{entry.plugin}', {entry.source})")
        return model

    def load_dataset(self, name: str, seed: int = 0, **overrides):
        """Load dataset ``name``'s splits for ``seed``, its defaults updated by ``overrides``."""
        entry = self.dataset(name)
        splits = call_plugin(f"data={name}", entry.decl.load, seed=seed, **{**entry.decl.defaults, **overrides})
        if not isinstance(splits, Splits):
            raise ZooError(f"data={name}: load returned {type(splits).__name__}, not zoo.Splits "
                           f"(plugin '{entry.plugin}', {entry.source})")
        return splits

    def only(self, *names: str) -> "Registry":
        """This registry with only the architectures and datasets named (all its tasks), e.g. to
        register one config node: ``register_configs(registry.only("mlp"))``."""
        return dataclasses.replace(
            self, architectures={n: e for n, e in self.architectures.items() if n in names},
            datasets={n: e for n, e in self.datasets.items() if n in names}, failures=list(self.failures))

    def compatible_datasets(self, arch: Architecture) -> list[str]:
        return sorted(n for n, e in self.datasets.items() if _accepts(arch, e.decl))

    def check_pair(self, model: str, data: str) -> tuple[Entry, Entry]:
        a, d = self.architecture(model), self.dataset(data)
        if not _accepts(a.decl, d.decl):
            raise ZooError(
                f"model={model} does not accept data={data} (kind {d.decl.kind}, task {d.decl.task}); "
                f"{model} accepts kinds {', '.join(a.decl.kinds)}; compatible datasets: "
                f"{', '.join(self.compatible_datasets(a.decl)) or 'none registered'}")
        return a, d


def call_plugin(what: str, fn, *args, **kwargs):
    """Call a plugin's builder, loader or report as one line of trouble at most.

    Its ValueError or TypeError, a ``sys.exit``, or running out of memory becomes a one-line
    :class:`ZooError` naming ``what`` (and, for memory, the setting to lower); what it prints
    goes to stderr, so it never mixes with what a command prints (``zoo list``, ``--cfg job``).
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ZooError(f"{what}: {one_line(exc)}") from exc
    except SystemExit as exc:
        raise ZooError(f"{what}: the plugin called sys.exit({exc.code!r})") from None
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        raise ZooError(f"{what}: not enough memory ({one_line(exc, 160)}); {size_setting(what, kwargs)}") from None


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed: Python's or numpy's MemoryError, or torch's."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc) or "not enough memory" in str(exc))


def size_setting(what: str, settings: dict) -> str:
    """What to lower to make ``what`` (``model=mlp``, ``data=text``) smaller: a file it reads, else
    the setting with the largest number (``lower data.n_samples=...``, ``lower model.hidden_sizes=[...]``)."""
    group = what.split("=", 1)[0]

    def size(value) -> float:
        if isinstance(value, (list, tuple)):
            return max((size(v) for v in value), default=0)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and os.path.isfile(value):
            return float("inf")
        return 0

    found = [(size(v), k) for k, v in settings.items() if k != "seed" and size(v) > 0]
    if not found:
        return f"lower the size settings of {what}"
    key = max(found)[1]
    value = settings[key]
    if isinstance(value, str):
        return f"use a smaller file than {group}.{key}={value!r} ({os.path.getsize(value) / 2**30:.1f} GiB)"
    return f"lower {group}.{key}={value}"


def plugin_timeout() -> float:
    """Seconds a plugin may take to import or to build a model: ``ZOO_PLUGIN_TIMEOUT`` (0: no limit)."""
    text = os.environ.get("ZOO_PLUGIN_TIMEOUT", "").strip()
    if not text:
        return PLUGIN_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ZooError(f"ZOO_PLUGIN_TIMEOUT={text!r} is invalid: expected seconds (0: no limit)")
    return seconds


@contextlib.contextmanager
def plugin_time_limit(what: str, entry: Entry):
    """A plugin's build that runs past :func:`plugin_timeout` is a one-line :class:`ZooError` naming the plugin."""
    seconds = plugin_timeout()
    try:
        with time_limit(seconds, what):
            yield
    except TimeLimit:
        raise ZooError(f"{what} did not finish within {seconds:g} s (plugin '{entry.plugin}', {entry.source}); "
                       f"{HANGS}") from None


def _accepts(arch: Architecture, data: Dataset) -> bool:
    return data.kind in arch.kinds and (arch.tasks is None or data.task in arch.tasks)


def _lookup(table: dict[str, Entry], name: str, key: str) -> Entry:
    try:
        return table[name]
    except (KeyError, TypeError):  # TypeError: a list or dict given as the name
        close = difflib.get_close_matches(str(name), table, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ZooError(f"unknown {key} '{name}'.{hint} Available: {', '.join(sorted(table))}") from None


def _entry_point_plugins() -> Iterable[tuple[str, str, object]]:
    """Yield (name, source, loader) for every entry point in our group."""
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if dist is not None and dist.metadata["Name"] == SELF_DISTRIBUTION:
            source = "built-in"
        elif dist is not None:
            source = f"{dist.metadata['Name']} {dist.version}"
        else:
            source = "entry point"
        yield ep.name, source, ep.load


def _folder_plugins(folder: Path) -> Iterable[tuple[str, str, object]]:
    if not folder.is_dir():
        raise ZooError(f"plugins.dir={str(folder)!r} is not a directory: point it (or ZOO_PLUGIN_DIR) at a folder of *.py plugin files")
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue

        def load(path=path):
            name = f"zoo_user_plugins.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module

        yield path.stem, str(path), load


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]


def load_registry(plugin_dirs: Iterable[str | os.PathLike] = (), *, entry_points: bool = True,
                  plugins: Iterable[tuple[str, object]] = (), strict: bool | None = None) -> Registry:
    """Discover plugins and index their declarations.

    Args:
        plugin_dirs: folders of ``*.py`` plugin files (``plugins.dir`` / ``ZOO_PLUGIN_DIR``).
        entry_points: load the ``zoo.plugins`` entry points (built-ins and installed packages).
        plugins: extra ``(name, object)`` plugins to register, for tests and notebooks.
        strict: turn any plugin failure into a :class:`ZooError` (default: ``ZOO_STRICT_PLUGINS``).
    """
    if strict is None:
        strict = os.environ.get("ZOO_STRICT_PLUGINS", "") not in ("", "0", "false")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("ZOO_TRACE_PLUGINS", "") not in ("", "0", "false"):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    reg = Registry(pm)
    sources: dict[str, str] = {}

    timeout = plugin_timeout()
    import torch  # noqa: F401  the contract's own dependency, imported before any plugin's time limit starts:
    # a limit that expired inside torch's import would leave it half-initialised for the whole process
    candidates: list[tuple[str, str, object]] = []
    if entry_points:
        candidates += list(_entry_point_plugins())
    for folder in plugin_dirs:
        candidates += list(_folder_plugins(Path(folder).expanduser()))

    def fail(name: str, source: str, error: str) -> None:
        if strict:
            raise ZooError(f"plugin '{name}' ({source}) failed: {error} (unset ZOO_STRICT_PLUGINS to skip it)")
        reg.failures.append(Failure(name, source, error))

    for name, source, load in candidates:
        try:  # a plugin that raises, exits or hangs on import must not take Zoo down; it prints to stderr
            with contextlib.redirect_stdout(sys.stderr), time_limit(timeout, "import"):
                obj = load()
        except SystemExit as exc:
            fail(name, source, f"import failed: it called sys.exit({exc.code!r})")
            continue
        except TimeLimit:
            fail(name, source, f"import did not finish within {timeout:g} s; {HANGS}")
            continue
        except Exception as exc:
            fail(name, source, f"import failed: {_one_line(exc)}")
            continue
        _register(pm, reg, name, source, obj, sources, fail)
    for name, obj in plugins:
        _register(pm, reg, name, getattr(obj, "__file__", "registered in code"), obj, sources, fail)

    for hook, cls, table in (("zoo_tasks", Task, reg.tasks),
                             ("zoo_architectures", Architecture, reg.architectures),
                             ("zoo_datasets", Dataset, reg.datasets)):
        for impl in getattr(pm.hook, hook).get_hookimpls():
            name = impl.plugin_name
            others = [p for n, p in pm.list_name_plugin() if n != name]
            try:  # one plugin at a time, through pluggy's caller (so ZOO_TRACE_PLUGINS sees every call)
                with contextlib.redirect_stdout(sys.stderr):
                    results = pm.subset_hook_caller(hook, remove_plugins=others)()
                result = results[0] if results else None
            except Exception as exc:
                fail(name, sources[name], f"{hook}() raised {_one_line(exc)}")
                continue
            if not isinstance(result, (list, tuple)):
                fail(name, sources[name], f"{hook}() must return a list of zoo.{cls.__name__}, got {type(result).__name__}")
                continue
            for decl in result:
                problem = check_declaration(decl, cls)
                if problem:
                    fail(name, sources[name], f"{hook}(): {problem}")
                    continue
                if decl.name in table:
                    other = table[decl.name]
                    raise ZooError(
                        f"{cls.__name__.lower()} name '{decl.name}' is declared twice: by plugin "
                        f"'{other.plugin}' ({other.source}) and by plugin '{name}' ({sources[name]}); "
                        f"rename one or uninstall it")
                table[decl.name] = Entry(decl, name, sources[name])
    return reg


def _trace_before(hook: str, impls, kwargs) -> None:
    """``ZOO_TRACE_PLUGINS=1``: each hook call, and whose implementations it runs, on stderr."""
    print(f"zoo plugins: calling {hook}() of {', '.join(i.plugin_name for i in impls) or 'no plugin'}", file=sys.stderr)


def _trace_after(outcome, hook: str, impls, kwargs) -> None:
    if outcome.exception is not None:
        print(f"zoo plugins: {hook}() raised {_one_line(outcome.exception)}", file=sys.stderr)
        return
    for impl, result in zip(impls, outcome.get_result()):
        names = [getattr(d, "name", repr(d)) for d in result] if isinstance(result, (list, tuple)) else [repr(result)]
        print(f"zoo plugins: {hook}() of {impl.plugin_name} returned {', '.join(names) or 'nothing'}", file=sys.stderr)


def _unknown_hooks(pm: pluggy.PluginManager, obj) -> str | None:
    """A function marked ``@zoo.hookimpl`` whose name is no hook: the closest hook's name."""
    known = [n for n in dir(pm.hook) if n.startswith(f"{hookspecs.PROJECT}_")]
    for attr in dir(obj):
        if attr not in known and pm.parse_hookimpl_opts(obj, attr) is not None:
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return f"unknown hook '{attr}'{hint} (hooks: {', '.join(known)})"
    return None


def _register(pm, reg, name, source, obj, sources, fail) -> None:
    if name in sources:
        fail(name, source, f"a plugin named '{name}' is already registered from {sources[name]}")
        return
    unknown = _unknown_hooks(pm, obj)
    if unknown:
        fail(name, source, unknown)
        return
    try:
        pm.register(obj, name=name)
        pm.check_pending()
    except Exception as exc:  # pluggy rejects unknown hooks and bad signatures
        if pm.is_registered(obj):
            pm.unregister(obj)
        fail(name, source, _one_line(exc))
        return
    sources[name] = source


_defaults: dict[tuple[str, ...], Registry] = {}  # default_registry's, per ZOO_PLUGIN_DIR


def default_registry() -> Registry:
    """The registry of the entry points and ``ZOO_PLUGIN_DIR``, loaded on first use and cached (per folder)."""
    folder = os.environ.get("ZOO_PLUGIN_DIR")
    key = (folder,) if folder else ()
    if key not in _defaults:
        _defaults[key] = load_registry(key)
    return _defaults[key]


def share_as_default(registry: Registry, plugin_dirs: Sequence[str]) -> None:
    """``registry`` (of the entry points and ``plugin_dirs``) is also :func:`default_registry`'s where that
    would load the same folders: ``zoo train`` discovers the plugins once, not again to rebuild its logged model."""
    folder = os.environ.get("ZOO_PLUGIN_DIR")
    if tuple(str(d) for d in plugin_dirs) == ((folder,) if folder else ()):
        _defaults.setdefault(tuple(str(d) for d in plugin_dirs), registry)


def create_model(name: str, info: DataInfo, **overrides):
    """Build architecture ``name`` for ``info``: its defaults updated by ``overrides`` (the default registry)."""
    return default_registry().create_model(name, info, **overrides)


def load_dataset(name: str, seed: int = 0, **overrides):
    """Dataset ``name``'s :class:`zoo.Splits` for ``seed``: its defaults updated by ``overrides`` (the default registry)."""
    return default_registry().load_dataset(name, seed, **overrides)


def get_task(name: str) -> Task:
    """The registered :class:`zoo.Task` named ``name`` (the default registry)."""
    return default_registry().task(name)
