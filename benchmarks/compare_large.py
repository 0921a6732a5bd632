#!/usr/bin/env python
"""``zoo compare`` on a sweep of 1,000 runs: how long it takes, and that every run is in the table.

The sweep is written straight through ``MlflowClient`` into a SQLite store in a temporary folder
(no training): a parent run tagged as a sweep, and ``--runs`` children (default 1,000) tagged
``mlflow.parentRunId``, each with 4 params (learning rate, width, dropout, seed), 5 final metrics
and Zoo's ``zoo.monitor``/``zoo.direction`` tags, FINISHED. Then, timed as the user runs them
(the whole command, start-up included)::

    zoo compare --sweep PARENT                 every run, sorted by the sweep's objective
    zoo compare --sweep PARENT --group-by      one row per configuration, mean ± std over the seeds

and checked exact: the first table has one row per run, its best row is the run with the highest
``best/val_accuracy``, and the grouped table's counts add up to every run.

Usage::

    .venv/bin/python benchmarks/compare_large.py              # 1,000 runs
    .venv/bin/python benchmarks/compare_large.py --runs 5000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOO = [sys.executable, "-m", "zoo.cli"]


def make_sweep(uri: str, runs: int, seeds: int) -> tuple[str, dict[str, float]]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    exp = client.create_experiment("zoo")
    parent = client.create_run(exp, run_name="sweep (generated)", tags={
        "zoo.sweep": "optimizer.lr,model.width,model.dropout", "zoo.best_metric": "best/val_accuracy",
        "zoo.best_direction": "maximize"}).info.run_id
    rng = random.Random(0)
    best = {}
    now = int(time.time() * 1000)
    for i in range(runs):
        config, seed = divmod(i, seeds)
        params = {"optimizer.lr": f"{10 ** -(1 + config % 4):g}", "model.width": str(64 * (1 + config // 4 % 5)),
                  "model.dropout": f"{config // 20 / 10:g}", "seed": str(seed)}
        acc = round(rng.uniform(0.5, 0.99), 6)
        run = client.create_run(exp, run_name=" ".join(f"{k}={v}" for k, v in params.items()), tags={
            "mlflow.parentRunId": parent, "zoo.monitor": "best/val_accuracy", "zoo.direction": "maximize"})
        rid = run.info.run_id
        metrics = {"best/val_accuracy": acc, "test/accuracy": round(acc - rng.uniform(0, 0.05), 6),
                   "test/loss": round(rng.uniform(0.05, 1.5), 6), "val/loss": round(rng.uniform(0.05, 1.5), 6),
                   "train/loss": round(rng.uniform(0.05, 1.5), 6)}
        client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag("mlflow.runName", run.info.run_name)])
        client.set_terminated(rid, "FINISHED")
        best[rid] = acc
    client.set_terminated(parent, "FINISHED")
    return parent, best


def timed(folder: Path, *args: str) -> tuple[float, str]:
    """The command's wall time (and, printed, its CPU time: on a loaded machine the wall time waits for a core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run([*ZOO, *args], cwd=folder, capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"})
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"compare_large.py: `zoo {' '.join(args)}` failed:\n{r.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"  zoo {' '.join(a if len(a) < 20 else a[:8] for a in args)}: {took:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return took, r.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compare_large.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3, help="runs per configuration (the --group-by groups)")
    p.add_argument("--reps", type=int, default=1, help="repetitions of each command (the median is shown)")
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zoo-compare-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        parent, best = make_sweep(f"sqlite:///{folder / 'mlflow.db'}", ns.runs, ns.seeds)
        print(f"wrote a sweep of {ns.runs} runs in {time.perf_counter() - start:.0f} s (parent {parent[:8]}); "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        plain, grouped = [], []
        for _ in range(ns.reps):
            took, out = timed(folder, "compare", "--sweep", parent)
            plain.append(took)
            rows = [line for line in out.splitlines() if re.match(r"^[0-9a-f]{8}  ", line)]
            top = max(best, key=best.get)
            assert len(rows) == ns.runs, f"{len(rows)} rows for {ns.runs} runs"
            assert rows[0].startswith(top[:8]), f"the best run {top[:8]} is not first: {rows[0]}"
            took, gout = timed(folder, "compare", "--sweep", parent, "--group-by")
            grouped.append(took)
            counts = [int(m.group(1)) for m in re.finditer(r"\b(\d+)/\d+\b", gout)]
            assert sum(counts) == ns.runs, f"the groups count {sum(counts)} runs, not {ns.runs}"
        print(f"zoo compare --sweep PARENT: {statistics.median(plain):.1f} s for {ns.runs} rows "
              f"(every run; the best first)")
        print(f"zoo compare --sweep PARENT --group-by: {statistics.median(grouped):.1f} s for "
              f"{len(counts)} groups of {ns.seeds} (counts add up to {ns.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
