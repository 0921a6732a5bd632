#!/usr/bin/env python
"""What the trained-model features cost and how fast they answer (issue 13's three figures).

1. ``zoo train`` (the default run: mlp on digits), the whole command from the shell, with the
   self-contained model and the dataset inputs logged (Zoo's default) against
   ``tracking.log_model=false``; or against another installation's ``zoo`` (``--before``, e.g.
   main's ``.venv/bin/zoo`` from before the model features), interleaved, the median of ``--reps``;
2. ``zoo predict`` on 10,000 raw rows (a CSV in, a CSV out): the whole command, and
   ``ZooModel.predict`` on the same DataFrame in this process;
3. ``zoo serve``: requests per second from one client over keep-alive-free HTTP (one row a request,
   JSON body; then 100 rows a request, CSV body), after one warm-up request.

Everything runs in a temporary folder with its own SQLite store, with ``OMP_NUM_THREADS=1``
(``--threads``). Usage::

    .venv/bin/python benchmarks/models.py                                   # ~3 min on 2 busy cores
    .venv/bin/python benchmarks/models.py --before /work/main/.venv/bin/zoo --reps 5
    .venv/bin/python benchmarks/models.py --skip-train --requests 200

``tests/test_models.py`` does not run it; the figures are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ZOO = [sys.executable, "-m", "zoo.cli"]
BASE = ["trainer.device=cpu", "tracking.system_metrics=false"]


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()


def bench_train(tmp: Path, env: dict, reps: int, before: str | None) -> dict:
    after = [*ZOO, "train", *BASE]
    baseline = [before, "train", *BASE] if before else [*ZOO, "train", *BASE, "tracking.log_model=false"]
    times: dict[str, list[float]] = {"after": [], "before": []}
    for rep in range(reps):
        for name, cmd in (("before", baseline), ("after", after)) if rep % 2 else (("after", after), ("before", baseline)):
            times[name].append(timed(cmd, tmp, env))
    out = {k: statistics.median(v) for k, v in times.items()}
    out["added_s"] = out["after"] - out["before"]
    out["before_is"] = before or "tracking.log_model=false"
    return out


def bench_predict(tmp: Path, env: dict, rows: int) -> dict:
    import numpy as np
    from sklearn.datasets import load_digits

    import zoo

    x = load_digits(as_frame=True).data
    big = x.iloc[np.random.default_rng(0).integers(0, len(x), rows)].reset_index(drop=True)
    big.to_csv(tmp / "rows.csv", index=False)
    whole = timed([*ZOO, "predict", "models:/bench-digits@bench", "--input", "rows.csv", "--output", "out.csv"],
                  tmp, env)
    model = zoo.load_model("models:/bench-digits@bench", uri=env["MLFLOW_TRACKING_URI"])
    model.predict(big.head(10))
    t0 = time.perf_counter()
    model.predict(big, output="all")
    return {"rows": rows, "zoo_predict_s": whole, "in_process_s": time.perf_counter() - t0}


def bench_serve(tmp: Path, env: dict, requests: int) -> dict:
    from sklearn.datasets import load_digits

    x = load_digits(as_frame=True).data
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "serve.log", "w")
    server = subprocess.Popen([*ZOO, "serve", "models:/bench-digits@bench", "--port", str(port)], cwd=tmp, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                sys.exit(f"zoo serve exited {server.returncode}:\n{(tmp / 'serve.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                if time.time() > deadline:
                    sys.exit("zoo serve did not start within 300 s")
                time.sleep(0.5)
        one = json.dumps({"dataframe_split": {"columns": list(x.columns), "data": x.head(1).to_numpy().tolist()}}).encode()
        hundred = x.head(100).to_csv(index=False).encode()
        post(f"{url}/invocations", one, "application/json")  # warm-up
        out = {}
        for name, body, kind in (("1_row_json", one, "application/json"), ("100_rows_csv", hundred, "text/csv")):
            t0 = time.perf_counter()
            for _ in range(requests):
                post(f"{url}/invocations", body, kind)
            out[f"req_per_s_{name}"] = requests / (time.perf_counter() - t0)
        return out
    finally:
        server.terminate()  # zoo serve stops the server's whole process group
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="zoo train repetitions of each variant (default 3)")
    p.add_argument("--before", help="another installation's zoo command to compare zoo train with")
    p.add_argument("--rows", type=int, default=10_000, help="rows for zoo predict (default 10,000)")
    p.add_argument("--requests", type=int, default=100, help="requests per zoo serve measurement (default 100)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-train", action="store_true", help="leave out the zoo train comparison")
    p.add_argument("--json", help="write the figures to this file too")
    ns = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-models-") as folder:
        tmp = Path(folder)
        env = {**os.environ, "OMP_NUM_THREADS": str(ns.threads),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"}
        figures: dict = {}
        if not ns.skip_train:
            figures["train"] = bench_train(tmp, env, ns.reps, ns.before)
        timed([*ZOO, "train", *BASE, "tracking.register=bench-digits", "tracking.register_alias=bench"], tmp, env)
        figures["predict"] = bench_predict(tmp, env, ns.rows)
        figures["serve"] = bench_serve(tmp, env, ns.requests)
    if "train" in figures:
        t = figures["train"]
        print(f"zoo train (whole command, median of {ns.reps}): {t['after']:.2f} s with the model and datasets logged, "
              f"{t['before']:.2f} s with {t['before_is']}: {t['added_s']:+.2f} s")
    pr = figures["predict"]
    print(f"zoo predict, {pr['rows']:,} rows CSV -> CSV: {pr['zoo_predict_s']:.2f} s (whole command); "
          f"ZooModel.predict in process: {pr['in_process_s'] * 1000:.0f} ms")
    sv = figures["serve"]
    print(f"zoo serve, one client: {sv['req_per_s_1_row_json']:.0f} requests/s (1 row, JSON), "
          f"{sv['req_per_s_100_rows_csv']:.0f} requests/s (100 rows, CSV)")
    if ns.json:
        Path(ns.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
