"""The argument parser of the model commands: a usage mistake is one ``error:`` line and exit 2, like every other bad input."""

from __future__ import annotations

import argparse
import os

from zoo.errors import ZooError


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are a :class:`ZooError` (one line naming the command) instead of usage and exit."""

    def __init__(self, prog: str, description: str, epilog: str | None = None):
        super().__init__(prog=prog, description=description, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str):
        raise ZooError(f"{self.prog}: {message} (see {self.prog} --help)")

    def add_store(self) -> None:
        self.add_argument("--uri", default=None,
                          help="the MLflow store (default: MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")

    def add_model(self) -> None:
        self.add_argument("model", metavar="MODEL",
                          help="a run id, runs:/<run id>/model, models:/<name>/<version> or models:/<name>@<alias>")


def quiet_downloads() -> None:
    """No MLflow progress bars on the terminal while a command fetches a model (unless asked for)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
