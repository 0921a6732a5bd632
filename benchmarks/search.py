#!/usr/bin/env python
"""What the asynchronous search, pruning and seed repeats buy, measured through the real command line.

Three parts, each in its own temporary folder with its own SQLite stores (``--parts`` picks):

  async    the 24-trial ``hparams_search=mlp_digits`` search with 2 workers (``hydra/launcher=parallel``)
           and trials of unequal length (``trainer.max_epochs=choice(2,16)`` added to the search space):
           batch-synchronous (``hydra.sweeper.optuna.asynchronous=false``, Hydra's way: each batch of
           2 waits for its slower trial) against asynchronous (a worker that finishes starts the next
           trial at once). Wall time of the whole command and the best validation accuracy reached.
  pruning  the same search (asynchronous, 2 workers, 16 epochs per trial) with
           ``hydra.sweeper.optuna.pruner=median`` against ``pruner=none``: wall time, best validation
           accuracy, how many trials were pruned.
  groupby  3 seeds x 4 configurations on digits (``hydra.sweeper.repeats=3``), then the table of
           ``zoo compare --sweep PARENT --group-by``, printed as it is.

Usage::

    .venv/bin/python benchmarks/search.py                      # all three (about 15 minutes here)
    .venv/bin/python benchmarks/search.py --parts async --trials 12
    .venv/bin/python benchmarks/search.py --quick              # a check that it runs (iris, few epochs)

The targets of issue 15: asynchronous <= 0.8 x the synchronous wall time; pruning within 0.5 points
of the best validation accuracy in <= 0.5 x the wall time. The report says whether each was met.
Both searches of a pair use the same sampler seed; the TPE suggestions still differ once trials
finish in a different order, so the best accuracy is compared, not the trials one by one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOO = [sys.executable, "-m", "zoo.cli"]
QUIET = ["trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false", "tracking.hist_every=0"]


def zoo(folder: Path, *args: str, timeout: float = 7200) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"}
    start = time.perf_counter()
    r = subprocess.run([*ZOO, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - start
    if r.returncode not in (0,):
        sys.exit(f"search.py: `zoo {' '.join(args)}` failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return took, r


def study(folder: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'mlruns' / 'optuna.db'}")


def search(folder: Path, ns, *extra: str) -> dict:
    folder.mkdir(parents=True)
    args = ["train", "hparams_search=mlp_digits", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
            "hydra.sweeper.optuna.n_jobs=2", f"hydra.sweeper.optuna.n_trials={ns.trials}", *ns.data, *QUIET, *extra]
    took, _ = zoo(folder, *args)
    s = study(folder, "mlp_digits")
    states = [t.state.name for t in s.trials]
    return {"wall_s": took, "best": s.best_value, "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL")}


def line(name: str, m: dict) -> str:
    return (f"  {name:<14} {m['wall_s']:8.1f} s   best/val_accuracy {m['best']:.4f}   "
            f"{m['complete']} complete, {m['pruned']} pruned, {m['failed']} failed")


def pair(root: Path, ns, title: str, base: tuple[str, list[str]], new: tuple[str, list[str]],
         target: float) -> None:
    """Run the search two ways; print both and new/base wall time against ``target``, and the accuracy gap."""
    a = search(root / base[0].replace(" ", "_"), ns, *base[1])
    b = search(root / new[0].replace(" ", "_"), ns, *new[1])
    ratio, gap = b["wall_s"] / a["wall_s"], (a["best"] - b["best"]) * 100
    print(f"\n{title}\n{line(base[0], a)}\n{line(new[0], b)}")
    print(f"  {new[0]} / {base[0]} wall time: {ratio:.2f} (target <= {target:.2f}: {'met' if ratio <= target else 'NOT met'}); "
          f"best accuracy {gap:.2f} points lower (target <= 0.5: {'met' if gap <= 0.5 else 'NOT met'})", flush=True)


def part_async(root: Path, ns) -> None:
    epochs = f"trainer.max_epochs=choice({ns.short},{ns.long})"
    pair(root, ns, f"{ns.trials} trials, 2 workers, trials of {ns.short} or {ns.long} epochs",
         ("synchronous", [epochs, "hydra.sweeper.optuna.asynchronous=false"]),
         ("asynchronous", [epochs, "hydra.sweeper.optuna.asynchronous=true"]), 0.8)


def part_pruning(root: Path, ns) -> None:
    epochs = f"trainer.max_epochs={ns.long}"
    pair(root, ns, f"{ns.trials} trials, 2 workers, {ns.long} epochs each, median pruning after 4 complete trials",
         ("no pruning", [epochs, "hydra.sweeper.optuna.pruner=none"]),
         ("median", [epochs, "hydra.sweeper.optuna.pruner=median",
                     "+hydra.sweeper.optuna.pruner_settings.n_startup_trials=4"]), 0.5)


def part_groupby(root: Path, ns) -> None:
    folder = root / "groupby"
    folder.mkdir(parents=True)
    took, r = zoo(folder, "train", "-m", *ns.data, "model=mlp,perceptron", "optimizer.lr=0.01,0.001",
                  f"trainer.max_epochs={ns.long}", "hydra.sweeper.repeats=3", *QUIET)
    parent = r.stdout.strip().split("parent run ")[-1].split()[0]
    _, cmp = zoo(folder, "compare", "--sweep", parent, "--group-by", "--metrics", "test/accuracy,best/val_accuracy")
    print(f"\n3 seeds x 4 configurations ({took:.0f} s): zoo compare --sweep {parent[:8]} --group-by")
    print(cmp.stdout, flush=True)


PARTS = {"async": part_async, "pruning": part_pruning, "groupby": part_groupby}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="search.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="async,pruning,groupby", help="comma-separated: async, pruning, groupby")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--short", type=int, default=2, help="epochs of a short trial")
    p.add_argument("--long", type=int, default=16, help="epochs of a long trial (and of every pruning trial)")
    p.add_argument("--quick", action="store_true", help="iris, 4 trials of 1 or 2 epochs: a check that it runs")
    ns = p.parse_args(argv)
    ns.data = ["data=digits"]
    if ns.quick:
        ns.trials, ns.short, ns.long, ns.data = 4, 1, 2, ["data=iris"]
    unknown = set(ns.parts.split(",")) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {', '.join(sorted(unknown))}; expected {', '.join(PARTS)}")
    print(f"search.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zoo-search-bench-") as tmp:
        for name in ns.parts.split(","):
            PARTS[name](Path(tmp), ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
