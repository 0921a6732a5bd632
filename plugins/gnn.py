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

Datasets (nothing is downloaded):

* ``karate``: Zachary's karate club (``torch_geometric.datasets.KarateClub``, bundled with
  torch-geometric): 34 members, 4 communities, node classification from 4 labelled nodes. The
  test split (and the validation split: the same nodes) is the 30 unlabelled nodes.
* ``cycles``: molecule-like graphs generated from the seed, label "does the graph contain a
  ring?" (a tree, or one ring of 3..8 atoms with tree branches). The node features (atom types)
  are drawn independently of the structure and both classes have the same node-count
  distribution, so a bag of node features says nothing about the label: only the edges do.

Graphs do not fit :class:`zoo.TensorSplit`; :class:`GraphSplit` implements the Split protocol with
torch-geometric's ``DataLoader``, and the inputs the model receives are a PyG ``Batch``.
Because such inputs are not one tensor, the trained model is logged as a state dict.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn as nn

import zoo

LEVELS = ("node", "graph")
POOLS = ("mean", "add", "max")
NORMS = ("none", "batch_norm", "layer_norm", "graph_norm")
JKS = ("none", "last", "cat", "max")
IGNORE_INDEX = -100  # zoo.tasks.IGNORE_INDEX: cross-entropy and accuracy skip these targets
MAX_DEGREE = 4  # "valence" cap of the generated molecules


# ------------------------------------------------------------------------------ graph data

def check_graph(g, where: str = "graph") -> None:
    """Raise ``ValueError`` naming ``where`` when a PyG ``Data`` is not a well-formed graph."""
    x, ei = getattr(g, "x", None), getattr(g, "edge_index", None)
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"{where}: x must be a (num_nodes, num_features) tensor, "
                         f"got {None if x is None else tuple(x.shape)}")
    if not isinstance(ei, torch.Tensor) or ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"{where}: edge_index must be a (2, num_edges) tensor, "
                         f"got {None if ei is None else tuple(ei.shape)}")
    if ei.dtype != torch.long:
        raise ValueError(f"{where}: edge_index must be torch.long, got {ei.dtype}")
    n = x.shape[0]
    if ei.numel():
        lo, hi = int(ei.min()), int(ei.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{where}: edge_index out of range: it refers to node {bad} but the graph "
                             f"has {n} nodes (valid indices 0..{n - 1})")
    if getattr(g, "y", None) is None:
        raise ValueError(f"{where}: has no target y")


class GraphSplit:
    """A split made of PyG graphs, batched by torch-geometric's ``DataLoader``.

    Each batch is ``(batch, batch.y)`` where ``batch`` is a ``torch_geometric.data.Batch`` (the
    model's single input). ``batch_size`` counts graphs; ``None`` puts every graph in one batch.
    Shuffled order comes from the given ``torch.Generator``; when one batch holds every graph
    the order does not matter and the collated batch is reused. Unshuffled batches are collated
    once and kept (evaluation every epoch costs no collation).

    Args:
        graphs: ``torch_geometric.data.Data`` objects with ``x``, ``edge_index`` and ``y``
            (one label per graph, or one per node with ``-100`` for nodes outside the split).
        level: ``"graph"`` (an example is a graph) or ``"node"`` (an example is a labelled node).
    """

    def __init__(self, graphs, level: str = "graph", *, _checked: bool = False):
        if level not in LEVELS:
            raise ValueError(f"level={level!r} is not a graph level: choose one of {', '.join(LEVELS)}")
        graphs = list(graphs)
        if not graphs:
            raise ValueError("a GraphSplit needs at least one graph, got none")
        if not _checked:
            features = graphs[0].x.shape[-1] if getattr(graphs[0], "x", None) is not None else None
            for i, g in enumerate(graphs):
                check_graph(g, f"graph {i}")
                if g.x.shape[1] != features:
                    raise ValueError(f"graph {i}: has {g.x.shape[1]} node features, graph 0 has {features}")
                if level == "node" and g.y.shape[0] != g.x.shape[0]:
                    raise ValueError(f"graph {i}: node-level targets need one label per node, "
                                     f"got {g.y.shape[0]} labels for {g.x.shape[0]} nodes")
        self.graphs, self.level = graphs, level
        self._collated: dict[int, list] = {}

    def __len__(self) -> int:
        if self.level == "node":
            return int(sum(int((g.y != IGNORE_INDEX).sum()) for g in self.graphs))
        return len(self.graphs)

    def __repr__(self) -> str:
        return f"GraphSplit({len(self.graphs)} graphs, level={self.level}, device={self.graphs[0].x.device})"

    def to(self, device) -> "GraphSplit":
        return GraphSplit([g.to(device) for g in self.graphs], self.level, _checked=True)

    def num_batches(self, batch_size: int | None) -> int:
        return 1 if batch_size is None else max(1, math.ceil(len(self.graphs) / batch_size))

    def _loader(self, batch_size: int, shuffle: bool = False, generator=None):
        from torch_geometric.loader import DataLoader

        return DataLoader(self.graphs, batch_size=batch_size, shuffle=shuffle, generator=generator)

    def batches(self, batch_size: int | None, shuffle: bool = False, generator=None) -> Iterator[tuple]:
        n = len(self.graphs)
        bs = n if batch_size is None else min(int(batch_size), n)
        if shuffle and bs < n:
            for b in self._loader(bs, shuffle=True, generator=generator):
                yield b, b.y
            return
        if bs not in self._collated:
            self._collated[bs] = list(self._loader(bs))
        for b in self._collated[bs]:
            yield b, b.y

    def example(self, n: int = 2):
        from torch_geometric.data import Batch

        return Batch.from_data_list(self.graphs[:max(1, n)])


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
    """

    kind = "graph net"

    def __init__(self, *, in_channels: int, out_channels: int, hidden_channels: int = 64, num_layers: int = 3,
                 level: str = "graph", pool: str = "mean", dropout: float = 0.0, activation: str = "relu", **encoder_kwargs):
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
        raise NotImplementedError

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

    # builders ---------------------------------------------------------------------------
    @classmethod
    def check(cls, hp: dict) -> None:
        """Validate the variant's own hyperparameters (``ValueError`` naming ``model.<key>``)."""

    @classmethod
    def from_info(cls, info: zoo.DataInfo, **hp) -> "GraphNet":
        level = info.meta.get("level")
        if level not in LEVELS:
            raise ValueError(f"data kind 'graph' needs meta['level'] = 'node' or 'graph', got {level!r}")
        if len(info.input_shape) != 1:
            raise ValueError(f"graph data must declare input_shape=(num_node_features,), got {info.input_shape}")
        zoo.check_range("model.hidden_channels", hp["hidden_channels"], 1)
        zoo.check_range("model.num_layers", hp["num_layers"], 1)
        zoo.check_range("model.dropout", hp["dropout"], 0, 1, high_open=True)
        zoo.activation(hp["activation"])
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

    def make_encoder(self, in_channels, hidden_channels, num_layers, *, dropout, activation,
                     norm: str = "none", jk: str = "none", **conv_kwargs):
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

    def __init__(self, *, in_channels, out_channels, hidden_channels=64, num_layers=2, level="graph", pool="mean",
                 dropout=0.0, activation="relu", norm="none", jk="none"):
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                         num_layers=num_layers, level=level, pool=pool, dropout=dropout, activation=activation,
                         norm=norm, jk=jk)


class GATNet(MessagePassingNet):
    """Graph attention network (Veličković et al. 2018): neighbours weighted by learned attention.

    Args (besides :class:`MessagePassingNet`'s):
        heads: attention heads per layer; their outputs are concatenated, so ``hidden_channels``
            must be divisible by ``heads``.
        v2: GATv2's dynamic attention (Brody et al. 2022) instead of the original.
    """

    kind, model_class = "gat", "GAT"

    def __init__(self, *, in_channels, out_channels, hidden_channels=64, num_layers=2, level="graph", pool="mean",
                 dropout=0.0, activation="relu", norm="none", jk="none", heads=4, v2=False):
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                         num_layers=num_layers, level=level, pool=pool, dropout=dropout, activation=activation,
                         norm=norm, jk=jk, heads=heads, v2=v2)

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

    def __init__(self, *, in_channels, out_channels, hidden_channels=64, num_layers=3, level="graph", pool="add",
                 dropout=0.0, activation="relu", norm="none", jk="none", train_eps=False):
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                         num_layers=num_layers, level=level, pool=pool, dropout=dropout, activation=activation,
                         norm=norm, jk=jk, train_eps=train_eps)


class SAGENet(MessagePassingNet):
    """GraphSAGE (Hamilton et al. 2017): the node's own features and an aggregate of its
    neighbours' (``aggr``: ``mean``, ``max`` or ``sum``), each through its own linear map.

    Args (besides :class:`MessagePassingNet`'s):
        aggr: the neighbour aggregation.
    """

    kind, model_class = "sage", "GraphSAGE"
    AGGRS = ("mean", "max", "sum")

    def __init__(self, *, in_channels, out_channels, hidden_channels=64, num_layers=2, level="graph", pool="mean",
                 dropout=0.0, activation="relu", norm="none", jk="none", aggr="mean"):
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                         num_layers=num_layers, level=level, pool=pool, dropout=dropout, activation=activation,
                         norm=norm, jk=jk, aggr=aggr)

    @classmethod
    def check(cls, hp: dict) -> None:
        super().check(hp)
        if hp["aggr"] not in cls.AGGRS:
            raise ValueError(f"model.aggr={hp['aggr']!r} is not an aggregation: choose one of {', '.join(cls.AGGRS)}")


class MLPGraph(GraphNet):
    """The baseline without edges: pool the node features (a bag of node features), then an MLP
    with ``num_layers`` hidden layers; at node level, the same MLP on each node."""

    kind = "mlp on a bag of node features"

    def __init__(self, *, in_channels, out_channels, hidden_channels=64, num_layers=2, level="graph", pool="add",
                 dropout=0.0, activation="relu"):
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                         num_layers=num_layers, level=level, pool=pool, dropout=dropout, activation=activation)

    def make_encoder(self, in_channels, hidden_channels, num_layers, **kwargs):
        return NodeFeatures(), in_channels

    def make_head(self, width, hidden_channels, out_channels, num_layers, *, dropout, activation):
        return mlp([width] + [hidden_channels] * num_layers + [out_channels], activation, dropout)


# ------------------------------------------------------------------------------ builders

GNN_DEFAULTS = {"hidden_channels": 64, "num_layers": 3, "dropout": 0.0, "activation": "relu",
                "norm": "none", "jk": "none", "pool": "mean"}
SMOKE = {"hidden_channels": 8, "num_layers": 2}


def build_gcn(info: zoo.DataInfo, **hp) -> GCNNet:
    return GCNNet.from_info(info, **hp)


def build_gat(info: zoo.DataInfo, **hp) -> GATNet:
    return GATNet.from_info(info, **hp)


def build_gin(info: zoo.DataInfo, **hp) -> GINNet:
    return GINNet.from_info(info, **hp)


def build_sage(info: zoo.DataInfo, **hp) -> SAGENet:
    return SAGENet.from_info(info, **hp)


def build_mlp_graph(info: zoo.DataInfo, **hp) -> MLPGraph:
    return MLPGraph.from_info(info, **hp)


# ------------------------------------------------------------------------------ datasets

def load_karate(seed: int) -> zoo.Splits:
    """Zachary's karate club: train on the 4 labelled nodes, validate and test on the 30 others.

    The split is KarateClub's own ``train_mask`` (the seed does not change it). Validation and
    test are the same unlabelled nodes: with 4 labels there is nothing else to validate on, so
    ``test/accuracy`` (best validation epoch) is optimistic; ``final/val_accuracy`` (last epoch)
    is not chosen on them.
    """
    from torch_geometric.data import Data
    from torch_geometric.datasets import KarateClub

    g = KarateClub()[0]
    labelled = g.train_mask

    def split(mask):
        y = torch.where(mask, g.y, torch.full_like(g.y, IGNORE_INDEX))
        return GraphSplit([Data(x=g.x.float(), edge_index=g.edge_index, y=y)], level="node")

    classes = int(g.y.max()) + 1
    info = zoo.DataInfo(kind="graph", task="classification", input_shape=(g.x.shape[1],), output_dim=classes,
                        meta={"level": "node", "class_names": [f"community {c}" for c in range(classes)],
                              "num_nodes": g.num_nodes, "val": "same nodes as test (the unlabelled ones)"})
    return zoo.Splits(split(labelled), split(~labelled), split(~labelled), info)


def make_molecule(rng, n: int, ring: int, atom_types: int):
    """Edges and node features of one molecule-like graph: a ring of ``ring`` atoms (0: none,
    a tree) grown into ``n`` atoms by attaching each new atom to a random earlier one with fewer
    than ``MAX_DEGREE`` bonds; node ids shuffled; atom types drawn independently of the bonds."""
    import numpy as np

    deg = np.zeros(n, dtype=int)
    edges = [(i, (i + 1) % ring) for i in range(ring)]
    deg[:ring] = 2
    for v in range(max(ring, 1), n):
        u = int(rng.choice(np.flatnonzero(deg[:v] < MAX_DEGREE)))
        edges.append((u, v))
        deg[u] += 1
        deg[v] += 1
    perm = rng.permutation(n)
    edges = [(perm[a], perm[b]) for a, b in edges]
    types = rng.integers(0, atom_types, size=n)
    return edges, types


def load_cycles(seed: int, n_graphs: int, min_nodes: int, max_nodes: int, min_ring: int, max_ring: int,
                atom_types: int) -> zoo.Splits:
    """Trees against graphs with one ring, balanced; 70/15/15 split stratified by the label."""
    import numpy as np
    from torch_geometric.data import Data

    zoo.check_range("data.n_graphs", n_graphs, 20)
    zoo.check_range("data.min_ring", min_ring, 3)
    zoo.check_range("data.max_ring", max_ring, min_ring)
    zoo.check_range("data.min_nodes", min_nodes, min_ring)
    zoo.check_range("data.max_nodes", max_nodes, min_nodes)
    zoo.check_range("data.atom_types", atom_types, 1)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_graphs) % 2)
    graphs = []
    for label in labels:
        n = int(rng.integers(min_nodes, max_nodes + 1))
        ring = int(rng.integers(min_ring, min(max_ring, n) + 1)) if label else 0
        edges, types = make_molecule(rng, n, ring, atom_types)
        one_way = torch.tensor(edges, dtype=torch.long).t()
        edge_index = torch.cat([one_way, one_way.flip(0)], dim=1)  # undirected: both directions
        x = torch.nn.functional.one_hot(torch.as_tensor(types), atom_types).float()
        graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([int(label)])))
    tr, va, te = zoo.split_indices(n_graphs, seed, stratify=labels)
    info = zoo.DataInfo(kind="graph", task="classification", input_shape=(atom_types,), output_dim=2,
                        meta={"level": "graph", "class_names": ["tree", "ring"]})
    return zoo.Splits(*(GraphSplit([graphs[i] for i in idx]) for idx in (tr, va, te)), info=info)


# ------------------------------------------------------------------------------ registration

@zoo.hookimpl
def zoo_architectures():
    tasks = ("classification", "regression")
    gnn = dict(family="gnn", kinds=("graph",), tasks=tasks, smoke=SMOKE)
    return [
        zoo.Architecture(name="gcn", build=build_gcn, defaults={**GNN_DEFAULTS, "num_layers": 2},
                         description="graph convolutional network (torch_geometric GCN)", **gnn),
        zoo.Architecture(name="gat", build=build_gat, defaults={**GNN_DEFAULTS, "num_layers": 2, "heads": 4, "v2": False},
                         description="graph attention network (torch_geometric GAT)", **gnn),
        zoo.Architecture(name="gin", build=build_gin, defaults={**GNN_DEFAULTS, "pool": "add", "train_eps": False},
                         description="graph isomorphism network: sum aggregation and MLPs (torch_geometric GIN)", **gnn),
        zoo.Architecture(name="sage", build=build_sage, defaults={**GNN_DEFAULTS, "num_layers": 2, "aggr": "mean"},
                         description="GraphSAGE: own features plus aggregated neighbours (torch_geometric GraphSAGE)", **gnn),
        zoo.Architecture(name="mlp_graph", build=build_mlp_graph,
                         defaults={"hidden_channels": 64, "num_layers": 2, "dropout": 0.0, "activation": "relu",
                                   "pool": "add"},
                         description="baseline: MLP on pooled node features, ignores the edges", **gnn),
    ]


@zoo.hookimpl
def zoo_datasets():
    return [
        zoo.Dataset(name="karate", kind="graph", task="classification", load=load_karate,
                    description="Zachary's karate club: 34 nodes, 4 communities, 4 labelled nodes (node level)"),
        zoo.Dataset(name="cycles", kind="graph", task="classification", load=load_cycles,
                    defaults={"n_graphs": 2000, "min_nodes": 8, "max_nodes": 20, "min_ring": 3, "max_ring": 8,
                              "atom_types": 4},
                    smoke={"n_graphs": 64},
                    description="molecule-like graphs: tree or one ring? (graph level, features carry no signal)"),
    ]
