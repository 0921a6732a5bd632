"""Tracking: the one seam to MLflow. Nothing outside this package imports ``mlflow``.

It owns the store (:mod:`.store`: where runs live, preparing it before a run, opening it to
read), one run's lifecycle and what the loop logs to it (:mod:`.run`: :class:`Tracker` with its
``run()`` context manager, :class:`NullTracker`), the run's store operations written once
(:mod:`.runstore`: in the writer process by default, so that the training process never imports
MLflow; in the training process in thread mode), the metric writer (:mod:`.writer`, the
:mod:`.writer_process` it feeds, seen from here through :mod:`.child`), the journal of rows the store refused and its replay
(:mod:`.journal`, ``zoo sync``), system metrics (:mod:`.system`), the read side (:mod:`.runs`:
search, children of a sweep, resolving run ids, checkpoints to resume), a sweep's
parent run (:mod:`.parents`), who runs a run and whether it still runs (:mod:`.liveness`: host,
process id, heartbeat, stale runs), the tag names (:mod:`.tags`) and ``zoo server`` (:mod:`.server`).
It may import ``zoo.errors``, MLflow and psutil, and imports MLflow only inside functions: importing this
package stays light (``zoo list`` and ``--help`` never load MLflow). It knows nothing of Hydra,
the training loop or plugins.
"""

from zoo.tracking.null import NullTracker
from zoo.tracking.run import Tracker, flatten, git_commit
from zoo.tracking.store import artifact_root, bounded_http, default_uri, prepare_store, sqlite_path

__all__ = ["NullTracker", "Tracker", "artifact_root", "bounded_http", "default_uri", "flatten", "git_commit",
           "prepare_store", "sqlite_path"]
