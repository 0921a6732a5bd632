"""``zoo compare``: runs side by side in the terminal, and their curves in one figure.

Which runs: an experiment's (``--experiment NAME``; default: the experiment of the most recently
started run), a sweep's children (``--sweep PARENT_RUN_ID``: the runs tagged
``mlflow.parentRunId``), or runs named by id (full ids or unique prefixes of at least 4
characters, as the table prints them).

The table has one row per run: its id and name, status, the params whose values differ between
the runs, the chosen final metrics (default ``test/*``, ``best/*``) and the run's duration. It is
sorted by ``--sort METRIC``, best first: ascending for loss-like names (loss, mse, mae, error,
perplexity, time), descending otherwise (accuracy, r2, ...); ``--asc``/``--desc`` override.

``--plot FILE.png`` draws ``--metric`` (default ``train/loss``) of every run in one figure,
against ``--x step`` or ``--x time`` (seconds since each run started, from the metric timestamps).

The store is only read: nothing here creates a run, an experiment or a database.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zoo.errors import ZooError

DEFAULT_METRICS = ("test/*", "best/*", "duration")
DURATION = "duration"  # a pseudo-metric: the run's wall time, from its start and end times
# Bookkeeping params that differ between runs without being a choice about the model or its training
# (the run's folder, its name, which is the NAME column, and where it was recorded).
VOLATILE_PARAMS = ("paths.output_dir", "tracking.run_name", "tracking.uri")
# A metric whose last name part matches is better when lower (a cost or a time), unless it is a rate.
LOWER_IS_BETTER = re.compile(r"loss|mse|mae|rmse|err|perplexity|ppl|nll|bpc|duration|time|seconds|_s$")
HIGHER_IS_BETTER = re.compile(r"per_s(ec)?$|throughput|accuracy|auc|f1|r2")
# Per-parameter and system series, listed last in a hint so that the metrics people sort by come first.
NOISY = ("grad_norm/", "weight_norm/", "system/", "perf/")
PARENT_TAG = "mlflow.parentRunId"
MIN_PREFIX = 4


@dataclass
class Selection:
    """The runs to compare and how they were chosen (for the header line)."""

    title: str
    runs: list
    notes: list[str] = field(default_factory=list)
    sort: tuple[str, bool] | None = None  # (metric, ascending) when the selection knows its objective


# -- the store --------------------------------------------------------------------------------

def open_store(uri: str):
    """A client over an existing store; never creates an empty SQLite database."""
    import mlflow

    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise ZooError(f"no MLflow store at {db}: train a run first (zoo train) or pass --uri "
                           f"(or set MLFLOW_TRACKING_URI) to the store you trained into")
    elif uri.startswith(("http://", "https://")):
        # a person is waiting: fail in seconds, not after MLflow's default minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    elif "://" not in uri and not uri.startswith("file:"):
        raise ZooError(f"--uri {uri!r} is not an MLflow tracking URI: use sqlite:///path/mlflow.db or http://host:port")
    client = mlflow.MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = msg if len(msg) <= 200 else msg[:200] + "..."
        raise ZooError(f"cannot read the MLflow store {uri}: {msg}; check --uri or MLFLOW_TRACKING_URI") from None
    return client


def _search(client, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
            limit: int | None = None) -> list:
    """Every active run matching the filter, across MLflow's pages."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, ViewType.ACTIVE_ONLY,
                                  max_results=min(limit or 1000, 1000), order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or (limit and len(runs) >= limit):
            return runs[:limit] if limit else runs


def _experiments(client) -> list:
    return list(client.search_experiments())


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _short(run) -> str:
    return f"{run.info.run_id[:8]} ({run.info.run_name})"


def _recent_runs_hint(client, exp_ids: list[str], n: int = 5) -> str:
    runs = _search(client, exp_ids, order_by=["attributes.start_time DESC"], limit=n) if exp_ids else []
    return ", ".join(_short(r) for r in runs) or "none"


def resolve_run(client, ref: str, uri: str, all_runs: list | None = None):
    """A run from its full id or a unique prefix (at least 4 characters)."""
    from mlflow.exceptions import MlflowException

    exp_ids = [e.experiment_id for e in _experiments(client)]
    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref)
        except MlflowException:
            pass
    elif len(ref) >= MIN_PREFIX and re.fullmatch(r"[0-9a-f]+", ref):
        all_runs = all_runs if all_runs is not None else _search(client, exp_ids)
        hits = [r for r in all_runs if r.info.run_id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ZooError(f"run id prefix '{ref}' matches {len(hits)} runs: "
                           f"{', '.join(r.info.run_id[:12] for r in hits[:6])}; give more characters")
    elif re.fullmatch(r"[0-9a-f]+", ref):
        raise ZooError(f"run id '{ref}' is too short: give at least {MIN_PREFIX} characters of the id")
    raise ZooError(f"unknown run id '{ref}' in {uri}; the most recent runs are "
                   f"{_recent_runs_hint(client, exp_ids)} (zoo compare --experiment NAME lists them all)")


def select_runs(client, ns, uri: str) -> Selection:
    """The runs named on the command line: ids, a sweep's children, or an experiment's runs."""
    experiments = _experiments(client)
    by_name = {e.name: e for e in experiments}
    exp_ids = [e.experiment_id for e in experiments]
    chosen = [ns.sweep is not None, bool(ns.runs), ns.experiment is not None]
    if sum(chosen) > 1:
        raise ZooError("give run ids, --sweep PARENT_RUN_ID or --experiment NAME, not several of them")

    if ns.runs:
        all_runs = None if all(re.fullmatch(r"[0-9a-f]{32}", r) for r in ns.runs) else _search(client, exp_ids)
        runs, seen = [], set()
        for ref in ns.runs:
            run = resolve_run(client, ref, uri, all_runs)
            if run.info.run_id not in seen:
                seen.add(run.info.run_id)
                runs.append(run)
        return Selection(f"{_n(len(runs), 'run')} by id", runs)

    if ns.sweep is not None:
        parent = resolve_run(client, ns.sweep, uri)
        children = _search(client, exp_ids, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
        if not children:
            raise ZooError(f"run {_short(parent)} has no child runs (no run is tagged {PARENT_TAG}="
                           f"{parent.info.run_id[:8]}...): it is not a sweep's parent run; pass the parent's id, "
                           f"or list the runs with --experiment")
        # a finished sweep names its objective on the parent run (zoo.sweep): sort by it unless told otherwise
        metric, direction = parent.data.tags.get("zoo.best_metric"), parent.data.tags.get("zoo.best_direction")
        sort = (metric, direction == "minimize") if metric and any(metric in r.data.metrics for r in children) else None
        return Selection(f"sweep {_short(parent)}: {_n(len(children), 'child run')}", children, sort=sort)

    if ns.experiment is not None:
        exp = by_name.get(ns.experiment)
        if exp is None:
            close = difflib.get_close_matches(ns.experiment, list(by_name), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"unknown experiment '{ns.experiment}' in {uri}.{hint} "
                           f"Experiments: {', '.join(sorted(by_name)) or 'none'}")
    else:
        latest = _search(client, exp_ids, order_by=["attributes.start_time DESC"], limit=1) if exp_ids else []
        if not latest:
            raise ZooError(f"no runs in {uri}: train one first (zoo train), "
                           f"or pass --uri to the store you trained into")
        exp = next(e for e in experiments if e.experiment_id == latest[0].info.experiment_id)
    runs = _search(client, [exp.experiment_id])
    if not runs:
        others = sorted(n for n, e in by_name.items() if e is not exp)
        raise ZooError(f"experiment '{exp.name}' has no runs in {uri}; "
                       f"other experiments: {', '.join(others) or 'none'}")
    notes = []
    parents = {r.data.tags.get(PARENT_TAG) for r in runs} - {None}
    shown = [r for r in runs if r.info.run_id not in parents]
    if len(shown) < len(runs):  # a sweep's parent run summarises its children: list the children only
        hidden = [r for r in runs if r.info.run_id in parents]
        notes.append(f"not shown: {_n(len(hidden), 'sweep parent run')} "
                     f"({', '.join(_short(r) for r in hidden[:5])}); zoo compare --sweep ID compares one sweep's runs")
    return Selection(f"experiment '{exp.name}' (id {exp.experiment_id}): {_n(len(shown), 'run')}", shown, notes)


# -- the table ---------------------------------------------------------------------------------

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


def lower_is_better(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1].lower()
    return not HIGHER_IS_BETTER.search(name) and bool(LOWER_IS_BETTER.search(name))


def _split(values: Sequence[str] | None) -> list[str]:
    return [p.strip() for v in values or () for p in v.split(",") if p.strip()]


def _metric_names(runs) -> list[str]:
    return sorted({k for r in runs for k in r.data.metrics})


def _listing(names: Sequence[str], n: int = 20) -> str:
    names = sorted(names, key=lambda k: (k.startswith(NOISY), k))
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more if names else "none"


def check_metric(metric: str, runs, flag: str) -> None:
    names = _metric_names(runs)
    if metric == DURATION or metric in names:
        return
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ZooError(f"unknown metric '{metric}' in {flag}: no compared run has it.{hint} "
                   f"Metrics: {_listing(names)}")


def metric_columns(runs, patterns: Sequence[str], explicit: bool) -> list[str]:
    """Metric names matching the glob patterns, in the patterns' order."""
    names = _metric_names(runs)
    cols: list[str] = []
    for pat in patterns:
        hits = [DURATION] if pat == DURATION else [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits and explicit:
            close = difflib.get_close_matches(pat, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"no metric matches '{pat}' in --metrics.{hint} Metrics: {_listing(names)}")
        cols += [h for h in hits if h not in cols]
    return cols


def differing_params(runs, extra: Sequence[str] = ()) -> list[str]:
    """Params whose value is not the same in every run (a missing param counts as a value)."""
    keys = sorted({k for r in runs for k in r.data.params})
    out = [k for k in keys if k not in VOLATILE_PARAMS and len({r.data.params.get(k) for r in runs}) > 1]
    for pat in extra:
        hits = [k for k in keys if fnmatch.fnmatchcase(k, pat)]
        if not hits:
            close = difflib.get_close_matches(pat, keys, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZooError(f"no param matches '{pat}' in --params.{hint} Params: {_listing(keys)}")
        out += [h for h in hits if h not in out]
    return out


def sort_runs(runs, key: str | None, ascending: bool | None) -> tuple[list, bool | None]:
    """Runs best first by ``key`` (missing values last); chronological without a key."""
    if key is None:
        return sorted(runs, key=lambda r: r.info.start_time or 0), None
    asc = lower_is_better(key) if ascending is None else ascending
    present = [r for r in runs if value_of(r, key) is not None]
    missing = [r for r in runs if value_of(r, key) is None]
    present.sort(key=lambda r: (value_of(r, key) * (1 if asc else -1), r.info.start_time or 0))  # ties: earlier first
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


def _clip(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def build_table(runs, params: Sequence[str], metrics: Sequence[str]) -> list[tuple[str, ...]]:
    header = ("RUN", "NAME", "STATUS", *params, *metrics)
    rows = [header]
    for r in runs:
        cells = [r.info.run_id[:8], _clip(r.info.run_name or "", 40), r.info.status]
        cells += [_clip(r.data.params.get(p, "-")) for p in params]
        cells += [fmt_duration(duration_s(r)) if m == DURATION else fmt_number(value_of(r, m)) for m in metrics]
        rows.append(tuple(cells))
    return rows


def render(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- the figure --------------------------------------------------------------------------------

def curves(client, runs, metric: str, x: str) -> list[tuple[object, list[float], list[float]]]:
    """(run, xs, ys) for every run that logged ``metric``; x is the step or seconds since start."""
    out = []
    for r in runs:
        hist = sorted(client.get_metric_history(r.info.run_id, metric), key=lambda m: (m.step, m.timestamp))
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
    for item in run.data.tags.get("zoo.overrides", "").split():
        key = item.split("=", 1)[0].lstrip("+~")
        set_keys |= {key, f"{key}.name"}
    chosen = [p for p in params if p in set_keys] if "zoo.overrides" in run.data.tags else list(params)
    shown = [f"{p[:-5] if p.endswith('.name') else p.split('.')[-1]}={_clip(run.data.params[p], 16)}" for p in chosen
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


def plot(client, runs, metric: str, x: str, path: Path, params: Sequence[str]) -> int:
    """Overlay ``metric`` of every run in one figure; return the number of curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = curves(client, runs, metric, x)
    if not lines:
        raise ZooError(f"--metric {metric}: none of the compared runs has a history for it; "
                       f"Metrics: {_listing(_metric_names(runs))}")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, xs, ys in lines:
        style = "-" if len(xs) > 1 else "o"
        ax.plot(xs, ys, style, lw=1.0, alpha=0.85, label=_label(run, params))
    ys_all = [y for _, _, ys in lines for y in ys if y == y]
    if ys_all and min(ys_all) > 0 and lower_is_better(metric) and max(ys_all) / min(ys_all) > 20:
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
               "  zoo compare 3f2a9c1d 8b7e6d5c --metrics 'test/*,val/loss'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_ID",
                   help="runs to compare: full ids or unique prefixes (4+ characters)")
    p.add_argument("--experiment", "-e", metavar="NAME",
                   help="compare this experiment's runs (default: the experiment of the most recent run)")
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
    p.add_argument("--plot", metavar="FILE.png", type=Path,
                   help="write the curves of --metric for every run to this figure")
    p.add_argument("--metric", default="train/loss", help="the metric to plot (default train/loss)")
    p.add_argument("--x", choices=("step", "time"), default="step",
                   help="plot against the step, or seconds since each run started (default step)")
    return p


def main(args: Sequence[str]) -> int:
    ns = parser().parse_args(list(args))
    if ns.limit is not None and ns.limit < 1:
        raise ZooError(f"--limit {ns.limit} is invalid: expected an integer >= 1")
    if ns.plot:
        check_plot_path(ns.plot)
    client = open_store(ns.uri)
    sel = select_runs(client, ns, ns.uri)
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
    params = differing_params(runs, _split(ns.params))
    runs, asc = sort_runs(runs, ns.sort, ns.ascending)
    shown = runs[:ns.limit] if ns.limit else runs

    order = ("in the order they started" if asc is None else
             f"sorted by {ns.sort}, {'ascending' if asc else 'descending'}")
    print(f"{sel.title} in {ns.uri}; {order}")
    print(render(build_table(shown, params, metrics)))
    if len(shown) < len(runs):
        print(f"({len(runs) - len(shown)} more not shown: --limit {ns.limit})")
    if not params and len(runs) > 1:
        print("every param has the same value in these runs (--params PATTERN shows some anyway)")
    for note in sel.notes:
        print(note)
    if ns.plot:
        n = plot(client, shown, ns.metric, ns.x, ns.plot, params)
        print(f"wrote {ns.plot}: {ns.metric} against {ns.x} for {_n(n, 'run')}")
    return 0
