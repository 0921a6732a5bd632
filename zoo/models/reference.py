"""Naming a trained model, and loading it: ``zoo.load_model(MODEL)``.

``MODEL`` is a run id (or a unique prefix of one; a sweep's parent run means its best child),
``runs:/<run id>/model``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
``models:/<name>/latest`` or ``models:/m-<logged model id>``, looked up in one store (the
``uri`` given, else ``MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``). A registered name is
the store's own registry: the names you (or your team) registered, nothing fetched from elsewhere.
"""

from __future__ import annotations

import os
import tempfile

from zoo.models.packaged import ZooModel, load_folder
from zoo.tracking import default_uri
from zoo.tracking.models import ARTIFACT, ModelRef, download, resolve


def store(uri: str | None = None) -> str:
    """The store a command reads: ``uri``, else ``MLFLOW_TRACKING_URI``, else the project's ``mlruns/``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def find(ref: str, uri: str | None = None) -> ModelRef:
    """The model ``ref`` names (a :class:`~zoo.tracking.models.ModelRef`); a one-line ZooError when none."""
    return resolve(store(uri), ref)


def load(ref: ModelRef, uri: str | None = None) -> ZooModel:
    """The :class:`ZooModel` behind a found reference (its weights and record, downloaded)."""
    with tempfile.TemporaryDirectory(prefix="zoo-model-") as tmp:  # everything is read into memory: no folder left
        model = load_folder(download(store(uri), ref, tmp) / "artifacts" / ARTIFACT)
    model.record = {**model.record, "source": str(ref)}
    return model


def load_model(ref: str, uri: str | None = None) -> ZooModel:
    """A trained model by name: the torch module with its data's preprocessing and its task's answers.

    Args:
        ref: a run id, ``runs:/<id>/model``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``.
        uri: the MLflow store (default: ``MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``).

    Returns:
        a :class:`zoo.models.packaged.ZooModel`: ``model(x)`` on raw inputs gives the network's output,
        ``model.predict(data)`` the answers (class labels, values in the target's units, ...),
        ``model.net`` the bare network.

    Example::

        model = zoo.load_model("models:/digits-mlp@champion")
        model.predict(pandas.read_csv("digits.csv"))      # a column "label"
    """
    return load(find(ref, uri), uri)
