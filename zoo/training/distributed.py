"""DistributedDataParallel through torchrun: one process per device, rank 0 talks to MLflow.

``zoo train trainer=ddp trainer.nproc=2`` re-runs itself under ``torchrun`` (PyTorch's own
launcher); under torchrun (``WORLD_SIZE`` set) each process joins the process group (gloo on the
CPU, nccl on GPUs), takes its slice of every global batch, and DDP averages the gradients, so
the weights follow the single-process run with the same global batch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch
import torch.distributed as dist

from zoo.errors import ZooError


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def slurm_tasks(environ: dict | None = None) -> dict[str, str] | None:
    """The process group of a Slurm job step of several tasks (``srun -n N``, or submitit's
    ``tasks_per_node``), as torchrun's variables: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR`` (the step's first node: the rendezvous host of a multi-node job) and
    ``MASTER_PORT`` (from the job id, so that two jobs sharing a node do not collide).

    None outside such a step: one task, or the batch script itself (it has no ``SLURM_STEP_ID``).
    """
    env = os.environ if environ is None else environ
    tasks = int(env.get("SLURM_STEP_NUM_TASKS") or 0)
    if tasks < 2 or "SLURM_PROCID" not in env or "SLURM_STEP_ID" not in env:
        return None
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    return {"RANK": env["SLURM_PROCID"], "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "WORLD_SIZE": str(tasks),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes),
            "MASTER_PORT": env.get("MASTER_PORT") or str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 20000)}


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[03-05,07],gpu1`` -> ``node03``), as ``scontrol show hostnames``."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head = nodelist.split(",")[0]
    if "[" in head:  # without scontrol: expand the first range by hand
        prefix, rest = head.split("[", 1)
        return prefix + rest.split("-")[0].split(",")[0].rstrip("]")
    return head


def join_slurm_step() -> bool:
    """Under a Slurm step of several tasks, set torchrun's variables so that this process joins the
    step's process group as torchrun's would; True if it did."""
    found = slurm_tasks()
    if found is None:
        return False
    os.environ.update(found)
    return True


def launch(trainer: dict, args: list[str]) -> int:
    """Run ``zoo train ARGS`` under torchrun with the trainer's process and node settings."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={trainer['nproc']}",
           f"--nnodes={trainer.get('nnodes', 1)}"]
    if trainer.get("rdzv_endpoint"):
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={trainer['rdzv_endpoint']}",
                f"--rdzv-id={trainer.get('rdzv_id') or 'zoo'}"]
    else:
        cmd += ["--standalone"]
    # torchrun's log folder, removed when it ends (else it leaves an empty torchelastic_* in the temp folder)
    with tempfile.TemporaryDirectory(prefix="zoo-torchrun-") as logs:
        return subprocess.call([*cmd, f"--log-dir={logs}", "-m", "zoo.cli", "train", *args])


@dataclass
class Dist:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, t):
        """This rank's slice of a global batch (every rank drew the same permutation)."""
        return t if self.world == 1 else t[self.rank::self.world]

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.world == 1 else self.sum(t) / self.world

    def broadcast(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's weights."""
        if self.world > 1:
            for t in module.state_dict().values():
                dist.broadcast(t, 0)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def process_group(trainer: dict, device: torch.device):
    """Yield ``(dist, device)``: this process's place in the job, and its device; leave the group at the end."""
    d, device = setup(trainer, device)
    try:
        yield d, device
    finally:
        d.close()


def setup(trainer: dict, device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when running under torchrun with ``trainer.strategy=ddp``."""
    if trainer.get("strategy", "single") != "ddp" or not under_torchrun():
        return Dist(), device
    local = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = trainer.get("backend", "auto")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size()), device


def wrap(model: torch.nn.Module, d: Dist, device: torch.device):
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def check_splittable(example) -> None:
    if not isinstance(example, torch.Tensor):
        raise ZooError("trainer=ddp needs a dataset of in-memory tensors; this dataset yields "
                       f"{type(example).__name__} batches: train it with trainer=default")
