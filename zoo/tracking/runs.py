"""The read side of the store: finding runs and what they left behind.

Everything that looks runs up (resume, sweeps, ``zoo compare``) asks here, so that MLflow's
search API, paging and tag names stay behind this package.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from zoo.errors import ZooError
from zoo.tracking import tags


def checkpoint_of(uri: str, run_id: str) -> Path:
    """The ``last.pt`` to continue run ``run_id`` from: in its checkpoint folder, else downloaded from its artifacts.

    Raises :class:`ZooError` for an unknown id, a run that already FINISHED, or one without a checkpoint.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    try:
        run = client.get_run(str(run_id))
    except MlflowException:
        raise ZooError(f"resume={run_id}: no run with this id in {uri} and no such file or folder; "
                       f"find run ids with `zoo compare` or in the UI") from None
    if run.info.status == "FINISHED":
        raise ZooError(f"resume={run_id}: the run already FINISHED; nothing to continue (start a new run instead)")
    local = Path(run.data.tags.get(tags.CHECKPOINT_DIR, "/nonexistent")) / "last.pt"
    if local.is_file():
        return local
    try:
        return Path(client.download_artifacts(run.info.run_id, "checkpoints/last.pt",
                                              tempfile.mkdtemp(prefix="zoo-resume-")))
    except Exception:
        raise ZooError(f"resume={run_id}: run {run.info.run_id} has no checkpoint (it stopped before saving one); "
                       f"start a new run instead") from None
