"""Training on the user's own files: each file dataset reads real files written in tmp_path, trains
the matching family, and the run read back from a real MLflow store records what it read."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from zoo.training.train import train

from .conftest import ROOT, run_zoo, runs_in

SPECIES = {"Adelie": (38.8, 18.3, 190.0, 3700.0), "Chinstrap": (48.8, 18.4, 196.0, 3730.0),
           "Gentoo": (47.5, 15.0, 217.0, 5076.0)}
ISLANDS = {"Adelie": ["Torgersen", "Biscoe", "Dream"], "Chinstrap": ["Dream"], "Gentoo": ["Biscoe"]}


def penguins(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Penguin-like rows: four measurements, a categorical island, the species as text."""
    rng = np.random.default_rng(seed)
    species = rng.choice(sorted(SPECIES), n)
    centre = np.array([SPECIES[s] for s in species])
    frame = pd.DataFrame(centre * (1 + 0.04 * rng.standard_normal(centre.shape)),
                         columns=["bill_length", "bill_depth", "flipper_length", "body_mass"])
    frame.insert(2, "island", [rng.choice(ISLANDS[s]) for s in species])
    frame["species"] = species
    return frame


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finished(client, metrics) -> mlflow.entities.Run:
    run = client.get_run(metrics["run_id"])
    assert run.info.status == "FINISHED"
    assert all(math.isfinite(v) for k, v in run.data.metrics.items() if k.startswith("test/"))
    return run


# ------------------------------------------------------------------------------ tables

def test_csv_with_string_labels_and_a_categorical_column(make_cfg, registry, client, tmp_path, caplog):
    path = tmp_path / "penguins.csv"
    penguins().to_csv(path, index=False)
    caplog.set_level(logging.INFO)
    metrics = train(make_cfg("data=csv", f"data.path={path}", "data.target=species", "data.categorical=[island]",
                             "trainer.max_epochs=10"), registry)
    run = finished(client, metrics)
    assert run.data.metrics["test/accuracy"] >= 0.9
    assert run.data.tags["zoo.data_source"] == str(path) and run.data.tags["zoo.data_digest"] == sha256(path)
    assert run.data.tags["zoo.data_size"] == str(path.stat().st_size) and run.data.tags["zoo.task"] == "classification"
    assert "target 'species'" in caplog.text and "holds text: classification" in caplog.text

    info = registry.load_dataset("csv", 0, path=str(path), target="species", categorical=["island"]).info
    prep = info.meta["preprocessing"]
    assert info.meta["class_names"] == prep["class_names"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert prep["categories"] == {"island": ["Biscoe", "Dream", "Torgersen"]}
    assert prep["encoded_features"] == ["bill_length", "bill_depth", "island=Biscoe", "island=Dream",
                                        "island=Torgersen", "flipper_length", "body_mass"]
    assert info.input_shape == (7,) and len(prep["input_scaling"]["mean"]) == 7


def test_parquet_with_a_numeric_target_is_regression(make_cfg, registry, client, tmp_path, caplog):
    path = tmp_path / "penguins.parquet"
    penguins().to_parquet(path, index=False, row_group_size=50)  # read back a row group at a time
    caplog.set_level(logging.INFO)
    metrics = train(make_cfg("data=parquet", f"data.path={path}", "data.target=body_mass",
                             "data.features=[bill_length,bill_depth,flipper_length]", "data.categorical=[island]",
                             "trainer.max_epochs=10"), registry)
    run = finished(client, metrics)
    assert run.data.tags["zoo.task"] == "regression" and "test/mse" in run.data.metrics
    assert run.data.metrics["test/r2"] > 0.5
    assert "target 'body_mass'" in caplog.text and "regression" in caplog.text
    splits = registry.load_dataset("parquet", 0, path=str(path), target="body_mass", task="regression")
    assert splits.info.meta["preprocessing"]["target_scaling"]["std"][0] > 100  # grams, standardised for training


def test_missing_values_are_dropped_by_choice(registry, tmp_path, caplog):
    frame = penguins()
    frame.loc[[3, 7, 8], "bill_depth"] = np.nan
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    caplog.set_level(logging.INFO)
    splits = registry.load_dataset("csv", 0, path=str(path), target="species", missing="drop")
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == len(frame) - 3
    assert splits.info.meta["preprocessing"]["dropped_rows"] == 3 and "dropped 3 rows" in caplog.text


def test_two_versions_of_a_file_are_told_apart(registry, tmp_path):
    path = tmp_path / "penguins.csv"
    penguins().to_csv(path, index=False)
    first = registry.load_dataset("csv", 0, path=str(path), target="species").info.meta["source"]
    penguins(seed=1).to_csv(path, index=False)
    second = registry.load_dataset("csv", 0, path=str(path), target="species").info.meta["source"]
    assert first["path"] == second["path"] == str(path)
    assert first["digest"] != second["digest"] and second["digest"] == sha256(path)


def test_csv_from_the_command_line(tmp_path):
    penguins().to_csv(tmp_path / "penguins.csv", index=False)
    r = run_zoo("train", "data=csv", "data.path=penguins.csv", "data.target=species", "trainer.max_epochs=2",
                "trainer.device=cpu", "tracking.system_metrics=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("zoo: mlp on csv | test/loss=")
    assert "data.task=auto: target 'species'" in r.stdout  # the choice is printed
    (run,) = runs_in(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.data.tags["zoo.data_source"] == str(tmp_path / "penguins.csv")  # relative on the command line


# ------------------------------------------------------------------------------ arrays

def test_arrays_from_npz_and_from_a_folder_of_npy(make_cfg, registry, client, tmp_path):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    np.savez(tmp_path / "digits.npz", x=bunch.data, y=bunch.target)
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "folder" / "pixels.npy", bunch.data.astype(np.float32))
    np.save(tmp_path / "folder" / "digit.npy", bunch.target)
    npz = finished(client, train(make_cfg("data=arrays", f"data.path={tmp_path / 'digits.npz'}",
                                          "trainer.max_epochs=5"), registry))
    folder = finished(client, train(make_cfg("data=arrays", f"data.path={tmp_path / 'folder'}", "data.inputs=pixels",
                                             "data.targets=digit", "trainer.max_epochs=5"), registry))
    assert npz.data.metrics["test/accuracy"] >= 0.9 and folder.data.metrics["test/accuracy"] >= 0.9
    assert npz.data.metrics["test/accuracy"] == folder.data.metrics["test/accuracy"]  # the same data, the same run
    assert folder.data.tags["zoo.data_digest"] != npz.data.tags["zoo.data_digest"]


# ------------------------------------------------------------------------------ images

def _accuracy_script():
    spec = importlib.util.spec_from_file_location("data_accuracy", ROOT / "benchmarks" / "data_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_as_png_reach_095_with_mlp_and_a_small_cnn(tmp_path, capsys):
    """The figure docs/data.md quotes: benchmarks/data_accuracy.py, on the digits written as PNG files."""
    results = _accuracy_script().main(["--keep", str(tmp_path)])
    assert results["mlp"] >= 0.95 and results["small_cnn"] >= 0.95, results
    assert "small_cnn  test/accuracy" in capsys.readouterr().out
    (run, *_) = runs_in(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.data.tags["zoo.data_source"] == str(tmp_path / "digits_png")


def test_images_in_colour_are_resized(registry, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate(((255, 0, 0), (0, 0, 255))):
        (tmp_path / f"class{c}").mkdir()
        for i in range(12):
            pixels = np.clip(np.array(colour) * 0.8 + rng.integers(0, 50, (10 + i, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="RGB").save(tmp_path / f"class{c}" / f"{i}.png")
    splits = registry.load_dataset("images", 0, path=str(tmp_path), size=[6, 5])
    assert splits.info.input_shape == (3, 6, 5) and splits.info.meta["class_names"] == ["class0", "class1"]
    x, y = next(iter(splits.train.batches(None)))
    assert x.min() >= 0 and x.max() <= 1  # pixels scaled to [0, 1]
    red = x[y == 0].mean((0, 2, 3))
    assert red[0] > 0.7 and red[2] < 0.3  # channels in RGB order
    grey = registry.load_dataset("images", 0, path=str(tmp_path), mode="L")
    assert grey.info.input_shape == (1, 10, 12)  # the first image's size


# ------------------------------------------------------------------------------ series

def sine_csv(path, rows: int = 600) -> None:
    t = np.arange(rows)
    rng = np.random.default_rng(0)
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=rows, freq="h").astype(str),
                  "load": np.sin(2 * np.pi * t / 24) + 0.05 * rng.standard_normal(rows),
                  "temperature": np.cos(2 * np.pi * t / 24)}).to_csv(path, index=False)


def test_series_windows_stay_inside_their_part(registry, tmp_path):
    sine_csv(tmp_path / "load.csv")
    splits = registry.load_dataset("series", 0, path=str(tmp_path / "load.csv"), target="load", window=24, horizon=3)
    assert splits.info.input_shape == (24, 2) and splits.info.output_dim == 3  # load and temperature: the date is text
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [420 - 26, 90 - 26, 90 - 26]
    frame = pd.read_csv(tmp_path / "load.csv")
    scale = splits.info.meta["preprocessing"]["target_scaling"]
    first_val_target = splits.val.y[0] * scale["std"] + scale["mean"]
    assert torch.allclose(first_val_target, torch.tensor(frame["load"].to_numpy()[420 + 24:420 + 27], dtype=torch.float32),
                          atol=1e-5)  # the validation part starts at row 420: its first forecast is rows 444..446


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_series_trains_rnn_and_transformer(make_cfg, registry, client, tmp_path, model):
    sine_csv(tmp_path / "load.csv")
    metrics = train(make_cfg(f"model={model}", "data=series", f"data.path={tmp_path / 'load.csv'}",
                             "data.target=load", "data.window=24", "trainer.max_epochs=3"), registry)
    run = finished(client, metrics)
    assert run.data.tags["zoo.task"] == "regression" and run.data.tags["zoo.data_digest"] == sha256(tmp_path / "load.csv")


# ------------------------------------------------------------------------------ graphs

def tu_folder(folder, n_graphs: int = 40, name: str = "TOY") -> list[tuple[int, list]]:
    """Triangles (label 1) against paths (label 0) in the TU format; returns (label, edges) per graph."""
    folder.mkdir()
    a, indicator, node_labels, labels, graphs, offset = [], [], [], [], [], 0
    for g in range(n_graphs):
        label, n = g % 2, 3 + g % 4
        edges = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if label else [])
        a += [f"{offset + i + 1}, {offset + j + 1}" for i, j in edges] + [f"{offset + j + 1}, {offset + i + 1}" for i, j in edges]
        indicator += [str(g + 1)] * n
        node_labels += [str(i % 2) for i in range(n)]
        labels.append(str(label))
        graphs.append((label, edges))
        offset += n
    for part, lines in (("A", a), ("graph_indicator", indicator), ("node_labels", node_labels), ("graph_labels", labels)):
        (folder / f"{name}_{part}.txt").write_text("\n".join(lines) + "\n")
    return graphs


def test_graphs_from_a_tu_folder_and_from_saved_data(make_cfg, registry, client, tmp_path):
    from torch_geometric.data import Data

    written = tu_folder(tmp_path / "toy")
    splits = registry.load_dataset("graphs", 0, path=str(tmp_path / "toy"))
    read = splits.train.graphs + splits.val.graphs + splits.test.graphs
    assert len(read) == 40 and splits.info.input_shape == (2,)  # node labels 0/1, one-hot
    assert sorted(g.edge_index.shape[1] for g in read) == sorted(2 * len(e) for _, e in written)
    tu = finished(client, train(make_cfg("model=gin", "data=graphs", f"data.path={tmp_path / 'toy'}",
                                         "trainer.max_epochs=2"), registry))
    torch.save([Data(x=g.x, edge_index=g.edge_index, y=g.y + 5) for g in read], tmp_path / "toy.pt")
    saved = finished(client, train(make_cfg("model=gcn", "data=graphs", f"data.path={tmp_path / 'toy.pt'}",
                                            "trainer.max_epochs=2"), registry))
    assert saved.data.tags["zoo.data_source"] == str(tmp_path / "toy.pt") != tu.data.tags["zoo.data_source"]
    info = registry.load_dataset("graphs", 0, path=str(tmp_path / "toy.pt")).info
    assert info.meta["class_names"] == ["5", "6"] and info.output_dim == 2


def test_every_file_dataset_is_a_plugin_like_any_other(registry):
    for name in ("csv", "parquet", "arrays", "images", "series", "graphs", "text"):
        entry = registry.datasets[name]
        assert entry.source == "built-in" and "path" in entry.decl.defaults
    assert zoo.StreamSplit and zoo.array_splits and zoo.data_path and zoo.source_of  # the public helpers


# ------------------------------------------------------------------------------ a plugin author's dataset

def test_the_example_dataset_plugin_trains_in_memory_and_streamed(tmp_path):
    """docs/examples/jsonl_dataset.py (the example docs/data.md walks through), from the command line."""
    import json

    frame = penguins()
    with open(tmp_path / "penguins.jsonl", "w") as f:
        for row in frame.itertuples():
            f.write(json.dumps({"x": [row.bill_length, row.bill_depth, row.flipper_length, row.body_mass],
                                "label": row.species}) + "\n")
    common = ["train", f"plugins.dir={ROOT / 'docs' / 'examples'}", "data=jsonl", "data.path=penguins.jsonl",
              "trainer.max_epochs=3", "trainer.device=cpu", "tracking.system_metrics=false", "tracking.log_model=false"]
    for name, setting in (("memory", "data.in_memory=true"), ("streamed", "data.in_memory=false")):
        r = run_zoo(*common, setting, f"tracking.experiment={name}", f"hydra.run.dir={name}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    memory, streamed = (client.search_runs([client.get_experiment_by_name(n).experiment_id])[0]
                        for n in ("memory", "streamed"))
    losses = [[m.value for m in sorted(client.get_metric_history(r.info.run_id, "train/loss"), key=lambda m: m.step)]
              for r in (memory, streamed)]
    assert len(losses[0]) == len(losses[1]) > 0
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    assert memory.data.metrics["test/accuracy"] >= 0.8
    assert streamed.data.tags["zoo.data_digest"] == sha256(tmp_path / "penguins.jsonl")
