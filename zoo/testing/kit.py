"""The kit: the registry to check, what to test in it, and the checks of a plugin, a dataset and
an architecture's Hydra node (the checks of an architecture on data are in ``zoo.testing.case``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.testing.report import first_line, kwargs, plain_value, raised, same

BATCH = 16          # examples in the one batch every check uses
STEPS = 300         # the most optimizer steps the overfit check takes (it stops once the loss is low enough)
LR = 1e-2           # Adam's learning rate for the overfit check
DROP = 0.90         # the fraction of the loss the overfit check must remove
EVAL_EVERY = 10     # the overfit check measures the eval-mode loss every this many steps
REPORT_STEPS = 5    # Adam steps on one batch before the report check calls the architecture's report
SEED = 0

# Argument names a test function takes to be parametrized by the kit.
PARAMS = ("zoo_plugin", "zoo_dataset", "zoo_arch", "zoo_case")


class ContractFailure(AssertionError):
    """A plugin broke the contract; the message is one line naming plugin, check and numbers."""


class Skip(Exception):
    """Nothing to check (no registered dataset of a declared kind); the message says why."""


@dataclass(frozen=True)
class Param:
    """One parameter of a generated test: a plugin, a dataset, an architecture or a case."""

    kit: "Kit" = field(repr=False, compare=False)
    what: str                       # "plugin", "dataset", "arch", "case" or "error"
    plugin: str
    name: str = ""                  # the dataset's or architecture's name
    kind: str = ""                  # the data kind of a case
    error: str = ""

    @property
    def id(self) -> str:
        if self.what == "plugin" or self.what == "error":
            return self.plugin
        if self.what == "case":
            return f"{self.plugin}:{self.name}-{self.kind}"
        return f"{self.plugin}:{self.name}"

    @property
    def label(self) -> str:
        return f"contract[{self.id if self.what != 'case' else f'{self.plugin}:{self.name}'}]"


class Kit:
    """The registry to check and everything loaded from it, shared by all generated tests."""

    _instances: dict[tuple, "Kit"] = {}

    @classmethod
    def get(cls, plugin_dirs: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> "Kit":
        key = (plugin_dirs, only)
        if key not in cls._instances:
            cls._instances[key] = cls(plugin_dirs, only)
        return cls._instances[key]

    def __init__(self, plugin_dirs: tuple[str, ...] = (), only: tuple[str, ...] = ()):
        from zoo.errors import ZooError
        from zoo.plugin.registry import load_registry

        self.plugin_dirs, self.only = plugin_dirs, only
        self.error = ""
        try:
            self.registry = load_registry(plugin_dirs, strict=False)
        except ZooError as exc:
            self.registry, self.error = None, f"the plugins cannot be loaded: {exc}"
        self._data: dict[str, Any] = {}     # dataset name -> Splits or the error message

    # ---- what to test

    def _selected(self, plugin: str) -> bool:
        return not self.only or plugin in self.only

    def params(self, what: str) -> list[Param]:
        if self.error:
            return [Param(self, "error", "registry", error=self.error)]
        reg = self.registry
        if what == "zoo_plugin":
            names = {e.plugin for t in (reg.architectures, reg.datasets, reg.tasks) for e in t.values()}
            names |= {f.plugin for f in reg.failures}
            names |= {n for n, _ in reg.pm.list_name_plugin()}
            chosen = sorted(n for n in names if self._selected(n))
            missing = [n for n in self.only if n not in names]
            out = [Param(self, "plugin", n) for n in chosen]
            out += [Param(self, "error", n, error=f"no plugin named '{n}' is registered;{_did_you_mean(n, names)} "
                          f"registered plugins: {', '.join(sorted(names))} (install yours, or point "
                          f"--zoo-plugin-dir=PATH / ZOO_PLUGIN_DIR at its folder)") for n in missing]
            return out
        if what == "zoo_dataset":
            return [Param(self, "dataset", e.plugin, n) for n, e in sorted(reg.datasets.items())
                    if self._selected(e.plugin)]
        if what == "zoo_arch":
            return [Param(self, "arch", e.plugin, n) for n, e in sorted(reg.architectures.items())
                    if self._selected(e.plugin)]
        if what == "zoo_case":
            return [Param(self, "case", e.plugin, n, kind) for n, e in sorted(reg.architectures.items())
                    if self._selected(e.plugin) for kind in dict.fromkeys(e.decl.kinds)]
        raise ValueError(f"unknown contract parameter {what!r}: one of {', '.join(PARAMS)}")

    # ---- running a check

    def run(self, param: Param, check: str) -> None:
        if param.what == "error":
            raise ContractFailure(f"{param.label} {check}: {param.error}")
        import torch

        from zoo.testing.case import Case

        try:
            with torch.random.fork_rng(devices=[]):
                if param.what == "plugin":
                    return self._check_plugin(param)
                if param.what == "dataset":
                    return self._check_targets(param) if check == "targets" else self._check_dataset(param)
                if param.what == "arch":
                    return self._check_hydra(param)
                case = Case(self, param, check)
                getattr(case, "check_" + check.replace(" ", "_"))()
        except (ContractFailure, Skip):
            raise
        except Exception as exc:  # plugin code raising somewhere the checks did not expect
            self.fail(param, check, raised("the check", exc))

    def fail(self, param: Param, check: str, message: str) -> None:
        raise ContractFailure(f"{param.label} {check}: {message}")

    def _check_plugin(self, p: Param) -> None:
        for f in self.registry.failures:
            if f.plugin == p.plugin:
                self.fail(p, "loads", f"{f.error} (from {f.source})")

    def load(self, name: str):
        """The dataset's Splits at its smoke settings (cached), or a string saying why not."""
        if name not in self._data:
            import torch

            decl = self.registry.datasets[name].decl
            try:
                torch.manual_seed(SEED)
                self._data[name] = self.registry.load_dataset(name, SEED, **decl.smoke)
            except Exception as exc:
                self._data[name] = raised(f"load({kwargs({'seed': SEED, **decl.defaults, **decl.smoke})})", exc)
        return self._data[name]

    def _check_dataset(self, p: Param) -> None:
        decl = self.registry.datasets[p.name].decl
        extra = sorted(set(decl.smoke) - set(decl.defaults))
        if extra:
            self.fail(p, "loads", f"smoke settings {extra} are not among its defaults ({', '.join(decl.defaults) or 'none'})")
        splits = self.load(p.name)
        if isinstance(splits, str):
            self.fail(p, "loads", splits)
        info = splits.info
        if (info.kind, info.task) != (decl.kind, decl.task):
            self.fail(p, "loads", f"declared kind={decl.kind} task={decl.task} but its DataInfo says "
                                  f"kind={info.kind} task={info.task}")
        if decl.task not in self.registry.tasks:
            self.fail(p, "loads", f"unknown task '{decl.task}'; known tasks: {', '.join(self.registry.tasks)}")
        sizes = {s: len(getattr(splits, s)) for s in ("train", "val", "test")}
        if not all(sizes.values()):
            self.fail(p, "loads", f"empty split at its smoke settings: {sizes}")

    def _check_targets(self, p: Param) -> None:
        """Every target of every split, as its task reads them (``Task.targets``: dtype, range against ``output_dim``)."""
        import torch

        splits = self.load(p.name)
        if isinstance(splits, str) or not hasattr(splits, "info"):
            raise Skip(f"{p.label}: it does not load (see its 'loads' check)")
        info = splits.info
        entry = self.registry.tasks.get(info.task)
        if entry is None:
            raise Skip(f"{p.label}: unknown task '{info.task}' (see its 'loads' check)")
        task = entry.decl
        for split in ("train", "val", "test"):
            for _, target in getattr(splits, split).batches(1024, shuffle=False):
                if not isinstance(target, torch.Tensor):
                    continue
                try:
                    problem = task.target_problem(info, target)
                except Exception as exc:
                    self.fail(p, "targets", raised(f"task {task.name}'s check of the {split} targets", exc))
                if problem:
                    self.fail(p, "targets", f"{split} split: {problem} (task {task.name}, output_dim={info.output_dim})")

    def _check_hydra(self, p: Param) -> None:
        from omegaconf import OmegaConf

        from zoo.config import compose, override_value, register_configs
        from zoo.config.validation import FREEZE

        defaults = dict(self.registry.architectures[p.name].decl.defaults)
        try:  # this architecture's node only: another plugin's bad defaults are its own failure
            register_configs(self.registry.only(p.name))
        except Exception as exc:
            bad = next((f"model.{k}={v!r} ({type(v).__name__})" for k, v in defaults.items()
                        if not plain_value(v)), "its defaults")
            self.fail(p, "hydra", f"{bad} cannot be a Hydra config value: {first_line(exc)}; "
                                  f"use ints, floats, bools, strings, None, and lists or dicts of them")
        expected = {"name": p.name, **defaults}  # `same` takes a tuple for the list the config holds
        overrides = [f"model.{k}={override_value(v)}" for k, v in defaults.items()]
        for label, extra in (("model=" + p.name, []), ("every default as an override", overrides)):
            try:  # the model group alone, from Zoo's configs, as `zoo train model=<name> ...` composes it
                cfg = compose([f"+model={p.name}", *extra], config_name=None)
                got = OmegaConf.to_container(cfg.model, resolve=True)
            except Exception as exc:
                self.fail(p, "hydra", f"composing {label} ({' '.join([f'model={p.name}', *extra])}) failed: "
                                      f"{first_line(exc)}")
            for key, want in expected.items():
                have = got.get(key, "<missing>")
                if not same(have, want):
                    how = f"after the override model.{key}={override_value(defaults[key])}" if extra else f"from {label}"
                    self.fail(p, "hydra", f"model.{key}: the default {want!r} ({type(want).__name__}) came back as "
                                          f"{have!r} ({type(have).__name__}) {how}")
            stray = sorted(set(got) - set(expected) - {FREEZE})  # model.freeze is Zoo's own (zoo.models.init)
            if stray:
                self.fail(p, "hydra", f"{label} gives settings that are not defaults: {stray}")


def _did_you_mean(name: str, names) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.5)
    return f" did you mean '{close[0]}'?" if close else ""
