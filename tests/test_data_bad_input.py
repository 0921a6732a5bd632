"""Bad input to the readers of the user's files: each case writes the bad file or folder in tmp_path,
and training fails with one line naming ``data.path`` or the setting, before any run is created.
One case goes through the command line: exit 2, ``error: ...`` on one line, no traceback."""

from __future__ import annotations

import re

import numpy as np
import pytest

import zoo
from zoo.training.train import train

from .conftest import run_zoo, runs_in
from .test_data_files import penguins, sine_csv, tu_folder


def png(path, mode: str = "L", size=(8, 8), value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)


def image_folder(root, classes=("a", "b"), per_class: int = 12) -> None:
    for c in classes:
        for i in range(per_class):
            png(root / c / f"{i}.png", value=20 * i)


def tu_without(part: str):
    def write(t):
        tu_folder(t / "tu")
        (t / "tu" / f"TOY_{part}.txt").unlink()
        return "model=gin", "data=graphs", f"data.path={t / 'tu'}"
    return write


def tu_edge_out_of_range(t):
    tu_folder(t / "tu")
    with open(t / "tu" / "TOY_A.txt", "a") as f:
        f.write("1, 9999\n")
    return "model=gin", "data=graphs", f"data.path={t / 'tu'}"


def csv_file(frame_or_text, *settings):
    def write(t):
        p = t / "data.csv"
        if isinstance(frame_or_text, str):
            p.write_text(frame_or_text)
        else:
            frame_or_text.to_csv(p, index=False)
        return ("data=csv", f"data.path={p}", *settings)
    return write


def with_missing():
    frame = penguins()
    frame.loc[[4, 9], "bill_depth"] = np.nan
    return frame


def single_class():
    frame = penguins()
    frame["species"] = "Adelie"
    return frame


def mixed_modes(t):
    image_folder(t / "img")
    png(t / "img" / "b" / "colour.png", mode="RGB")
    return "data=images", f"data.path={t / 'img'}"


def one_class(t):
    image_folder(t / "img", classes=("only",))
    return "data=images", f"data.path={t / 'img'}"


def corrupt_image(t):
    image_folder(t / "img")
    (t / "img" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return "data=images", f"data.path={t / 'img'}"


def not_an_image(t):
    image_folder(t / "img")
    (t / "img" / "b" / "notes.txt").write_text("not a picture")
    return "data=images", f"data.path={t / 'img'}"


def folder_for_file(t):
    (t / "tables").mkdir()
    (t / "tables" / "x.csv").write_text("a,b\n1,2\n")
    return "data=csv", f"data.path={t / 'tables'}", "data.target=b"


def file_for_folder(t):
    (t / "one.png").write_bytes(b"x")
    return "data=images", f"data.path={t / 'one.png'}"


def empty_folder(t):
    (t / "img").mkdir()
    return "data=images", f"data.path={t / 'img'}"


def garbage_parquet(t):
    (t / "data.parquet").write_bytes(b"this is not parquet at all\n" * 4)
    return "data=parquet", f"data.path={t / 'data.parquet'}", "data.target=y"


def garbage_npz(t):
    (t / "data.npz").write_text("x,y\n1,2\n")
    return "data=arrays", f"data.path={t / 'data.npz'}"


def npz_without_targets(t):
    np.savez(t / "data.npz", x=np.zeros((40, 3)), labels=np.zeros(40))
    return "data=arrays", f"data.path={t / 'data.npz'}"


def long_window(t):
    sine_csv(t / "load.csv", rows=60)
    return "model=lstm", "data=series", f"data.path={t / 'load.csv'}", "data.target=load", "data.window=100"


def missing_corpus(t):
    return "model=gpt", "data=text", f"data.path={t / 'corpus.txt'}"


def missing_file(t):
    return "data=csv", f"data.path={t / 'nowhere.csv'}", "data.target=species"


def empty_file(t):
    (t / "empty.csv").write_text("")
    return "data=csv", f"data.path={t / 'empty.csv'}", "data.target=species"


def pickled_graphs(t):
    import torch

    torch.save({"graphs": [object()]}, t / "graphs.pt")  # a plain object: refused, never unpickled
    return "model=gin", "data=graphs", f"data.path={t / 'graphs.pt'}"


# (the bad input, a function that writes it in tmp_path and returns the overrides, what the one-line
# message must contain; {t} is the temporary folder). docs/bad-input.md lists them (tests/test_catalogue.py).
CASES = [
    ("data=csv data.path=<a path that does not exist>", missing_file, "data.path='{t}/nowhere.csv' does not exist"),
    ("data=csv data.path=<a folder>", folder_for_file, "is not a file (it is a folder)"),
    ("data=images data.path=<a file>", file_for_folder, "is not a folder (it is a file)"),
    ("data=csv data.path=<an empty file>", empty_file, "data.path='{t}/empty.csv' is empty"),
    ("data=images data.path=<an empty folder>", empty_folder, "is an empty folder"),
    ("data=csv data.path=<a CSV that cannot be parsed>", csv_file('a,b\n1,2\n"3,4\n' * 3, "data.target=a"),
     "cannot be parsed as a CSV file"),
    ("data=parquet data.path=<not a Parquet file>", garbage_parquet, "cannot be parsed as a Parquet file"),
    ("data=arrays data.path=<not a .npz file>", garbage_npz, "cannot be parsed as a .npz file"),
    ("data=arrays data.path=<a .npz without the targets y>", npz_without_targets, "data.targets='y' is not an array of"),
    ("data=csv data.target=specie (unknown column)", csv_file(penguins(), "data.target=specie"),
     "data.target='specie' is not a column of data.path='{t}/data.csv'. Did you mean 'species'? Columns: bill_length"),
    ("data=csv data.features=[bill_lenght] (unknown column)",
     csv_file(penguins(), "data.target=species", "data.features=[bill_lenght]"),
     "data.features='bill_lenght' is not a column of"),
    ("data=csv data.features=[island,...] (a text column not in data.categorical)",
     csv_file(penguins(), "data.target=species", "data.features=[island,body_mass]"),
     "data.features: column 'island' of data.path='{t}/data.csv' is not numeric (e.g."),
    ("data=csv data.target=<a column with a single class>", csv_file(single_class(), "data.target=species"),
     "a single class ('Adelie' in 240 rows); classification needs at least two"),
    ("data=csv data.path=<12 rows>", csv_file(penguins(n=12), "data.target=species"),
     "has 12 rows: the train/val/test split"),
    ("data=csv data.path=<rows with missing values>", csv_file(with_missing(), "data.target=species"),
     "has 2 rows with missing values in the columns used (the first: row 5 (line 6 of the file))"),
    ("data=csv data.task=ranking", csv_file(penguins(), "data.target=species", "data.task=ranking"),
     "data.task='ranking' is invalid: expected one of auto, classification, regression"),
    ("data=csv data.in_memory=maybe", csv_file(penguins(), "data.target=species", "data.in_memory=maybe"),
     "data.in_memory='maybe' is invalid: expected auto"),
    ("data=csv data.memory_budget=lots", csv_file(penguins(), "data.target=species", "data.memory_budget=lots"),
     "data.memory_budget='lots' is invalid: expected a size with a unit"),
    ("data=csv data.workers=many", csv_file(penguins(), "data.target=species", "data.workers=many"),
     "data.workers='many' is invalid: expected auto, or an integer >= 0"),
    ("data=csv data.workers=-1", csv_file(penguins(), "data.target=species", "data.workers=-1"),
     "data.workers=-1 is out of range: expected 0 <= workers"),
    ("data=images data.path=<one class folder>", one_class,
     "has 1 class folder (only): it needs one sub-folder per class, at least two"),
    ("data=images data.path=<a corrupt PNG>", corrupt_image, "'a/broken.png'"),
    ("data=images data.path=<a text file among the images>", not_an_image,
     "'b/notes.txt' is not an image Pillow can read"),
    ("data=images data.path=<greyscale and colour images>", mixed_modes, "holds images of mixed modes"),
    ("data=graphs data.path=<a TU folder without NAME_graph_labels.txt>", tu_without("graph_labels"),
     "has no TOY_graph_labels.txt"),
    ("data=graphs data.path=<a TU folder without NAME_graph_indicator.txt>", tu_without("graph_indicator"),
     "has no TOY_graph_indicator.txt"),
    ("data=graphs data.path=<a TU folder with an edge index out of range>", tu_edge_out_of_range,
     "edge index out of range: TOY_A.txt refers to node 9999"),
    ("data=graphs data.path=<a .pt holding Python objects>", pickled_graphs, "never unpickles code"),
    ("data=series data.window=100 (longer than the series)", long_window, "data.window=100 is longer than the series"),
    ("data=text data.path=<a path that does not exist>", missing_corpus, "data.path='{t}/corpus.txt' does not exist"),
]


@pytest.mark.parametrize("write, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_is_one_line_and_no_run(make_cfg, registry, store, tmp_path, write, message):
    t = tmp_path / "files"
    t.mkdir()
    overrides = write(t)
    with pytest.raises(zoo.ZooError) as err:
        train(make_cfg(*overrides), registry)
    text = str(err.value)
    assert message.format(t=t) in text, text
    assert "\n" not in text
    assert re.search(r"\bdata\.\w+=", text), text  # names data.path or the setting, with its value
    assert runs_in(store) == []


def test_bad_file_from_the_command_line(tmp_path):
    penguins().to_csv(tmp_path / "penguins.csv", index=False)
    r = run_zoo("train", "data=csv", "data.path=penguins.csv", "data.target=specie", "trainer.device=cpu",
                "tracking.system_metrics=false", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and line.endswith(
        f"data.target='specie' is not a column of data.path='{tmp_path / 'penguins.csv'}'. Did you mean "
        f"'species'? Columns: bill_length, bill_depth, island, flipper_length, body_mass, species"), line
    store = tmp_path / "mlruns" / "mlflow.db"
    assert not store.exists() or runs_in(f"sqlite:///{store}") == []

