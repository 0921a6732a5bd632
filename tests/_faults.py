"""Helpers for the tests of faults and bad input: the one-line error, the store left behind, a small full disk."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import mlflow
import pytest

FIXTURE_CHECKPOINT = Path(__file__).resolve().parent / "fixtures" / "last_v1_perceptron_iris_step18.pt"
# a run of a second or two: every fault test that must train uses these (SMALL: the model and data, unless it sets its own)
TINY = ["trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false", "trainer.max_epochs=1",
        "tracking.hist_every=0"]
SMALL = ["data=iris", "model=perceptron"]


def one_line_error(result: subprocess.CompletedProcess, fragment: str = "") -> str:
    """The command's only stderr line, ``error: ...``, after exit status 2 and no traceback; it must contain ``fragment``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def runs_of(db: Path) -> list:
    """Every run of the SQLite store ``db`` (none when the file does not exist)."""
    if not db.exists():
        return []
    c = mlflow.MlflowClient(f"sqlite:///{db}")
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


def no_run_in(cwd: Path) -> None:
    """The default store under ``cwd`` holds no run (or does not exist)."""
    assert runs_of(cwd / "mlruns" / "mlflow.db") == []


def the_failed_run(cwd: Path, reason: str):
    """The one run in ``cwd``'s store: FAILED, its ``zoo.error`` containing ``reason``."""
    runs = runs_of(cwd / "mlruns" / "mlflow.db")
    assert len(runs) == 1, [r.info.status for r in runs]
    run = runs[0]
    assert run.info.status == "FAILED" and reason in run.data.tags.get("zoo.error", ""), \
        (run.info.status, run.data.tags.get("zoo.error"))
    return run


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m"):
    """A tmpfs of ``size`` mounted on ``folder`` (root only), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` as a read-only file system (a read-only bind mount over it; root only)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount here (needs root): {r.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
