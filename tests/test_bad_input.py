"""Bad input: one clear line naming the key, a non-zero exit, and no run left in the store."""

from __future__ import annotations

import pytest

import zoo
from zoo.training.train import train

from .conftest import run_zoo, runs_in

# (override, what the one-line message must contain)
BAD_VALUES = [
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1 is invalid: expected an integer >= 1"),
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is invalid"),
    ("trainer.batch_size=0", "trainer.batch_size=0 is invalid"),
    ("trainer.batch_size=half", "trainer.batch_size='half' is invalid"),
    ("trainer.device=gpu", "trainer.device='gpu' is invalid"),
    ("trainer.patience=0", "trainer.patience=0 is invalid"),
    ("trainer.grad_clip=-1", "trainer.grad_clip=-1 is invalid"),
    ("trainer.log_every=0", "trainer.log_every=0 is invalid"),
    ("trainer.precision=8", "trainer.precision=8 is invalid"),
    ("trainer.compile=maybe", "trainer.compile='maybe' is invalid"),
    ("trainer.threads=0", "trainer.threads=0 is invalid: expected an integer >= 1 or auto"),
    ("seed=-3", "seed=-3 is invalid"),
    ("optimizer.lr=abc", "optimizer.lr='abc' is invalid: expected a number > 0"),
    ("optimizer.lr=0", "optimizer.lr=0 is invalid"),
    ("optimizer.lr=inf", "optimizer.lr=inf is invalid: expected a number > 0"),
    ("optimizer.lr=1e309", "optimizer.lr=inf is invalid: expected a number > 0"),
    ("trainer.grad_clip=inf", "trainer.grad_clip=inf is invalid"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 is invalid"),
    ("model.hidden_sizes=[]", "model.hidden_sizes=[] is empty"),
    ("model.hidden_sizes=abc", "model.hidden_sizes='abc' is invalid: expected a list"),
    ("model.hidden_sizes=[0]", "model.hidden_sizes=[0] is invalid"),
    ("model.activation=swish", "model.activation='swish' is not an activation: choose one of relu"),
    ("model.dropout=1.5", "model.dropout=1.5 is out of range"),
    ("model.dropout=lots", "model.dropout='lots' is invalid: expected a number"),
    ("model.dropout=null", "model.dropout=null is invalid: expected a number"),
    ("~model.dropout", "model.dropout is missing: model=mlp needs every one of its settings (dropout defaults to 0.0)"),
    ("+model.depth=3", "model.depth=3 is invalid: expected one of model=mlp's settings"),
    ("tracking.grad_every=-2", "tracking.grad_every=-2 is invalid"),
    ("tracking.hist_every=x", "tracking.hist_every='x' is invalid"),
    ("tracking.experiment=''", "tracking.experiment='' is invalid"),
    ("tracking.system_metrics=maybe", "tracking.system_metrics='maybe' is invalid: expected true or false"),
    ("data=moons data.noise=-1", "data.noise=-1"),
    ("data=moons data.n_samples=5", "data.n_samples=5 is out of range"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_fails_before_any_run(make_cfg, registry, store, override, message):
    with pytest.raises(zoo.ZooError) as err:
        train(make_cfg(*override.split()), registry)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert runs_in(store) == [] if store_exists(store) else True


def store_exists(uri: str) -> bool:
    from pathlib import Path

    return Path(uri[len("sqlite:///"):]).exists()


def test_incompatible_pair_names_compatible_datasets(make_cfg, registry):
    pairs = [(a, d) for a, ae in registry.architectures.items() for d, de in registry.datasets.items()
             if de.decl.kind not in ae.decl.kinds]
    if not pairs:
        pytest.skip("every registered architecture accepts every dataset kind")
    model, data = pairs[0]
    with pytest.raises(zoo.ZooError, match=rf"model={model} does not accept data={data} .*compatible datasets: "):
        train(make_cfg(f"model={model}", f"data={data}"), registry)


def test_graph_model_on_tabular_data(make_cfg, registry, store):
    with pytest.raises(zoo.ZooError, match=r"model=gcn does not accept data=digits \(kind tabular.*compatible datasets: .*karate"):
        train(make_cfg("model=gcn", "data=digits"), registry)
    assert not store_exists(store)


def test_cuda_without_gpu_is_an_error(make_cfg, registry):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(zoo.ZooError, match=r"trainer.device='cuda' is invalid: expected cpu or auto: no CUDA GPU"):
        train(make_cfg("trainer.device=cuda"), registry)


# Each case is a process of its own (a Hydra app): a value error takes the same path through the
# command line whatever the value (the in-process BAD_VALUES above cover each value), so two stand
# for all of them here: trainer.max_epochs=-1, and ~model.dropout (Hydra's deletion syntax).
CLI_CASES = [
    (["model=mpl"], "unknown model (architecture) 'mpl' in model=mpl. Did you mean 'mlp'?"),
    (["data=digitz"], "unknown dataset 'digitz' in data=digitz. Did you mean 'digits'?"),
    (["optimizer=adamm"], "unknown optimizer 'adamm'"),
    (["experiment=nope"], "unknown experiment 'nope'"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 is invalid"),
    (["-m", "model=mlp,nope"], "unknown model (architecture) 'nope'"),
    (["tracking.experiment=实验🚀ü"], "the override 'tracking.experiment=实验🚀ü' cannot be read (token recognition error at: '实'); "
                                     "quote the value: 'tracking.experiment=\"实验🚀ü\"'"),
    (["hydra/launcher=paralel"], "unknown hydra/launcher 'paralel' in hydra/launcher=paralel. Did you mean 'parallel'?"),
    (["scheduler=1"], "scheduler=1: a config group takes the name of a config (or null for none), not '1'"),
    # Hydra's composition errors, on one line (zoo.config.composition)
    (["model.hiden_sizes=[8]"], "model.hiden_sizes=[8]: model=mlp has no setting 'hiden_sizes'. Did you mean "
                                "'hidden_sizes'? Its settings: freeze, hidden_sizes, activation, dropout, batch_norm"),
    (["trainer.max_epoch=3"], "trainer.max_epoch=3: trainer has no key 'max_epoch'. Did you mean 'max_epochs'? "
                              "To add a new key, write +trainer.max_epoch=3"),
    (["+experiment=ann_digits"], "+experiment=ann_digits: experiment is already in the defaults list, so it is "
                                 "chosen, not added: write experiment=ann_digits (without the +)"),
    (["+optimizer.lr=3"], "+optimizer.lr=3: optimizer.lr is already set: write optimizer.lr=3 (without the +)"),
    (["tracking.experiment=${bad.key}"], "tracking.experiment=${bad.key} cannot be resolved: "
                                         "Interpolation key 'bad.key' not found"),
    (["~model.dropout"], "model.dropout is missing: model=mlp needs every one of its settings"),
]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_command_line_error_is_one_line(tmp_path, args, message):
    result = run_zoo("train", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {lines[0][7:]}"] and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or runs_in(f"sqlite:///{db}") == []


def test_full_error_shows_traceback(tmp_path):
    result = run_zoo("train", "trainer.max_epochs=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unknown_command(tmp_path):
    result = run_zoo("trian", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'train'?" in result.stderr
