"""``zoo predict``: a model's answers for a file, written to a file.

Input by extension (or kind): ``.csv``, ``.parquet`` (tabular rows, by column name), ``.npy``,
``.npz`` (arrays of raw examples; a graph as ``x``, ``edge_index`` and optionally ``batch``),
``.json`` (a graph, or rows), ``.txt`` (text, one prompt per line) or a folder of images
(``.png``, ``.jpg``: converted, resized and scaled as the model's data was, its
``preprocessing["image"]``). Output by extension: ``.csv``, ``.parquet``, ``.json``, ``.npz``,
``.npy`` (one array) or ``.txt`` (generated text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zoo.errors import ZooError, one_line
from zoo.models.packaged import ZooModel, preprocessing_step

IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
TABLES = (".csv", ".parquet", ".json")
ARRAYS = (".npy", ".npz")


def read_input(model: ZooModel, path: str | Path):
    """What ``path`` holds, as :meth:`ZooModel.predict` takes it; a one-line ZooError naming the file otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ZooError(f"--input {path}: no such file or folder")
    if path.is_dir():
        return read_images(model, path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pandas as pd

            return pd.read_csv(path)
        if suffix == ".parquet":
            import pandas as pd

            return pd.read_parquet(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return arrays if model.info.kind == "graph" or len(arrays) != 1 else next(iter(arrays.values()))
        if suffix == ".json":
            data = json.loads(path.read_text())
            if model.info.kind == "graph" or not isinstance(data, list):
                return data
            import pandas as pd

            return pd.DataFrame(data)
        if suffix == ".txt":
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return lines if model.info.kind == "text" else np.loadtxt(path, ndmin=2, delimiter=None)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ZooError(f"--input {path} cannot be read as {suffix[1:]}: {one_line(exc, 200)}") from None
    except Exception as exc:  # pandas' and pyarrow's own parser errors
        raise ZooError(f"--input {path} cannot be read as {suffix[1:]}: {one_line(exc, 200)}") from None
    raise ZooError(f"--input {path}: unknown kind of file '{suffix}'; give .csv, .parquet, .json, .npy, .npz, "
                   f".txt or a folder of images")


def read_images(model: ZooModel, folder: Path) -> tuple[list[str], np.ndarray]:
    """The images of a folder as the model's raw input ``(N, C, H, W)``, and their file names."""
    from PIL import Image, UnidentifiedImageError

    spec = preprocessing_step(model.info.meta, "image")
    if not spec:
        raise ZooError(f"model {model.architecture} does not take image files (its data, {model.dataset}, "
                       f"is {model.info.kind}); give a .csv, .npy or .npz input")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES)
    if not files:
        raise ZooError(f"--input {folder}: no image files in it ({', '.join(IMAGES)})")
    h, w = spec["size"]
    lo, hi = spec.get("range", (0.0, 1.0))
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert(spec.get("mode", "L")).resize((w, h)), dtype=np.float32)
        except (OSError, UnidentifiedImageError) as exc:
            raise ZooError(f"--input {f}: not an image that can be read ({one_line(exc, 150)})") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
        out.append(lo + a / 255.0 * (hi - lo))
    return [f.name for f in files], np.stack(out)


def predict_file(model: ZooModel, source: str | Path, output: str = "all", **params):
    """The model's answers for the file (or folder) ``source``."""
    data = read_input(model, source)
    if isinstance(data, tuple):  # images: (names, arrays)
        names, arrays = data
        answers = model.predict(arrays, output, **params)
        answers = answers if isinstance(answers, dict) else {_single_key(model, output): answers}
        return {"file": np.asarray(names), **answers}
    return model.predict(data, output, **params)


def _single_key(model: ZooModel, output: str) -> str:
    return output if output not in ("default", "all") else "output"


def write_output(answers, path: str | Path) -> Path:
    """Write the answers (a DataFrame, an array or a dict of arrays) to ``path`` by its extension."""
    import pandas as pd

    path = Path(path).expanduser()
    if path.parent and not path.parent.exists():
        raise ZooError(f"--output {path}: the folder {path.parent} does not exist")
    suffix = path.suffix.lower()
    if isinstance(answers, pd.Series):
        answers = answers.to_frame()
    if isinstance(answers, dict) and suffix in TABLES:  # per-file answers (images): the flat ones as columns
        flat = {k: v for k, v in answers.items() if np.asarray(v).ndim == 1}
        answers = pd.DataFrame(flat)
    try:
        if isinstance(answers, pd.DataFrame):
            if suffix == ".csv":
                answers.to_csv(path, index=False)
            elif suffix == ".parquet":
                answers.to_parquet(path, index=False)
            elif suffix == ".json":
                answers.to_json(path, orient="records", indent=1)
            elif suffix == ".txt" and "generated" in answers:
                path.write_text("\n".join(answers["generated"]) + "\n", encoding="utf-8")
            elif suffix in ARRAYS:
                np.savez(path, **{c: _array(answers[c]) for c in answers.columns}) if suffix == ".npz" else \
                    np.save(path, answers.to_numpy())
            else:
                raise ZooError(f"--output {path}: write these answers to .csv, .parquet, .json, .npz or .npy")
        elif suffix == ".npz":
            np.savez(path, **(answers if isinstance(answers, dict) else {"output": answers}))
        elif suffix == ".npy" and not isinstance(answers, dict):
            np.save(path, answers)
        elif suffix == ".json":
            items = answers.items() if isinstance(answers, dict) else [("output", answers)]
            path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in items}))
        else:
            raise ZooError(f"--output {path}: write array answers to .npz, .json (or .npy for a single array)")
    except OSError as exc:
        raise ZooError(f"--output {path} cannot be written: {exc.strerror or one_line(exc)}") from None
    return path


def _array(column) -> np.ndarray:
    values = column.tolist()
    try:
        return np.asarray(values, dtype=float) if not isinstance(values[0], str) else np.asarray(values)
    except (TypeError, ValueError, IndexError):
        return np.asarray(values, dtype=str)
