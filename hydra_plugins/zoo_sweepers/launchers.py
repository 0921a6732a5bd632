"""``hydra/launcher=slurm`` without ``hydra-submitit-launcher`` installed: one line saying what to install.

``conf/hydra/launcher/slurm.yaml`` extends submitit's ``submitit_slurm`` node. When that package
is missing, a stand-in node of the same name is registered here, whose launcher stops the sweep
with the command to run instead of Hydra's "could not find" error.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class MissingSubmititLauncher(Launcher):
    """Stands in for submitit's Slurm launcher when it is not installed."""

    def __init__(self, **kwargs: Any) -> None:
        from zoo.errors import fail

        fail("hydra/launcher=slurm needs Hydra's submitit launcher: pip install hydra-submitit-launcher "
             "(then run the same command on the cluster's login node)")

    def setup(self, **kwargs: Any) -> None:  # pragma: no cover - never reached
        raise NotImplementedError

    def launch(self, job_overrides, initial_job_idx):  # pragma: no cover - never reached
        raise NotImplementedError


if not _installed("hydra_plugins.hydra_submitit_launcher"):
    ConfigStore.instance().store(
        group="hydra/launcher", name="submitit_slurm", provider="zoo",
        node={"_target_": "hydra_plugins.zoo_sweepers.launchers.MissingSubmititLauncher"})
