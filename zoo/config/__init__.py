"""Configuration: plugin defaults become Hydra config nodes, and composed configs are validated.

Every registered architecture is stored in Hydra's ConfigStore as ``model/<name>`` (its defaults
plus ``name``), and every dataset as ``data/<name>``, so ``model=<name>`` works without a YAML
file. The same node is also stored as ``zoo/model/<name>`` so a YAML file in ``conf/model/`` can
extend it (``defaults: [/zoo/model/mlp@_here_, _self_]``) instead of repeating it.

``validate(cfg, registry)`` checks every value the run will use and raises a one-line
:class:`zoo.ConfigError` naming the key, before anything is created.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.errors import ConfigError, ZooError
from zoo.plugin.registry import Registry

# Zoo's own configs: the project's top-level conf/ folder, installed as the package zoo.config.conf.
CONF_PACKAGE = "zoo.config.conf"
CONF_DIR = Path(str(resources.files(CONF_PACKAGE)))


def register_configs(registry: Registry) -> None:
    """Store each plugin's defaults as a Hydra config node (``model/<name>``, ``data/<name>``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, table in (("model", registry.architectures), ("data", registry.datasets)):
        for name, entry in table.items():
            node = {"name": name, **_plain(entry.decl.defaults)}
            cs.store(group=group, name=name, node=node, provider=entry.plugin)
            cs.store(group=f"zoo/{group}", name=name, node=node, provider=entry.plugin)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------- overrides

def override_key(override: str) -> str:
    """The key an override sets: ``+model.dropout=0.1`` -> ``model.dropout``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def override_value(v: Any) -> str:
    """A Python value as the text of a Hydra command-line override (``[a,b]``, ``true``, ``null``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(override_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{override_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", s) and s.lower() not in ("true", "false", "null", "nan", "inf"):
        return s
    # quoted: a backslash escapes only a quote or the backslashes right before one (Hydra's grammar)
    s = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", s)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, s) + "'"


# ----------------------------------------------------------------------------------- validation

def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


def _check_like(key: str, value: Any, default: Any) -> None:
    """``value`` must have the type of the plugin's ``default`` (ints pass for floats)."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list like " + str(list(default)).replace(" ", ""))
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


def _int(key: str, value: Any, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(key, value, f"an integer >= {low}")
    return value


def _number(key: str, value: Any, low: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (value <= low if strict else value < low) or value != value:
        raise ConfigError(key, value, f"a number {'>' if strict else '>='} {low:g}")
    return float(value)


DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def validate(cfg: DictConfig, registry: Registry) -> dict:
    """Check the composed config; return the plain (resolved) config as a dict.

    Raises :class:`ConfigError` naming the key for a bad value and :class:`ZooError` for an
    unknown name or an incompatible model and dataset.
    """
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # an interpolation that cannot resolve
        raise ZooError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from None
    for group in ("model", "data", "trainer", "optimizer", "tracking"):
        if not isinstance(plain.get(group), dict):
            raise ZooError(f"config group '{group}' is missing: choose one with {group}=<name>")
    model, data = plain["model"].get("name"), plain["data"].get("name")
    arch, dataset = registry.check_pair(model, data)
    for group, entry in (("model", arch), ("data", dataset)):
        for key, value in plain[group].items():
            if key == "name":
                continue
            if key not in entry.decl.defaults:
                raise ConfigError(f"{group}.{key}", value,
                                  f"one of {group}={entry.decl.name}'s settings: {', '.join(entry.decl.defaults) or 'none'}")
            _check_like(f"{group}.{key}", value, entry.decl.defaults[key])

    if _int("seed", plain.get("seed"), 0) > 2**32 - 1:  # the largest seed numpy and scikit-learn accept
        raise ConfigError("seed", plain["seed"], "an integer from 0 to 4294967295")
    t = plain["trainer"]
    _int("trainer.max_epochs", t.get("max_epochs"))
    bs = t.get("batch_size")
    if bs != "full":
        if isinstance(bs, str) and bs.isdigit():
            bs = int(bs)
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise ConfigError("trainer.batch_size", bs, "an integer >= 1 (1 = stochastic GD) or 'full' (batch GD)")
    if not isinstance(t.get("device"), str) or not DEVICE.match(t["device"]):
        raise ConfigError("trainer.device", t.get("device"), "auto, cpu, cuda, cuda:N or mps")
    if t.get("patience") is not None:
        _int("trainer.patience", t["patience"])
    if t.get("grad_clip") is not None:
        _number("trainer.grad_clip", t["grad_clip"])
    _int("trainer.log_every", t.get("log_every"))
    if str(t.get("precision")) not in ("32", "bf16", "fp16"):
        raise ConfigError("trainer.precision", t.get("precision"), "32, bf16 or fp16")
    if t.get("strategy", "single") not in ("single", "ddp"):
        raise ConfigError("trainer.strategy", t.get("strategy"), "single or ddp (use trainer=ddp)")
    if t.get("strategy") == "ddp":
        _int("trainer.nproc", t.get("nproc"))
        _int("trainer.nnodes", t.get("nnodes"))
        if t.get("backend") not in ("auto", "gloo", "nccl"):
            raise ConfigError("trainer.backend", t.get("backend"), "auto, gloo or nccl")
    if not isinstance(t.get("compile"), bool):
        raise ConfigError("trainer.compile", t.get("compile"), "true or false")

    opt = plain["optimizer"]
    if "_target_" not in opt:
        raise ConfigError("optimizer", opt, "a config with _target_ (a torch.optim class), e.g. optimizer=adam")
    _check_targets(plain)
    if "lr" in opt:
        _number("optimizer.lr", opt["lr"])
    for key in ("weight_decay", "momentum"):
        if key in opt:
            _number(f"optimizer.{key}", opt[key], strict=False)

    tr = plain["tracking"]
    ge = tr.get("grad_every")
    if ge != "auto":
        _int("tracking.grad_every", ge, 0)
    _int("tracking.hist_every", tr.get("hist_every"), 0)
    _number("tracking.system_metrics_interval", tr.get("system_metrics_interval"))
    if not isinstance(tr.get("experiment"), str) or not tr["experiment"].strip():
        raise ConfigError("tracking.experiment", tr.get("experiment"), "a non-empty experiment name")
    return plain


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


def _check_targets(plain: dict, path: str = "") -> None:
    """Only ``optimizer._target_`` and ``scheduler._target_`` name code, and only torch.optim classes.

    Hydra's ``instantiate`` calls whatever ``_target_`` it meets, nested ones included, and a
    config can come from somewhere else than the user's own command line: a checkpoint
    (``resume=``), a shared run, an experiment preset. Any other callable would let that config
    write files or run code.
    """
    import torch

    bases = {"optimizer": torch.optim.Optimizer, "scheduler": torch.optim.lr_scheduler.LRScheduler}
    for key, value in plain.items():
        where = f"{path}{key}"
        if isinstance(value, dict):
            _check_targets(value, where + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _check_targets(item, f"{where}[{i}].")
        if key != "_target_":
            continue
        group = path[:-1]
        cls = _locate_class(value) if group in bases else None
        if cls is None or not issubclass(cls, bases[group]):
            expected = ({"optimizer": "a torch.optim optimizer class, e.g. torch.optim.Adam",
                         "scheduler": "a torch.optim.lr_scheduler class, e.g. torch.optim.lr_scheduler.StepLR"}
                        .get(group, "plain data: only optimizer._target_ and scheduler._target_ may name a class"))
            raise ConfigError(where, value, expected)


def to_plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
