"""GNN family: graph neural networks on torch-geometric, and a bag-of-node-features baseline.

The notes: a GNN is "built for data that is nodes and edges (graph)" (molecules, social
networks, knowledge graphs). Each layer updates a node from its neighbours' features (message
passing), so after ``num_layers`` layers a node sees its ``num_layers``-hop neighbourhood.

* ``gcn``, ``gat``, ``gin``, ``sage``: torch-geometric's own models (``torch_geometric.nn.models``
  GCN, GAT, GIN, GraphSAGE) as the encoder; :class:`GraphNet` owns the rest: the activation after
  the last layer, a node-level head (one prediction per node) or a graph-level head (a pooling of
  the nodes, ``global_mean_pool``/``global_add_pool``/``global_max_pool``, then an MLP), chosen by
  the dataset's ``DataInfo.meta["level"]`` (``"node"`` or ``"graph"``).
* ``mlp_graph``: the baseline that ignores the edges: pool the node features into one vector
  (a bag of node features) and classify it with an MLP (at node level: an MLP on each node).

As in PyG's ``BasicGNN``, a variant is a docstring and class attributes: ``kind`` (for
``repr``), ``model_class`` (the torch-geometric model), ``defaults`` (its hyperparameters, each
declared once, extending its base's) and, where a value can be wrong for it, ``check``; every
variant is built by the one factory :meth:`GraphNet.from_info`. The graph datasets and
``GraphSplit`` are in ``zoo_builtins.graph``. Because a graph batch is not one tensor, the
trained model is logged as a state dict.
"""

from __future__ import annotations

import torch
import torch.nn as nn

import zoo

LEVELS = ("node", "graph")
POOLS = ("mean", "add", "max")
NORMS = ("none", "batch_norm", "layer_norm", "graph_norm")
JKS = ("none", "last", "cat", "max")


# ------------------------------------------------------------------------------ building blocks

def mlp(widths, activation: str, dropout: float) -> nn.Sequential:
    """Linear layers through ``widths``, with activation and dropout between them (not after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(zoo.activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _pool_fn(name: str):
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

    return {"mean": global_mean_pool, "add": global_add_pool, "max": global_max_pool}[name]


class PyGEncoder(nn.Module):
    """A ``torch_geometric.nn.models`` BasicGNN followed by the activation its last layer lacks."""

    def __init__(self, gnn: nn.Module, act: nn.Module):
        super().__init__()
        self.gnn, self.act = gnn, act

    def forward(self, x, edge_index, batch, num_graphs):
        return self.act(self.gnn(x, edge_index, batch=batch, batch_size=num_graphs))


class NodeFeatures(nn.Module):
    """The bag-of-node-features encoder: the node features as they are; the edges are ignored."""

    def forward(self, x, edge_index, batch, num_graphs):
        return x


# ------------------------------------------------------------------------------ main classes

class GraphNet(nn.Module):
    """Encoder over the nodes, then a node-level head or pooling and a graph-level head.

    Subclasses override :meth:`make_encoder` (and :meth:`make_head` when needed). ``forward``
    takes a PyG ``Data`` or ``Batch`` and returns ``(num_nodes, out)`` logits at node level,
    ``(num_graphs, out)`` at graph level.

    Args:
        in_channels: node features.
        out_channels: classes (or regression targets).
        hidden_channels: width of every hidden layer.
        num_layers: message-passing layers (hops a node sees); for ``mlp_graph``, hidden layers.
        level: ``"node"`` or ``"graph"``: one prediction per node, or per graph.
        pool: how a graph's nodes become one vector at graph level: ``mean``, ``add`` or ``max``.
        dropout: probability of zeroing a hidden unit while training.
        activation: ``relu``, ``tanh``, ``sigmoid``, ``gelu`` or ``identity``.
        **encoder_kwargs: the variant's own settings, passed to :meth:`make_encoder`.
    """

    kind = "graph net"
    #: the hyperparameters (``model.<key>``) and their defaults; a variant extends its base's
    defaults = {"hidden_channels": 64, "num_layers": 2, "dropout": 0.0, "activation": "relu"}

    def __init__(self, *, in_channels: int, out_channels: int, hidden_channels: int, num_layers: int,
                 level: str, pool: str, dropout: float, activation: str, **encoder_kwargs):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"level={level!r} is not a graph level: choose one of {', '.join(LEVELS)}")
        self.level, self.pool_name = level, pool
        self.sizes = (in_channels, hidden_channels, out_channels, num_layers)
        self.encoder, width = self.make_encoder(in_channels, hidden_channels, num_layers, dropout=dropout,
                                                activation=activation, **encoder_kwargs)
        self.head = self.make_head(width, hidden_channels, out_channels, num_layers, dropout=dropout, activation=activation)
        self.pool = _pool_fn(pool) if level == "graph" else None

    def make_encoder(self, in_channels, hidden_channels, num_layers, **kwargs) -> tuple[nn.Module, int]:
        """The node encoder and the width of the node vectors it returns."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_encoder")

    def make_head(self, width, hidden_channels, out_channels, num_layers, *, dropout, activation) -> nn.Module:
        if self.level == "node":
            return nn.Sequential(nn.Dropout(dropout), nn.Linear(width, out_channels))
        return mlp([width, hidden_channels, out_channels], activation, dropout)

    def forward(self, data) -> torch.Tensor:
        x, edge_index = data.x, data.edge_index
        batch = getattr(data, "batch", None)
        if batch is None:  # a single Data: one graph
            batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            num_graphs = 1
        else:
            num_graphs = data.num_graphs
        h = self.encoder(x, edge_index, batch, num_graphs)
        if self.pool is not None:
            h = self.pool(h, batch, num_graphs)
        return self.head(h)

    def extra_repr(self) -> str:
        i, h, o, n = self.sizes
        pool = f", pool={self.pool_name}" if self.level == "graph" else ""
        return f"{self.kind}: {i}->{o}, hidden={h}, layers={n}, level={self.level}{pool}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    @classmethod
    def check(cls, hp: dict) -> None:
        """Check the variant's own hyperparameters (``ValueError`` naming ``model.<key>``)."""

    @classmethod
    def from_info(cls, info: zoo.DataInfo, **hp) -> "GraphNet":
        """The factory every variant registers as ``build``: the data decides the sizes and the level."""
        level = info.meta.get("level")
        if level not in LEVELS:
            raise ValueError(f"data kind 'graph' needs meta['level'] = 'node' or 'graph', got {level!r}")
        if len(info.input_shape) != 1:
            raise ValueError(f"graph data must declare input_shape=(num_node_features,), got {info.input_shape}")
        zoo.check_range("model.hidden_channels", hp["hidden_channels"], 1)
        zoo.check_range("model.num_layers", hp["num_layers"], 1)
        zoo.check_range("model.dropout", hp["dropout"], 0, 1, high_open=True)
        if hp["pool"] not in POOLS:
            raise ValueError(f"model.pool={hp['pool']!r} is not a pooling: choose one of {', '.join(POOLS)}")
        cls.check(hp)
        return cls(in_channels=info.input_shape[0], out_channels=info.output_dim, level=level, **hp)


class MessagePassingNet(GraphNet):
    """A GNN whose encoder is the torch-geometric model named by ``model_class``.

    Args (besides :class:`GraphNet`'s):
        norm: normalisation after each hidden layer: ``none``, ``batch_norm``, ``layer_norm``, ``graph_norm``.
        jk: jumping knowledge, how the layers' outputs combine: ``none`` (the last layer),
            ``last``, ``cat`` or ``max``.
        **conv_kwargs: passed to the torch-geometric model (``heads`` for GAT, ``aggr`` for SAGE...).
    """

    model_class = ""
    defaults = {**GraphNet.defaults, "norm": "none", "jk": "none", "pool": "mean"}

    def make_encoder(self, in_channels, hidden_channels, num_layers, *, dropout, activation,
                     norm: str, jk: str, **conv_kwargs):
        from torch_geometric.nn import models

        gnn = getattr(models, self.model_class)(
            in_channels, hidden_channels, num_layers, dropout=dropout, act=zoo.activation(activation),
            norm=None if norm == "none" else norm, jk=None if jk == "none" else jk, **conv_kwargs)
        return PyGEncoder(gnn, zoo.activation(activation)), hidden_channels

    @classmethod
    def check(cls, hp: dict) -> None:
        if hp["norm"] not in NORMS:
            raise ValueError(f"model.norm={hp['norm']!r} is not a normalisation: choose one of {', '.join(NORMS)}")
        if hp["jk"] not in JKS:
            raise ValueError(f"model.jk={hp['jk']!r} is not a jumping-knowledge mode: choose one of {', '.join(JKS)}")


class GCNNet(MessagePassingNet):
    """Graph convolutional network (Kipf & Welling 2017): each node averages its neighbours'
    features with symmetric degree normalisation, then a linear map."""

    kind, model_class = "gcn", "GCN"


class GATNet(MessagePassingNet):
    """Graph attention network (Veličković et al. 2018): neighbours weighted by learned attention.

    Args (besides :class:`MessagePassingNet`'s):
        heads: attention heads per layer; their outputs are concatenated, so ``hidden_channels``
            must be divisible by ``heads``.
        v2: GATv2's dynamic attention (Brody et al. 2022) instead of the original.
    """

    kind, model_class = "gat", "GAT"
    defaults = {**MessagePassingNet.defaults, "heads": 4, "v2": False}

    @classmethod
    def check(cls, hp: dict) -> None:
        super().check(hp)
        zoo.check_range("model.heads", hp["heads"], 1)
        if hp["hidden_channels"] % hp["heads"]:
            raise ValueError(f"model.heads={hp['heads']} does not divide model.hidden_channels="
                             f"{hp['hidden_channels']}: the heads' outputs are concatenated")


class GINNet(MessagePassingNet):
    """Graph isomorphism network (Xu et al. 2019): sum of the neighbours, then an MLP; as
    expressive as the 1-WL test, the most a message-passing GNN can be.

    Args (besides :class:`MessagePassingNet`'s):
        train_eps: learn the weight ``1 + eps`` of the node's own features.
    """

    kind, model_class = "gin", "GIN"
    defaults = {**MessagePassingNet.defaults, "num_layers": 3, "pool": "add", "train_eps": False}


class SAGENet(MessagePassingNet):
    """GraphSAGE (Hamilton et al. 2017): the node's own features and an aggregate of its
    neighbours' (``aggr``: ``mean``, ``max`` or ``sum``), each through its own linear map.

    Args (besides :class:`MessagePassingNet`'s):
        aggr: the neighbour aggregation.
    """

    kind, model_class = "sage", "GraphSAGE"
    defaults = {**MessagePassingNet.defaults, "aggr": "mean"}
    AGGRS = ("mean", "max", "sum")

    @classmethod
    def check(cls, hp: dict) -> None:
        super().check(hp)
        if hp["aggr"] not in cls.AGGRS:
            raise ValueError(f"model.aggr={hp['aggr']!r} is not an aggregation: choose one of {', '.join(cls.AGGRS)}")


class MLPGraph(GraphNet):
    """The baseline without edges: pool the node features (a bag of node features), then an MLP
    with ``num_layers`` hidden layers; at node level, the same MLP on each node."""

    kind = "mlp on a bag of node features"
    defaults = {**GraphNet.defaults, "pool": "add"}

    def make_encoder(self, in_channels, hidden_channels, num_layers, **kwargs):
        return NodeFeatures(), in_channels

    def make_head(self, width, hidden_channels, out_channels, num_layers, *, dropout, activation):
        return mlp([width] + [hidden_channels] * num_layers + [out_channels], activation, dropout)


# ------------------------------------------------------------------------------ registration

@zoo.hookimpl
def zoo_architectures():
    gnn = dict(family="gnn", kinds=("graph",), tasks=("classification", "regression"),
               smoke={"hidden_channels": 8, "num_layers": 2})
    return [
        zoo.Architecture(name="gcn", build=GCNNet.from_info, defaults=GCNNet.defaults,
                         description="graph convolutional network (torch_geometric GCN)", **gnn),
        zoo.Architecture(name="gat", build=GATNet.from_info, defaults=GATNet.defaults,
                         description="graph attention network (torch_geometric GAT)", **gnn),
        zoo.Architecture(name="gin", build=GINNet.from_info, defaults=GINNet.defaults,
                         description="graph isomorphism network: sum aggregation and MLPs (torch_geometric GIN)", **gnn),
        zoo.Architecture(name="sage", build=SAGENet.from_info, defaults=SAGENet.defaults,
                         description="GraphSAGE: own features plus aggregated neighbours (torch_geometric GraphSAGE)", **gnn),
        zoo.Architecture(name="mlp_graph", build=MLPGraph.from_info, defaults=MLPGraph.defaults,
                         description="baseline: MLP on pooled node features, ignores the edges", **gnn),
    ]
