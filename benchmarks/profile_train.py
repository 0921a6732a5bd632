#!/usr/bin/env python
"""Where the default ``zoo train``'s seconds go, phase by phase, from the shell to the exit.

Each repetition runs the real command (``zoo train`` with no arguments, or with the ones given after
``--``) in a fresh process, in a folder whose default store ``mlruns/`` exists already (as a
user's does), with the user's thread settings. That process times Zoo's own functions as they run
(wrapping them; nothing else changes): the parent times the whole command. The phases:

  imports           Python's start and the imports before the command runs (torch, Hydra, Zoo)
  config            the plugins' registry, Hydra's composition, the checks of the command line
  validation        train(): resume, validation, the registry's task
  data              Registry.load_dataset
  model             Registry.create_model, the optimizer and scheduler (the rest of build())
  loop set-up       Loop.__init__: the task's metrics (the built-in tasks' are zoo.metrics: no
                    torchmetrics import), the callbacks
  run creation      Tracker.start: the store, the run, its params (in the writer process by default: waiting
                    for its import of MLflow if it has not finished yet)
  loop              Loop.fit without its test pass
  test pass         Loop.test
  checkpoints etc.  best.pt and the inputs (config, tags, datasets)
  plots             drawing them: zoo.plots (loss curve, histograms) and the family's report
  model logging     what the training process spends on the model: saving and checking it (zoo.models.log),
                    then waiting for the writer (MLflow's log_model, in the writer process by default, runs
                    while the plots are drawn; their artifacts wait behind it): the rest of log_outputs
  run end           Tracker.finish: the last metrics flushed, the run ended, the writer stopped
  shutdown          from train()'s return to the process's exit (summary line, threads, exit handlers)
  other             whatever the phases above do not cover

Usage::

    .venv/bin/python benchmarks/profile_train.py                 # 3 repetitions of the default zoo train
    .venv/bin/python benchmarks/profile_train.py --reps 1 --markdown --out profile.md
    .venv/bin/python benchmarks/profile_train.py -- trainer.max_epochs=2   # other overrides
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("imports", "config", "validation", "data", "model", "loop set-up", "run creation", "loop", "test pass",
          "checkpoints etc.", "plots", "model logging", "run end", "shutdown", "other")


# =============================================================================== the child

def timers(marks: Path):
    """``mark(label, t0, t1)``, which writes one JSON line to ``marks``, and ``timed(owner, name, label)``,
    which wraps ``owner.name`` so that every call of it is marked."""
    out = open(marks, "a", buffering=1)

    def mark(label: str, t0: float, t1: float) -> None:
        out.write(json.dumps({"label": label, "t0": t0, "t1": t1}) + "\n")

    def timed(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def wrapper(*a, **k):
            t0 = time.time()
            try:
                return fn(*a, **k)
            finally:
                mark(label, t0, time.time())

        setattr(owner, name, wrapper)

    return mark, timed


def child(marks: Path, args: list[str], extra=None) -> None:
    """Run ``zoo train ARGS`` as the ``zoo`` command does, writing one JSON line per timed call to ``marks``
    (``extra(timed)``: more functions to time, for benchmarks/sweep_overhead.py)."""
    mark, timed = timers(marks)
    if args[:1] not in (["--help"], ["--cfg"]):  # as `zoo train` does first (zoo.cli.train.main), before torch's import
        from zoo.tracking.child import prestart

        prestart()

    import zoo.cli
    import zoo.plots
    import zoo.training.outputs as outputs_module
    import zoo.training.train as train_module
    from zoo.plugin.registry import Registry
    from zoo.tracking.run import Tracker
    from zoo.training.loop import Loop

    mark("imports", 0.0, time.time())
    timed(train_module, "train", "train")
    timed(Registry, "load_dataset", "data")
    timed(train_module, "build", "build")
    timed(Tracker, "start", "run creation")
    timed(Loop, "__init__", "loop set-up")
    timed(Loop, "fit", "fit")
    timed(Loop, "test", "test pass")
    timed(train_module, "log_outputs", "log_outputs")
    timed(train_module, "record_inputs", "inputs")
    timed(Tracker, "datasets", "inputs")  # the splits as MLflow dataset inputs
    for name in ("loss_curve", "histograms"):
        timed(zoo.plots, name, "plots")
    timed(Tracker, "artifact", "artifact")  # best.pt's, in log_outputs: before the model is logged
    timed(Tracker, "finish", "run end")
    timed(outputs_module, "call_plugin", "report")  # the family's report, inside log_outputs (and nowhere else)
    if extra is not None:
        extra(timed)
    sys.argv = ["zoo", "train", *args]
    zoo.cli.main()  # ends the process as the zoo command does


# =============================================================================== the parent

def phases(marks: list[dict], spawn: float, end: float) -> dict[str, float]:
    """Seconds of each phase, from the child's timed calls, the spawn and the exit."""
    total = {}
    for m in marks:
        total[m["label"]] = total.get(m["label"], 0.0) + (m["t1"] - m["t0"])
    first = {m["label"]: m for m in reversed(marks)}
    imports_end = first["imports"]["t1"]
    train = first.get("train")
    out = {p: 0.0 for p in PHASES}
    out["imports"] = imports_end - spawn
    if train is None:  # the command failed before training
        out["other"] = end - imports_end
        return out
    out["config"] = train["t0"] - imports_end
    out["data"] = total.get("data", 0.0)
    out["model"] = total.get("build", 0.0) - out["data"]
    out["loop set-up"] = total.get("loop set-up", 0.0)
    out["run creation"] = total.get("run creation", 0.0)
    out["test pass"] = total.get("test pass", 0.0)
    out["loop"] = total.get("fit", 0.0) - out["test pass"]
    out["plots"] = total.get("plots", 0.0) + total.get("report", 0.0)
    outputs = first.get("log_outputs")
    best = min((m for m in marks if m["label"] == "artifact" and outputs and outputs["t0"] <= m["t0"] <= outputs["t1"]),
               key=lambda m: m["t0"], default=None)  # best.pt: the first artifact of log_outputs
    best_s = best["t1"] - best["t0"] if best else 0.0
    out["model logging"] = total.get("log_outputs", 0.0) - out["plots"] - best_s
    out["checkpoints etc."] = best_s + total.get("inputs", 0.0)
    out["run end"] = total.get("run end", 0.0)
    build = first.get("build")
    out["validation"] = (build["t0"] - train["t0"]) if build else 0.0
    out["shutdown"] = end - train["t1"]
    out["other"] = (end - spawn) - sum(v for k, v in out.items() if k != "other")
    return out


def run_once(folder: Path, args: list[str], env: dict) -> dict:
    marks = folder / f"marks-{time.time_ns()}.jsonl"
    spawn = time.time()
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_child", str(marks), *args], cwd=folder,
                       env=env, capture_output=True, text=True, timeout=1800)
    end = time.time()
    if r.returncode != 0:
        raise SystemExit(f"zoo train failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in marks.read_text().splitlines() if line.strip()]
    marks.unlink()
    return {"total_s": end - spawn, "phases": phases(rows, spawn, end), "summary": r.stdout.strip().splitlines()[-1:]}


def report(runs: list[dict], markdown: bool) -> str:
    from bench import table

    total = statistics.median(r["total_s"] for r in runs)
    rows = [["phase", "seconds (median)", "share", "each run"]]
    for p in PHASES:
        values = [r["phases"][p] for r in runs]
        med = statistics.median(values)
        rows.append([p, f"{med:.2f}", f"{100 * med / total:.0f}%", " ".join(f"{v:.2f}" for v in values)])
    rows.append(["whole command", f"{total:.2f}", "100%", " ".join(f"{r['total_s']:.2f}" for r in runs)])
    return table(rows, markdown)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        child(Path(argv[1]), argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="arguments after -- go to zoo train (default: none, the default run)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", default="default", help="default (no OMP_NUM_THREADS) or N (OMP_NUM_THREADS=N)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--out", type=Path, help="also write the table to this file")
    ns, rest = p.parse_known_args(argv)
    args = rest[1:] if rest[:1] == ["--"] else rest
    sys.path.insert(0, str(HERE))
    from bench import _env

    env = _env(ns.threads)
    with tempfile.TemporaryDirectory(prefix="zoo-profile-") as tmp:
        folder = Path(tmp)
        from zoo.tracking import prepare_store

        prepare_store(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}", "zoo")  # a user's store exists already
        runs = []
        for i in range(ns.reps):
            runs.append(run_once(folder, args, env))
            print(f"  run {i + 1}: {runs[-1]['total_s']:.2f} s  {' '.join(runs[-1]['summary'])}", flush=True)
    title = (f"`zoo train {' '.join(args)}`".replace(" `", "`") + f", threads {ns.threads}, {ns.reps} runs, "
             f"{time.strftime('%Y-%m-%d %H:%M')}")
    text = title + "\n\n" + report(runs, ns.markdown)
    print(text)
    if ns.out:
        ns.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
