"""The table of ``zoo compare``: which columns, which order, and the cells.

Columns are the params whose values differ between the runs, the chosen metrics and the model
each run logged (its id: ``models:/<id>`` is what ``mlflow.pyfunc.load_model`` takes); rows are
sorted best first. Which way is best for a metric: the runs' own word first (the metric they
were trained to improve, :mod:`zoo.experiments.objective`), else its name (a loss, an error or a
time is better lower; a rate, an accuracy or an r2 higher).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import time
from typing import Sequence

from zoo.errors import ZooError
from zoo.experiments.objective import direction_of
from zoo.text import format_table
from zoo.tracking import tags

DURATION = "duration"  # a pseudo-metric: the run's wall time, from its start and end times
# Bookkeeping params that differ between runs without being a choice about the model or its training
# (the run's folder, its name, which is the NAME column, and where it was recorded).
VOLATILE_PARAMS = ("paths.output_dir", "tracking.run_name", "tracking.uri")
# A metric whose last name part matches is better when lower (a cost or a time), unless it is a rate.
LOWER_IS_BETTER = re.compile(r"loss|mse|mae|rmse|err|perplexity|ppl|nll|bpc|duration|time|seconds|_s$")
HIGHER_IS_BETTER = re.compile(r"per_s(ec)?$|throughput|accuracy|auc|f1|r2")
# Per-parameter and system series, listed last in a hint so that the metrics people sort by come first.
NOISY = ("grad_norm/", "weight_norm/", "system/", "perf/")


def duration_s(run) -> float | None:
    """Wall time of the run: end - start, or now - start while it is still running."""
    start, end = run.info.start_time, run.info.end_time
    if not start:
        return None
    if not end:
        end = time.time() * 1000 if run.info.status == "RUNNING" else None
    return None if end is None else max(0.0, (end - start) / 1000)


def value_of(run, key: str) -> float | None:
    if key == DURATION:
        return duration_s(run)
    return run.data.metrics.get(key)


def lower_is_better(metric: str, runs=()) -> bool:
    """Whether lower values of ``metric`` are better: as the runs were trained (the metric they
    monitor, or one of the same measure), else by its name."""
    direction = direction_of(metric, (r.data.tags for r in runs))
    if direction is not None:
        return direction == "minimize"
    name = metric.rsplit("/", 1)[-1].lower()
    return not HIGHER_IS_BETTER.search(name) and bool(LOWER_IS_BETTER.search(name))


def metric_names(runs) -> list[str]:
    return sorted({k for r in runs for k in r.data.metrics})


def listing(names: Sequence[str], n: int = 20) -> str:
    names = sorted(names, key=lambda k: (k.startswith(NOISY), k))
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more if names else "none"


def check_metric(metric: str, runs, flag: str) -> None:
    names = metric_names(runs)
    if metric == DURATION or metric in names:
        return
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ZooError(f"unknown metric '{metric}' in {flag}: no compared run has it.{hint} "
                   f"Metrics: {listing(names)}")


def metric_columns(runs, patterns: Sequence[str], explicit: bool) -> list[str]:
    """Metric names matching the glob patterns, in the patterns' order."""
    names = metric_names(runs)
    cols: list[str] = []
    for pat in patterns:
        hits = [DURATION] if pat == DURATION else [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits and explicit:
            close = difflib.get_close_matches(pat, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"no metric matches '{pat}' in --metrics.{hint} Metrics: {listing(names)}")
        cols += [h for h in hits if h not in cols]
    return cols


def differing_params(runs, extra: Sequence[str] = ()) -> list[str]:
    """Params whose value is not the same in every run (a missing param counts as a value)."""
    keys = sorted({k for r in runs for k in r.data.params})
    out = [k for k in keys if k not in VOLATILE_PARAMS and len({r.data.params.get(k) for r in runs}) > 1]
    return out + [k for k in expand_params(runs, extra) if k not in out]


def expand_params(runs, patterns: Sequence[str], flag: str = "--params") -> list[str]:
    """The params of the runs matching the glob patterns, in the patterns' order; a pattern matching none is an error."""
    keys = sorted({k for r in runs for k in r.data.params})
    out: list[str] = []
    for pat in patterns:
        hits = [k for k in keys if fnmatch.fnmatchcase(k, pat)]
        if not hits:
            close = difflib.get_close_matches(pat, keys, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"no param matches '{pat}' in {flag}.{hint} Params: {listing(keys)}")
        out += [h for h in hits if h not in out]
    return out


def sort_runs(runs, key: str | None, ascending: bool | None, value=value_of) -> tuple[list, bool | None]:
    """Runs best first by ``key`` (missing values last); chronological without a key."""
    if key is None:
        return sorted(runs, key=lambda r: r.info.start_time or 0), None
    asc = lower_is_better(key, runs) if ascending is None else ascending
    present = [r for r in runs if value(r, key) is not None]
    missing = [r for r in runs if value(r, key) is None]
    present.sort(key=lambda r: (value(r, key) * (1 if asc else -1), r.info.start_time or 0))  # ties: earlier first
    return present + sorted(missing, key=lambda r: r.info.start_time or 0), asc


def fmt_number(v: float | None) -> str:
    if v is None:
        return "-"
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4f}"
    return f"{v:.4g}"


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def clip(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def model_of(run) -> str | None:
    """The id of the model a run logged (MLflow 3 keeps it as a logged model, not as an artifact: ``models:/<id>``)."""
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    return max(outputs, key=lambda o: o.step).model_id if outputs else None


def status_of(run) -> str:
    """The run's status; ``PRUNED@<epoch>`` for a search trial its pruner stopped (FINISHED, tag ``zoo.pruned``)."""
    if run.data.tags.get(tags.PRUNED) == "true":
        return f"PRUNED@{run.data.tags.get(tags.PRUNED_EPOCH, '?')}"
    return run.info.status


def build_table(runs, params: Sequence[str], metrics: Sequence[str], value=value_of) -> list[tuple[str, ...]]:
    header = ("RUN", "NAME", "STATUS", *params, *metrics, "MODEL")
    rows = [header]
    for r in runs:
        cells = [r.info.run_id[:8], clip(r.info.run_name or "", 40), status_of(r)]
        cells += [clip(r.data.params.get(p, "-")) for p in params]
        cells += [fmt_duration(duration_s(r)) if m == DURATION else fmt_number(value(r, m)) for m in metrics]
        cells.append(model_of(r) or "-")
        rows.append(tuple(cells))
    return rows


def build_grouped_table(groups, keys: Sequence[str], metrics: Sequence[str], value=value_of) -> list[tuple[str, ...]]:
    """One row per group: its params, how many runs (finished/all), and each metric's mean ± std over them."""
    from zoo.experiments.groups import fmt_stat, group_stat

    header = (*keys, "RUNS", "STATUS", *[f"{m} (mean ± std)" for m in metrics])
    rows = [header]
    for g in groups:
        counts: dict[str, int] = {}
        for r in g.runs:
            counts[status_of(r).split("@")[0]] = counts.get(status_of(r).split("@")[0], 0) + 1
        cells = [clip(g.values[k]) for k in keys] + [f"{len(g.finished)}/{len(g.runs)}",
                                                     " ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
        cells += [fmt_stat(group_stat(g, lambda r, m=m: value(r, m)), len(g.finished)) for m in metrics]
        rows.append(tuple(cells))
    return rows


def render(rows: list[tuple[str, ...]]) -> str:
    """The rows as aligned columns, a line of dashes under the header."""
    return format_table(rows, rule=True)
