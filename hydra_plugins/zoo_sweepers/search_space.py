"""The Optuna search space, from Hydra's sweep syntax: ``choice``, ``range``, ``interval``, ``tag(log, ...)``.

Next to the Optuna sweeper, so that Zoo's core never imports Optuna.
"""

from __future__ import annotations

from typing import Any, Sequence

from zoo.config import override_key, override_value
from zoo.errors import ZooError
from zoo.experiments.overrides import parse_overrides


def search_space(params: dict | None, arguments: Sequence[str]):
    """Optuna distributions from Hydra's sweep syntax, and the overrides every trial shares.

    ``a,b,c`` or ``choice(a,b,c)``: categorical; ``range(lo,hi[,step])``: integers lo..hi-step;
    ``interval(lo,hi)``: floats, ``tag(log, interval(lo,hi))`` on a log scale. Anything else
    is fixed for every trial. Returns ``(distributions, fixed_overrides, raw_keys)``: the
    categorical choices of ``raw_keys`` (lists, dicts) are override strings, used as they are.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists: dict[str, Any] = {}
    raw: set[str] = set()  # categorical keys whose choices are override strings already ([64], {a:1})
    fixed: list[str] = []
    items = [f"{k}={v}" for k, v in (params or {}).items()]
    for i, o in enumerate(parse_overrides(items + list(arguments))):
        key = o.get_key_element()
        v = o.value()
        where = f"hydra.sweeper.params: {o.input_line}" if i < len(items) else o.input_line
        if not o.is_sweep_override():
            fixed = [f for f in fixed if override_key(f) != override_key(key)] + [f"{key}={o.get_value_element_as_str()}"]
            dists.pop(key, None)
            continue
        fixed = [f for f in fixed if override_key(f) != override_key(key)]
        if o.is_choice_sweep():
            choices = _choices(o, where)
            if not choices:
                raise ZooError(f"{where} has no choices")
            plain = all(x is None or isinstance(x, (bool, int, float, str)) for x in choices)
            dists[key] = CategoricalDistribution(choices if plain else [override_value(x) for x in choices])
            if not plain:
                raw.add(key)
        elif o.is_range_sweep():
            if all(isinstance(x, int) for x in (v.start, v.stop, v.step)) and v.step > 0 and v.stop > v.start:
                last = v.start + ((v.stop - 1 - v.start) // v.step) * v.step  # range() excludes stop
                dists[key] = IntDistribution(v.start, last, step=v.step)
            else:
                values = list(o.sweep_iterator())
                if not values:
                    raise ZooError(f"{where} is an empty range")
                dists[key] = CategoricalDistribution(values)
        elif o.is_interval_sweep():
            lo, hi = v.start, v.end
            if not lo < hi:
                raise ZooError(f"{where}: the interval's low end must be below its high end")
            if "log" in v.tags and lo <= 0:
                raise ZooError(f"{where}: a log interval must be above 0")
            dists[key] = FloatDistribution(float(lo), float(hi), log="log" in v.tags)
        else:
            raise ZooError(f"{where}: expected a,b,c, choice(...), range(lo,hi) or [tag(log, )]interval(lo,hi)")
    if not dists:
        raise ZooError("the search has nothing to search: give hydra.sweeper.params (e.g. optimizer.lr: "
                       "tag(log, interval(1e-4, 1e-1))) or a sweep on the command line (optimizer.lr=interval(1e-4,0.1))")
    return dists, fixed, raw


def _choices(o, where: str) -> list:
    """The choices of a choice sweep as Python values, in the order written (a ``shuffle`` tag does not
    reorder them: a study's search space must stay the same from run to run).

    Through Hydra's public API: ``choice()``'s arguments arrive as plain values already; a quoted
    string of ``a,b,c`` and the quoted strings inside lists and dicts are written back as
    override text (``Transformer.str``) and parsed again as an ordinary override's ``value()``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Transformer

    v = o.value()
    if not hasattr(v, "list"):
        raise ZooError(f"{where}: glob() cannot be searched; list the choices: a,b,c or choice(a,b,c)")
    parser = OverridesParser.create()
    return [x if x is None or isinstance(x, (bool, int, float, str)) else
            parser.parse_override(f"_={Transformer.str(x)}").value() for x in v.list]
