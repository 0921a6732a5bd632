"""What a finished sweep shows: its children side by side (markdown, CSV, text) and ``plots/sweep.png``."""

from __future__ import annotations

import csv
import io
import math
import textwrap
import warnings
from pathlib import Path
from typing import Sequence

from zoo.text import format_table
from zoo.tracking import tags


def summary_table(rows: Sequence[dict], metric: str | None, best: dict | None) -> dict[str, str]:
    """The children side by side: markdown (the parent's description), CSV and plain text."""
    tests = sorted({k for r in rows for k in r["metrics"] if k.startswith("test/")})
    cols = ["run", "status"] + ([metric] if metric else []) + tests + ["final/train_loss_epoch", "duration_s"]

    def cell(r: dict, c: str) -> str:
        if c == "run":
            return (r["name"] or r["run_id"][:12]) + (" (best)" if best is r else "")
        if c == "status":
            epoch = r["tags"].get(tags.PRUNED_EPOCH)
            return f"PRUNED@{epoch}" if r["tags"].get(tags.PRUNED) == "true" else r["status"]
        v = r["metrics"].get(c)
        return "" if v is None else f"{v:.4g}" if c != "duration_s" else f"{v:.1f}"

    body = [[cell(r, c) for c in cols] for r in rows]
    md = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n" + "".join(
        "| " + " | ".join(x.replace("|", "/") for x in line) + " |\n" for line in body)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run_id"] + cols)
    for r, line in zip(rows, body):
        writer.writerow([r["run_id"]] + line)
    text = textwrap.indent(format_table([cols] + body), "  ")
    return {"markdown": md, "csv": buf.getvalue(), "text": text}


def grouped_table(groups, metric: str, direction: str) -> dict:
    """The configurations of a sweep with repeats: mean ± std and n over their seeds, best first.

    Returns ``markdown``, ``csv`` and ``text`` as :func:`summary_table` does, and ``best``: the
    :class:`~zoo.experiments.groups.Group` with the best mean of ``metric`` (None if none has it).
    """
    from zoo.experiments.groups import fmt_stat, group_stat

    tests = sorted({k for g in groups for r in g.finished for k in r.data.metrics if k.startswith("test/")})
    cols = [metric] + [t for t in tests if t != metric]
    scored = [(g, {c: group_stat(g, lambda r, c=c: r.data.metrics.get(c)) for c in cols}) for g in groups]
    sign = -1 if direction == "maximize" else 1
    scored.sort(key=lambda gs: (gs[1][metric] is None, sign * gs[1][metric].mean if gs[1][metric] else 0))
    best = scored[0][0] if scored and scored[0][1][metric] is not None else None
    header = ["configuration", "n"] + [f"{c} (mean ± std)" for c in cols]
    body = [[g.label() + (" (best)" if g is best else ""), f"{len(g.finished)}/{len(g.runs)}"]
            + [fmt_stat(st[c], len(g.finished)) for c in cols] for g, st in scored]
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" + "".join(
        "| " + " | ".join(x.replace("|", "/") for x in line) + " |\n" for line in body)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["configuration", "n", "runs"] + [f"{c} {w}" for c in cols for w in ("mean", "std", "n")])
    for g, st in scored:
        cells = [g.label(), len(g.finished), len(g.runs)]
        for c in cols:
            cells += [st[c].mean, "" if st[c].std is None else st[c].std, st[c].n] if st[c] else ["", "", 0]
        writer.writerow(cells)
    return {"markdown": md, "csv": buf.getvalue(), "text": textwrap.indent(format_table([header] + body), "  "),
            "best": best, "stats": {id(g): st for g, st in scored}}


def plot_name(row: dict) -> str:
    """A child's name in the figure's legend: ``trial 3`` for a trial, else its (shortened) run name."""
    name = row["name"] or row["run_id"][:8]
    if name.startswith("trial ") and ":" in name:
        return name.split(":", 1)[0]
    return name if len(name) <= 48 else name[:45] + "..."


def sweep_plot(curves: dict[str, tuple[list, list, list]], values: dict[str, float | None], metric: str | None,
               path: Path) -> Path:
    """Training loss against steps and against seconds for every child, and the metric of each.

    ``curves``: name -> (steps, seconds since the child started, train/loss values).
    """
    from zoo.plots import pyplot

    plt = pyplot()
    panels = 3 if metric else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    for name, (steps, seconds, losses) in curves.items():
        smooth = _moving_average(losses, max(1, len(losses) // 100))
        axes[0].plot(steps, smooth, label=name, lw=1.2)
        axes[1].plot(seconds, smooth, label=name, lw=1.2)
    for ax, xlabel in zip(axes[:2], ("optimizer step", "seconds since the run started")):
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel("train/loss (moving average)")
        ax.set_xscale("log")  # runs of 30 and of 10,000 steps on one axis
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if curves:
        axes[0].legend(fontsize=7)
    if metric:
        names = list(values)
        axes[2].barh(range(len(names)), [v if v is not None and math.isfinite(v) else 0 for v in values.values()])
        axes[2].set_yticks(range(len(names)), names, fontsize=7)
        axes[2].invert_yaxis()
        axes[2].set_xlabel(metric)
        axes[2].grid(alpha=0.3, axis="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _moving_average(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out
