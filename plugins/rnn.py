"""RNN family: the Elman recurrent network of the notes, LSTM and GRU.

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

The readout reads every step when the dataset's task predicts one output per position
(``next_token``, ``reconstruction``, ``anomaly``; ``zoo.Task.per_position``), else the last
state (one prediction per sequence: ``classification``, ``regression``); a dataset may say which
with ``meta["per_token"]``. The sequence datasets are in ``zoo_builtins.sequence``.
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

    #: the hyperparameters (``model.<key>``) and their defaults; a variant extends them
    defaults = {"hidden_size": 64, "num_layers": 1, "dropout": 0.0, "bidirectional": False}

    def __init__(self, in_features: int, out_features: int, hidden_size: int, num_layers: int,
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

    @classmethod
    def from_info(cls, info: zoo.DataInfo, **hp) -> "RecurrentNet":
        """The factory every variant registers as ``build``: the data decides the features per
        step, the readout and whether the inputs are token ids (see :func:`_layout`)."""
        zoo.check_range("model.hidden_size", hp["hidden_size"], 1)
        zoo.check_range("model.num_layers", hp["num_layers"], 1)
        zoo.check_range("model.dropout", hp["dropout"], 0, 1, high_open=True)
        return cls(**_layout(info, hp["bidirectional"]), **hp)


class ElmanNet(RecurrentNet):
    """The notes' recurrent network: :class:`ElmanRNN` layers and the readout ``y = O(V·h + C)``.

    Args (besides :class:`RecurrentNet`'s):
        activation: σ of the hidden-state equation (``tanh`` as ``torch.nn.RNN``, or ``relu``...).
    """

    defaults = {**RecurrentNet.defaults, "activation": "tanh"}

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


def _layout(info: zoo.DataInfo, bidirectional: bool) -> dict:
    """What the data decides: features per step, readout, and whether inputs are token ids."""
    tokens = info.task == "next_token"
    if tokens and bidirectional:
        raise ValueError("model.bidirectional=True cannot predict the next token: its backward direction "
                         "reads the future; set model.bidirectional=false")
    if not tokens and len(info.input_shape) not in (1, 2):
        raise ValueError(f"a recurrent network reads (T, F) or (T,) sequences; this dataset's examples "
                         f"have shape {tuple(info.input_shape)}")
    in_features = 1 if len(info.input_shape) == 1 else info.input_shape[-1]
    vocab = int(info.meta.get("vocab_size", info.output_dim)) if tokens else None
    return {"in_features": in_features, "out_features": info.output_dim, "vocab_size": vocab,
            "readout": "all" if zoo.per_position(info) else "last"}


# ============================================================================ registration


@zoo.hookimpl
def zoo_architectures():
    smoke = {"hidden_size": 8}
    return [
        zoo.Architecture(
            name="rnn", family="rnn", kinds=("sequence",), build=ElmanNet.from_info, defaults=ElmanNet.defaults,
            description="Elman recurrent network of the notes: h_t = σ(U·x_t + W·h_{t-1} + B), y = O(V·h + C)",
            smoke=smoke,
        ),
        zoo.Architecture(
            name="lstm", family="rnn", kinds=("sequence",), build=LSTMNet.from_info, defaults=LSTMNet.defaults,
            description="long short-term memory (torch.nn.LSTM) with the family's readout", smoke=smoke,
        ),
        zoo.Architecture(
            name="gru", family="rnn", kinds=("sequence",), build=GRUNet.from_info, defaults=GRUNet.defaults,
            description="gated recurrent unit (torch.nn.GRU) with the family's readout", smoke=smoke,
        ),
    ]
