"""Graph datasets (kind ``graph``) and :class:`GraphSplit`, the split any graph family trains on.

Nothing is downloaded:

* ``karate``: Zachary's karate club (``torch_geometric.datasets.KarateClub``, bundled with
  torch-geometric): 34 members, 4 communities, node classification from 4 labelled nodes. The
  test split (and the validation split: the same nodes) is the 30 unlabelled nodes.
* ``cycles``: molecule-like graphs generated from the seed, label "does the graph contain a
  ring?" (a tree, or one ring of 3..8 atoms with tree branches). The node features (atom types)
  are drawn independently of the structure and both classes have the same node-count
  distribution, so a bag of node features says nothing about the label: only the edges do.

Graphs do not fit :class:`zoo.TensorSplit`; :class:`GraphSplit` implements the Split protocol with
torch-geometric's ``DataLoader``, and the inputs a model receives are a PyG ``Batch``.
``DataInfo.meta["level"]`` says whether an example is a graph (``"graph"``) or a node (``"node"``).
"""

from __future__ import annotations

from typing import Iterator

import torch

import zoo

LEVELS = ("node", "graph")
MAX_DEGREE = 4  # "valence" cap of the generated molecules



# ------------------------------------------------------------------------------ graphs and splits

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
            return int(sum(int((g.y != zoo.IGNORE_INDEX).sum()) for g in self.graphs))
        return len(self.graphs)

    def __repr__(self) -> str:
        return f"GraphSplit({len(self.graphs)} graphs, level={self.level}, device={self.graphs[0].x.device})"

    def to(self, device) -> "GraphSplit":
        return GraphSplit([g.to(device) for g in self.graphs], self.level, _checked=True)

    def num_batches(self, batch_size: int | None) -> int:
        return zoo.num_batches(len(self.graphs), batch_size)

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
        y = torch.where(mask, g.y, torch.full_like(g.y, zoo.IGNORE_INDEX))
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


def load_cycles(seed: int, n_graphs: int = 2000, min_nodes: int = 8, max_nodes: int = 20, min_ring: int = 3,
                max_ring: int = 8, atom_types: int = 4) -> zoo.Splits:
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


@zoo.hookimpl
def zoo_datasets():
    return [
        zoo.Dataset(name="karate", kind="graph", task="classification", load=load_karate,
                    description="Zachary's karate club: 34 nodes, 4 communities, 4 labelled nodes (node level)"),
        zoo.Dataset(name="cycles", kind="graph", task="classification", load=load_cycles, smoke={"n_graphs": 64},
                    description="molecule-like graphs: tree or one ring? (graph level, features carry no signal)"),
    ]
