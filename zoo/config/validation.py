"""Validation of a composed config: every value the run will use, checked before anything is created.

:func:`validate` resolves the config, checks the model's and the dataset's settings against
their plugin's defaults, then walks :data:`SETTINGS`: one rule per setting of Zoo's own groups,
and the ``_target_`` allow-list (:func:`check_targets`: Hydra's instantiate keys anywhere in the
config, at any depth), in the order the errors are reported. Every problem is one
:class:`zoo.ConfigError` line naming the key, the value and what was expected.

A rule table rather than Hydra structured-config schemas: the messages are pinned
(``tests/test_bad_input.py``, ``docs/bad-input.md``), and OmegaConf would word them its own way,
convert values on the way in (``'8'`` to 8, ``1.0`` to 1) and cannot type a setting such as
``trainer.batch_size``, an integer or the word ``full``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from zoo.errors import ConfigError, ZooError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from zoo.plugin.registry import Entry, Registry

_ABSENT = object()  # a key the config does not have


# ---------------------------------------------------------------------------------------- rules

@dataclass(frozen=True, kw_only=True)
class Rule:
    """What one setting must be. ``expected`` is the error's wording (each kind of rule has its own default).

    Args:
        optional: null (or no key at all) means the setting is off: nothing to check.
        if_present: a missing key is not checked (a null one is).
        only_if: the rule applies only when this holds for the whole (plain) config.
    """

    expected: str = ""
    optional: bool = False
    if_present: bool = False
    only_if: Callable[[dict], bool] | None = None

    def check(self, key: str, plain: dict) -> None:
        if self.only_if is not None and not self.only_if(plain):
            return
        value = _lookup(plain, key)
        if value is _ABSENT and (self.optional or self.if_present):
            return
        value = None if value is _ABSENT else value
        if value is None and self.optional:
            return
        value = self.read(value)
        problem = self.problem(value)
        if problem:
            raise ConfigError(key, value, problem)

    def read(self, value: Any) -> Any:
        """The value as the rule (and the error) sees it."""
        return value

    def problem(self, value: Any) -> str | None:
        """What was expected, when ``value`` breaks the rule; None when it keeps it."""
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Rule):
    """An integer from ``min`` (to ``max``), or one of ``words``; ``digits``: a quoted number counts as one."""

    min: int = 1
    max: int | None = None
    words: tuple[str, ...] = ()
    digits: bool = False

    def read(self, value: Any) -> Any:
        return int(value) if self.digits and isinstance(value, str) and value.isdecimal() else value

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.words:
            return None
        if not _is_int(value) or value < self.min:
            return self.expected or f"an integer >= {self.min}"
        if self.max is not None and value > self.max:
            return f"an integer from {self.min} to {self.max}"
        return None


@dataclass(frozen=True)
class Number(Rule):
    """A finite number above ``min`` (``strict=False``: from ``min``): not NaN, not infinite (``inf``, ``1e309``)."""

    min: float = 0.0
    strict: bool = True

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (value <= self.min if self.strict else value < self.min):
            return self.expected or f"a number {'>' if self.strict else '>='} {self.min:g}"
        return None


@dataclass(frozen=True)
class OneOf(Rule):
    """One of ``choices``; ``as_text``: compared as text (``precision: 32`` is ``'32'``)."""

    choices: tuple = ()
    as_text: bool = False

    def problem(self, value: Any) -> str | None:
        if (str(value) if self.as_text else value) in self.choices:
            return None
        return self.expected or f"{', '.join(map(str, self.choices[:-1]))} or {self.choices[-1]}"


@dataclass(frozen=True)
class Check(Rule):
    """Whatever ``test`` accepts."""

    test: Callable[[Any], bool] = bool

    def problem(self, value: Any) -> str | None:
        return None if self.test(value) else self.expected


@dataclass(frozen=True)
class Targets(Rule):
    """Every ``_target_`` (and ``_partial_``, ``_args_``, ...) in the config, at any depth: :func:`check_targets`."""

    def check(self, key: str, plain: dict) -> None:
        check_targets(plain)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ddp(plain: dict) -> bool:
    return plain["trainer"].get("strategy") == "ddp"


MAX_EXPERIMENT_NAME = 500  # MLflow's limit (mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH); config never imports MLflow
DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.\-]*")
FREEZE = "freeze"  # model.freeze: Zoo's own setting in every model's group (zoo.models.init)

# Zoo's own settings, checked in this order (the first problem is the one reported). A new
# setting is one line here; its default lives in conf/.
SETTINGS: dict[str, Rule] = {
    "seed": Int(0, max=2**32 - 1),  # the largest seed numpy and scikit-learn accept
    "trainer.max_epochs": Int(1),
    "trainer.batch_size": Int(1, words=("full",), digits=True,
                              expected="an integer >= 1 (1 = stochastic GD) or 'full' (batch GD)"),
    "trainer.device": Check(lambda v: isinstance(v, str) and DEVICE.match(v) is not None,
                            expected="auto, cpu, cuda, cuda:N or mps"),
    "trainer.patience": Int(1, optional=True),
    "trainer.grad_clip": Number(0, optional=True),
    "trainer.log_every": Int(1),
    "trainer.threads": Int(1, words=("auto",), if_present=True, expected="an integer >= 1 or auto"),
    "trainer.precision": OneOf(("32", "bf16", "fp16"), as_text=True),
    "trainer.strategy": OneOf(("single", "ddp"), if_present=True, expected="single or ddp (use trainer=ddp)"),
    "trainer.nproc": Int(1, only_if=_ddp),
    "trainer.nnodes": Int(1, only_if=_ddp),
    "trainer.backend": OneOf(("auto", "gloo", "nccl"), only_if=_ddp),
    "trainer.compile": Check(lambda v: isinstance(v, bool), expected="true or false"),
    "trainer.flush_denormal": Check(lambda v: isinstance(v, bool), if_present=True, expected="true or false"),
    "optimizer": Check(lambda v: "_target_" in v,
                       expected="a config with _target_ (a torch.optim class), e.g. optimizer=adam"),
    "_target_": Targets(),  # anywhere in the config
    "optimizer.lr": Number(0, if_present=True),
    "optimizer.weight_decay": Number(0, strict=False, if_present=True),
    "optimizer.momentum": Number(0, strict=False, if_present=True),
    "tracking.grad_every": Int(0, words=("auto",)),
    "tracking.hist_every": Int(0),
    "tracking.system_metrics": OneOf((True, False), expected="true or false (its default is "
                                     "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING when that is set)"),
    "tracking.system_metrics_interval": Number(0),
    "tracking.experiment": Check(lambda v: isinstance(v, str) and bool(v.strip()) and len(v) <= MAX_EXPERIMENT_NAME,
                                 expected=f"a non-empty experiment name of at most {MAX_EXPERIMENT_NAME} characters"),
    "tracking.register": Check(lambda v: isinstance(v, str) and bool(MODEL_NAME.fullmatch(v)), optional=True,
                               expected="a registered model's name (letters, digits, '-', '_', '.'; no '/', '@' or ':')"),
    "tracking.register_alias": Check(lambda v: isinstance(v, str) and v.isidentifier(), optional=True,
                                     expected="an alias such as champion (letters, digits and '_')"),
    "init_from": Check(lambda v: isinstance(v, str) and bool(v.strip()), optional=True,
                       expected="a model: a run id, runs:/<id>/model, models:/<name>/<version> or models:/<name>@<alias>"),
    "model.freeze": Check(lambda v: isinstance(v, list) and all(isinstance(p, str) and p for p in v), if_present=True,
                          expected="a list of parameter-name prefixes, e.g. [net.0,net.2]"),
}

REQUIRED_GROUPS = ("model", "data", "trainer", "optimizer", "tracking")


def _lookup(plain: dict, key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


# ------------------------------------------------------------------------------------- validate

def validate(cfg: DictConfig, registry: Registry) -> dict:
    """Check the composed config; return the plain (resolved) config as a dict.

    Raises :class:`ConfigError` naming the key for a bad value and :class:`ZooError` for an
    unknown name or an incompatible model and dataset.
    """
    from omegaconf import OmegaConf

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # an interpolation that cannot resolve
        key = getattr(exc, "full_key", None) or ""
        written = OmegaConf.to_container(cfg, resolve=False)
        for part in key.split("."):
            written = written.get(part) if isinstance(written, dict) else None
        where = f"{key}={written}" if key and isinstance(written, str) else (key or "the config")
        raise ZooError(f"{where} cannot be resolved: {str(exc).splitlines()[0]}") from None
    for group in REQUIRED_GROUPS:
        if not isinstance(plain.get(group), dict):
            raise ZooError(f"config group '{group}' is missing: choose one with {group}=<name>")
    arch, dataset = registry.check_pair(plain["model"].get("name"), plain["data"].get("name"))
    check_plugin_settings(plain, "model", arch)
    check_plugin_settings(plain, "data", dataset)
    for key, rule in SETTINGS.items():
        rule.check(key, plain)
    return plain


def check_plugin_settings(plain: dict, group: str, entry: Entry) -> None:
    """A model's or dataset's settings are the plugin's own, each of its default's type, and all there
    (``model.freeze`` is Zoo's)."""
    for key, default in entry.decl.defaults.items():
        if key not in plain[group]:  # ~model.dropout
            raise ZooError(f"{group}.{key} is missing: {group}={entry.decl.name} needs every one of its settings "
                           f"({key} defaults to {_hydra_text(default)}); set {group}.{key}=<value> instead of "
                           f"removing it")
    for key, value in plain[group].items():
        if key == "name" or (group, key) == ("model", FREEZE):
            continue
        if key not in entry.decl.defaults:
            raise ConfigError(f"{group}.{key}", value,
                              f"one of {group}={entry.decl.name}'s settings: {', '.join(entry.decl.defaults) or 'none'}")
        _check_like(f"{group}.{key}", value, entry.decl.defaults[key])


def _hydra_text(v: Any) -> str:
    from zoo.config.overrides import override_value

    return override_value(v)


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


def _check_like(key: str, value: Any, default: Any) -> None:
    """``value`` must have the type of the plugin's ``default`` (ints pass for floats); null only where the default is.

    A default of ``None`` or ``"auto"`` says nothing about the type: ``auto`` is a word that
    stands beside values of another type (``data.in_memory=auto|true|false``), which the plugin checks.
    """
    if default is None or default == "auto":
        return
    if value is None:
        raise ConfigError(key, value, _type_name(default) if not isinstance(default, (list, tuple))
                          else "a list like " + _hydra_text(list(default)))
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = _is_int(value)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list like " + _hydra_text(list(default)))
        if default:
            for v in value:
                _check_like(key, v, default[0]) if not isinstance(v, (list, tuple)) else None
        return
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(key, value, _type_name(default))


# ------------------------------------------------------------------------- the _target_ allow-list

def _locate_class(path: Any) -> type | None:
    """The class a dotted name refers to; only ``torch.*`` or an already loaded module is imported."""
    import importlib
    import sys

    if not isinstance(path, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", path):
        return None
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        if module in sys.modules or parts[0] == "torch":
            try:
                obj = importlib.import_module(module)
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            return obj if isinstance(obj, type) else None
    return None


# Hydra's instantiate reads these keys wherever they are, at any depth of dicts and lists.
INSTANTIATE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
# ... and Zoo expects only _target_ and _partial_, only in these groups: what each _target_ must be.
INSTANTIATED = {"optimizer": "a torch.optim optimizer class, e.g. torch.optim.Adam",
                "scheduler": "a torch.optim.lr_scheduler class, e.g. torch.optim.lr_scheduler.StepLR"}
PLAIN_DATA = "plain data: only optimizer._target_ and scheduler._target_ may name a class"


def instantiate_keys(node: Any, path: str = ""):
    """``(where, key, value)`` for every key of :data:`INSTANTIATE_KEYS` in ``node``, in dicts and lists at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in INSTANTIATE_KEYS:
                yield path, key, value
            yield from instantiate_keys(value, where)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from instantiate_keys(item, f"{path}[{i}]")


def check_targets(plain: dict) -> None:
    """Only ``optimizer`` and ``scheduler`` may hold ``_target_`` (a torch.optim class) and ``_partial_: true``.

    Hydra's ``instantiate`` calls whatever ``_target_`` it meets, in nested dicts and lists at any
    depth, and ``_args_``, ``_recursive_`` and ``_convert_`` change what it calls. A config can
    come from somewhere else than the user's own command line: a checkpoint (``resume=``), a
    shared run, an experiment preset. Any other callable would let that config write files or
    run code, so every other place of these keys is refused.
    """
    import torch

    bases = {"optimizer": torch.optim.Optimizer, "scheduler": torch.optim.lr_scheduler.LRScheduler}
    for group, key, value in instantiate_keys(plain):
        where = f"{group}.{key}" if group else key
        if group not in INSTANTIATED:
            raise ConfigError(where, value, PLAIN_DATA if key == "_target_" else
                              f"no {key} here: Hydra's instantiate keys belong to optimizer and scheduler only")
        if key == "_partial_":
            if value is not True:
                raise ConfigError(where, value, "true (it is built once the model exists)")
        elif key != "_target_":
            raise ConfigError(where, value, f"no {key} in {group}: only _target_, _partial_ and its settings")
        else:
            cls = _locate_class(value)
            if cls is None or not issubclass(cls, bases[group]):
                raise ConfigError(where, value, INSTANTIATED[group])
