"""``zoo compare``: runs side by side in the terminal, and their curves in one figure.

Which runs: an experiment's (``--experiment NAME``; default: ``MLFLOW_EXPERIMENT_NAME`` when it is
set, else the experiment of the most recently started run), a sweep's children (``--sweep PARENT_RUN_ID``: the runs tagged
``mlflow.parentRunId``), or runs named by id (full ids or unique prefixes of at least 4
characters, as the table prints them).

The table has one row per run: its id and name, status, the params whose values differ between
the runs, the chosen final metrics (default ``test/*``, ``best/*``), the run's duration and the id
of the model it logged (``models:/<model id>`` loads it). It is
sorted by ``--sort METRIC``, best first: the way the runs were trained to improve it (their
monitored metric, or one of the same measure: ``test/accuracy`` for ``best/val_accuracy``), else
ascending for loss-like names (loss, mse, mae, error, perplexity, time) and descending otherwise
(accuracy, r2, ...); ``--asc``/``--desc`` override.

``--plot FILE.png`` draws ``--metric`` (default ``train/loss``) of every run in one figure,
against ``--x step`` or ``--x time`` (seconds since each run started, from the metric timestamps).

The store is only read, through :class:`zoo.tracking.runs.Runs`: nothing here creates a run, an
experiment or a database. The table's columns and order are :mod:`zoo.experiments.table`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zoo.config import override_key
from zoo.errors import ZooError
from zoo.experiments.groups import group_keys, group_runs, group_stat
from zoo.experiments.table import (DURATION, build_grouped_table, build_table, check_metric, clip, differing_params,
                                   expand_params, listing, lower_is_better, metric_columns, metric_names, model_of,
                                   render, sort_runs, value_of)
from zoo.tracking import bounded_http, tags
from zoo.tracking.runs import Runs, short

DEFAULT_METRICS = ("test/*", "best/*", DURATION)


@dataclass
class Selection:
    """The runs to compare and how they were chosen (for the header line)."""

    title: str
    runs: list
    notes: list[str] = field(default_factory=list)
    sort: tuple[str, bool] | None = None  # (metric, ascending) when the selection knows its objective


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _split(values: Sequence[str] | None) -> list[str]:
    return [p.strip() for v in values or () for p in v.split(",") if p.strip()]


# -- which runs ------------------------------------------------------------------------------

def select_runs(store: Runs, ns) -> Selection:
    """The runs named on the command line: ids, a sweep's children, or an experiment's runs."""
    uri = store.uri
    experiments = store.experiments()
    by_name = {e.name: e for e in experiments}
    exp_ids = [e.experiment_id for e in experiments]
    chosen = [ns.sweep is not None, bool(ns.runs), ns.experiment is not None]
    if sum(chosen) > 1:
        raise ZooError("give run ids, --sweep PARENT_RUN_ID or --experiment NAME, not several of them")

    if ns.runs:
        all_runs = None if all(re.fullmatch(r"[0-9a-f]{32}", r) for r in ns.runs) else store.search(exp_ids)
        runs, seen = [], set()
        for ref in ns.runs:
            run = store.resolve(ref, all_runs)
            if run.info.run_id not in seen:
                seen.add(run.info.run_id)
                runs.append(run)
        return Selection(f"{_n(len(runs), 'run')} by id", runs)

    if ns.sweep is not None:
        parent = store.resolve(ns.sweep)
        children = store.children(parent.info.run_id, exp_ids)
        if not children:
            raise ZooError(f"run {short(parent)} has no child runs (no run is tagged {tags.PARENT}="
                           f"{parent.info.run_id[:8]}...): it is not a sweep's parent run; pass the parent's id, "
                           f"or list the runs with --experiment")
        # a finished sweep names its objective on the parent run (zoo.sweep): sort by it unless told otherwise
        metric, direction = parent.data.tags.get(tags.BEST_METRIC), parent.data.tags.get(tags.BEST_DIRECTION)
        sort = (metric, direction == "minimize") if metric and any(metric in r.data.metrics for r in children) else None
        return Selection(f"sweep {short(parent)}: {_n(len(children), 'child run')}", children, sort=sort)

    if ns.experiment is not None:
        exp = by_name.get(ns.experiment)
        if exp is None:
            close = difflib.get_close_matches(ns.experiment, list(by_name), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"unknown experiment '{ns.experiment}' in {uri}.{hint} "
                           f"Experiments: {', '.join(sorted(by_name)) or 'none'}")
    else:
        latest = store.latest(exp_ids)
        if not latest:
            raise ZooError(f"no runs in {uri}: train one first (zoo train), "
                           f"or pass --uri to the store you trained into")
        exp = next(e for e in experiments if e.experiment_id == latest[0].info.experiment_id)
    runs = store.search([exp.experiment_id])
    if not runs:
        others = sorted(n for n, e in by_name.items() if e is not exp)
        raise ZooError(f"experiment '{exp.name}' has no runs in {uri}; "
                       f"other experiments: {', '.join(others) or 'none'}")
    notes = []
    parents = {r.data.tags.get(tags.PARENT) for r in runs} - {None}
    shown = [r for r in runs if r.info.run_id not in parents]
    if len(shown) < len(runs):  # a sweep's parent run summarises its children: list the children only
        hidden = [r for r in runs if r.info.run_id in parents]
        notes.append(f"not shown: {_n(len(hidden), 'sweep parent run')} "
                     f"({', '.join(short(r) for r in hidden[:5])}); zoo compare --sweep ID compares one sweep's runs")
    return Selection(f"experiment '{exp.name}' (id {exp.experiment_id}): {_n(len(shown), 'run')}", shown, notes)


# -- the figure --------------------------------------------------------------------------------

def curves(store: Runs, runs, metric: str, x: str) -> list[tuple[object, list[float], list[float]]]:
    """(run, xs, ys) for every run that logged ``metric``; x is the step or seconds since start."""
    out = []
    for r in runs:
        hist = sorted(store.history(r.info.run_id, metric), key=lambda m: (m.step, m.timestamp))
        if not hist:
            continue
        if x == "time":
            t0 = r.info.start_time or min(m.timestamp for m in hist)
            hist.sort(key=lambda m: m.timestamp)
            xs = [(m.timestamp - t0) / 1000 for m in hist]
        else:
            xs = [m.step for m in hist]
        out.append((r, xs, [m.value for m in hist]))
    return out


def _label(run, params: Sequence[str]) -> str:
    """Short id and name, then what the command line set that the name does not already say."""
    name = run.info.run_name or ""
    set_keys = set()
    for item in run.data.tags.get(tags.OVERRIDES, "").split():
        key = override_key(item)
        set_keys |= {key, f"{key}.name"}
    chosen = [p for p in params if p in set_keys] if tags.OVERRIDES in run.data.tags else list(params)
    shown = [f"{p[:-5] if p.endswith('.name') else p.split('.')[-1]}={clip(run.data.params[p], 16)}" for p in chosen
             if p in run.data.params and f"{p}={run.data.params[p]}" not in name
             and not (p.endswith(".name") and f"{p[:-5]}={run.data.params[p]}" in name)][:3]
    return f"{run.info.run_id[:8]} {name}" + (f" | {' '.join(shown)}" if shown else "")


def check_plot_path(path: Path) -> None:
    """The figure's format is known from its suffix: check it before reading the store."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = path.suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ZooError(f"--plot {path}: cannot write {'.' + fmt if fmt else 'a file without a suffix'}; "
                       f"use one of {', '.join('.' + s for s in sorted(supported))} (e.g. curves.png)")


def plot(store: Runs, runs, metric: str, x: str, path: Path, params: Sequence[str]) -> int:
    """Overlay ``metric`` of every run in one figure; return the number of curves drawn."""
    from zoo.plots import pyplot

    plt = pyplot()
    lines = curves(store, runs, metric, x)
    if not lines:
        raise ZooError(f"--metric {metric}: none of the compared runs has a history for it; "
                       f"Metrics: {listing(metric_names(runs))}")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, xs, ys in lines:
        style = "-" if len(xs) > 1 else "o"
        ax.plot(xs, ys, style, lw=1.0, alpha=0.85, label=_label(run, params))
    ys_all = [y for _, _, ys in lines for y in ys if y == y]
    if ys_all and min(ys_all) > 0 and lower_is_better(metric, runs) and max(ys_all) / min(ys_all) > 20:
        ax.set_yscale("log")
    ax.set(xlabel="step" if x == "step" else "seconds since the run started", ylabel=metric,
           title=f"{metric} of {_n(len(lines), 'run')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ZooError(f"--plot {path}: cannot write it ({exc.strerror}); choose a writable path") from None
    finally:
        plt.close(fig)
    return len(lines)


# -- groups and picked values ---------------------------------------------------------------------

def picker(store: Runs, runs, pick: str):
    """``value(run, metric)``: the last logged value, or (``best``) the best of the run's history for it."""
    if pick == "last":
        return value_of
    cache: dict[tuple[str, str], float | None] = {}

    def best(run, key: str) -> float | None:
        if key == DURATION:
            return value_of(run, key)
        if (run.info.run_id, key) not in cache:
            values = [m.value for m in store.history(run.info.run_id, key) if m.value == m.value]
            low = lower_is_better(key, runs)
            cache[run.info.run_id, key] = (min(values) if low else max(values)) if values else None
        return cache[run.info.run_id, key]

    return best


def _grouped(runs, ns, metrics: list[str], value, title: str) -> list:
    """Print the table of groups (mean ± std and n of each metric); returns the runs of the groups shown."""
    keys = group_keys(runs, expand_params(runs, _split([ns.group_by]), "--group-by") if ns.group_by else None)
    groups = group_runs(runs, keys)
    asc = None
    if ns.sort:
        asc = lower_is_better(ns.sort, runs) if ns.ascending is None else ns.ascending
        means = {id(g): group_stat(g, lambda r: value(r, ns.sort)) for g in groups}
        groups.sort(key=lambda g: (means[id(g)] is None, (means[id(g)].mean if means[id(g)] else 0) * (1 if asc else -1)))
    shown = groups[:ns.limit] if ns.limit else groups
    order = "in the order they started" if asc is None else f"sorted by the mean of {ns.sort}, " + (
        "ascending" if asc else "descending")
    what = ", ".join(keys) if keys else "nothing (every run in one group)"
    print(f"{title}: {_n(len(groups), 'group')} by {what}; {order}{'; best values' if ns.pick == 'best' else ''}")
    print(render(build_grouped_table(shown, keys, metrics, value)))
    if len(shown) < len(groups):
        print(f"({len(groups) - len(shown)} more not shown: --limit {ns.limit})")
    print("mean ± sample standard deviation over each group's finished runs (RUNS: finished/all; pruned and "
          "failed runs are not averaged)")
    return [r for g in shown for r in g.runs]


# -- the command -------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    from zoo.tracking import default_uri

    p = argparse.ArgumentParser(
        prog="zoo compare",
        description="Compare runs side by side: the params that differ, final metrics, duration, status.",
        epilog="examples:\n"
               "  zoo compare                                   the latest experiment's runs\n"
               "  zoo compare --experiment zoo --sort test/accuracy\n"
               "  zoo compare --sweep 3f2a9c1d --plot loss.png --metric train/loss --x time\n"
               "  zoo compare 3f2a9c1d 8b7e6d5c --metrics 'test/*,val/loss'\n"
               "  zoo compare --sweep 3f2a9c1d --group-by --sort test/accuracy   mean ± std over seeds\n"
               "  zoo compare -e zoo --group-by model.name --pick best --metrics val/accuracy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_ID",
                   help="runs to compare: full ids or unique prefixes (4+ characters)")
    p.add_argument("--experiment", "-e", metavar="NAME",
                   help="compare this experiment's runs (default: MLFLOW_EXPERIMENT_NAME if set, else the "
                        "experiment of the most recent run)")
    p.add_argument("--sweep", metavar="PARENT_RUN_ID", help="compare the child runs of this sweep's parent run")
    p.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_uri(),
                   help="the store (default: MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    p.add_argument("--sort", "-s", metavar="METRIC",
                   help="sort by this metric, best first (e.g. test/accuracy, val/loss, duration)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="ascending", action="store_const", const=True, help="sort ascending")
    order.add_argument("--desc", dest="ascending", action="store_const", const=False, help="sort descending")
    p.add_argument("--metrics", action="append", metavar="PATTERNS",
                   help="metric columns, comma-separated glob patterns; repeatable "
                        "(default: 'test/*,best/*,duration'; 'duration' is the run's wall time)")
    p.add_argument("--params", action="append", metavar="PATTERNS",
                   help="param columns to show even when every run has the same value (glob patterns)")
    p.add_argument("--limit", "-n", type=int, metavar="N", help="show only the first N rows (after sorting)")
    p.add_argument("--group-by", nargs="?", const="", metavar="PARAMS",
                   help="one row per group of runs sharing these params (comma-separated glob patterns; alone: "
                        "every param that differs but seed, i.e. a configuration over its seeds), "
                        "each metric as mean ± std over the group's finished runs, and how many")
    p.add_argument("--pick", choices=("last", "best"), default="last",
                   help="each metric's last logged value (default), or its best one over the run's history")
    p.add_argument("--plot", metavar="FILE.png", type=Path,
                   help="write the curves of --metric for every run to this figure")
    p.add_argument("--metric", default="train/loss", help="the metric to plot (default train/loss)")
    p.add_argument("--x", choices=("step", "time"), default="step",
                   help="plot against the step, or seconds since each run started (default step)")
    return p


def main(args: Sequence[str]) -> int:
    ns = parser().parse_args(list(args))
    if ns.experiment is None and not ns.runs and ns.sweep is None:  # MLflow's default experiment, as zoo train's
        ns.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
    if ns.limit is not None and ns.limit < 1:
        raise ZooError(f"--limit {ns.limit} is invalid: expected an integer >= 1")
    if ns.plot:
        check_plot_path(ns.plot)
    with bounded_http(ns.uri):  # a person is waiting: a server that does not answer fails in seconds
        return _compare(Runs.open(ns.uri), ns)


def _compare(store: Runs, ns) -> int:
    sel = select_runs(store, ns)
    runs = sel.runs

    if ns.sort:
        check_metric(ns.sort, runs, "--sort")
    elif sel.sort:
        ns.sort = sel.sort[0]
        ns.ascending = sel.sort[1] if ns.ascending is None else ns.ascending
    if ns.ascending is not None and not ns.sort:
        raise ZooError(f"{'--asc' if ns.ascending else '--desc'} orders the rows by a metric: add --sort METRIC, "
                       f"e.g. --sort test/loss")
    if ns.plot:
        check_metric(ns.metric, runs, "--metric")
    metrics = metric_columns(runs, _split(ns.metrics) or DEFAULT_METRICS, explicit=bool(ns.metrics))
    if ns.sort and ns.sort not in metrics:
        metrics.insert(0, ns.sort)
    value = picker(store, runs, ns.pick)
    params = differing_params(runs, _split(ns.params))
    if ns.group_by is not None:
        shown = _grouped(runs, ns, metrics, value, f"{sel.title} in {ns.uri}")
    else:
        runs, asc = sort_runs(runs, ns.sort, ns.ascending, value)
        shown = runs[:ns.limit] if ns.limit else runs
        order = ("in the order they started" if asc is None else
                 f"sorted by {ns.sort}, {'ascending' if asc else 'descending'}")
        print(f"{sel.title} in {ns.uri}; {order}{'; best values' if ns.pick == 'best' else ''}")
        print(render(build_table(shown, params, metrics, value)))
        if len(shown) < len(runs):
            print(f"({len(runs) - len(shown)} more not shown: --limit {ns.limit})")
        if not params and len(runs) > 1:
            print("every param has the same value in these runs (--params PATTERN shows some anyway)")
        if any(model_of(r) for r in shown):
            print("MODEL is the run's logged model: models:/<MODEL> (or the run id) works in zoo predict, eval, serve, "
                  "register and zoo.load_model")
    for note in sel.notes:
        print(note)
    if ns.plot:
        n = plot(store, shown, ns.metric, ns.x, ns.plot, params)
        print(f"wrote {ns.plot}: {ns.metric} against {ns.x} for {_n(n, 'run')}")
    return 0
