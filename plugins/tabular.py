"""Tabular datasets (kind ``tabular``): scikit-learn's bundled sets and two synthetic 2-D problems.

Nothing is downloaded: ``digits``, ``iris``, ``wine``, ``breast_cancer`` and ``diabetes`` ship
inside scikit-learn, and :func:`toy_data` reads its files without importing it; ``moons`` and
``circles`` are generated from the seed (by scikit-learn). Features are
standardised with the training split's statistics; the train/val/test split (70/15/15,
stratified for classification) is fixed by the seed.

For the autoencoders: ``digits_recon`` (the 8x8 digits as 64 features, pixels / 16 in [0, 1], to
reconstruct), ``digits_anomaly`` (one digit class held out of training is the anomaly) and
``breast_cancer_anomaly`` (benign tumours are normal, malignant ones the anomaly). The helpers
that split reconstruction and anomaly data serve ``zoo_builtins.image`` too.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import zoo

_CANCER = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
           "symmetry", "fractal dimension")
# scikit-learn's loaders hard-code the feature names; these are theirs (tests/test_toy_data.py compares them)
TOY_FEATURES = {
    "digits": [f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
    "iris": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    "wine": ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
             "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines",
             "proline"],
    "breast_cancer": np.array([f"mean {f}" for f in _CANCER] + [f"{f} error" for f in _CANCER]
                              + [f"worst {f}" for f in _CANCER]),
    "diabetes": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
}
TOY_FILES = {"digits": ("digits.csv.gz",), "iris": ("iris.csv",), "wine": ("wine_data.csv",),
             "breast_cancer": ("breast_cancer.csv",),
             "diabetes": ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz")}  # in sklearn/datasets/data/


def toy_data(name: str):
    """scikit-learn's bundled toy dataset ``name``: ``data``, ``target``, ``feature_names``, ``target_names``.

    The same arrays (values and dtypes) as ``sklearn.datasets.load_<name>()``, read with numpy from the
    files inside scikit-learn's package, found without importing it (its import costs about a second).
    If the files are not where scikit-learn 1.x keeps them, this is scikit-learn's own loader.
    """
    spec = importlib.util.find_spec("sklearn")  # a top-level package is located, not imported
    folder = Path(spec.origin).parent / "datasets" / "data" if spec and spec.origin else None
    if folder is None or not all((folder / f).is_file() for f in TOY_FILES[name]):
        from sklearn import datasets

        return getattr(datasets, f"load_{name}")()
    features = TOY_FEATURES[name]
    if name == "digits":
        table = np.loadtxt(folder / "digits.csv.gz", delimiter=",")
        return SimpleNamespace(data=table[:, :-1], target=table[:, -1].astype(int), feature_names=features,
                               target_names=np.arange(10))
    if name == "diabetes":  # load_diabetes(scaled=True): sklearn.preprocessing.scale, then / sqrt(n)
        x = np.loadtxt(folder / "diabetes_data_raw.csv.gz")
        x = (x - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0) / len(x) ** 0.5
        return SimpleNamespace(data=x, target=np.loadtxt(folder / "diabetes_target.csv.gz"), feature_names=features)
    with open(folder / TOY_FILES[name][0], encoding="utf-8") as f:
        header = next(csv.reader(f))  # n_samples, n_features, the class names
        table = np.loadtxt(f, delimiter=",")
    return SimpleNamespace(data=table[:, :-1], target=table[:, -1].astype(int), feature_names=features,
                           target_names=np.array(header[2:]))


def make_splits(x, y, *, seed: int, task: str, meta=None) -> zoo.Splits:
    """Split arrays 70/15/15 by the seed, standardise features, and wrap them as tensors.

    ``meta["preprocessing"]`` records the training split's statistics (and the target's, for
    regression), so a trained model carries them and takes raw rows.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    classify = task == "classification"
    y = torch.as_tensor(y, dtype=torch.long if classify else torch.float32)
    if not classify and y.ndim == 1:
        y = y[:, None]
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy() if classify else None)
    xs = zoo.standardize(x[tr], x[va], x[te])
    ys = [y[tr], y[va], y[te]] if classify else zoo.standardize(y[tr], y[va], y[te])
    out = int(y.max()) + 1 if classify else y.shape[1]
    steps = {"input": zoo.scaling(x[tr])} if classify else {"input": zoo.scaling(x[tr]), "target": zoo.scaling(y[tr])}
    meta = {"feature_names": [f"x{i + 1}" for i in range(x.shape[1])], **(meta or {}), "preprocessing": steps}
    info = zoo.DataInfo(kind="tabular", task=task, input_shape=tuple(x.shape[1:]), output_dim=out, meta=meta)
    return zoo.Splits(*(zoo.TensorSplit(a, b) for a, b in zip(xs, ys)), info=info)


def _toy(name: str, task: str):
    def load(seed: int):
        bunch = toy_data(name)
        names = [str(n) for n in getattr(bunch, "target_names", [])]
        meta = {"class_names": names} if task == "classification" else {"target_names": ["target"]}
        meta["feature_names"] = [str(n) for n in bunch.feature_names]
        if name == "digits":
            meta["image_shape"] = (8, 8)
        return make_splits(bunch.data, bunch.target, seed=seed, task=task, meta=meta)
    return load


def _synthetic(maker: str, noise: float, **fixed):
    def load(seed: int, n_samples: int = 1000, noise: float = noise):
        from sklearn import datasets

        zoo.check_range("data.n_samples", n_samples, 20)
        zoo.check_range("data.noise", noise, 0)
        x, y = getattr(datasets, maker)(n_samples=n_samples, noise=noise, random_state=seed, **fixed)
        return make_splits(x, y, seed=seed, task="classification", meta={"class_names": ["0", "1"]})
    return load


ANOMALY_CLASS = 7  # held out by default: docs/autoencoder.md lists the test AUROC of every class


def digit_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as (1797, 64) pixels in [0, 1] and their labels."""
    bunch = toy_data("digits")
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0  # pixels 0..16 -> [0, 1]
    return x, torch.as_tensor(bunch.target, dtype=torch.long)


def digit_meta(image: bool = False) -> dict:
    """The digits' labels and pixel range; the model takes raw pixels 0..16 (``preprocessing``: / 16).

    As images, a PNG file's grey levels 0..255 map onto 0..16 (``preprocessing["image"]``).
    """
    steps = {"input": {"mean": 0.0, "std": 16.0}}
    if image:
        steps["image"] = {"mode": "L", "size": [8, 8], "range": [0.0, 16.0]}
    return {"class_names": [str(d) for d in range(10)], "image_shape": (8, 8), "value_range": (0.0, 1.0),
            "feature_names": [f"pixel_{r}_{c}" for r in range(8) for c in range(8)], "preprocessing": steps}


def reconstruction_splits(x, y, *, seed: int, kind: str, meta: dict) -> zoo.Splits:
    """70/15/15 stratified by the label ``y``; the task is to give back the input."""
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy())
    info = zoo.DataInfo(kind=kind, task="reconstruction", input_shape=tuple(x.shape[1:]),
                        output_dim=math.prod(x.shape[1:]), meta=meta)
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in (tr, va, te)), info=info)


def anomaly_splits(x, y, anomalous: torch.Tensor, *, seed: int, kind: str, meta: dict,
                   standardize: bool) -> zoo.Splits:
    """Normal examples split 70/15/15 (stratified by ``y``); anomalies only in val and test.

    Targets are 1 for an anomaly, 0 for a normal example. With ``standardize`` the features are
    scaled by the statistics of the (normal) training split.
    """
    normal = torch.nonzero(~anomalous).flatten()
    odd = torch.nonzero(anomalous).flatten()
    tr, va, te = zoo.split_indices(len(normal), seed, stratify=y[normal].numpy())
    order = torch.randperm(len(odd), generator=torch.Generator().manual_seed(seed))
    half = len(odd) // 2
    parts = [normal[tr], torch.cat([normal[va], odd[order[:half]]]), torch.cat([normal[te], odd[order[half:]]])]
    xs = [x[p] for p in parts]
    if standardize:
        meta = {**meta, "preprocessing": {"input": zoo.scaling(xs[0])}}
        xs = zoo.standardize(*xs)
    info = zoo.DataInfo(kind=kind, task="anomaly", input_shape=tuple(x.shape[1:]),
                        output_dim=math.prod(x.shape[1:]), meta=meta)
    return zoo.Splits(*(zoo.TensorSplit(a, anomalous[p].long()) for a, p in zip(xs, parts)), info=info)


def digit_anomaly_splits(seed: int, anomaly_class: int, *, image: bool) -> zoo.Splits:
    """The digits with one class held out of training as the anomaly, as features or 1x8x8 images."""
    zoo.check_range("data.anomaly_class", anomaly_class, 0, 9)
    x, y = digit_pixels()
    if image:
        x = x.reshape(-1, 1, 8, 8)
    meta = {**digit_meta(image), "anomaly_class": anomaly_class}
    return anomaly_splits(x, y, y == anomaly_class, seed=seed, kind="image" if image else "tabular",
                          meta=meta, standardize=False)


def load_digits_recon(seed: int) -> zoo.Splits:
    x, y = digit_pixels()
    return reconstruction_splits(x, y, seed=seed, kind="tabular", meta=digit_meta())


def load_digits_anomaly(seed: int, anomaly_class: int = ANOMALY_CLASS) -> zoo.Splits:
    return digit_anomaly_splits(seed, anomaly_class, image=False)


def load_breast_cancer_anomaly(seed: int) -> zoo.Splits:
    bunch = toy_data("breast_cancer")
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.long)  # 0 malignant, 1 benign
    meta = {"feature_names": [str(n) for n in bunch.feature_names], "anomaly_class": "malignant"}
    return anomaly_splits(x, y, y == 0, seed=seed, kind="tabular", meta=meta, standardize=True)


@zoo.hookimpl
def zoo_datasets():
    sk = [("digits", "classification", "8x8 handwritten digits as 64 features, 10 classes (1797)"),
          ("iris", "classification", "iris flowers, 4 features, 3 classes (150)"),
          ("wine", "classification", "wine cultivars, 13 features, 3 classes (178)"),
          ("breast_cancer", "classification", "tumours, 30 features, malignant or benign (569)"),
          ("diabetes", "regression", "diabetes progression, 10 features, standardised target (442)")]
    return [zoo.Dataset(name=n, kind="tabular", task=t, load=_toy(n, t), description=d) for n, t, d in sk] + [
        zoo.Dataset(name="moons", kind="tabular", task="classification", load=_synthetic("make_moons", noise=0.2),
                    description="two interleaving half circles in 2-D"),
        zoo.Dataset(name="circles", kind="tabular", task="classification",
                    load=_synthetic("make_circles", noise=0.1, factor=0.5), description="a circle inside a circle in 2-D"),
        zoo.Dataset(name="digits_recon", kind="tabular", task="reconstruction", load=load_digits_recon,
                    description="8x8 digits as 64 features in [0, 1], to reconstruct (1797)"),
        zoo.Dataset(name="digits_anomaly", kind="tabular", task="anomaly", load=load_digits_anomaly,
                    description="digits as features; one class held out of training is the anomaly"),
        zoo.Dataset(name="breast_cancer_anomaly", kind="tabular", task="anomaly", load=load_breast_cancer_anomaly,
                    description="tumours, 30 standardised features; trained on benign, malignant is the anomaly"),
    ]
