"""The benchmark's own dataset, as a Zoo plugin folder (``plugins.dir=benchmarks/plugins``).

``synthetic``: scikit-learn's ``make_classification``, 50,000 rows of 64 features in 10 classes by
default, generated from the seed (nothing is downloaded). It is the data of the benchmark's
heavier MLP workload; ``zoo train plugins.dir=benchmarks/plugins data=synthetic`` trains on it too.
"""

from __future__ import annotations

import torch

import zoo


def load_synthetic(seed: int, n_samples: int, n_features: int, n_classes: int):
    from sklearn.datasets import make_classification

    zoo.check_range("data.n_samples", n_samples, 20)
    zoo.check_range("data.n_features", n_features, 2)
    zoo.check_range("data.n_classes", n_classes, 2)
    x, y = make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_features // 2,
                               n_redundant=0, n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    tr, va, te = zoo.split_indices(n_samples, seed, stratify=y.numpy())
    xs = zoo.standardize(x[tr], x[va], x[te])
    info = zoo.DataInfo(kind="tabular", task="classification", input_shape=(n_features,), output_dim=n_classes,
                        meta={"class_names": [str(c) for c in range(n_classes)]})
    return zoo.Splits(*(zoo.TensorSplit(a, y[i]) for a, i in zip(xs, (tr, va, te))), info=info)


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(
        name="synthetic", kind="tabular", task="classification", load=load_synthetic,
        defaults={"n_samples": 50000, "n_features": 64, "n_classes": 10},
        smoke={"n_samples": 500},
        description="make_classification: 50,000 rows, 64 features, 10 classes (the benchmark's heavier MLP)",
    )]
