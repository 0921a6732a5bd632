"""A sweep's overrides: parsed with Hydra's parser, crossed into jobs, and the part that names a job.

Pure functions over override text (``model=mlp,perceptron``, ``optimizer.lr=0.1``); they
create nothing and read no store.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable, Sequence

from omegaconf import DictConfig

from zoo.config import override_key
from zoo.errors import ZooError, one_line


def parse_overrides(items: Iterable[str], config_loader=None) -> list:
    """Hydra's parsed overrides (``hydra.core.override_parser.types.Override``); a bad one is a ZooError.

    ``config_loader`` (the sweep's, ``hydra_context.config_loader``) lets ``glob(...)`` list a group's options.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    out = []
    for item in items:
        try:
            out += parser.parse_overrides([item])  # (the plural form hands each override the loader)
        except Exception as exc:
            raise ZooError(f"cannot parse the sweep override {item!r}: {one_line(exc)}") from None
    return out


def job_label(overrides: Iterable[str], keys: Sequence[str]) -> str:
    """The overrides of a job whose keys vary in the sweep, in the sweep's order of keys (long
    numbers shortened: ``optimizer.lr=0.00443``)."""
    by_key = {override_key(o): o.lstrip("+~") for o in overrides}
    return " ".join(_short(by_key[k]) for k in keys if k in by_key)


def _short(override: str) -> str:
    key, _, value = override.partition("=")
    value = re.sub(r"\\(.)", r"\1", value)  # Hydra's escapes (cuda\:1) are not part of the value
    override = f"{key}={value}"
    try:
        number = float(value)
    except ValueError:
        return override
    if "." not in value and "e" not in value.lower():
        return override
    return f"{key}={number:.3g}"


def varying_keys(task_overrides: Sequence[str], sweeper: DictConfig | dict | None) -> list[str]:
    """Keys whose value changes from job to job: command-line sweeps, the sweeper's params and arms."""
    sweeper = sweeper or {}
    keys: list[str] = []
    params = dict(sweeper.get("params") or {})
    for o in parse_overrides([f"{k}={v}" for k, v in params.items()] + list(task_overrides)):
        if o.is_sweep_override() and o.key_or_group not in keys:
            keys.append(o.key_or_group)
    arms = [{override_key(o): o.split("=", 1)[-1] for o in arm} for arm in sweeper.get("arms") or []]
    for arm in arms:  # an arm's key varies when the arms do not all give it the same value
        for key in arm:
            if key not in keys and len({a.get(key) for a in arms}) > 1:
                keys.append(key)
    return keys


def grid_jobs(params: dict | None, arguments: Sequence[str], arms: Sequence[Sequence[str]] | None,
              config_loader=None) -> list[list[str]]:
    """Every job of a grid: the cartesian product of ``params`` and the command line's sweeps,
    once per arm (an arm's overrides come last, so they win). ``glob(...)`` over a config group
    needs the sweep's ``config_loader`` (Hydra's, which knows the group's options)."""
    lists: dict[str, list[str]] = {}
    for o in parse_overrides([f"{k}={v}" for k, v in (params or {}).items()] + list(arguments), config_loader):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ZooError(f"{o.input_line}: a grid sweep takes lists (a,b,c), choice() or range(); "
                               f"interval() needs a search: hparams_search=<preset> or hydra.sweeper.search=optuna")
            lists[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            lists[key] = [f"{key}={o.get_value_element_as_str()}"]
    grid = [list(c) for c in itertools.product(*lists.values())]
    if not arms:
        return grid
    return [combo + list(arm) for arm in arms for combo in grid]


def check_repeats(repeats, keys: Sequence[str]) -> int:
    """``hydra.sweeper.repeats``: an integer >= 1, and not together with a sweep over ``seed``."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ZooError(f"hydra.sweeper.repeats={repeats!r} is invalid: expected an integer >= 1 "
                       f"(the seeds every configuration runs with)")
    if repeats > 1 and "seed" in keys:
        raise ZooError(f"seed is swept and hydra.sweeper.repeats={repeats} runs every configuration with "
                       f"{repeats} seeds: use one of them")
    return repeats


def with_seeds(jobs: Sequence[Sequence[str]], repeats: int, base_seed: int) -> list[list[str]]:
    """Every job once per seed ``base_seed .. base_seed + repeats - 1``, the seeds of a job next to each other."""
    if repeats == 1:
        return [list(j) for j in jobs]
    return [list(j) + [f"seed={base_seed + i}"] for j in jobs for i in range(repeats)]
