"""``zoo serve``: MLflow's own scoring server (``mlflow models serve --env-manager local``) over a found model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zoo.errors import ZooError
from zoo.models.reference import find, store


def command(ref: str, uri: str | None, host: str, port: int, workers: int = 1,
            scratch: Path | None = None) -> tuple[list[str], dict, object]:
    """The server's command line and environment for the model ``ref`` names (checked to exist first).

    ``scratch``: an empty folder for the ``uvicorn`` script (:func:`_path_with_uvicorn`) that the caller
    removes once the server has stopped (``zoo serve``: a ``TemporaryDirectory``)."""
    if not 0 < port < 65536:
        raise ZooError(f"--port {port} is invalid: expected 1..65535")
    if workers < 1:
        raise ZooError(f"--workers {workers} is invalid: expected an integer >= 1")
    uri = store(uri)
    found = find(ref, uri)
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", found.uri, "--env-manager", "local",
           "-h", host, "-p", str(port), "-w", str(workers)]
    return cmd, {"MLFLOW_TRACKING_URI": uri, "PATH": _path_with_uvicorn(scratch)}, found


def _path_with_uvicorn(folder: Path | None = None) -> str:
    """``PATH`` with a folder first whose ``uvicorn`` runs in this very Python (``python -m uvicorn``).

    MLflow's scoring server starts with ``exec uvicorn ...``: whichever ``uvicorn`` comes first on
    ``PATH``, which may belong to another Python (or none, in a venv that is not activated). The
    folder (``folder``, else a fresh temporary one) holds that single two-line script.
    """
    import shlex
    import stat
    import tempfile

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="zoo-serve-"))
    script = folder / "uvicorn"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m uvicorn \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return os.pathsep.join([str(folder), os.environ.get("PATH", "")])
