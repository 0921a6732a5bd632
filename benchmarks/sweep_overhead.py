#!/usr/bin/env python
"""What a sweep costs beyond its trials' training: a grid of one-epoch trials on Hydra's serial launcher.

Each repetition runs ``zoo train -m seed=range(0,N) trainer.max_epochs=1`` (N trials, 20 by
default: the default MLP on digits, 20 steps each) in a fresh process, in a folder whose default
store ``mlruns/`` exists already, with Hydra's basic launcher (every trial in that one process,
one after the other). That process times Zoo's own functions as they run (the wrappers of
``profile_train.py``; nothing else changes), and this one times the whole command. Reported:

  per trial beyond training   (the sweep's wall time - the sum of the trials' loop+test seconds) / N:
                              the issue's goal is under 0.5 s
  the sweep's start           Python, imports, composing and checking every job, the parent run
                              (Hydra imports its plugins afresh, so the sweeper's own steps cannot be timed)
  per trial (median)          between trials (Hydra's job set-up: composing the job, its folder and
                              log, the callbacks), validation, data, model, run creation, inputs
                              (config, tags, datasets), loop+test, checkpoints etc., plots, model
                              logging, run end, the rest of the job
  the sweep's end             the parent's summary and figure, exit

Usage::

    .venv/bin/python benchmarks/sweep_overhead.py                        # 20 trials, 1 repetition
    .venv/bin/python benchmarks/sweep_overhead.py --trials 20 --reps 3 --markdown --json sweep.json
    .venv/bin/python benchmarks/sweep_overhead.py --trials 4 -- tracking.system_metrics=false
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRIAL_PHASES = ("between trials", "validation", "data", "model", "run creation", "inputs", "loop+test",
                "checkpoints etc.", "plots", "model logging", "run end", "rest of the job")


# =============================================================================== the child

def sweep_timers(timed) -> None:
    """The sweep's own parts, besides profile_train's phases of each run."""
    import zoo.cli.train as cli_train
    from zoo.experiments.sweep import SweepCallback

    timed(cli_train, "job", "job")  # one trial, as the task function calls it
    timed(SweepCallback, "open", "parent open")
    timed(SweepCallback, "_finish", "sweep end")


# =============================================================================== the parent

def _within(marks: list[dict], t0: float, t1: float) -> dict[str, float]:
    total: dict[str, float] = {}
    for m in marks:
        if m["t0"] >= t0 and m["t1"] <= t1:
            total[m["label"]] = total.get(m["label"], 0.0) + (m["t1"] - m["t0"])
    return total


def analyse(marks: list[dict], spawn: float, end: float) -> dict:
    """The sweep's wall time, its trials' loop+test seconds, and each trial's phases."""
    jobs = sorted((m for m in marks if m["label"] == "job"), key=lambda m: m["t0"])
    if not jobs:
        raise SystemExit("no trial ran: " + json.dumps(marks[-3:]))
    trials = []
    for i, job in enumerate(jobs):
        t = _within(marks, job["t0"], job["t1"])
        phases = dict.fromkeys(TRIAL_PHASES, 0.0)
        train = next((m for m in marks if m["label"] == "train" and job["t0"] <= m["t0"] <= job["t1"]), None)
        build = next((m for m in marks if m["label"] == "build" and job["t0"] <= m["t0"] <= job["t1"]), None)
        phases["between trials"] = job["t0"] - jobs[i - 1]["t1"] if i else 0.0
        phases["validation"] = build["t0"] - train["t0"] if train and build else 0.0
        phases["data"] = t.get("data", 0.0)
        phases["model"] = t.get("build", 0.0) - phases["data"]
        phases["run creation"] = t.get("run creation", 0.0)
        phases["inputs"] = t.get("inputs", 0.0)
        phases["loop+test"] = t.get("fit", 0.0)
        phases["plots"] = t.get("plots", 0.0) + t.get("report", 0.0)
        outputs = next((m for m in marks if m["label"] == "log_outputs" and job["t0"] <= m["t0"] <= job["t1"]), None)
        best = min((m for m in marks if m["label"] == "artifact" and outputs and outputs["t0"] <= m["t0"] <= outputs["t1"]),
                   key=lambda m: m["t0"], default=None)  # best.pt: the first artifact of log_outputs
        phases["checkpoints etc."] = best["t1"] - best["t0"] if best else 0.0
        # saving and checking the model here, then waiting for the writer that logs it while the plots are drawn
        phases["model logging"] = t.get("log_outputs", 0.0) - phases["plots"] - phases["checkpoints etc."]
        phases["run end"] = t.get("run end", 0.0)
        phases["rest of the job"] = (job["t1"] - job["t0"]) - sum(v for k, v in phases.items() if k != "between trials")
        trials.append(phases)
    wall = end - spawn
    trained = sum(p["loop+test"] for p in trials)
    n = len(trials)
    parts = {label: sum(m["t1"] - m["t0"] for m in marks if m["label"] == label)
             for label in ("parent open", "sweep end")}
    return {"wall_s": wall, "trials": n, "loop_test_s": trained, "per_trial_beyond_s": (wall - trained) / n,
            "start_s": jobs[0]["t0"] - spawn, "end_s": end - jobs[-1]["t1"], "parts": parts, "phases": trials,
            "marginal_s": statistics.median(sum(p.values()) - p["loop+test"] for p in trials[1:] or trials)}


def run_once(folder: Path, args: list[str], env: dict, timeout: float) -> dict:
    marks = folder / f"marks-{time.time_ns()}.jsonl"
    spawn = time.time()
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_child", str(marks), *args], cwd=folder,
                       env=env, capture_output=True, text=True, timeout=timeout)
    end = time.time()
    if r.returncode != 0:
        raise SystemExit(f"the sweep failed ({r.returncode}): {r.stderr.strip().splitlines()[-3:]}")
    rows = [json.loads(line) for line in marks.read_text().splitlines() if line.strip()]
    marks.unlink()
    return analyse(rows, spawn, end)


def report(runs: list[dict], markdown: bool) -> str:
    from bench import table

    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    n = runs[0]["trials"]
    rows = [["", "seconds (median)", "each run"]]
    for key, label in (("wall_s", "the whole sweep"), ("loop_test_s", f"its {n} trials' loop+test"),
                       ("per_trial_beyond_s", "per trial beyond training (goal < 0.5)"),
                       ("marginal_s", "per trial beyond training, start and end left out"),
                       ("start_s", "the sweep's start (before the first trial)"),
                       ("end_s", "the sweep's end (after the last trial)")):
        rows.append([label, f"{med(key):.2f}", " ".join(f"{r[key]:.2f}" for r in runs)])
    for part in ("parent open", "sweep end"):
        values = [r["parts"][part] for r in runs]
        rows.append([f"  of which {part}", f"{statistics.median(values):.2f}", " ".join(f"{v:.2f}" for v in values)])
    out = [table(rows, markdown), "", "each trial's phases (seconds; median over the trials of every run, and "
                                      "their sum over the trials, median over the runs)", ""]
    rows = [["phase", "per trial", "all trials"]]
    for p in TRIAL_PHASES:
        per = statistics.median(t[p] for r in runs for t in r["phases"])
        total = statistics.median(sum(t[p] for t in r["phases"]) for r in runs)
        rows.append([p, f"{per:.3f}", f"{total:.2f}"])
    out.append(table(rows, markdown))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(HERE))
    if argv[:1] == ["_child"]:
        from profile_train import child

        child(Path(argv[1]), argv[2:], extra=sweep_timers)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="arguments after -- go to zoo train -m as well (e.g. tracking.system_metrics=false)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", default="default", help="default (no OMP_NUM_THREADS) or N (OMP_NUM_THREADS=N)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--out", type=Path, help="also write the tables to this file")
    ns, rest = p.parse_known_args(argv)
    extra = rest[1:] if rest[:1] == ["--"] else rest
    if ns.trials < 1:
        p.error("--trials must be at least 1")
    args = ["-m", f"seed=range(0,{ns.trials})", f"trainer.max_epochs={ns.epochs}", *extra]
    from bench import _env

    env = _env(ns.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="zoo-sweep-overhead-") as tmp:
        folder = Path(tmp)
        from zoo.tracking import prepare_store

        prepare_store(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}", "zoo")  # a user's store exists already
        for i in range(ns.reps):
            runs.append(run_once(folder, args, env, ns.timeout))
            r = runs[-1]
            print(f"  run {i + 1}: {r['wall_s']:.2f} s for {r['trials']} trials, {r['loop_test_s']:.2f} s of them "
                  f"training: {r['per_trial_beyond_s']:.2f} s a trial beyond it", flush=True)
    title = (f"`zoo train {' '.join(args)}` (serial launcher), threads {ns.threads}, {ns.reps} run(s), "
             f"{time.strftime('%Y-%m-%d %H:%M')}")
    text = title + "\n\n" + report(runs, ns.markdown)
    print(text)
    if ns.out:
        ns.out.write_text(text + "\n")
    if ns.json:
        ns.json.write_text(json.dumps({"args": args, "threads": ns.threads, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
