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


# A plugin whose model notes, at every training step, what 1e-39 (a denormal float) times 1 is.
DENORMAL_PLUGIN = """
import torch, zoo


class Probe(torch.nn.Module):
    def __init__(self, d_in, d_out, note):
        super().__init__()
        self.note, self.lin = note, torch.nn.Linear(d_in, d_out)

    def forward(self, x):
        if self.training:
            with open(self.note, "a") as f:
                f.write(repr((torch.tensor([1e-39]) * 1.0).item()) + "\\n")
        return self.lin(x)

@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="denormal_probe", family="third_party", kinds=("tabular",), defaults={"note": ""},
                             build=lambda info, note: Probe(info.input_shape[-1], info.output_dim, note))]
"""


def test_denormals_are_flushed_while_training_unless_turned_off(make_cfg, client, tmp_path):
    """A long run's tiny gradients made each step about twice as slow (benchmarks/long_run.py): on the CPU the
    loop flushes denormal floats to zero by default (trainer.flush_denormal), and the process gets torch's default back."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "denormal_probe.py").write_text(DENORMAL_PLUGIN)
    from zoo.config import register_configs
    from zoo.plugin.registry import load_registry

    reg = load_registry([str(tmp_path / "plugins")])
    register_configs(reg)
    seen = {}
    for on in (True, False):
        note = tmp_path / f"note-{on}.txt"
        metrics = train(make_cfg(f"plugins.dir={tmp_path / 'plugins'}", "model=denormal_probe", f"model.note={note}",
                                 "data=iris", f"trainer.flush_denormal={str(on).lower()}", *QUICK), reg)
        seen[on] = {float(v) for v in note.read_text().split()}
        assert client.get_run(metrics["run_id"]).data.params["trainer.flush_denormal"] == str(on).lower()
        assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # torch's default again after the run
    if torch.set_flush_denormal(False):  # a CPU that can flush (x86 with SSE3)
        assert seen[True] == {0.0}
    assert seen[False] == {float(torch.tensor([1e-39]).item())}
