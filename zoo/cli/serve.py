"""``zoo serve MODEL [--port N] [--host H]``: ``mlflow models serve`` over a trained model, on this machine by default."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from zoo.cli.args import Parser, quiet_downloads
from zoo.cli.ui import LOCAL


def main(args: list[str]) -> int:
    p = Parser("zoo serve", "Serve a trained model over HTTP with MLflow's scoring server (POST /invocations).",
               "examples:\n  zoo serve models:/digits-mlp@champion --port 5001\n"
               "  curl -X POST -H 'Content-Type: text/csv' --data-binary @rows.csv http://127.0.0.1:5001/invocations")
    p.add_model()
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_store()
    ns = p.parse_args(args)
    quiet_downloads()
    from zoo._runtime import ProcessGroup
    from zoo.models.serve import command

    with tempfile.TemporaryDirectory(prefix="zoo-serve-") as scratch:  # its uvicorn script, while it serves
        cmd, env, found = command(ns.model, ns.uri, ns.host, ns.port, ns.workers, Path(scratch))
        server = ProcessGroup()  # Ctrl-C, SIGTERM or a closed terminal stops the server's whole group
        if ns.host not in LOCAL:
            print(f"warning: binding to {ns.host}: anyone who can reach this machine can use the model", file=sys.stderr)
        shown = "127.0.0.1" if ns.host in ("0.0.0.0", "::") else ns.host
        print(f"zoo serve: {found} at http://{shown}:{ns.port}/invocations (JSON or CSV bodies; GET /ping)", flush=True)
        return server.run(cmd, {**os.environ, **env})
