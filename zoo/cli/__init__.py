"""The command line: ``zoo train | list | ui | compare | server | sync | runs | register | models | eval | predict | serve``.

It parses, calls and prints.

One module per command, imported only when that command runs, so that ``zoo list`` and
``zoo --help`` never load MLflow or torch's training stack: :mod:`zoo.cli.train` (a Hydra app
over :func:`zoo.training.train.train`), :mod:`zoo.cli.listing` and :mod:`zoo.cli.ui`; ``sync`` is
:mod:`zoo.cli.sync`; ``runs`` is :mod:`zoo.cli.runs` (stale runs, :mod:`zoo.tracking.liveness`); ``compare``
and ``server`` are :func:`zoo.experiments.compare.main` and :func:`zoo.tracking.server.main`; the model
commands (:mod:`zoo.cli.register`, :mod:`zoo.cli.models`, :mod:`zoo.cli.eval`, :mod:`zoo.cli.predict`,
:mod:`zoo.cli.serve`) are thin over :mod:`zoo.models`.
A problem with the user's input (:class:`zoo.ZooError`) ends the command through
:func:`zoo.errors.fail`: one line, exit status 2, a traceback only with ``HYDRA_FULL_ERROR=1``.

The command line is the only part of Zoo that prints for people. It may import any part of Zoo,
inside the command that needs it.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import signal
import sys

from zoo._runtime import exit_code, exit_now, keep_stop_signals, signal_name
from zoo.errors import ZooError, fail

USAGE = """usage: zoo <command> [args]

commands:
  train [overrides]   train a model (Hydra overrides; `zoo train --help` lists them;
                      tab completion: eval "$(zoo train --shell-completion install=bash)")
  list [plugins.dir=PATH]   every architecture and dataset, with its plugin and where it came from
  ui [--port N] [--host H]   the MLflow UI over the project's store (127.0.0.1 by default)
  compare [runs|--experiment E|--sweep ID] [--sort METRIC] [--plot FILE.png]
                      a table of runs side by side, and their curves in one figure
  server              a shared MLflow tracking server (PostgreSQL, authentication) for a team
  sync RUN_ID         write the rows a run's store refused (its journal) into the store, once it is back
  runs [--stale|--close-stale]   the RUNNING runs and whether their process lives; end the stale ones KILLED

trained models (MODEL: a run id, runs:/<id>/model, models:/<name>/<version>, models:/<name>@<alias>):
  register MODEL --name NAME [--alias A]   register a run's model in MLflow's Model Registry
  models [PATTERN]    the registered models: versions, aliases, architecture, dataset, metric
  eval MODEL [data=NAME] [split=test]      measure a model on a dataset's split (a new run)
  predict MODEL --input FILE --output FILE a model's answers for a CSV, Parquet, .npy/.npz, text or images
  serve MODEL [--port N]                   serve a model over HTTP (mlflow models serve, 127.0.0.1)
"""

# command -> the module whose main(args) runs it
COMMANDS = {"train": "zoo.cli.train", "list": "zoo.cli.listing", "ui": "zoo.cli.ui",
            "compare": "zoo.experiments.compare", "server": "zoo.tracking.server",
            "sync": "zoo.cli.sync", "runs": "zoo.cli.runs",
            "register": "zoo.cli.register", "models": "zoo.cli.models", "eval": "zoo.cli.eval",
            "predict": "zoo.cli.predict", "serve": "zoo.cli.serve"}


def main(argv: list[str] | None = None) -> int:
    """Run one ``zoo`` command. Called with no arguments (the ``zoo`` command itself), it ends the process."""
    if argv is None:
        keep_stop_signals("now")  # Ctrl-C, SIGTERM and SIGHUP stop any command as Ctrl-C does; once one
        # has stopped it, later ones are only noted, so that nothing cuts its ending short
        try:
            code = _main(sys.argv[1:])
        except SystemExit as exc:
            code = exc.code
        exit_now(code)
    return _main(argv)


def _main(argv: list[str]) -> int:
    if argv[:1] != ["train"] and argv[:1] not in (["-sc"], ["--shell-completion"]):
        # `zoo train` is a Hydra app: Hydra sets up logging (a handler here would print each line twice)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0].split("=", 1)[0] in ("-sc", "--shell-completion"):  # the completion script's query (zoo.cli.train.complete)
        from zoo.cli.train import complete

        return complete(argv)
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        fail(f"unknown command '{argv[0]}'.{f' Did you mean {close[0]!r}?' if close else ''} Commands: {', '.join(COMMANDS)}")
    command = importlib.import_module(COMMANDS[argv[0]]).main
    try:
        return command(argv[1:]) or 0
    except ZooError as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (zoo._runtime.Interrupted)
        print(interrupted_line(exc), file=sys.stderr)
        return exit_code(exc)


def interrupted_line(exc: BaseException) -> str:
    """``interrupted (SIGTERM): run ID ended KILLED; continue it with: zoo train resume=ID``, or what a sweep says."""
    what = "interrupted" + (f" ({signal_name(exc.signum)})" if getattr(exc, "signum", signal.SIGINT) != signal.SIGINT else "")
    run_id = getattr(exc, "zoo_run_id", None)
    if getattr(exc, "zoo_message", None):  # a sweep: its parent run, the jobs stopped and not started
        return f"{what}: {exc.zoo_message}"
    return f"{what}: run {run_id} ended KILLED; continue it with: zoo train resume={run_id}" if run_id else what


def load_registry(args: list[str], quiet: bool = False):
    """The registry of every plugin (``plugins.dir=`` in ``args`` adds a folder); a skipped plugin is a
    warning (none when ``quiet``: shell completion writes to the user's prompt)."""
    from zoo.config.choices import plugin_dirs
    from zoo.plugin.registry import load_registry as load

    registry = load(plugin_dirs(args))
    for f in [] if quiet else registry.failures:
        print(f"warning: plugin '{f.plugin}' ({f.source}) was skipped: {f.error}", file=sys.stderr)
    return registry
