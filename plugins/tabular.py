"""Tabular datasets: scikit-learn's bundled sets and two synthetic 2-D problems.

Nothing is downloaded: ``digits``, ``iris``, ``wine``, ``breast_cancer`` and ``diabetes`` ship
inside scikit-learn; ``moons`` and ``circles`` are generated from the seed. Features are
standardised with the training split's statistics; the train/val/test split (70/15/15,
stratified for classification) is fixed by the seed.
"""

from __future__ import annotations

import torch

import zoo


def make_splits(x, y, *, seed: int, task: str, meta=None) -> zoo.Splits:
    """Split arrays 70/15/15 by the seed, standardise features, and wrap them as tensors."""
    x = torch.as_tensor(x, dtype=torch.float32)
    classify = task == "classification"
    y = torch.as_tensor(y, dtype=torch.long if classify else torch.float32)
    if not classify and y.ndim == 1:
        y = y[:, None]
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy() if classify else None)
    xs = zoo.standardize(x[tr], x[va], x[te])
    ys = [y[tr], y[va], y[te]] if classify else zoo.standardize(y[tr], y[va], y[te])
    out = int(y.max()) + 1 if classify else y.shape[1]
    info = zoo.DataInfo(kind="tabular", task=task, input_shape=tuple(x.shape[1:]), output_dim=out, meta=meta or {})
    return zoo.Splits(*(zoo.TensorSplit(a, b) for a, b in zip(xs, ys)), info=info)


def _sklearn(loader_name: str, task: str):
    def load(seed: int):
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)()
        names = [str(n) for n in getattr(bunch, "target_names", [])]
        meta = {"class_names": names} if task == "classification" else {}
        if loader_name == "load_digits":
            meta["image_shape"] = (8, 8)
        return make_splits(bunch.data, bunch.target, seed=seed, task=task, meta=meta)
    return load


def _synthetic(maker: str, **fixed):
    def load(seed: int, n_samples: int, noise: float):
        from sklearn import datasets

        zoo.check_range("data.n_samples", n_samples, 20)
        zoo.check_range("data.noise", noise, 0)
        x, y = getattr(datasets, maker)(n_samples=n_samples, noise=noise, random_state=seed, **fixed)
        return make_splits(x, y, seed=seed, task="classification", meta={"class_names": ["0", "1"]})
    return load


@zoo.hookimpl
def zoo_datasets():
    sk = [("digits", "load_digits", "classification", "8x8 handwritten digits as 64 features, 10 classes (1797)"),
          ("iris", "load_iris", "classification", "iris flowers, 4 features, 3 classes (150)"),
          ("wine", "load_wine", "classification", "wine cultivars, 13 features, 3 classes (178)"),
          ("breast_cancer", "load_breast_cancer", "classification", "tumours, 30 features, malignant or benign (569)"),
          ("diabetes", "load_diabetes", "regression", "diabetes progression, 10 features, standardised target (442)")]
    return [zoo.Dataset(name=n, kind="tabular", task=t, load=_sklearn(f, t), description=d) for n, f, t, d in sk] + [
        zoo.Dataset(name="moons", kind="tabular", task="classification", load=_synthetic("make_moons"),
                    defaults={"n_samples": 1000, "noise": 0.2}, description="two interleaving half circles in 2-D"),
        zoo.Dataset(name="circles", kind="tabular", task="classification", load=_synthetic("make_circles", factor=0.5),
                    defaults={"n_samples": 1000, "noise": 0.1}, description="a circle inside a circle in 2-D"),
    ]
