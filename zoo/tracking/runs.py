"""The read side of the store: finding runs and what they left behind.

Everything that looks runs up (resume, sweeps, the Optuna sweeper, ``zoo compare``) asks here, so
that MLflow's search API, its paging and the tag that links a child to its parent stay behind
this package. Runs come back as MLflow's run objects (``run.info``, ``run.data``), read only.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Sequence

from zoo.errors import ZooError, one_line
from zoo.tracking import tags
from zoo.tracking.store import check_mlflow_file, is_http, sqlite_path

PAGE = 1000  # runs per search request (MLflow's most for one page)
MIN_PREFIX = 4  # characters of a run id that may name it


def resumable(uri: str, run_id: str, what: str | None = None, missing: str | None = None):
    """The run ``run_id`` of the store ``uri``, which a ``resume=`` may continue: it exists and has not FINISHED.

    ``what`` names the input in messages (default ``resume=<run_id>``); ``missing`` is the message
    for a run that is not in the store. Raises :class:`ZooError`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    what = what or f"resume={run_id}"
    missing = missing or f"{what}: no run with this id in {uri} and no such file or folder; " \
                         f"find run ids with `zoo compare` or in the UI"
    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # no store, no run (and no empty store made by looking)
        raise ZooError(missing)
    check_mlflow_file(uri)  # MLflow's client would turn a database of the user's own into a store
    try:
        run = mlflow.MlflowClient(uri).get_run(str(run_id))
    except MlflowException:
        raise ZooError(missing) from None
    if run.info.status == "FINISHED":
        raise ZooError(f"{what}: the run already FINISHED; nothing to continue (start a new run instead)")
    return run


def checkpoint_folder(run) -> Path | None:
    """The folder the run's checkpoints were written to (its tag), or None."""
    folder = run.data.tags.get(tags.CHECKPOINT_DIR)
    return Path(folder) if folder else None


def download_checkpoint(uri: str, run_id: str, folder: Path) -> Path | None:
    """The run's logged ``checkpoints/last.pt`` (and ``best.pt``, when logged), downloaded into ``folder``;
    the path of ``last.pt``, or None when the run logged none."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    try:
        logged = {Path(a.path).name for a in client.list_artifacts(run_id, "checkpoints")}
    except Exception:
        return None
    if "last.pt" not in logged:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt") if "best.pt" in logged else ("last.pt",):
        with tempfile.TemporaryDirectory(prefix="zoo-resume-", dir=folder) as tmp:
            Path(client.download_artifacts(run_id, f"checkpoints/{name}", tmp)).replace(folder / name)
    return folder / "last.pt"


def checkpoint_of(uri: str, run_id: str) -> Path:
    """The ``last.pt`` to continue run ``run_id`` from: in its checkpoint folder, else downloaded from its artifacts.

    Raises :class:`ZooError` for an unknown id, a run that already FINISHED, or one without a checkpoint.
    (``zoo.training.resume`` also checks that the file holds this run's id, and locks its folder.)
    """
    run = resumable(uri, run_id)
    folder = checkpoint_folder(run)
    if folder is not None and (folder / "last.pt").is_file():
        return folder / "last.pt"
    path = download_checkpoint(uri, run.info.run_id, Path(tempfile.mkdtemp(prefix="zoo-resume-")))
    if path is None:
        raise ZooError(f"resume={run_id}: run {run.info.run_id} has no checkpoint (it stopped before saving one); "
                       f"start a new run instead")
    return path


def row(run) -> dict:
    """A run as plain data: ``run_id``, ``name``, ``status``, ``start`` (ms), ``metrics`` and ``tags``."""
    return {"run_id": run.info.run_id, "name": run.info.run_name or "", "status": run.info.status,
            "start": run.info.start_time or 0, "metrics": dict(run.data.metrics), "tags": dict(run.data.tags)}


def short(run) -> str:
    """``3f2a9c1d (its name)``: how messages name a run."""
    return f"{run.info.run_id[:8]} ({run.info.run_name})"


class Runs:
    """The runs of one store, read through MLflow's client.

    Args:
        uri: the store's tracking URI.
    """

    def __init__(self, uri: str):
        import mlflow

        self.uri = uri
        self.client = mlflow.MlflowClient(uri)

    @classmethod
    def open(cls, uri: str) -> "Runs":
        """An existing store, checked to answer; never creates an empty SQLite database."""
        db = sqlite_path(uri)
        if db is not None:
            if not db.is_file():
                raise ZooError(f"no MLflow store at {db}: train a run first (zoo train) or pass --uri "
                               f"(or set MLFLOW_TRACKING_URI) to the store you trained into")
            check_mlflow_file(uri)
        elif not is_http(uri) and "://" not in uri and not uri.startswith("file:"):
            raise ZooError(f"--uri {uri!r} is not an MLflow tracking URI: use sqlite:///path/mlflow.db or http://host:port")
        runs = cls(uri)
        try:
            runs.client.search_experiments(max_results=1)
        except Exception as exc:
            raise ZooError(f"cannot read the MLflow store {uri}: {one_line(exc, 203)}; "
                           f"check --uri or MLFLOW_TRACKING_URI") from None
        return runs

    # -- experiments and runs --------------------------------------------------------------------
    def experiments(self) -> list:
        return list(self.client.search_experiments())

    def experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in self.experiments()]

    def search(self, experiment_ids: Sequence[str], filter_string: str = "", order_by: list[str] | None = None,
               limit: int | None = None) -> list:
        """Every active run matching the filter, across MLflow's pages (the first ``limit`` if given)."""
        from mlflow.entities import ViewType

        if not experiment_ids:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs(list(experiment_ids), filter_string, ViewType.ACTIVE_ONLY,
                                           max_results=min(limit or PAGE, PAGE), order_by=order_by, page_token=token)
            runs.extend(page)
            token = page.token
            if not token or (limit and len(runs) >= limit):
                return runs[:limit] if limit else runs

    def latest(self, experiment_ids: Sequence[str], n: int = 1) -> list:
        """The ``n`` runs started last, newest first."""
        return self.search(experiment_ids, order_by=["attributes.start_time DESC"], limit=n)

    def children(self, parent_run_id: str, experiment_ids: Sequence[str] | None = None) -> list:
        """The child runs of a sweep's parent run (in ``experiment_ids``; default: every experiment)."""
        ids = self.experiment_ids() if experiment_ids is None else experiment_ids
        return self.search(ids, _child_filter(parent_run_id))

    def child_by_output_dir(self, parent_run_id: str, output_dir: str, experiment_ids: Sequence[str]):
        """The child run of ``parent_run_id`` whose job wrote into ``output_dir``, or None."""
        found = self.search(experiment_ids, f"{_child_filter(parent_run_id)} and tags.`{tags.OUTPUT_DIR}` = "
                                            f"'{output_dir}'", limit=1)
        return found[0] if found else None

    def history(self, run_id: str, key: str) -> list:
        """Every logged value of metric ``key`` (objects with ``step``, ``timestamp`` in ms and ``value``)."""
        return self.client.get_metric_history(run_id, key)

    # -- naming a run --------------------------------------------------------------------------
    def resolve(self, ref: str, all_runs: list | None = None):
        """A run from its full id or a unique prefix (at least ``MIN_PREFIX`` characters).

        ``all_runs``: the runs a prefix is looked up in (default: every run of the store).
        """
        from mlflow.exceptions import MlflowException

        exp_ids = self.experiment_ids()
        if re.fullmatch(r"[0-9a-f]{32}", ref):
            try:
                return self.client.get_run(ref)
            except MlflowException:
                pass
        elif len(ref) >= MIN_PREFIX and re.fullmatch(r"[0-9a-f]+", ref):
            all_runs = all_runs if all_runs is not None else self.search(exp_ids)
            hits = [r for r in all_runs if r.info.run_id.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ZooError(f"run id prefix '{ref}' matches {len(hits)} runs: "
                               f"{', '.join(r.info.run_id[:12] for r in hits[:6])}; give more characters")
        elif re.fullmatch(r"[0-9a-f]+", ref):
            raise ZooError(f"run id '{ref}' is too short: give at least {MIN_PREFIX} characters of the id")
        recent = ", ".join(short(r) for r in self.latest(exp_ids, 5)) or "none"
        raise ZooError(f"unknown run id '{ref}' in {self.uri}; the most recent runs are "
                       f"{recent} (zoo compare --experiment NAME lists them all)")


def _child_filter(parent_run_id: str) -> str:
    return f"tags.`{tags.PARENT}` = '{parent_run_id}'"


def check_parent(client, run_id: str, uri: str) -> None:
    """The caller's active run must be in Zoo's store for Zoo's run to nest under it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if uri == mlflow.get_tracking_uri():  # where the caller's run was started
        return
    try:
        client.get_run(run_id)
    except MlflowException:
        raise ZooError(f"an MLflow run is active in this process (run {run_id} in {mlflow.get_tracking_uri()}) "
                       f"and tracking.uri={uri} is another store: Zoo's run cannot nest under it there; leave "
                       f"tracking.uri unset (Zoo then uses the active run's store) or end the active run first") from None


def stored_steps(client, run_id: str) -> dict[str, int]:
    """Each metric of the run and the last step the store holds of it (MLflow keeps a metric's latest row,
    the one with the highest step, with the run). Rows are written in step order, so every step up to it is there."""
    return {m.key: m.step for m in client.get_run(run_id).to_proto().data.metrics}
