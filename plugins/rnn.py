"""RNN family: the Elman recurrent network of the notes, LSTM and GRU, and three sequence datasets.

A recurrent unit keeps a hidden state that it feeds back at every step, so it remembers what it
read earlier in the sequence (the notes, "Recurrent Neural Network"):

* hidden state: ``h_t = σ(U·x_t + W·h_{t-1} + B)``
* output:       ``y = O(V·h + C)``

``rnn`` is that Elman network written from those two equations (:class:`ElmanCell`, stacked by
:class:`ElmanRNN`); it computes exactly what ``torch.nn.RNN`` computes, with ``B`` standing for
torch's two biases added together. ``lstm`` and ``gru`` are torch's gated units, which keep
their memory over long gaps where the plain rnn's gradients vanish (the ``adding`` problem
shows it). All three share :class:`RecurrentNet`, which owns the input handling and the
readout ``y = O(V·h + C)`` and asks each variant for its recurrent layers through one factory,
:meth:`RecurrentNet.make_rnn`.

The readout reads the last state (one prediction per sequence: ``classification``,
``regression``) or every step (one prediction per position: ``next_token``, ``reconstruction``,
``anomaly``; a dataset may force either with ``meta["readout"]``).

Datasets (kind ``sequence``, generated from the seed or bundled with scikit-learn, never
downloaded):

* ``sine``: forecast the next ``horizon`` values of a sine wave from ``length`` noisy values;
  the target is standardised, so ``test/mse`` is the MSE relative to the signal's variance.
* ``adding``: the adding problem (Hochreiter & Schmidhuber, 1997): each step is a
  (value, marker) pair, two steps are marked, and the target is the sum of the two marked
  values; predicting the mean scores an MSE of 1/6 ≈ 0.17.
* ``digits_rows``: scikit-learn's 8x8 digits read top to bottom as 8 rows of 8 features.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo

# ============================================================================ building blocks


class ElmanCell(nn.Module):
    """One recurrent unit of the notes: ``h_t = σ(U·x_t + W·h_{t-1} + B)``.

    Args:
        input_size: features of ``x_t``.
        hidden_size: size of the hidden state ``h_t``.
        activation: σ; ``tanh`` (as ``torch.nn.RNN``), ``relu``, ``sigmoid``, ``gelu`` or ``identity``.
    """

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh"):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.U = nn.Parameter(torch.empty(hidden_size, input_size))
        self.W = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.B = nn.Parameter(torch.empty(hidden_size))
        self.sigma = zoo.activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # torch.nn.RNN's initialisation
        for p in (self.U, self.W, self.B):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` (B, input_size), ``h`` (B, hidden_size) -> the next ``h``."""
        return self.sigma(F.linear(x, self.U, self.B) + F.linear(h, self.W))

    def scan(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every step of ``x`` (B, T, input_size) from ``h``: all states (B, T, H) and the last (B, H)."""
        ux = F.linear(x, self.U, self.B)  # U·x_t + B for every step at once; only W·h is sequential
        states = []
        for t in range(x.shape[1]):
            h = self.sigma(ux[:, t] + F.linear(h, self.W))
            states.append(h)
        return torch.stack(states, 1), h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, σ={type(self.sigma).__name__}"


class ElmanRNN(nn.Module):
    """Elman cells stacked in layers (and both directions): a drop-in for ``torch.nn.RNN``.

    Takes ``x`` (B, T, input_size) and returns ``(output, h_n)`` as ``nn.RNN(batch_first=True)``
    does: ``output`` (B, T, D·H) holds the top layer's states, ``h_n`` (layers·D, B, H) every
    layer's last state, D = 2 when bidirectional. The cell of layer ``l`` and direction ``d``
    is ``cells[l * D + d]``; its U, W and B are torch's ``weight_ih_l{l}``, ``weight_hh_l{l}``
    and ``bias_ih_l{l} + bias_hh_l{l}`` (``_reverse`` for d = 1).

    Args:
        input_size: features per step.
        hidden_size: size of each layer's hidden state.
        num_layers: stacked layers; each reads the states of the one below.
        activation: σ of every cell.
        dropout: dropout on the states between stacked layers while training.
        bidirectional: a second cell per layer reads the sequence backwards.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, activation: str = "tanh",
                 dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            ElmanCell(input_size if layer == 0 else hidden_size * self.directions, hidden_size, activation)
            for layer in range(num_layers) for _ in range(self.directions))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        D = self.directions
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * D, x.shape[0], self.hidden_size)
        last, inputs = [], x
        for layer in range(self.num_layers):
            outputs = []
            for d in range(D):
                i = layer * D + d
                seq = inputs if d == 0 else inputs.flip(1)  # the backward cell reads x_T ... x_1
                states, h = self.cells[i].scan(seq, h0[i])
                outputs.append(states if d == 0 else states.flip(1))
                last.append(h)
            inputs = torch.cat(outputs, -1) if D == 2 else outputs[0]
            if self.dropout and layer < self.num_layers - 1:
                inputs = F.dropout(inputs, self.dropout, self.training)
        return inputs, torch.stack(last)


class Readout(nn.Module):
    """The output equation of the notes: ``y = O(V·h + C)``.

    Args:
        in_features: size of the state read (hidden size, doubled when bidirectional).
        out_features: classes, regression targets, vocabulary or features per step.
        activation: O; ``identity`` leaves logits for the loss's softmax and raw values for MSE.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "identity"):
        super().__init__()
        self.V = nn.Parameter(torch.empty(out_features, in_features))
        self.C = nn.Parameter(torch.empty(out_features))
        self.O = zoo.activation(activation)
        bound = 1 / math.sqrt(in_features)  # nn.Linear's initialisation
        nn.init.uniform_(self.V, -bound, bound)
        nn.init.uniform_(self.C, -bound, bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.O(F.linear(h, self.V, self.C))


# ============================================================================ main classes

#: Which states the readout reads for each task: the last one, or every step.
READOUT = {"classification": "last", "regression": "last",
           "next_token": "all", "reconstruction": "all", "anomaly": "all"}


class RecurrentNet(nn.Module):
    """Input handling -> recurrent layers from :meth:`make_rnn` -> readout ``y = O(V·h + C)``.

    Inputs are (B, T, F) float features, (B, T) floats (one feature per step) or, with
    ``vocab_size``, (B, T) token ids that an embedding turns into vectors of ``hidden_size``.
    A variant overrides :meth:`make_rnn` only.

    Args:
        in_features: features per step (ignored with ``vocab_size``).
        out_features: outputs per sequence (``readout="last"``) or per step (``"all"``).
        hidden_size: size of the hidden state.
        num_layers: stacked recurrent layers.
        dropout: between stacked layers and on the state the readout reads, while training.
        bidirectional: also read each sequence backwards and concatenate both states.
        readout: ``last`` (one output per sequence) or ``all`` (one output per step).
        vocab_size: embed token ids from a vocabulary of this size (``None``: float inputs).
        **rnn_options: passed on to :meth:`make_rnn` (the Elman rnn's ``activation``).
    """

    def __init__(self, in_features: int, out_features: int, hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, readout: str = "last",
                 vocab_size: int | None = None, **rnn_options):
        super().__init__()
        if readout not in ("last", "all"):
            raise ValueError(f"readout={readout!r} is not a readout: choose last or all")
        self.in_features, self.out_features, self.readout = in_features, out_features, readout
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.embed = nn.Embedding(vocab_size, hidden_size) if vocab_size else None
        self.rnn = self.make_rnn(hidden_size if vocab_size else in_features, hidden_size, num_layers,
                                 dropout if num_layers > 1 else 0.0, bidirectional, **rnn_options)
        self.drop = nn.Dropout(dropout)
        self.head = Readout(hidden_size * self.directions, out_features)

    def make_rnn(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool, **options) -> nn.Module:
        """The recurrent layers: a module taking (B, T, input_size), returning ``(output, h_n)``
        like ``torch.nn.RNN(batch_first=True)`` (``h_n`` may be an ``(h_n, c_n)`` pair)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_rnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x.long())
        elif x.ndim == 2:
            x = x.unsqueeze(-1)
        output, state = self.rnn(x)
        if self.readout == "all":
            return self.head(self.drop(output))  # (B, T, out)
        h_n = state[0] if isinstance(state, tuple) else state  # an LSTM also returns its cell state
        top = h_n.view(self.num_layers, self.directions, x.shape[0], self.hidden_size)[-1]
        h = top.transpose(0, 1).reshape(x.shape[0], -1)  # both directions' last states, (B, D·H)
        return self.head(self.drop(h))  # (B, out)

    def __repr__(self) -> str:
        inputs = f"vocab={self.embed.num_embeddings}" if self.embed is not None else f"in={self.in_features}"
        bi = ", bidirectional" if self.directions == 2 else ""
        return (f"{type(self).__name__}({inputs}, hidden={self.hidden_size}, layers={self.num_layers}{bi}, "
                f"out={self.out_features}, readout={self.readout})")


class ElmanNet(RecurrentNet):
    """The notes' recurrent network: :class:`ElmanRNN` layers and the readout ``y = O(V·h + C)``.

    Args:
        activation: σ of the hidden-state equation (``tanh`` as ``torch.nn.RNN``, or ``relu``...).
        (the rest as :class:`RecurrentNet`)
    """

    def __init__(self, in_features: int, out_features: int, hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, readout: str = "last",
                 vocab_size: int | None = None, activation: str = "tanh"):
        super().__init__(in_features, out_features, hidden_size, num_layers, dropout, bidirectional,
                         readout, vocab_size, activation=activation)

    def make_rnn(self, input_size, hidden_size, num_layers, dropout, bidirectional, activation="tanh"):
        return ElmanRNN(input_size, hidden_size, num_layers, activation, dropout, bidirectional)


class LSTMNet(RecurrentNet):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997): gates decide what the cell state
    keeps, forgets and shows, so gradients survive long gaps. Layers from ``torch.nn.LSTM``."""

    def make_rnn(self, input_size, hidden_size, num_layers, dropout, bidirectional):
        return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                       bidirectional=bidirectional)


class GRUNet(RecurrentNet):
    """Gated recurrent unit (Cho et al., 2014): an update and a reset gate over one state, fewer
    parameters than the LSTM. Layers from ``torch.nn.GRU``."""

    def make_rnn(self, input_size, hidden_size, num_layers, dropout, bidirectional):
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                      bidirectional=bidirectional)


# ============================================================================ builders


def _check_common(hidden_size, num_layers, dropout, bidirectional) -> None:
    for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"model.{key}={value!r} is not an integer")
        zoo.check_range(f"model.{key}", value, 1)
    zoo.check_range("model.dropout", dropout, 0, 1, high_open=True)
    if not isinstance(bidirectional, bool):
        raise ValueError(f"model.bidirectional={bidirectional!r} is not a boolean: use true or false")


def _layout(info: zoo.DataInfo, bidirectional: bool) -> dict:
    """What the data decides: features per step, readout, and whether inputs are token ids."""
    readout = info.meta.get("readout", READOUT.get(info.task, "last"))
    tokens = info.task == "next_token"
    if tokens and bidirectional:
        raise ValueError("model.bidirectional=True cannot predict the next token: its backward direction "
                         "reads the future; set model.bidirectional=false")
    if not tokens and len(info.input_shape) not in (1, 2):
        raise ValueError(f"a recurrent network reads (T, F) or (T,) sequences; this dataset's examples "
                         f"have shape {tuple(info.input_shape)}")
    in_features = 1 if len(info.input_shape) == 1 else info.input_shape[-1]
    vocab = int(info.meta.get("vocab_size", info.output_dim)) if tokens else None
    return {"in_features": in_features, "out_features": info.output_dim, "readout": readout, "vocab_size": vocab}


def build_rnn(info: zoo.DataInfo, hidden_size: int, num_layers: int, activation: str, dropout: float,
              bidirectional: bool) -> ElmanNet:
    _check_common(hidden_size, num_layers, dropout, bidirectional)
    zoo.activation(activation)  # a bad name raises ValueError listing the choices
    return ElmanNet(hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, bidirectional=bidirectional,
                    activation=activation, **_layout(info, bidirectional))


def _gated_builder(cls):
    def build(info: zoo.DataInfo, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool):
        _check_common(hidden_size, num_layers, dropout, bidirectional)
        return cls(hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, bidirectional=bidirectional,
                   **_layout(info, bidirectional))
    build.__name__ = f"build_{cls.__name__.lower()}"
    return build


build_lstm = _gated_builder(LSTMNet)
build_gru = _gated_builder(GRUNet)


# ============================================================================ datasets


def _check_int(key: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not an integer")
    zoo.check_range(key, value, low)


def _splits(x: torch.Tensor, y: torch.Tensor, *, seed: int, task: str, output_dim: int, meta: dict,
            stratify=None) -> zoo.Splits:
    tr, va, te = zoo.split_indices(len(x), seed, stratify=stratify)
    info = zoo.DataInfo(kind="sequence", task=task, input_shape=tuple(x.shape[1:]), output_dim=output_dim, meta=meta)
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in (tr, va, te)), info=info)


def make_sine(seed: int, n_samples: int, length: int, horizon: int, noise: float):
    """Raw sine waves: noisy inputs (N, length, 1) and the clean continuation (N, horizon).

    Each wave has its own period (10 to 40 steps), amplitude (0.5 to 1.5) and phase.
    """
    g = torch.Generator().manual_seed(seed)
    period = 10 + 30 * torch.rand(n_samples, 1, generator=g)
    amplitude = 0.5 + torch.rand(n_samples, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n_samples, 1, generator=g)
    t = torch.arange(length + horizon, dtype=torch.float32)
    clean = amplitude * torch.sin(2 * math.pi * t / period + phase)
    x = clean[:, :length] + noise * torch.randn(n_samples, length, generator=g)
    return x.unsqueeze(-1), clean[:, length:]


def load_sine(seed: int, n_samples: int, length: int, horizon: int, noise: float) -> zoo.Splits:
    """Forecast the next ``horizon`` values of a sine wave from ``length`` noisy ones (regression).

    Inputs and targets are standardised by the training split's mean and standard deviation
    (one scalar each), so the test MSE is relative to the signal's variance and predicting the
    mean scores about 1; ``meta["target_std"]`` converts back (raw MSE = MSE · target_std²).
    """
    _check_int("data.n_samples", n_samples, 20)
    _check_int("data.length", length, 2)
    _check_int("data.horizon", horizon, 1)
    zoo.check_range("data.noise", noise, 0)
    x, y = make_sine(seed, n_samples, length, horizon, noise)
    tr, va, te = zoo.split_indices(n_samples, seed)
    target_mean, target_std = y[tr].mean(), y[tr].std()
    xs = zoo.standardize(x[tr], x[va], x[te], dim=(0, 1, 2))
    ys = zoo.standardize(y[tr], y[va], y[te], dim=(0, 1))
    info = zoo.DataInfo(kind="sequence", task="regression", input_shape=(length, 1), output_dim=horizon,
                        meta={"target_mean": float(target_mean), "target_std": float(target_std), "noise": noise})
    return zoo.Splits(*(zoo.TensorSplit(a, b) for a, b in zip(xs, ys)), info=info)


def make_adding(seed: int, n_samples: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: inputs (N, length, 2) of (value, marker) and targets (N, 1).

    Values are uniform in [0, 1); one step in the first half and one in the second half are
    marked with 1; the target is the sum of the two marked values.
    """
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n_samples, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n_samples, 1), generator=g)
    second = torch.randint(half, length, (n_samples, 1), generator=g)
    markers = torch.zeros(n_samples, length)
    markers.scatter_(1, first, 1.0)
    markers.scatter_(1, second, 1.0)
    target = (values * markers).sum(1, keepdim=True)
    return torch.stack([values, markers], -1), target


def load_adding(seed: int, n_samples: int, length: int) -> zoo.Splits:
    """The adding problem as regression; nothing is standardised (the mean predictor scores 1/6)."""
    _check_int("data.n_samples", n_samples, 20)
    _check_int("data.length", length, 2)
    x, y = make_adding(seed, n_samples, length)
    return _splits(x, y, seed=seed, task="regression", output_dim=1, meta={"mean_predictor_mse": 1 / 6})


def load_digits_rows(seed: int) -> zoo.Splits:
    """scikit-learn's digits as sequences of 8 rows of 8 pixels, standardised per column."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32).reshape(-1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy())
    xs = zoo.standardize(x[tr], x[va], x[te], dim=(0, 1))
    info = zoo.DataInfo(kind="sequence", task="classification", input_shape=(8, 8), output_dim=10,
                        meta={"class_names": [str(n) for n in bunch.target_names], "image_shape": (8, 8)})
    return zoo.Splits(*(zoo.TensorSplit(a, y[i]) for a, i in zip(xs, (tr, va, te))), info=info)


# ============================================================================ registration

_COMMON = {"hidden_size": 64, "num_layers": 1, "dropout": 0.0, "bidirectional": False}
_SMOKE = {"hidden_size": 8}


@zoo.hookimpl
def zoo_architectures():
    return [
        zoo.Architecture(
            name="rnn", family="rnn", kinds=("sequence",), build=build_rnn,
            defaults={"hidden_size": 64, "num_layers": 1, "activation": "tanh", "dropout": 0.0, "bidirectional": False},
            description="Elman recurrent network of the notes: h_t = σ(U·x_t + W·h_{t-1} + B), y = O(V·h + C)",
            smoke=_SMOKE,
        ),
        zoo.Architecture(
            name="lstm", family="rnn", kinds=("sequence",), build=build_lstm, defaults=dict(_COMMON),
            description="long short-term memory (torch.nn.LSTM) with the family's readout", smoke=_SMOKE,
        ),
        zoo.Architecture(
            name="gru", family="rnn", kinds=("sequence",), build=build_gru, defaults=dict(_COMMON),
            description="gated recurrent unit (torch.nn.GRU) with the family's readout", smoke=_SMOKE,
        ),
    ]


@zoo.hookimpl
def zoo_datasets():
    return [
        zoo.Dataset(
            name="sine", kind="sequence", task="regression", load=load_sine,
            defaults={"n_samples": 2000, "length": 50, "horizon": 5, "noise": 0.1},
            description="forecast the next values of noisy sine waves (standardised target: MSE relative to variance)",
            smoke={"n_samples": 64, "length": 12, "horizon": 2},
        ),
        zoo.Dataset(
            name="adding", kind="sequence", task="regression", load=load_adding,
            defaults={"n_samples": 10000, "length": 50},
            description="adding problem: sum the two marked values of a (value, marker) sequence (mean predictor: 0.17)",
            smoke={"n_samples": 64, "length": 10},
        ),
        zoo.Dataset(
            name="digits_rows", kind="sequence", task="classification", load=load_digits_rows,
            description="8x8 handwritten digits read as 8 rows of 8 features, 10 classes (1797)",
        ),
    ]
