"""zoo.metrics: the built-in tasks' metrics give torchmetrics' numbers, sum across processes, and a run of a
built-in task never imports torchmetrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torchmetrics
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy

import zoo

from .conftest import FAST, runs_in

IGNORE = zoo.IGNORE_INDEX


def _classes(g, n=40, c=5):
    target = torch.randint(0, c, (n,), generator=g)
    target[torch.rand(n, generator=g) < 0.2] = IGNORE
    return torch.randn(n, c, generator=g), target


def _values(g, n=40):
    preds = torch.randn(n, generator=g)
    return preds, preds + 0.5 * torch.randn(n, generator=g)


def _outputs(g, n=40):
    preds = torch.randn(n, 3, generator=g)
    return preds, preds * torch.tensor([1.0, -0.5, 2.0]) + torch.randn(n, 3, generator=g)


def _scores(g, n=40):
    # rounded: many tied scores, within [0, 1] where torchmetrics takes them as they are
    return torch.rand(n, generator=g).round(decimals=1), torch.randint(0, 2, (n,), generator=g)


CASES = {  # name -> (zoo's, torchmetrics', random (preds, target), how torchmetrics wants them)
    "accuracy": (zoo.metrics.Accuracy, lambda: MulticlassAccuracy(5, average="micro", ignore_index=IGNORE), _classes, None),
    "accuracy_labels": (zoo.metrics.Accuracy, lambda: MulticlassAccuracy(5, average="micro", ignore_index=IGNORE),
                        lambda g: (_classes(g)[0].argmax(-1), _classes(g)[1]), None),
    "mse": (zoo.metrics.MeanSquaredError, torchmetrics.MeanSquaredError, _values, None),
    "r2": (zoo.metrics.R2Score, torchmetrics.R2Score, _values, None),
    "r2_outputs": (zoo.metrics.R2Score, torchmetrics.R2Score, _outputs, None),
    "perplexity": (zoo.metrics.Perplexity, lambda: torchmetrics.text.Perplexity(ignore_index=IGNORE), _classes,
                   lambda p, t: (p[None], t[None])),
    "auroc": (zoo.metrics.AUROC, BinaryAUROC, _scores, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_torchmetrics(case, seed):
    ours_cls, theirs_cls, draw, shape = CASES[case]
    g = torch.Generator().manual_seed(seed)
    ours, theirs = ours_cls().to("cpu"), theirs_cls()
    assert isinstance(ours, ours_cls)  # to() returns the metric, as the loop uses it
    for _ in range(2):  # an evaluation pass after reset() starts again
        ours.reset()
        theirs.reset()
        for _ in range(3):
            preds, target = draw(g)
            ours.update(preds, target)
            theirs.update(*(shape(preds, target) if shape else (preds, target)))
        expected = float(theirs.compute())
        assert float(ours.compute()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert float(ours.compute()) == pytest.approx(expected, rel=1e-5, abs=1e-6)  # compute() leaves the states


def test_edge_cases_as_torchmetrics():
    # nothing counted: accuracy 0
    acc = zoo.metrics.Accuracy()
    acc.update(torch.randn(4, 3), torch.full((4,), IGNORE))
    assert float(acc.compute()) == 0.0
    # a perfect fit scores 1; a constant target fitted badly 0; fewer than two values raise
    for preds, target, expected in [(torch.arange(5.0), torch.arange(5.0), 1.0), (torch.arange(5.0), torch.ones(5), 0.0)]:
        ours, theirs = zoo.metrics.R2Score(), torchmetrics.R2Score()
        ours.update(preds, target)
        theirs.update(preds, target)
        assert float(ours.compute()) == float(theirs.compute()) == expected
    one = zoo.metrics.R2Score()
    one.update(torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match="at least two values, got 1"):
        one.compute()
    # AUROC: every score tied is 0.5; targets of one class only give 0, as torchmetrics
    auroc = zoo.metrics.AUROC()
    auroc.update(torch.full((6,), 0.3), torch.tensor([0, 1, 0, 1, 1, 0]))
    assert float(auroc.compute()) == 0.5
    for target in (torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)):
        auroc.reset()
        auroc.update(torch.rand(6), target)
        assert float(auroc.compute()) == 0.0
    # scores outside [0, 1] (reconstruction errors) are ranked as they are
    from sklearn.metrics import roc_auc_score

    scores, target = torch.tensor([0.5, 3.0, 40.0, 41.0, 2.0, 3.0]), torch.tensor([0, 1, 1, 1, 0, 0])
    auroc.reset()
    auroc.update(scores, target)
    assert float(auroc.compute()) == pytest.approx(roc_auc_score(target.numpy(), scores.numpy()))


def test_update_keeps_no_autograd_graph():
    mse = zoo.metrics.MeanSquaredError()
    mse.update(torch.randn(4, requires_grad=True) * 2, torch.zeros(4))
    assert not mse.squared.requires_grad and not mse.compute().requires_grad


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ValueError, match=r"MeanSquaredError: preds \(4, 1\) and target \(4,\)"):
        zoo.metrics.MeanSquaredError().update(torch.zeros(4, 1), torch.zeros(4))


# Each process gets a different share of the values (the last one fewer); compute() on every process gives the
# value over all of them.
DDP = """
import json, sys, torch, torch.distributed as dist, zoo
rank, world = int(sys.argv[1]), 2
g = torch.Generator().manual_seed(0)
logits, labels = torch.randn(31, 4, generator=g), torch.randint(0, 4, (31,), generator=g)
labels[::5] = zoo.IGNORE_INDEX
scores, positive = torch.rand(31, generator=g).round(decimals=1), torch.randint(0, 2, (31,), generator=g)
values = torch.randn(31, generator=g)
data = {"accuracy": (zoo.metrics.Accuracy, logits, labels), "perplexity": (zoo.metrics.Perplexity, logits, labels),
        "mse": (zoo.metrics.MeanSquaredError, values, values.flip(0)), "r2": (zoo.metrics.R2Score, values, values.sin()),
        "auroc": (zoo.metrics.AUROC, scores, positive)}
whole = {}
for name, (kind, preds, target) in data.items():  # one process, every value
    metric = kind()
    metric.update(preds, target)
    whole[name] = float(metric.compute())
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=world)
out = {}
for name, (kind, preds, target) in data.items():  # this process's share of the values
    metric = kind()
    metric.update(preds[rank::world], target[rank::world])
    out[name] = (float(metric.compute()), whole[name])
print("OUT", json.dumps(out))
dist.destroy_process_group()
"""


def test_compute_sums_over_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "rendezvous")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1500:] for _, e in outs]
    for out, _ in outs:
        found = json.loads(out.split("OUT", 1)[1])
        assert set(found) == {"accuracy", "perplexity", "mse", "r2", "auroc"}
        for name, (reduced, whole) in found.items():
            assert reduced == pytest.approx(whole, rel=1e-6), name


@pytest.mark.parametrize("args, metric", [(["data=digits"], "accuracy"),
                                          (["data=breast_cancer_anomaly", "model=autoencoder"], "auroc")])
def test_a_run_of_a_built_in_task_never_imports_torchmetrics(tmp_path, args, metric):
    code = ("import sys\nfrom zoo.cli import main\n"
            f"try:\n    main(['train', *{args + FAST!r}, 'tracking.log_model=false'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('torchmetrics', 'scipy.signal') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert "LOADED []" in r.stdout, (r.stdout[-500:], r.stderr[-1500:])
    (run,) = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    assert 0 <= run.data.metrics[f"test/{metric}"] <= 1 and f"best/val_{metric}" in run.data.metrics
