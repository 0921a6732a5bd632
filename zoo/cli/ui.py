"""``zoo ui``: the MLflow UI over Zoo's store, bound to this machine unless told otherwise."""

from __future__ import annotations

import argparse
import os
import sys

from zoo._runtime import ProcessGroup

LOCAL = ("127.0.0.1", "localhost", "::1")


def parser() -> argparse.ArgumentParser:
    from zoo.tracking import default_uri

    p = argparse.ArgumentParser(prog="zoo ui", description="Start the MLflow UI over Zoo's store.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1: enough for one person)")
    p.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_uri(),
                   help="the store (default: MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    return p


def main(args: list[str]) -> int:
    from zoo.tracking import artifact_root
    from zoo.tracking.store import create_store

    ns = parser().parse_args(args)
    create_store(ns.uri)  # a new store's tables made under the lock `zoo train` and `zoo server` take too
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", ns.uri, "--host", ns.host, "--port", str(ns.port),
           "--workers", str(max(1, ns.workers))]
    root = artifact_root(ns.uri)
    if root:
        cmd += ["--default-artifact-root", root]
    # MLflow's GenAI job runners (a dozen Huey processes that outlive SIGTERM) serve nothing Zoo records.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

    server = ProcessGroup()  # from here on, Ctrl-C, SIGTERM or a closed terminal stops the server's whole group
    if ns.host not in LOCAL:
        print(f"warning: binding to {ns.host}: anyone who can reach this machine can read (and change) your runs",
              file=sys.stderr)
    else:
        print(f"zoo ui binds to {ns.host} (this machine only); pass --host 0.0.0.0 to share it", file=sys.stderr)
    shown = "127.0.0.1" if ns.host in ("0.0.0.0", "::") else ns.host
    print(f"MLflow UI for {ns.uri} at http://{shown}:{ns.port}", flush=True)
    print(f"zoo ui: Zoo's runs are model training: MLflow's UI remembers its 'GenAI | Model training' switch (top "
          f"left) per browser; an address ending in ?workflowType=machine_learning opens on the runs, e.g. "
          f"http://{shown}:{ns.port}/#/experiments/<id>?workflowType=machine_learning", file=sys.stderr, flush=True)
    return server.run(cmd, env)
