"""The thread policy (zoo/training/threads.py): torch's intra-op threads are chosen, recorded and overridable.

These tests pin the behaviour (which count, which tag, which setting wins), never the speed.
"""

from __future__ import annotations

import torch

from zoo.training import threads
from zoo.training.train import train

from .conftest import run_zoo, runs_in

QUICK = ["trainer.max_epochs=1", "tracking.log_model=false", "tracking.hist_every=0"]


def test_auto_leaves_a_core_for_the_writer_and_is_recorded(make_cfg, registry, client, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    metrics = train(make_cfg(*QUICK), registry)
    tags = client.get_run(metrics["run_id"]).data.tags
    assert tags["zoo.threads_from"] == "auto"
    assert tags["zoo.threads"] == str(threads.auto_threads())
    cores = threads.available_cores()
    assert 1 <= int(tags["zoo.threads"]) <= max(1, cores - 1)  # a core is left for the writer process
    assert torch.get_num_threads() == before  # the process gets its own count back after the run


def test_trainer_threads_overrides_the_rule_and_the_environment(make_cfg, registry, client, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    metrics = train(make_cfg(*QUICK, "trainer.threads=2"), registry)
    tags = client.get_run(metrics["run_id"]).data.tags
    assert (tags["zoo.threads"], tags["zoo.threads_from"]) == ("2", "trainer.threads")  # what torch reported using
    assert torch.get_num_threads() == before


def test_a_user_set_omp_num_threads_is_respected(tmp_path):
    """torch reads OMP_NUM_THREADS when it starts, so this runs the real command in a fresh process."""
    r = run_zoo("train", "trainer.device=cpu", "tracking.system_metrics=false", *QUICK, cwd=tmp_path,
                env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    assert (run.data.tags["zoo.threads"], run.data.tags["zoo.threads_from"]) == ("1", "OMP_NUM_THREADS")


def test_the_choice_in_order(monkeypatch):
    """trainer.threads first, then OMP_NUM_THREADS (torch's count left alone), then the rule."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose(3) == (3, "trainer.threads")
    assert threads.choose("auto") == (threads.auto_threads(), "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.choose("auto") == (None, "OMP_NUM_THREADS")
    assert threads.choose(2) == (2, "trainer.threads")
