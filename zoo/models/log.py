"""What a training run records about its data and its model.

:func:`dataset_records` describes the run's train/val/test splits for MLflow's dataset inputs
(name, arrays or the file's digest, source); :func:`log_model` turns the trained network into a
:class:`ZooModel` with its data's preprocessing and logs it as the run's MLflow model, with an
example of raw input, the signature of what it answers, and the step of the best epoch.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from zoo.models import frames, io
from zoo.models.packaged import ZooModel, load_folder, make_record
from zoo.plugin.data import TensorSplit

EXAMPLE_ROWS = 5
LOADER = "zoo.models.packaged:load_folder"  # what the logged pyfunc loads the model with (zoo.tracking.pyfunc)


def dataset_records(splits, name: str, plugin: str, settings: dict, seed: int) -> list[dict]:
    """One record per split for :func:`zoo.tracking.models.log_datasets`."""
    about = {"zoo.dataset": name, "zoo.data_plugin": plugin, "seed": seed,
             **{f"data.{k}": v for k, v in settings.items()}}
    out = []
    for split in ("train", "val", "test"):
        part = getattr(splits, split)
        features = targets = None
        if isinstance(part, TensorSplit):  # in memory: MLflow hashes the arrays and records their schema
            features, targets = part.x.detach().cpu().numpy(), part.y.detach().cpu().numpy()
        out.append({"split": split, "name": name, "features": features, "targets": targets,
                    "source": splits.info.meta.get("source"), "about": about})
    return out


def requirements(kind: str) -> list[str]:
    """The model's pip requirements, stated (MLflow would otherwise load the model to infer them)."""
    wanted = ["torch", "mlflow", "numpy", "pandas"] + (["torch-geometric"] if kind == "graph" else [])
    pins = []
    for dist in wanted:
        try:
            pins.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def raw_inputs(model: ZooModel, split, n: int = EXAMPLE_ROWS) -> dict:
    """The first ``n`` examples of a split as a person would give them (raw units, named columns, text), as
    plain arrays: ``{"graph": {...}}``, ``{"text": [...]}``, ``{"rows": array, "columns": names}`` or
    ``{"array": array}``. :func:`zoo.models.frames.as_example` makes them the model's input example (pandas, where
    MLflow logs the model: the training process does not import it for this)."""
    x = split.example(n)
    kind = model.info.kind
    if kind == "graph":
        batch = getattr(x, "batch", None)
        graph = {"x": _raw(model, x.x).numpy().astype(np.float64), "edge_index": x.edge_index.cpu().numpy()}
        if batch is not None:
            graph["batch"] = batch.cpu().numpy()
        return {"graph": graph}
    x = x.detach().cpu()
    if kind == "text" and not x.is_floating_point():
        return {"text": [io.decode(model, row.tolist()) for row in x]}
    raw = _raw(model, x).numpy().astype(np.float64)
    if kind == "tabular":
        return {"rows": raw.reshape(len(raw), -1), "columns": list(model.feature_names)}
    return {"array": raw}


def raw_example(model: ZooModel, split, n: int = EXAMPLE_ROWS):
    """The first ``n`` examples of a split as a person would give them: raw units, named columns, text."""
    return frames.as_example(raw_inputs(model, split, n))


def _raw(model: ZooModel, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().cpu().float()
    return x if model.input_mean is None else x * model.input_std + model.input_mean


def log_model(run, net, splits, *, arch, dataset, settings: dict, data_settings: dict, seed: int, task,
              step: int, wait: bool = True):
    """Log ``net`` with its data's preprocessing as the run's MLflow model; return its model id.

    The model is loaded back from what was saved and answers its example (the first rows of the test split,
    raw) before it is logged, so a model that would not load or answer is an error of the run, not of someone
    who uses it later. The run's writer makes the example's DataFrames from those arrays
    (:func:`zoo.models.frames.examples`): it logs the model without torch. ``wait=False``: return at once a
    function that waits for the model id (the run's writer logs the model meanwhile: the caller draws its
    plots); the saved files are removed once it was called.
    """
    record = make_record(architecture=arch.decl.name, plugin=arch.plugin, settings=settings,
                         dataset=dataset.decl.name, data_settings=data_settings, seed=seed, info=splits.info,
                         run_id=run.run_id)
    model = ZooModel(copy.deepcopy(net).cpu().eval(), splits.info, task, record)
    tmp = tempfile.TemporaryDirectory(prefix="zoo-model-")
    try:
        folder = Path(tmp.name) / "zoo"
        model.save(folder)
        loaded = load_folder(folder)
        raw = raw_inputs(model, splits.test)
        answer = io.answers(loaded, next(raw[k] for k in ("graph", "text", "rows", "array") if k in raw))
        meta = {"zoo_architecture": arch.decl.name, "zoo_dataset": dataset.decl.name, "zoo_task": task.name,
                "zoo_kind": splits.info.kind}
        pending = run.model(folder, wait=False, loader=LOADER,
                            examples=functools.partial(frames.examples, raw, answer, io.default_params(loaded)),
                            step=step, metadata=meta, requirements=requirements(splits.info.kind),
                            model_tags={"zoo.model": arch.decl.name, "zoo.dataset": dataset.decl.name,
                                        "zoo.task": task.name})
    except BaseException:
        tmp.cleanup()
        raise

    def model_id() -> str | None:
        try:
            return pending()
        finally:
            tmp.cleanup()

    return model_id() if wait else model_id
