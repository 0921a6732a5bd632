"""Image datasets (kind ``image``): inputs are ``(C, H, W)`` float tensors.

* ``digits_image``: scikit-learn's 8x8 digits as 1x8x8 images, pixels / 16 in [0, 1], to reconstruct.
* ``digits_image_anomaly``: the same images with one digit class held out of training as the anomaly.
* ``digits_image_labels``: the same images with their labels (0-9), to classify: what an image
  classifier is trained on and what the contract kit checks one against
  (``Architecture(kinds=("image",), tasks=("classification",))``).

Nothing is downloaded; the splits are those of their tabular twins in ``zoo_builtins.tabular``
(``digits_recon``, ``digits_anomaly``; the same 70/15/15 split, stratified by label, for
``digits_image_labels``), the same examples reshaped.
"""

from __future__ import annotations

import zoo
from zoo_builtins.tabular import ANOMALY_CLASS, digit_anomaly_splits, digit_meta, digit_pixels, reconstruction_splits


def load_digits_image(seed: int) -> zoo.Splits:
    x, y = digit_pixels()
    return reconstruction_splits(x.reshape(-1, 1, 8, 8), y, seed=seed, kind="image", meta=digit_meta(image=True))


def load_digits_image_anomaly(seed: int, anomaly_class: int = ANOMALY_CLASS) -> zoo.Splits:
    return digit_anomaly_splits(seed, anomaly_class, image=True)


def load_digits_image_labels(seed: int) -> zoo.Splits:
    x, y = digit_pixels()
    x = x.reshape(-1, 1, 8, 8)
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy())
    info = zoo.DataInfo(kind="image", task="classification", input_shape=tuple(x.shape[1:]), output_dim=10,
                        meta=digit_meta())
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in (tr, va, te)), info=info)


@zoo.hookimpl
def zoo_datasets():
    return [
        zoo.Dataset(name="digits_image", kind="image", task="reconstruction", load=load_digits_image,
                    description="8x8 digits as 1x8x8 images in [0, 1], to reconstruct (1797)"),
        zoo.Dataset(name="digits_image_anomaly", kind="image", task="anomaly", load=load_digits_image_anomaly,
                    description="digits as 1x8x8 images; one class held out of training is the anomaly"),
        zoo.Dataset(name="digits_image_labels", kind="image", task="classification", load=load_digits_image_labels,
                    description="8x8 digits as 1x8x8 images in [0, 1] with their labels, 10 classes (1797)"),
    ]
