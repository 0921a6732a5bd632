"""``zoo sync RUN_ID|JOURNAL [--uri URI]``: replay a run's journal (the rows its store refused) into the store.

The journal is found from the run id (the run's checkpoint folder, recorded on the run), or given
as a path (its header names the run and the store). See :mod:`zoo.tracking.journal`.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.cli.args import Parser
from zoo.errors import ZooError


def main(args: list[str]) -> int:
    p = Parser("zoo sync", "Write the rows a run's store refused (kept in the run's journal, beside its checkpoints) "
                           "into the store, once it is back: every step ends up there exactly once.",
               "examples:\n  zoo sync 3f2a9c1d\n  zoo sync outputs/2026-12-02/04-10-00/checkpoints/journal-<run id>.jsonl "
               "--uri http://127.0.0.1:5000")
    p.add_argument("run", metavar="RUN_ID|JOURNAL", help="a run id (or a unique prefix), or a journal file")
    p.add_argument("--uri", default=None,
                   help="the MLflow store (default: MLFLOW_TRACKING_URI or ./mlruns/mlflow.db; for a journal "
                        "file, the store it names)")
    ns = p.parse_args(args)
    from zoo.tracking.journal import REPLAYED, read, sync
    from zoo.tracking.runs import Runs
    from zoo.tracking.store import bounded_http, default_uri

    if ns.run.endswith(REPLAYED):
        raise ZooError(f"{ns.run} was replayed already")
    if Path(ns.run).is_file():  # a journal given by its path
        header, _ = read(ns.run)
        uri = ns.uri or header.get("uri") or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
        with bounded_http(uri):
            Runs.open(uri).resolve(header["run_id"])
        done = sync(uri, header["run_id"], Path(ns.run).parent)
    else:
        uri = ns.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
        with bounded_http(uri):
            run_id = Runs.open(uri).resolve(ns.run).info.run_id
        done = sync(uri, run_id)
        if done is None:
            print(f"zoo sync: run {run_id} has no journal to replay (nothing of it waits for the store)")
            return 0
    if done is None:
        raise ZooError(f"{ns.run} is not the journal of run {header['run_id']}: its name should be "
                       f"journal-{header['run_id']}.jsonl")
    print(f"zoo sync: {done.line()}")
    return 0
