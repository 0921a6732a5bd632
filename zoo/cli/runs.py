"""``zoo runs [--stale | --close-stale]``: the RUNNING runs of a store, and whether each one's process still lives."""

from __future__ import annotations

import os

from zoo.cli.args import Parser
from zoo.errors import ZooError
from zoo.text import format_table

EPILOG = """A run stopped by Ctrl-C, SIGTERM or SIGHUP, or failing, ends KILLED or FAILED by itself. One whose
process was killed outright (kill -9, out of memory, a power cut) stays RUNNING: on this host, its
process is gone; on another host, its heartbeat (every minute) stopped.

examples:
  zoo runs                      every RUNNING run: host, process, last heartbeat, alive or stale
  zoo runs --stale              only the stale ones
  zoo runs --close-stale        end them KILLED, with the reason in zoo.error (a sweep's children first)
  zoo runs --stale --stale-after 3600 --uri http://tracking:5000"""


def main(args: list[str]) -> int:
    from zoo.tracking import bounded_http, default_uri, liveness
    from zoo.tracking.runs import Runs

    p = Parser("zoo runs", "The RUNNING runs of a store, and whether each one's process still lives.", EPILOG)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stale", action="store_true", help="list only the runs whose process is gone")
    which.add_argument("--close-stale", action="store_true", help="end the stale runs KILLED, with the reason")
    p.add_argument("--stale-after", type=float, default=liveness.STALE_AFTER_S, metavar="SECONDS",
                   help=f"a run on another host is stale when its last heartbeat is older than this "
                        f"(default {liveness.STALE_AFTER_S:.0f})")
    p.add_store()
    ns = p.parse_args(args)
    if not ns.stale_after > 0:
        raise ZooError(f"zoo runs: --stale-after {ns.stale_after:g} is invalid: expected a number of seconds > 0")
    uri = ns.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    with bounded_http(uri):
        runs = Runs.open(uri)
        found = liveness.verdicts(runs, ns.stale_after)
        if ns.stale or ns.close_stale:
            found = [v for v in found if v.stale]
        if not found:
            print(f"no {'stale' if ns.stale or ns.close_stale else 'RUNNING'} run in {uri}")
            return 0
        print(format_table([("RUN", "NAME", "HOST", "PID", "HEARTBEAT", "STATE", "WHY")] + [_row(v) for v in found]))
        if ns.close_stale:
            for v in found:
                liveness.close(runs, v)
            print(f"ended {len(found)} stale run{'s' if len(found) != 1 else ''} KILLED (the reason is in zoo.error)")
    return 0


def _row(v) -> tuple:
    from zoo.tracking import tags

    t = v.run.data.tags
    beat = "-" if v.heartbeat_age is None else f"{v.heartbeat_age:.0f} s ago"
    kind = " (sweep)" if t.get(tags.SWEEP) else ""
    return (v.run.info.run_id[:12], (v.run.info.run_name or "")[:40] + kind, t.get(tags.HOST, "-"),
            t.get(tags.PID, "-"), beat, v.state, v.reason)
