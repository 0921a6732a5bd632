"""Graphs read from the user's files (kind ``graph``): ``graphs``, graph-level classification.

``data.path`` is either

* a folder in the TU graph-dataset text format, the files PyG's ``TUDataset`` reads (already on
  disk: nothing is downloaded): ``NAME_A.txt`` (one edge per line, ``node, node``, node ids from
  1 across the whole dataset), ``NAME_graph_indicator.txt`` (the graph of each node),
  ``NAME_graph_labels.txt`` (one label per graph), and optionally ``NAME_node_labels.txt``
  (one-hot encoded) and ``NAME_node_attributes.txt`` (the node features; without either every node
  gets the feature 1). The files are checked here, then read by ``torch_geometric.io.read_tu_data``;
* or a ``.pt`` file holding a list of ``torch_geometric.data.Data`` objects (``x``, ``edge_index``
  and one integer label ``y`` each), as ``torch.save(graphs, path)`` writes it. It is loaded with
  ``weights_only=True`` and PyG's own types allowed: tensors and plain data, never code.

The split is 70/15/15 by the seed, stratified by label; graphs are small, so they stay in memory.
"""

from __future__ import annotations

import numpy as np
import torch

import zoo
from zoo_builtins.files import check_classes, check_rows, class_ids, where
from zoo_builtins.graph import GraphSplit, check_graph

WHAT = "a folder in the TU format (NAME_A.txt, NAME_graph_indicator.txt, NAME_graph_labels.txt) or a .pt file of Data objects"
REQUIRED = ("A", "graph_indicator", "graph_labels")


def _read(p, f, columns: int, dtype=np.int64) -> np.ndarray:
    """A TU file's lines as a ``(lines, columns)`` array; a one-line error naming the file otherwise."""
    kind = "integer" if dtype == np.int64 else "number"
    try:
        values = np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{where(p)}: {f.name} cannot be parsed ({str(exc).splitlines()[0][:120]}): "
                         f"expected {columns} {kind}{'s' if columns > 1 else ''} per line") from None
    if values.size and values.shape[1] != columns:
        raise ValueError(f"{where(p)}: {f.name} has {values.shape[1]} values per line, expected {columns}")
    return values


def check_tu(p) -> str:
    """The dataset's name (the files' prefix), after checking the files ``read_tu_data`` will read."""
    prefixes = sorted(f.name[:-len("_A.txt")] for f in p.glob("*_A.txt"))
    if len(prefixes) != 1:
        found = f"{len(prefixes)} datasets ({', '.join(prefixes)})" if prefixes else "no NAME_A.txt"
        raise ValueError(f"{where(p)} has {found}: a TU folder holds one dataset's NAME_A.txt, "
                         f"NAME_graph_indicator.txt and NAME_graph_labels.txt")
    name = prefixes[0]
    for part in REQUIRED:
        if not (p / f"{name}_{part}.txt").is_file():
            raise ValueError(f"{where(p)} has no {name}_{part}.txt: a TU folder needs {', '.join(f'{name}_{r}.txt' for r in REQUIRED)}")
    edges = _read(p, p / f"{name}_A.txt", 2)
    graph_of = _read(p, p / f"{name}_graph_indicator.txt", 1)[:, 0]
    labels = _read(p, p / f"{name}_graph_labels.txt", 1, np.float64)[:, 0]
    nodes, graphs = len(graph_of), int(graph_of.max()) if len(graph_of) else 0
    if edges.size and (edges.min() < 1 or edges.max() > nodes):
        bad = int(edges.min() if edges.min() < 1 else edges.max())
        raise ValueError(f"{where(p)}: edge index out of range: {name}_A.txt refers to node {bad}, but "
                         f"{name}_graph_indicator.txt has {nodes} nodes (ids 1..{nodes})")
    if edges.size and np.any(graph_of[edges[:, 0] - 1] != graph_of[edges[:, 1] - 1]):
        i = int(np.argmax(graph_of[edges[:, 0] - 1] != graph_of[edges[:, 1] - 1]))
        raise ValueError(f"{where(p)}: {name}_A.txt line {i + 1} joins nodes of two graphs ({edges[i, 0]}, {edges[i, 1]})")
    if sorted(set(graph_of.tolist())) != list(range(1, graphs + 1)) or len(labels) != graphs:
        raise ValueError(f"{where(p)}: {name}_graph_indicator.txt names graphs 1..{graphs} but "
                         f"{name}_graph_labels.txt has {len(labels)} labels: give one label per graph")
    for part in ("node_labels", "node_attributes"):
        f = p / f"{name}_{part}.txt"
        if f.is_file() and sum(1 for line in open(f) if line.strip()) != nodes:
            raise ValueError(f"{where(p)}: {f.name} must have one line per node ({nodes})")
    return name


def read_tu(p) -> list:
    """The graphs of a TU folder, each with its label as ``y``."""
    from torch_geometric.data import Data
    from torch_geometric.io import read_tu_data

    name = check_tu(p)
    data, slices, _ = read_tu_data(str(p), name)
    graph_of = _read(p, p / f"{name}_graph_indicator.txt", 1)[:, 0]
    nodes = np.concatenate([[0], np.cumsum(np.bincount(graph_of - 1))])
    labels = _read(p, p / f"{name}_graph_labels.txt", 1, np.float64)[:, 0]
    graphs = []
    for i, label in enumerate(labels):
        a, b = int(nodes[i]), int(nodes[i + 1])
        e0, e1 = int(slices["edge_index"][i]), int(slices["edge_index"][i + 1])
        x = data.x[a:b].float() if data.x is not None else torch.ones(b - a, 1)
        graphs.append(Data(x=x, edge_index=data.edge_index[:, e0:e1], y=torch.tensor([label])))
    return graphs


def read_saved(p) -> list:
    from torch_geometric.data import Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    try:
        with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError (not a torch file), EOFError, ...
        why = str(exc)
        if "Unsupported global" in why or "weights_only" in why.lower():
            raise ValueError(f"{where(p)} holds objects other than tensors and torch_geometric Data (Zoo never "
                             f"unpickles code): save a list of Data objects with torch.save(graphs, path)") from None
        raise ValueError(f"{where(p)} cannot be parsed as a file of saved graphs ({type(exc).__name__}: "
                         f"{why.splitlines()[0][:120] if why else ''}): point data.path at {WHAT}") from None
    if isinstance(obj, Data):
        obj = [obj]
    if not isinstance(obj, (list, tuple)) or not all(isinstance(g, Data) for g in obj):
        raise ValueError(f"{where(p)} holds a {type(obj).__name__}, not a list of torch_geometric Data objects")
    return list(obj)


def load_graphs(seed: int, path=None) -> zoo.Splits:
    p = zoo.data_path(path, "any", WHAT)
    graphs = read_tu(p) if p.is_dir() else read_saved(p)
    for i, g in enumerate(graphs):
        try:
            check_graph(g, f"graph {i}")
        except ValueError as exc:
            raise ValueError(f"{where(p)}: {exc}") from None
        if g.y.numel() != 1:
            raise ValueError(f"{where(p)}: graph {i} has {g.y.numel()} labels in y: give one label per graph")
        if g.x.shape[1] != graphs[0].x.shape[1]:
            raise ValueError(f"{where(p)}: graph {i} has {g.x.shape[1]} node features, graph 0 has {graphs[0].x.shape[1]}")
    check_rows(len(graphs), p, what="graphs")
    raw = np.array([float(g.y.reshape(-1)[0]) for g in graphs])
    ids, names = class_ids("y", raw.astype(np.int64) if np.all(raw % 1 == 0) else raw, p)
    check_classes(ids, names, p, label="the graph labels", unit="graphs")
    for g, c in zip(graphs, ids):
        g.x, g.y = g.x.float(), torch.tensor([int(c)])
    tr, va, te = zoo.split_indices(len(graphs), seed, stratify=ids)
    prep = {"reader": "tu" if p.is_dir() else "saved Data", "class_names": names, "node_features": graphs[0].x.shape[1]}
    info = zoo.DataInfo(kind="graph", task="classification", input_shape=(graphs[0].x.shape[1],), output_dim=len(names),
                        meta={"level": "graph", "class_names": names, "source": zoo.source_of(p), "preprocessing": prep})
    return zoo.Splits(*(GraphSplit([graphs[i] for i in idx]) for idx in (tr, va, te)), info=info)


@zoo.hookimpl
def zoo_datasets():
    from importlib import resources

    sample = resources.files("zoo_builtins") / "data" / "samples" / "rings"
    return [
        zoo.Dataset(name="graphs", kind="graph", task="classification", load=load_graphs, smoke={"path": str(sample)},
                    description="graphs from a TU-format folder or a .pt file of PyG Data objects: "
                                "graph classification"),
    ]
