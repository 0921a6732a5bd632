"""The engine a sweep's jobs run on, checked before the sweep's parent run exists.

``hydra/launcher=slurm`` needs Slurm's ``sbatch`` on this machine (a cluster's login node); a
Ray launcher (``hydra/launcher=ray`` of ``hydra-ray-launcher``) with an address needs a Ray
cluster answering there. Either mistake is one line and exit status 2, before any run is created,
instead of a job that fails (or waits forever) after the parent run was opened.
"""

from __future__ import annotations

import shutil
import socket

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError

CONNECT_TIMEOUT_S = 5.0


def check_launcher(config: DictConfig) -> None:
    """Raise :class:`ZooError` when the configured launcher's engine cannot be reached from here."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if "hydra_submitit_launcher" in target and target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        raise ZooError("hydra/launcher=slurm needs Slurm's sbatch, which is not on this machine's PATH: run the "
                       "command on the cluster's login node (or hydra/launcher=parallel to run the jobs here)")
    if "hydra_ray_launcher" in target:
        address = OmegaConf.select(config, "hydra.launcher.ray.init.address")
        if address and str(address) not in ("auto", "local"):
            check_ray_address(str(address))


def check_ray_address(address: str) -> None:
    """A Ray address (``HOST:PORT`` or ``ray://HOST:PORT``) must accept a connection."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ZooError(f"hydra.launcher.ray.init.address={address!r} is invalid: expected HOST:PORT or "
                       f"ray://HOST:PORT (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ZooError(f"hydra.launcher.ray.init.address={address}: no Ray cluster answers there "
                       f"({exc.strerror or exc}); start one (ray start --head) or fix the address") from None
