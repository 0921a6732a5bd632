"""``zoo models [PATTERN]``: the registered models, their versions and aliases, what they are and how well they do."""

from __future__ import annotations

import time

from zoo.cli.args import Parser
from zoo.text import format_table


def main(args: list[str]) -> int:
    from zoo.models.registry import list_models

    p = Parser("zoo models", "List the registered models (MLflow's Model Registry), newest version first.",
               "examples:\n  zoo models\n  zoo models 'digits*'")
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcards on the name (default: all)")
    p.add_store()
    ns = p.parse_args(args)
    rows = list_models(ns.pattern, ns.uri)
    if not rows:
        print(f"no registered model matches {ns.pattern!r} (register one: zoo register RUN_ID --name NAME)")
        return 0
    table = [("MODEL", "VERSION", "ALIASES", "ARCHITECTURE", "DATASET", "METRIC", "RUN", "REGISTERED")]
    for r in rows:
        t = r["tags"]
        metric = f"{t['zoo.metric']}={float(t['zoo.metric_value']):.4f}" if t.get("zoo.metric") else "-"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime((r["created"] or 0) / 1000))
        table.append((r["name"], r["version"], ",".join("@" + a for a in r["aliases"]) or "-",
                      t.get("zoo.model") or "-", t.get("zoo.dataset") or "-", metric, (r["run_id"] or "-")[:12], when))
    print(format_table(table))
    return 0
