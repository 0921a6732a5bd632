"""The MLflow pyfunc wrapper of a Zoo model: what ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` run.

MLflow pickles the :class:`ZooPythonModel` instance; its class is an importable name in the installed Zoo and
its ``loader`` the name of one, so the pickle refers to them by name and holds no code. The weights
and the model's record travel as the model's artifacts (``artifacts/zoo/``) and are read by the
loader (``torch.load(weights_only=True)`` and JSON).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import mlflow.pyfunc
import pandas as pd

from zoo.tracking.models import ARTIFACT  # noqa: F401  (the folder load_context reads)


class ZooPythonModel(mlflow.pyfunc.PythonModel):
    """Loads a Zoo model from its artifact folder and answers ``predict`` with it.

    Args:
        loader: ``"module:function"``, a function of the installed Zoo, ``function(folder) -> model`` with
            ``model.predict(data, output, **params)`` (``zoo.models.packaged:load_folder``): imported when the
            model is loaded, not when it is logged (the run's writer logs it without torch). A model logged before
            holds the function itself, pickled by name.
    """

    def __init__(self, loader: str | Callable[[str], Any]):
        self.loader = loader
        self.model = None

    def load_context(self, context) -> None:
        load = self.loader
        if isinstance(load, str):
            module, _, name = load.partition(":")
            load = getattr(importlib.import_module(module), name)
        self.model = load(context.artifacts[ARTIFACT])

    # model_input may also be an array or a dict of arrays (the logged signature says which): the
    # DataFrame annotation only tells MLflow not to infer a schema from the annotation itself
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        return self.model.predict(model_input, **(params or {}))
