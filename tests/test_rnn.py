"""The RNN family: the Elman network against torch.nn.RNN, the sequence datasets, the presets,
and a short real training on each dataset recorded in a temporary MLflow store."""

from __future__ import annotations

import math
import re

import pytest
import torch

import zoo
from zoo_builtins import rnn, sequence
from zoo.training.train import train


def _copy_torch_weights(ref: torch.nn.RNN, net: rnn.ElmanRNN) -> None:
    """U, W, B of each cell from torch's weight_ih, weight_hh and bias_ih + bias_hh."""
    D = 2 if ref.bidirectional else 1
    with torch.no_grad():
        for layer in range(ref.num_layers):
            for d, suffix in enumerate(["", "_reverse"][:D]):
                cell = net.cells[layer * D + d]
                cell.U.copy_(getattr(ref, f"weight_ih_l{layer}{suffix}"))
                cell.W.copy_(getattr(ref, f"weight_hh_l{layer}{suffix}"))
                cell.B.copy_(getattr(ref, f"bias_ih_l{layer}{suffix}") + getattr(ref, f"bias_hh_l{layer}{suffix}"))


@pytest.mark.parametrize("num_layers,bidirectional,nonlinearity", [
    (1, False, "tanh"), (3, False, "tanh"), (2, True, "tanh"), (2, False, "relu"),
])
def test_elman_rnn_matches_torch_rnn(num_layers, bidirectional, nonlinearity):
    torch.manual_seed(0)
    ref = torch.nn.RNN(3, 6, num_layers=num_layers, nonlinearity=nonlinearity, batch_first=True,
                       bidirectional=bidirectional)
    net = rnn.ElmanRNN(3, 6, num_layers=num_layers, activation=nonlinearity, bidirectional=bidirectional)
    _copy_torch_weights(ref, net)
    x = torch.randn(5, 9, 3)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), 5, 6)
    for args in ((x,), (x, h0)):
        out_ref, h_ref = ref(*args)
        out, h = net(*args)
        assert out.shape == out_ref.shape == (5, 9, 6 * (2 if bidirectional else 1))
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
    # the gradients agree too, so training either is the same computation
    net(x)[0].square().sum().backward()
    ref(x)[0].square().sum().backward()
    torch.testing.assert_close(net.cells[0].W.grad, ref.weight_hh_l0.grad, rtol=1e-4, atol=1e-5)


def test_elman_cell_is_the_notes_equation():
    cell = rnn.ElmanCell(4, 3)
    x, h = torch.randn(2, 4), torch.randn(2, 3)
    expected = torch.tanh(x @ cell.U.T + h @ cell.W.T + cell.B)
    torch.testing.assert_close(cell(x, h), expected)
    assert {n for n, _ in cell.named_parameters()} == {"U", "W", "B"}


def test_elman_net_equals_torch_rnn_and_linear_readout():
    """The whole model, y = O(V·h_T + C), against torch.nn.RNN followed by torch.nn.Linear."""
    torch.manual_seed(1)
    info = zoo.DataInfo(kind="sequence", task="regression", input_shape=(7, 2), output_dim=3)
    model = rnn.ElmanNet.from_info(info, hidden_size=5, num_layers=2, activation="tanh", dropout=0.0, bidirectional=False).eval()
    ref = torch.nn.RNN(2, 5, num_layers=2, batch_first=True)
    _copy_torch_weights(ref, model.rnn)
    x = torch.randn(4, 7, 2)
    expected = ref(x)[0][:, -1] @ model.head.V.T + model.head.C
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("cls", [rnn.ElmanNet, rnn.LSTMNet, rnn.GRUNet])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_readout_last_and_every_step(cls, bidirectional):
    x = torch.randn(3, 6, 2)
    last = cls(in_features=2, out_features=4, hidden_size=5, num_layers=2, bidirectional=bidirectional)
    every = cls(in_features=2, out_features=4, hidden_size=5, num_layers=2, bidirectional=bidirectional, readout="all")
    assert last(x).shape == (3, 4)
    assert every(x).shape == (3, 6, 4)
    if not bidirectional:  # the last state read is the state of the last step
        every.load_state_dict(last.state_dict())
        torch.testing.assert_close(every.eval()(x)[:, -1], last.eval()(x))
    assert cls.__name__ in repr(last) and "\n" not in repr(last)


def test_layout_follows_the_task():
    tokens = zoo.DataInfo(kind="sequence", task="next_token", input_shape=(10,), output_dim=13)
    model = rnn.LSTMNet.from_info(tokens, hidden_size=8, num_layers=1, dropout=0.0, bidirectional=False)
    assert model(torch.randint(0, 13, (2, 10))).shape == (2, 10, 13)
    with pytest.raises(ValueError, match="model.bidirectional"):
        rnn.GRUNet.from_info(tokens, hidden_size=8, num_layers=1, dropout=0.0, bidirectional=True)
    univariate = zoo.DataInfo(kind="sequence", task="reconstruction", input_shape=(10,), output_dim=1)
    model = rnn.GRUNet.from_info(univariate, hidden_size=8, num_layers=1, dropout=0.0, bidirectional=True)
    assert model(torch.randn(2, 10)).shape == (2, 10, 1)


@pytest.mark.parametrize("kwargs,message", [
    ({"hidden_size": 0}, "model.hidden_size=0 is out of range: expected 1 <= hidden_size"),
    ({"num_layers": 0}, "model.num_layers=0 is out of range"),
    ({"dropout": 1.0}, "model.dropout=1.0 is out of range"),
    ({"activation": "swish"}, "model.activation='swish' is not an activation"),
])
def test_builder_names_the_bad_setting(kwargs, message):
    info = zoo.DataInfo(kind="sequence", task="regression", input_shape=(5, 1), output_dim=1)
    hp = {"hidden_size": 4, "num_layers": 1, "activation": "tanh", "dropout": 0.0, "bidirectional": False, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        rnn.ElmanNet.from_info(info, **hp)


@pytest.mark.parametrize("name,params,x_shape,y_shape,task,output_dim", [
    ("sine", {"n_samples": 200, "length": 30, "horizon": 4, "noise": 0.1}, (30, 1), (4,), "regression", 4),
    ("adding", {"n_samples": 200, "length": 25}, (25, 2), (1,), "regression", 1),
    ("digits_rows", {}, (8, 8), (), "classification", 10),
])
def test_dataset_shapes(name, params, x_shape, y_shape, task, output_dim):
    load = {d.name: d.load for d in sequence.zoo_datasets()}[name]
    splits = load(seed=0, **params)
    assert splits.info.kind == "sequence" and splits.info.task == task
    assert splits.info.input_shape == x_shape and splits.info.output_dim == output_dim
    total = sum(len(s) for s in (splits.train, splits.val, splits.test))
    assert total == params.get("n_samples", 1797)
    for s in (splits.train, splits.val, splits.test):
        assert s.x.shape[1:] == x_shape and s.y.shape[1:] == y_shape and s.x.dtype == torch.float32
    assert torch.equal(load(seed=0, **params).test.x, splits.test.x)  # fixed by the seed
    assert not torch.equal(load(seed=1, **params).train.x[:5], splits.train.x[:5])


def test_adding_target_is_the_sum_of_the_two_marked_values():
    x, y = sequence.make_adding(seed=3, n_samples=500, length=20)
    values, markers = x[..., 0], x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((500,), 2.0))
    first, second = markers[:, :10].argmax(1), markers[:, 10:].argmax(1) + 10  # one mark in each half
    torch.testing.assert_close(y[:, 0], values[torch.arange(500), first] + values[torch.arange(500), second])
    assert abs(float(((y - y.mean()) ** 2).mean()) - 1 / 6) < 0.03  # the mean predictor's MSE


def test_sine_target_is_standardised_continuation():
    splits = sequence.load_sine(seed=0, n_samples=300, length=20, horizon=3, noise=0.0)
    y = splits.train.y
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-5
    # meta undoes the scaling: the raw target is the clean continuation of each training wave
    raw = y * splits.info.meta["target_std"] + splits.info.meta["target_mean"]
    x, clean = sequence.make_sine(seed=0, n_samples=300, length=20, horizon=3, noise=0.0)
    train_idx = zoo.split_indices(300, 0)[0]
    torch.testing.assert_close(raw, clean[train_idx], atol=1e-5, rtol=1e-5)
    assert x.shape == (300, 20, 1) and splits.info.meta["target_std"] > 0.5  # amplitudes 0.5 to 1.5


@pytest.mark.parametrize("bad,message", [
    ({"length": 1}, "data.length=1 is out of range"),
    ({"n_samples": 5}, "data.n_samples=5 is out of range"),
])
def test_adding_names_the_bad_setting(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sequence.load_adding(seed=0, **{"n_samples": 100, "length": 10, **bad})


PRESETS = ["rnn_adding", "rnn_adding_gru", "rnn_digits_rows", "rnn_sine", "rnn_sine_elman"]


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}")
    assert cfg.model.name in ("rnn", "lstm", "gru")
    assert cfg.data.name in ("sine", "adding", "digits_rows")
    assert cfg.tracking.experiment == "rnn"
    if cfg.data.name == "adding":  # the length stays a plain setting a sweep can override
        assert make_cfg(f"experiment={preset}", "data.length=10").data.length == 10


@pytest.mark.parametrize("overrides,metric,bound", [
    (["model=rnn", "data=sine", "data.n_samples=300", "data.length=20", "optimizer.lr=0.01"], "test/mse", 1.0),
    (["model=lstm", "data=adding", "data.n_samples=300", "data.length=10", "optimizer.lr=0.01"], "test/mse", 0.5),
    (["model=gru", "data=digits_rows", "model.hidden_size=32", "optimizer.lr=0.01"], "test/accuracy", 0.5),
])
def test_short_training_is_recorded(make_cfg, client, overrides, metric, bound):
    cfg = make_cfg(*overrides, "trainer.max_epochs=3", "tracking.log_model=false", "tracking.experiment=rnn")
    result = train(cfg)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["zoo.family"] == "rnn"
    logged = run.data.metrics[metric]
    assert logged == pytest.approx(result[metric]) and math.isfinite(logged)
    # better than chance (accuracy) or than always predicting the mean (MSE relative to variance is 1)
    assert logged > bound if metric.endswith("accuracy") else logged < bound
    assert len(client.get_metric_history(run.info.run_id, metric.replace("test/", "val/"))) == 3
