"""``zoo register MODEL --name NAME [--alias ALIAS]``: a run's model as a version of a registered model."""

from __future__ import annotations

from zoo.cli.args import Parser


def main(args: list[str]) -> int:
    from zoo.models.registry import register_run_model

    p = Parser("zoo register", "Register a run's model (a sweep's parent: its best child) in MLflow's Model Registry.",
               "examples:\n  zoo register 3f2a9c1d --name digits-mlp --alias champion\n"
               "  zoo register <sweep parent id> --name digits-mlp\n"
               "then: zoo predict models:/digits-mlp@champion --input rows.csv --output out.csv")
    p.add_model()
    p.add_argument("--name", required=True, help="the registered model's name (created when new)")
    p.add_argument("--alias", help="point this alias (e.g. champion) at the new version")
    p.add_store()
    ns = p.parse_args(args)
    done = register_run_model(ns.model, ns.name, ns.alias, ns.uri)
    metric = f", {done['metric'][0]}={done['metric'][1]:.4f}" if done["metric"] else ""
    alias = f" (alias @{done['alias']})" if done["alias"] else ""
    print(f"registered {done['name']} version {done['version']}{alias}: run {done['run_id']}{metric}; "
          f"use it as models:/{done['name']}/{done['version']}"
          + (f" or models:/{done['name']}@{done['alias']}" if done["alias"] else ""))
    return 0
