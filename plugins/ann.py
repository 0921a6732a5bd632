"""ANN family: the perceptron and the multi-layer perceptron (MLP) of the notes.

A neuron computes ``y = σ(w·x + b)``: a weighted sum, a bias and a non-linear activation.
The perceptron is one layer of such neurons; the MLP stacks them into hidden layers.
Without a non-linearity (``activation=identity``) the stack collapses into one linear map,
which ``zoo train experiment=linear_collapse`` shows.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

import zoo


class Perceptron(nn.Module):
    """One linear layer and an activation: the single-layer network of the notes.

    Args:
        in_features: input features (the flattened example).
        out_features: one neuron per class (or regression target).
        activation: applied to the weighted sum; ``identity`` leaves logits for the loss's softmax.
    """

    def __init__(self, in_features: int, out_features: int, activation: str):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_features, out_features)
        self.activation = zoo.activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(self.flatten(x)))


class MLP(nn.Module):
    """Input layer -> hidden layers -> output layer, every neuron connected to the next layer.

    Args:
        in_features: input features (the flattened example).
        out_features: classes or regression targets.
        hidden_sizes: neurons in each hidden layer, e.g. ``[256, 256]``.
        activation: ``relu``, ``tanh``, ``sigmoid``, ``gelu`` or ``identity``.
        dropout: probability of zeroing a hidden unit while training.
        batch_norm: normalise each hidden layer's pre-activations.
    """

    def __init__(self, in_features: int, out_features: int, hidden_sizes, activation: str, dropout: float,
                 batch_norm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden_sizes:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(zoo.activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_perceptron(info: zoo.DataInfo, activation: str = "identity") -> Perceptron:
    return Perceptron(math.prod(info.input_shape), info.output_dim, activation)


def build_mlp(info: zoo.DataInfo, hidden_sizes=(256, 256), activation: str = "relu", dropout: float = 0.0,
              batch_norm: bool = False) -> MLP:
    hidden_sizes = list(hidden_sizes)
    if not hidden_sizes:
        raise ValueError("model.hidden_sizes=[] is empty: give at least one hidden layer, e.g. [128,64], or use model=perceptron")
    if any(h < 1 for h in hidden_sizes):
        raise ValueError(f"model.hidden_sizes={hidden_sizes} is invalid: every size must be an integer >= 1")
    zoo.check_range("model.dropout", dropout, 0, 1, high_open=True)
    return MLP(math.prod(info.input_shape), info.output_dim, hidden_sizes, activation, dropout, batch_norm)


@zoo.hookimpl
def zoo_architectures():
    return [
        zoo.Architecture(
            name="perceptron", family="ann", kinds=("tabular", "image"), build=build_perceptron,
            description="one linear layer and an activation: a linear classifier/regressor",
        ),
        zoo.Architecture(
            name="mlp", family="ann", kinds=("tabular", "image"),
            build=build_mlp,
            description="multi-layer perceptron: fully connected hidden layers with a non-linearity",
        ),
    ]
