"""Write the small sample files the file datasets' ``smoke`` settings read (plugins/data/samples/).

They are what the contract kit and the registry-driven tests load for ``data=csv``, ``parquet``,
``arrays``, ``images``, ``series`` and ``graphs``; the files are committed, this script says how
they were made. Run: ``.venv/bin/python scripts/make_samples.py``
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "plugins" / "data" / "samples"


def iris_table(rng):
    import pandas as pd
    from sklearn.datasets import load_iris

    bunch = load_iris()
    frame = pd.DataFrame(bunch.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    frame["site"] = rng.choice(["north", "south", "east"], size=len(frame))  # a categorical column
    frame["species"] = [str(bunch.target_names[t]) for t in bunch.target]  # string labels
    return frame


def digit_images(folder: Path, classes=(0, 1, 2), per_class: int = 12) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for c in classes:
        (folder / str(c)).mkdir(parents=True)
        for i, j in enumerate(np.flatnonzero(bunch.target == c)[:per_class]):
            pixels = (bunch.images[j] * 255 / 16).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / str(c) / f"{i:03d}.png")


def tu_folder(folder: Path, rng, n_graphs: int = 40, name: str = "RINGS") -> None:
    """Rings against trees in the TU format: node ids from 1, one line per edge (both directions)."""
    from zoo_builtins.graph import make_molecule

    folder.mkdir(parents=True)
    edges, indicator, node_labels, graph_labels = [], [], [], []
    offset = 0
    for g in range(n_graphs):
        label = g % 2
        n = int(rng.integers(6, 11))
        pairs, types = make_molecule(rng, n, int(rng.integers(3, 6)) if label else 0, 3)
        edges += [(offset + a + 1, offset + b + 1) for a, b in pairs] + [(offset + b + 1, offset + a + 1) for a, b in pairs]
        indicator += [g + 1] * n
        node_labels += [int(t) for t in types]
        graph_labels.append(label)
        offset += n
    (folder / f"{name}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("".join(f"{g}\n" for g in indicator))
    (folder / f"{name}_graph_labels.txt").write_text("".join(f"{y}\n" for y in graph_labels))
    (folder / f"{name}_node_labels.txt").write_text("".join(f"{t}\n" for t in node_labels))


def main() -> None:
    from sklearn.datasets import load_digits

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(0)
    table = iris_table(rng)
    table.to_csv(OUT / "iris.csv", index=False, float_format="%.1f")
    table.to_parquet(OUT / "iris.parquet", index=False, row_group_size=64)
    bunch = load_digits()
    np.savez_compressed(OUT / "digits.npz", x=bunch.data[:300].astype(np.uint8), y=bunch.target[:300])
    digit_images(OUT / "digits_png")
    t = np.arange(300)
    value = np.sin(2 * math.pi * t / 25) + 0.1 * rng.standard_normal(len(t))
    (OUT / "sine.csv").write_text("step,value\n" + "".join(f"{i},{v:.4f}\n" for i, v in zip(t, value)))
    tu_folder(OUT / "rings", rng)
    print(f"wrote {sorted(p.relative_to(OUT).as_posix() for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
