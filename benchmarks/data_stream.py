"""Data larger than memory: steps per second from memory, streamed from disk, and a plain DataLoader loop.

Generates a digits-sized classification file (64 float32 features, 10 classes; ``--rows`` rows
written a chunk at a time as ``x.npy`` and ``y.npy``) several times larger than the memory budget,
then trains the default ``mlp`` (64-256-256-10, Adam 1e-3) at batch 256 for ``--epochs`` on it
three ways, each in its own process with ``OMP_NUM_THREADS=1``, and samples the memory of each
process and its children (DataLoader workers, the metric writer) every 0.1 s (:func:`peak_memory`:
PSS, so a page shared by several processes counts once):

* (a) memory: ``zoo train data=arrays data.in_memory=true``: the inputs on the device whole
  (``TensorSplit``); steps/s is the run's ``perf/steps_per_s`` read back from MLflow;
* (b) streamed: ``data.in_memory=auto data.memory_budget=BUDGET``: the ``.npy`` read in place a
  batch at a time (``StreamSplit``), by a reader thread or worker processes as ``data.workers``
  says (``--workers``, or ``streamed@W`` in ``--variants``); the same measure;
* (c) plain loop: a ``torch.utils.data.DataLoader`` over a map-style dataset on the memory-mapped
  file (``batch_size=256, shuffle=True, num_workers=2``, per-row ``__getitem__`` and the default
  collate), the same model and optimizer, no validation pass, nothing logged: steps/s of its loop;
* fixed cost: (b)'s command on a file of 20,000 rows (``fixed@W`` for ``streamed@W``): the memory
  of Python, torch, MLflow and the processes that any run has, whatever its data. The peak of (b)
  less this is what its data took, which is what ``data.memory_budget`` bounds.

The issue's targets: (b)/(a) >= 0.8, and what (b)'s data took under the budget::

    .venv/bin/python benchmarks/data_stream.py [--rows 4000000] [--budget 256MB] [--workers W] [--json out.json]
    .venv/bin/python benchmarks/data_stream.py --variants memory,streamed@0,streamed@2,fixed@0,fixed@2

Defaults: 4,000,000 rows (1.0 GB of inputs: 4x the 256 MB budget), one epoch (10,938 steps),
about 5 minutes on 2 cores. ``tests/test_data_stream.py`` runs it on a tiny file (no figure asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FEATURES, CLASSES = 64, 10
FIXED_ROWS = 20_000  # the fixed-cost run's file: what any streamed run costs, whatever its data


def generate(folder: Path, rows: int, seed: int = 0, chunk: int = 250_000) -> Path:
    """``x.npy`` (rows x 64 float32, written a chunk at a time) and ``y.npy`` (int64 labels): Gaussian classes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, rows)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    for start in range(0, rows, chunk):
        part = y[start:start + chunk]
        x[start:start + len(part)] = centres[part] + 1.5 * rng.standard_normal((len(part), FEATURES), dtype=np.float32)
    x.flush()
    del x
    np.save(folder / "y.npy", y)
    return folder


MEMORY_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")


def memory_of(pid: int) -> dict[str, int] | None:
    """A process's resident memory from ``/proc/PID/smaps_rollup`` (bytes): ``Rss``, and ``Pss``
    (proportional set size: a page shared by k processes counts 1/k in each) split into its
    anonymous, file-backed and shared-memory parts. None once the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in MEMORY_FIELDS:
            found[key] = int(rest.split()[0]) * 1024
    return found if len(found) == len(MEMORY_FIELDS) else None


def peak_memory(proc: subprocess.Popen, every: float = 0.1) -> tuple[dict[str, int], float]:
    """Wait for ``proc``, sampling it and its children (DataLoader workers, the metric writer) every
    ``every`` s; the peaks of the tree's sums, and its seconds.

    ``pss``: the peak of the tree's summed PSS, every page counted once however many processes map
    it; ``anon``: the anonymous and shared-memory part of the PSS at that moment (memory the run
    holds; ``file`` is pages of files it has mapped: torch's libraries and the memory-mapped data,
    page cache the kernel can reclaim); ``rss``: the peak of the summed RSS, which counts a shared
    page once per process mapping it (forked workers share the libraries and the parent's heap)."""
    import psutil

    started, peak = time.perf_counter(), {"pss": 0, "anon": 0, "file": 0, "rss": 0}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            pids = [proc.pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.Error:
            pids = [proc.pid]
        tree = [m for m in map(memory_of, pids) if m]
        total = {k: sum(m[k] for m in tree) for k in MEMORY_FIELDS}
        if total["Pss"] > peak["pss"]:
            peak.update(pss=total["Pss"], anon=total["Pss_Anon"] + total["Pss_Shmem"], file=total["Pss_File"])
        peak["rss"] = max(peak["rss"], total["Rss"])
        time.sleep(every)
    return peak, time.perf_counter() - started


def zoo_run(name: str, folder: Path, work: Path, args, extra: list[str]) -> dict:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "zoo.cli", "train", "model=mlp", "data=arrays", f"data.path={folder}",
           f"trainer.batch_size={args.batch}", f"trainer.max_epochs={args.epochs}", f"trainer.device={args.device}",
           "tracking.system_metrics=false", "tracking.log_model=false", f"tracking.uri={uri}",
           f"tracking.experiment={name}", f"hydra.run.dir={work / name}", *extra]
    proc = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, seconds = peak_memory(proc)
    if proc.returncode:
        raise SystemExit(f"{name} failed: {proc.stderr.read()[-2000:]}")
    import mlflow

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    m = run.data.metrics
    return {"steps_per_s": m["perf/steps_per_s"], "steps": int(m["perf/steps"]), "memory": peak,
            "seconds": seconds, "test_accuracy": m["test/accuracy"]}


def plain_loop(folder: str, batch: int, epochs: int, workers: int) -> None:
    """Variant (c), run in its own process: prints its steps/s as JSON."""
    import torch

    class Rows(torch.utils.data.Dataset):
        def __init__(self):
            self.x, self.y = np.load(f"{folder}/x.npy", mmap_mode="r"), np.load(f"{folder}/y.npy")

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return torch.from_numpy(np.array(self.x[i])), int(self.y[i])

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(Rows(), batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    steps, started = 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - started), "steps": steps}))


def plain_run(folder: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--plain-loop", str(folder), "--batch", str(args.batch), "--epochs",
           str(args.epochs), "--plain-workers", str(args.plain_workers)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, seconds = peak_memory(proc)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"plain loop failed: {err[-2000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "memory": peak, "seconds": seconds}


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--budget", default="256MB", help="data.memory_budget of the streamed run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", default="default",
                        help="data.workers of the streamed and fixed runs (default: the config's); a variant "
                             "streamed@W or fixed@W sets its own")
    parser.add_argument("--plain-workers", type=int, default=2, help="DataLoader workers of the plain loop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="memory,streamed,plain,fixed")
    parser.add_argument("--work", type=Path, help="the generated file and the store go here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plain-loop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_loop:
        return plain_loop(args.plain_loop, args.batch, args.epochs, args.plain_workers)
    from zoo.plugin.arrays import budget_bytes, human

    budget = budget_bytes(args.budget)
    with tempfile.TemporaryDirectory(prefix="zoo-stream-bench-") as tmp:
        work = args.work or Path(tmp)
        folder = work / "data"
        folder.mkdir(parents=True, exist_ok=True)
        generate(folder, args.rows)
        size = (folder / "x.npy").stat().st_size
        print(f"data: {args.rows:,} rows x {FEATURES} float32 = {human(size)} ({size / budget:.1f}x the budget "
              f"{args.budget}); mlp 64-256-256-10, batch {args.batch}, {args.epochs} epoch(s), data.workers={args.workers}, "
              f"{args.device}, OMP_NUM_THREADS=1")
        runs = {}
        for variant in args.variants.split(","):
            kind, _, workers = variant.partition("@")
            workers = workers or args.workers
            streamed = [f"data.workers={workers}"] if workers != "default" else []
            if kind == "memory" and not _:
                runs[variant] = zoo_run(variant, folder, work, args, ["data.in_memory=true"])
            elif kind == "streamed":
                runs[variant] = zoo_run(variant, folder, work, args, [
                    "data.in_memory=auto", f"data.memory_budget={args.budget}", *streamed])
            elif kind == "fixed":
                small = work / "small"
                if not small.exists():
                    small.mkdir()
                    generate(small, FIXED_ROWS)
                runs[variant] = zoo_run(variant, small, work, args, ["data.in_memory=false", *streamed])
            elif kind == "plain" and not _:
                runs[variant] = plain_run(folder, args)
            else:
                raise SystemExit(f"--variants: unknown variant {variant!r}: expected memory, streamed[@W], plain, "
                                 f"fixed[@W] (W: data.workers of that run)")
    print("\n| variant | steps | steps/s | vs memory | peak PSS (process tree) | of it anonymous | summed RSS | wall s |"
          "\n|---|---|---|---|---|---|---|---|")
    base = runs.get("memory", {}).get("steps_per_s")
    for name, r in runs.items():
        ratio = f"{r['steps_per_s'] / base:.2f}" if base else "-"
        m = r["memory"]
        print(f"| {name} | {r['steps']} | {r['steps_per_s']:.0f} | {ratio} | {human(m['pss'])} | {human(m['anon'])} "
              f"| {human(m['rss'])} | {r['seconds']:.0f} |")
    for name in (n for n in runs if n.startswith("streamed")):
        fixed = runs.get("fixed" + name[len("streamed"):]) or runs.get("fixed")
        m = runs[name]["memory"]
        line = f"\n{name}: peak PSS {human(m['pss'])} ({human(m['anon'])} anonymous)"
        if fixed:
            f = fixed["memory"]
            data, anon = m["pss"] - f["pss"], m["anon"] - f["anon"]
            runs[name]["data_cost"] = {"pss": data, "anon": anon}
            line += (f"; the fixed cost (the same run on {FIXED_ROWS:,} rows) {human(f['pss'])} ({human(f['anon'])}); "
                     f"the data took {human(data)} ({human(anon)} anonymous): "
                     f"{'under' if data <= budget else 'OVER'} the budget {human(budget)}, the file {human(size)}")
        print(line)
    if any(n.startswith("streamed") for n in runs):
        print("(PSS counts a page shared by k processes 1/k in each; its file-backed part is page cache of mapped "
              "files, which the kernel can reclaim. Summed RSS counts shared pages once per process.)")
    report = {"rows": args.rows, "bytes": size, "budget": budget, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
