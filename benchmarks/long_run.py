#!/usr/bin/env python
"""A long run with the default tracking: does the writer keep up, does the loop stay fast, does the store stay usable?

One ``zoo train`` of the ``digits`` workload of ``bench.py`` (the default MLP, batch 32, 40 steps an
epoch) for ``--steps`` steps (default 200,000: 5,000 epochs), with everything the default run
records, into a fresh SQLite store. While it runs, every second: the memory (RSS) of the training
process and of its children (the metric writer process); every ``--poll`` seconds: how far the
store lags behind (now minus the timestamp of the newest ``train/loss`` row written: it stays near
the writer's one-second batching if the writer keeps up, and grows if rows pile up). Before and
after, the raw loop of ``bench.py`` (variant a) on the same model and batch, for ``--raw-steps``
steps, with the same threads. Then:

- the loop's speed over the run, in ``--windows`` slices of its steps (from the timestamps of the
  per-step ``train/loss`` rows), each against the raw loop: the ratio should not fall as the run grows;
- the peak memory, the store's size (database and artifacts), the rows written, the writer's own time;
- ``zoo compare RUN`` and the MLflow UI (``zoo ui``: the page, ``runs/get`` and the whole
  ``train/loss`` history through the REST API) opening the run, with their times.

Usage (the lead runs the full one in a quiet window; about 5-10 minutes on 2 quiet cores)::

    .venv/bin/python benchmarks/long_run.py                      # 200,000 steps
    .venv/bin/python benchmarks/long_run.py --steps 4000 --raw-steps 2000 --poll 2   # a short check
    .venv/bin/python benchmarks/long_run.py --threads 1 --json long.json --markdown
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import WORKLOADS, Options, _env, _fmt, _last_line, _zoo, run_child, table  # noqa: E402

WORKLOAD = WORKLOADS["digits"]
STEPS_PER_EPOCH = 40  # digits' 1,257 training rows in batches of 32


class Watcher(threading.Thread):
    """Samples the training process tree's memory every second and the store's lag every ``poll`` seconds."""

    def __init__(self, pid: int, db: Path, poll: float):
        super().__init__(daemon=True)
        self.pid, self.db, self.poll = pid, db, poll
        self.memory: list[tuple[float, float, float]] = []  # (seconds, training process MB, children MB)
        self.lag: list[tuple[float, int, float]] = []  # (seconds, newest stored step, lag s)
        self.done = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        import psutil

        proc = psutil.Process(self.pid)
        next_poll = 0.0
        while not self.done.is_set():
            now = time.time() - self.t0
            try:
                main = proc.memory_info().rss / 2**20
                children = sum(c.memory_info().rss for c in proc.children(recursive=True)) / 2**20
                self.memory.append((now, main, children))
            except psutil.Error:
                pass
            if now >= next_poll:
                next_poll = now + self.poll
                row = self.newest()
                if row is not None:
                    self.lag.append((now, row[0], time.time() - row[1] / 1000))
            self.done.wait(1.0)

    def newest(self):
        """(step, timestamp ms) of the newest train/loss row in the store, read-only; None before there is one."""
        if not self.db.exists():
            return None
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1) as con:
                return con.execute("SELECT step, timestamp FROM latest_metrics WHERE key = 'train/loss' "
                                   "ORDER BY timestamp DESC LIMIT 1").fetchone()
        except sqlite3.Error:
            return None


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def raw_rate(steps: int, folder: Path, env: dict) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    r = run_child("a", WORKLOAD, max(1, math.ceil(steps / STEPS_PER_EPOCH)), folder, env, timeout=3600)
    if "error" in r:
        raise SystemExit(f"the raw loop failed: {r['error']}")
    return r["steps"] / r["loop_s"]


def open_in_ui(uri: str, run_id: str, folder: Path, env: dict) -> dict:
    """``zoo ui`` over the store: the page, the run and its whole train/loss history, timed."""
    from zoo._runtime import stop_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "ui.log", "w")
    proc = subprocess.Popen([*_zoo(), "ui", "--port", str(port), "--uri", uri], cwd=folder, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base, out = f"http://127.0.0.1:{port}", {}
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    return {"error": f"zoo ui did not start; see {folder / 'ui.log'}"}
                time.sleep(0.5)
        for name, path in (("page", "/"), ("runs/get", f"/api/2.0/mlflow/runs/get?run_id={run_id}")):
            t0 = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=600) as resp:
                body = resp.read()
            out[name] = {"status": resp.status, "s": time.perf_counter() - t0, "bytes": len(body)}
        t0, rows, size, token = time.perf_counter(), 0, 0, None
        while True:  # the whole history, page by page as the server hands it out
            query = f"run_id={run_id}&metric_key=train/loss" + (f"&page_token={token}" if token else "")
            with urllib.request.urlopen(f"{base}/api/2.0/mlflow/metrics/get-history?{query}", timeout=600) as resp:
                body = resp.read()
            page = json.loads(body)
            rows, size, token = rows + len(page.get("metrics", [])), size + len(body), page.get("next_page_token")
            if not token:
                break
        out["train/loss history"] = {"status": resp.status, "s": time.perf_counter() - t0, "bytes": size, "rows": rows}
        return out
    finally:
        stop_group(proc)
        log.close()


def windows(history, n: int) -> list[tuple[int, int, float]]:
    """(first step, last step, steps per second) of ``n`` slices of the per-step rows, by step."""
    rows = sorted((m.step, m.timestamp) for m in history)
    size = max(2, len(rows) // n)
    out = []
    for i in range(0, len(rows) - 1, size):
        part = rows[i:i + size + 1]
        seconds = (part[-1][1] - part[0][1]) / 1000
        if len(part) > 1 and seconds > 0:
            out.append((part[0][0], part[-1][0], (part[-1][0] - part[0][0]) / seconds))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200_000, help="steps of the zoo run (rounded up to whole epochs of 40)")
    p.add_argument("--raw-steps", type=int, default=20_000, help="steps of each raw loop, before and after")
    p.add_argument("--threads", default="default", help="default (no OMP_NUM_THREADS) or N (OMP_NUM_THREADS=N)")
    p.add_argument("--windows", type=int, default=10, help="slices of the run whose speed is shown")
    p.add_argument("--poll", type=float, default=10, help="seconds between looks at the store's lag")
    p.add_argument("--keep", type=Path, help="keep the store in this folder (default: a temporary one, deleted)")
    p.add_argument("--json", type=Path, help="also write every measurement to this file")
    p.add_argument("--markdown", action="store_true")
    ns = p.parse_args(argv)
    import mlflow

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # unwinds: the folder is removed
    env = _env(ns.threads)
    epochs = max(1, math.ceil(ns.steps / STEPS_PER_EPOCH))
    tmp_ctx = tempfile.TemporaryDirectory(prefix="zoo-long-") if ns.keep is None else None
    folder = Path(tmp_ctx.name) if tmp_ctx else ns.keep.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    try:
        from zoo.tracking import prepare_store

        prepare_store(uri, "long")
        print(f"{epochs} epochs ({epochs * STEPS_PER_EPOCH} steps) of {WORKLOAD.about}; threads {ns.threads}; "
              f"store {folder}", flush=True)
        before = raw_rate(ns.raw_steps, folder / "raw-before", env)
        print(f"raw loop before: {before:.0f} steps/s", flush=True)
        cmd = [*_zoo(), "train", *WORKLOAD.zoo_overrides(epochs, Options()), f"tracking.uri={uri}",
               "tracking.experiment=long", f"paths.output_dir={folder / 'out'}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watcher = Watcher(proc.pid, db, ns.poll)
        watcher.start()
        try:
            stdout, stderr = proc.communicate()
        finally:
            if proc.poll() is None:  # stopped from outside: the run is not left training
                proc.terminate()
                proc.wait()
        command_s = time.perf_counter() - t0
        watcher.done.set()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(f"zoo train failed ({proc.returncode}): {_last_line(stderr)}")
        run_id = _last_line(stdout).split(" run ")[-1].split()[0]
        after = raw_rate(ns.raw_steps, folder / "raw-after", env)
        print(f"zoo train: {command_s:.0f} s; raw loop after: {after:.0f} steps/s", flush=True)
        raw = (before + after) / 2

        client = mlflow.MlflowClient(uri)
        run = client.get_run(run_id)
        m = run.data.metrics
        t = time.perf_counter()
        history = client.get_metric_history(run_id, "train/loss")
        history_s = time.perf_counter() - t
        t = time.perf_counter()
        compare = subprocess.run([*_zoo(), "compare", run_id, "--uri", uri], cwd=folder, env=env,
                                 capture_output=True, text=True, timeout=900)
        compare_s = time.perf_counter() - t
        ui = open_in_ui(uri, run_id, folder, env)
        result = {
            "run_id": run_id, "status": run.info.status, "steps": int(m["perf/steps"]), "threads": ns.threads,
            "zoo_threads": run.data.tags.get("zoo.threads"), "command_s": command_s,
            "loop_steps_per_s": m["perf/steps_per_s"], "raw_before": before, "raw_after": after,
            "ratio": m["perf/steps_per_s"] / raw, "metric_rows": m.get("perf/metric_rows"),
            "writer_s": m.get("perf/writer_s"), "fit_s": m["perf/fit_s"],
            "writer": run.data.tags.get("zoo.metric_writer"), "loss_rows": len(history),
            "windows": [(a, b, r, r / raw) for a, b, r in windows(history, ns.windows)],
            "peak_main_mb": max((x[1] for x in watcher.memory), default=None),
            "peak_children_mb": max((x[2] for x in watcher.memory), default=None),
            "memory": watcher.memory, "lag": watcher.lag,
            "db_mb": db.stat().st_size / 2**20, "artifacts_mb": folder_mb(folder / "mlruns" / "artifacts"),
            "history_s": history_s, "compare": {"rc": compare.returncode, "s": compare_s,
                                                "last_line": _last_line(compare.stdout or compare.stderr)},
            "ui": ui,
        }
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    print(report(result, ns.markdown))
    if ns.json:
        ns.json.write_text(json.dumps(result, indent=1))
    return 0 if result["status"] == "FINISHED" and result["compare"]["rc"] == 0 and "error" not in ui else 1


def report(r: dict, markdown: bool) -> str:
    out = [f"run {r['run_id']} {r['status']}: {r['steps']} steps in {r['command_s']:.0f} s (the whole command); "
           f"zoo.threads={r['zoo_threads']}, rows written by the {r['writer']}"]
    rows = [["loop steps/s", "raw before", "raw after", "ratio", "rows", "rows/step", "writer s", "loop s",
             "peak MB (training)", "peak MB (writer etc.)", "store MB (db)", "artifacts MB"]]
    rows.append([_fmt(r["loop_steps_per_s"]), _fmt(r["raw_before"]), _fmt(r["raw_after"]), _fmt(r["ratio"], 2),
                 _fmt(r["metric_rows"]), _fmt((r["metric_rows"] or 0) / r["steps"], 2), _fmt(r["writer_s"], 1),
                 _fmt(r["fit_s"], 1), _fmt(r["peak_main_mb"]), _fmt(r["peak_children_mb"]), _fmt(r["db_mb"], 1),
                 _fmt(r["artifacts_mb"], 1)])
    out += [table(rows, markdown), "", "the loop's speed over the run (from the per-step train/loss timestamps)"]
    rows = [["steps", "steps/s", "ratio to raw"]] + [[f"{a}-{b}", _fmt(rate), _fmt(ratio, 2)]
                                                      for a, b, rate, ratio in r["windows"]]
    out += [table(rows, markdown), ""]
    lags = r["lag"]
    if lags:
        k = max(1, len(lags) // 10)
        rows = [["seconds", "newest stored step", "store lag s"]] + [[_fmt(s), str(step), _fmt(lag, 1)]
                                                                       for s, step, lag in lags[::k]]
        last = max(x[1] for x in lags)  # after the loop's last row, the lag only counts the end of the run
        loop = [x[2] for x in lags if x[1] < last] + [next(x[2] for x in lags if x[1] == last)]
        out += ["the store behind the loop (now minus the newest train/loss row's timestamp; after the last step "
                "it only grows: the run is in its test pass, plots and model logging)", table(rows, markdown),
                f"lag while training: median {statistics.median(loop):.1f} s, largest {max(loop):.1f} s", ""]
    mem = r["memory"]
    if mem:
        k = max(1, len(mem) // 10)
        rows = [["seconds", "training MB", "writer etc. MB"]] + [[_fmt(s), _fmt(a), _fmt(b)] for s, a, b in mem[::k]]
        out += ["memory over the run (RSS)", table(rows, markdown), ""]
    c = r["compare"]
    out.append(f"zoo compare {r['run_id'][:8]}: exit {c['rc']} in {c['s']:.1f} s; "
               f"MlflowClient.get_metric_history(train/loss): {r['loss_rows']} rows in {r['history_s']:.1f} s")
    ui = r["ui"]
    out.append("zoo ui: " + (ui["error"] if "error" in ui else "; ".join(
        f"{k} {v['status']} in {v['s']:.2f} s ({v['bytes'] / 1024:.0f} KiB{', %d rows' % v['rows'] if 'rows' in v else ''})"
        for k, v in ui.items())))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
