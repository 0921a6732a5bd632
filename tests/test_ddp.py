"""DDP through torchrun on the CPU (gloo): 2 processes equal 1 process with the same global batch."""

from __future__ import annotations

import torch

from .conftest import last_checkpoint, run_zoo, runs_in

ARGS = ["data=iris", "trainer.batch_size=8", "trainer.max_epochs=3", "trainer.device=cpu",
        "tracking.system_metrics=false", "tracking.log_model=false"]


def test_two_processes_match_one(tmp_path):
    scratch = tmp_path / "tmp"  # the temporary folder (TMPDIR): torchrun's log folder does not stay in it
    scratch.mkdir()
    ddp = run_zoo("train", *ARGS, "trainer=ddp", "trainer.nproc=2", "hydra.run.dir=ddp", cwd=tmp_path,
                  env={"TMPDIR": str(scratch)})
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert not [p.name for p in scratch.iterdir() if p.name.startswith(("torchelastic_", "zoo-", "pymp-"))]
    assert ddp.stdout.count("zoo: mlp on iris") == 1  # only rank 0 reports
    single = run_zoo("train", *ARGS, "hydra.run.dir=single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    a = torch.load(last_checkpoint(tmp_path / "ddp"), weights_only=True)
    b = torch.load(last_checkpoint(tmp_path / "single"), weights_only=True)
    assert a["step"] == b["step"] == 3 * 13  # 104 training examples / global batch 8
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-5)
    runs = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    by_world = {r.data.tags["zoo.world_size"]: r for r in runs}
    assert sorted(by_world) == ["1", "2"]  # exactly one run for the DDP job
    d, s = by_world["2"], by_world["1"]
    assert d.info.status == "FINISHED" and d.data.params["trainer.nproc"] == "2"
    # metrics reduced across ranks equal the single process's, not rank 0's half
    assert abs(d.data.metrics["val/loss"] - s.data.metrics["val/loss"]) < 1e-5
    assert abs(d.data.metrics["test/accuracy"] - s.data.metrics["test/accuracy"]) < 1e-6


def test_ddp_settings_are_validated(make_cfg, registry):
    import pytest

    from zoo import ZooError
    from zoo.training.train import train

    with pytest.raises(ZooError, match="trainer.nproc=0 is invalid"):
        train(make_cfg("trainer=ddp", "trainer.nproc=0"), registry)
    with pytest.raises(ZooError, match="trainer.backend='mpi' is invalid"):
        train(make_cfg("trainer=ddp", "trainer.backend=mpi"), registry)


def test_a_sweeps_jobs_run_ddp(tmp_path):
    """What the Slurm preset relies on: each job of a sweep re-runs itself under torchrun."""
    r = run_zoo("train", "-m", *ARGS, "trainer.max_epochs=1", "trainer=ddp", "trainer.nproc=2", "seed=0,1",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    children = [x for x in runs if "mlflow.parentRunId" in x.data.tags]
    assert sorted(x.info.run_name for x in children) == ["seed=0", "seed=1"]
    assert all(x.data.tags["zoo.world_size"] == "2" and x.info.status == "FINISHED" for x in children)
    assert len(runs) == 3  # the two jobs and the sweep's parent run, no run per rank
