"""The GNN family: graph batching, the two heads, the structural dataset, and real trainings.

The registry-driven tests already train every architecture on every graph dataset with the
smoke settings; these tests cover what is specific to graphs.
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

import zoo
from zoo_builtins import gnn, graph
from zoo.training.train import train

ARCHS = {a.name: a for a in gnn.zoo_architectures()}


def _graph(n: int, edges, label, features: int = 4) -> Data:
    ei = torch.tensor(edges, dtype=torch.long).t()
    ei = torch.cat([ei, ei.flip(0)], dim=1)
    x = torch.randn(n, features, generator=torch.Generator().manual_seed(n))
    return Data(x=x, edge_index=ei, y=label)


def _mixed_graphs(node_level: bool = False):
    """Three graphs of 3, 5 and 8 nodes: a path, a ring, a star."""
    sizes_edges = [(3, [(0, 1), (1, 2)]), (5, [(i, (i + 1) % 5) for i in range(5)]), (8, [(0, i) for i in range(1, 8)])]
    return [_graph(n, e, torch.arange(n) % 3 if node_level else torch.tensor([k % 3]))
            for k, (n, e) in enumerate(sizes_edges)]


def _info(level: str) -> zoo.DataInfo:
    return zoo.DataInfo(kind="graph", task="classification", input_shape=(4,), output_dim=3, meta={"level": level})


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_heads_on_a_batch_of_mixed_sizes(name):
    arch = ARCHS[name]
    hp = {**arch.defaults, "hidden_channels": 8}
    # graph level: one row per graph, and batching never mixes graphs
    split = graph.GraphSplit(_mixed_graphs())
    (batch, y), = split.batches(None)
    torch.manual_seed(0)
    model = arch.build(_info("graph"), **hp).eval()
    with torch.no_grad():
        out = model(batch)
        alone = torch.cat([model(g) for g in split.graphs])
    assert out.shape == (3, 3) and y.shape == (3,)
    torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-5)
    # node level: one row per node of every graph
    nodes = graph.GraphSplit(_mixed_graphs(node_level=True), level="node")
    (batch, y), = nodes.batches(None)
    model = arch.build(_info("node"), **hp).eval()
    with torch.no_grad():
        assert model(batch).shape == (16, 3) and y.shape == (16,)
    assert len(nodes) == 16 and len(split) == 3


def test_graph_split_batches_and_shuffles_reproducibly():
    split = graph.load_cycles(seed=0, n_graphs=100, min_nodes=5, max_nodes=9, min_ring=3, max_ring=5, atom_types=3).train
    assert split.num_batches(16) == len(list(split.batches(16))) == 5

    def order(seed):
        return torch.cat([y for _, y in split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(seed))])

    def sizes(seed):
        return [b.num_graphs for b, _ in split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(seed))]

    assert torch.equal(order(1), order(1))
    assert sizes(1) == [16] * 4 + [len(split) - 64]
    first = [b.x.shape[0] for b, _ in split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert first != [b.x.shape[0] for b, _ in split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(2))]
    assert sorted(order(2).tolist()) == sorted(torch.cat([g.y for g in split.graphs]).tolist())


def _components(n: int, edge_index: torch.Tensor) -> int:
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edge_index.t().tolist():
        parent[find(a)] = find(b)
    return len({find(v) for v in range(n)})


def test_cycles_label_is_structural_and_features_carry_no_signal():
    from torch_geometric.utils import degree, is_undirected

    splits = graph.load_cycles(seed=3, n_graphs=400, min_nodes=8, max_nodes=20, min_ring=3, max_ring=8, atom_types=4)
    graphs = [g for s in (splits.train, splits.val, splits.test) for g in s.graphs]
    assert splits.info.meta["level"] == "graph" and splits.info.input_shape == (4,)
    for g in graphs:
        n, m = g.num_nodes, g.edge_index.shape[1] // 2
        assert is_undirected(g.edge_index, num_nodes=n)
        assert _components(n, g.edge_index) == 1  # connected: it has a cycle iff edges >= nodes
        assert int(g.y) == int(m >= n) and m in (n - 1, n)
        assert int(degree(g.edge_index[0], n).max()) <= graph.MAX_DEGREE
    by_class = [[g for g in graphs if int(g.y) == c] for c in (0, 1)]
    assert abs(len(by_class[0]) - len(by_class[1])) <= 1
    types = [torch.cat([g.x for g in gs]).mean(0) for gs in by_class]
    assert (types[0] - types[1]).abs().max() < 0.03  # the same atom-type frequencies
    sizes = [sum(g.num_nodes for g in gs) / len(gs) for gs in by_class]
    assert abs(sizes[0] - sizes[1]) < 1.0  # the same node-count distribution
    again = graph.load_cycles(seed=3, n_graphs=400, min_nodes=8, max_nodes=20, min_ring=3, max_ring=8, atom_types=4)
    assert torch.equal(again.test.graphs[0].edge_index, splits.test.graphs[0].edge_index)


def test_edge_index_out_of_range_is_rejected():
    bad = Data(x=torch.zeros(3, 2), edge_index=torch.tensor([[0, 1], [1, 3]]), y=torch.tensor([0]))
    with pytest.raises(ValueError, match=r"graph 1: edge_index out of range: it refers to node 3 but the graph has 3 nodes"):
        graph.GraphSplit([_graph(4, [(0, 1)], torch.tensor([0]), features=2), bad])
    negative = Data(x=torch.zeros(3, 2), edge_index=torch.tensor([[0], [-1]]), y=torch.tensor([0]))
    with pytest.raises(ValueError, match="node -1"):
        graph.GraphSplit([negative])


def test_builders_name_the_bad_setting():
    info = _info("graph")
    with pytest.raises(ValueError, match=r"model.hidden_channels=0 is out of range"):
        gnn.GCNNet.from_info(info, **{**ARCHS["gcn"].defaults, "hidden_channels": 0})
    with pytest.raises(ValueError, match=r"model.heads=3 does not divide model.hidden_channels=64"):
        gnn.GATNet.from_info(info, **{**ARCHS["gat"].defaults, "heads": 3})
    with pytest.raises(ValueError, match=r"model.pool='sum' is not a pooling: choose one of mean, add, max"):
        gnn.GINNet.from_info(info, **{**ARCHS["gin"].defaults, "pool": "sum"})
    no_level = zoo.DataInfo(kind="graph", task="classification", input_shape=(4,), output_dim=2)
    with pytest.raises(ValueError, match="meta\\['level'\\]"):
        gnn.SAGENet.from_info(no_level, **ARCHS["sage"].defaults)


def _run(make_cfg, client, *overrides):
    metrics = train(make_cfg(*overrides, "tracking.hist_every=0"))
    run = client.get_run(metrics["run_id"])
    assert run.info.status == "FINISHED"
    return metrics, run


def _logged_state_dict(client, run, tmp_path):
    """The network's weights, read back from the run's logged MLflow model (a pyfunc, like every family's)."""
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert len(outputs) == 1
    return zoo.load_model(run.info.run_id, uri=client.tracking_uri).net.state_dict()


def test_karate_trains_and_logs_a_model(make_cfg, client, tmp_path):
    metrics, run = _run(make_cfg, client, "experiment=gnn_karate", "trainer.max_epochs=60")
    acc = run.data.metrics["test/accuracy"]
    assert acc == pytest.approx(metrics["test/accuracy"])
    assert acc >= 0.6  # the majority community of the 30 unlabelled members is 12/30 = 0.4
    state = _logged_state_dict(client, run, tmp_path)
    splits = graph.load_karate(seed=0)
    model = gnn.GCNNet.from_info(splits.info, **{**ARCHS["gcn"].defaults, "hidden_channels": 16, "dropout": 0.5}).eval()
    model.load_state_dict(state)
    (batch, y), = splits.test.batches(None)
    with torch.no_grad():
        pred = model(batch).argmax(-1)
    keep = y != zoo.IGNORE_INDEX
    assert keep.sum() == 30
    assert (pred[keep] == y[keep]).float().mean().item() == pytest.approx(acc, abs=1e-6)


def test_gin_beats_the_bag_of_features_baseline_on_cycles(make_cfg, client, tmp_path):
    small = ["data=cycles", "data.n_graphs=600", "trainer.max_epochs=12", "trainer.batch_size=32"]
    _, gin_run = _run(make_cfg, client, "model=gin", "model.norm=batch_norm", *small)
    _, mlp_run = _run(make_cfg, client, "model=mlp_graph", *small)
    gin_acc, mlp_acc = gin_run.data.metrics["test/accuracy"], mlp_run.data.metrics["test/accuracy"]
    assert gin_acc >= 0.8  # 0.98 when measured
    assert mlp_acc <= 0.65  # the atom types are independent of the label: chance is 0.5
    assert gin_acc - mlp_acc >= 0.15
    state = _logged_state_dict(client, gin_run, tmp_path)
    assert any(k.startswith("encoder.gnn.convs.0.nn") for k in state)  # GIN's per-layer MLP
