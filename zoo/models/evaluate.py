"""``zoo eval MODEL [data=NAME] [data.*=...] [split=test]``: a trained model measured on a dataset's split.

The evaluation is a new MLflow run, linked to the model (MLflow's model input) and to the split
(a dataset input). It records:

* the task's own metrics on the split, as training computes them (``test/accuracy``, ``test/mse``,
  ...), linked to the model and the dataset, so ``mlflow.search_logged_models`` sees them;
* the figures a person expects (:mod:`zoo.models.figures`);
* for tabular classification and regression, ``mlflow.models.evaluate`` on the raw rows through
  the logged pyfunc (its metrics and its own artifacts, in the data's original units).

The model sees the data as it saw its training data: a split is taken back to raw units with the
dataset's own preprocessing, then through the model's (so another seed, or another dataset of
the same shape, is measured fairly).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.models import figures
from zoo.models.log import dataset_records
from zoo.models.packaged import ZooModel, preprocessing_step
from zoo.models.reference import find, load, store
from zoo.plugin.data import TensorSplit
from zoo.plugin.declarations import IGNORE_INDEX, DataInfo

SPLITS = ("train", "val", "test")
BATCH = 1024


def check_fits(model: ZooModel, name: str, info: DataInfo) -> None:
    """A one-line ZooError when the dataset is not what the model takes (kind, task, shape, classes, vocabulary)."""
    what = f"model {model.architecture} (trained on {model.dataset}: {model.info.kind} {tuple(model.info.input_shape)}"
    if info.kind != model.info.kind or info.task != model.info.task:
        raise ZooError(f"{what}, {model.info.task}) does not fit data={name} ({info.kind}, {info.task}): "
                       f"evaluate it on {model.info.kind} data for {model.info.task}")
    shape, mine = tuple(info.input_shape), tuple(model.info.input_shape)
    shorter_text = info.kind == "text" and len(shape) == 1 and shape[0] <= mine[0]
    if shape != mine and not shorter_text:
        raise ZooError(f"{what}) does not fit data={name}, whose inputs have the shape {shape}: "
                       f"give data settings that make inputs of shape {mine}")
    if info.task == "classification":
        theirs = [str(c) for c in info.meta.get("class_names", [])]
        if info.output_dim != model.info.output_dim or (theirs and theirs != model.class_names):
            raise ZooError(f"{what}) predicts {model.info.output_dim} classes ({', '.join(model.class_names[:8])}); "
                           f"data={name} has {info.output_dim} ({', '.join(theirs[:8]) or 'unnamed'}): "
                           f"train a model on it (zoo train init_from=... data={name})")
    if "itos" in model.info.meta and list(info.meta.get("itos", [])) != list(model.info.meta["itos"]):
        raise ZooError(f"{what}) reads a vocabulary of {len(model.info.meta['itos'])} tokens; data={name} uses "
                       f"another one ({len(info.meta.get('itos', []))} tokens)")


def _scale(meta: dict, name: str):
    spec = preprocessing_step(meta, name)
    if not spec:
        return None
    return torch.as_tensor(spec["mean"], dtype=torch.float32), torch.as_tensor(spec["std"], dtype=torch.float32)


def raw_split(model: ZooModel, info: DataInfo, split):
    """The split in the data's raw units: ``(x_raw, y_raw)`` tensors, or the split itself when it has no scaling."""
    steps, mine = info.meta.get("preprocessing") or {}, model.info.meta.get("preprocessing") or {}
    if not isinstance(split, TensorSplit):
        if json.dumps(steps, sort_keys=True) != json.dumps(mine, sort_keys=True):
            raise ZooError(f"data's preprocessing differs from model {model.architecture}'s and its split is not "
                           f"held in memory: evaluate it on the data it was trained with")
        return split
    x, y = split.x.cpu(), split.y.cpu()
    into, target = _scale(info.meta, "input"), _scale(info.meta, "target")
    if into is not None and x.is_floating_point():
        x = x * into[1] + into[0]
    if target is not None:
        y = y * target[1] + target[0]
    return TensorSplit(x, y)


@torch.no_grad()
def measure(model: ZooModel, split, prefix: str) -> tuple[dict[str, float], list[tuple]]:
    """The task's loss and metrics on a raw split, as training computes them; and each batch's
    ``(prepared predictions, prepared targets, inputs, outputs)`` for the figures."""
    task = model.task
    metrics = task.metrics(model.info)
    total, count, kept = 0.0, 0, []
    for x, y in split.batches(BATCH):
        inputs = model.preprocess(x)
        out = model.net(inputs)
        if model.target_mean is not None and y.is_floating_point():
            y = (y - model.target_mean) / model.target_std  # the target as the network learned it
        total += float(task.loss(out, y, inputs)) * len(y)
        count += len(y)
        preds, target = task.prepare(out, y, inputs)
        for m in metrics.values():
            m.update(preds, target)
        kept.append((preds, target, inputs, out))
    result = {f"{prefix}/loss": total / max(count, 1)}
    result.update({f"{prefix}/{k}": float(m.compute()) for k, m in metrics.items()})
    return result, kept


def draw(model: ZooModel, kept: list[tuple], folder: Path, with_confusion: bool) -> list[Path]:
    """The split's figures for the model's task (see :mod:`zoo.models.figures`)."""
    preds = torch.cat([k[0].reshape(len(k[0]), -1) if k[0].ndim > 1 else k[0] for k in kept]).float()
    target = torch.cat([k[1] for k in kept])
    task, paths = model.info.task, []
    if task in ("classification", "next_token") and preds.ndim == 2:
        keep = target != IGNORE_INDEX
        probs, labels = preds[keep].softmax(-1).numpy(), target[keep].long().numpy()
        names = model.class_names if task == "classification" else [str(t) for t in model.info.meta.get("itos", [])]
        if task == "classification":
            if with_confusion:
                paths.append(figures.confusion(labels, probs.argmax(-1), names, folder / "confusion_matrix.png"))
            paths.append(figures.roc_pr(probs, labels, names, folder / "roc_pr.png"))
    elif task == "regression":
        p, t = preds.numpy(), target.float().numpy()
        if model.target_std is not None and model.target_std.numel() == 1:  # back to the target's own units
            scale, shift = float(model.target_std), float(model.target_mean)
            p, t = p * scale + shift, t * scale + shift
        paths.append(figures.residuals(p, t, folder / "residuals.png"))
    elif task in ("anomaly", "reconstruction"):
        shape = model.info.meta.get("image_shape")
        inputs, outputs = kept[0][2], kept[0][3]
        if shape:
            paths.append(figures.reconstructions(inputs.numpy(), outputs.reshape(inputs.shape).numpy(), shape,
                                                 folder / "reconstructions.png"))
        if task == "anomaly":
            scores, labels = preds.numpy(), target.long().numpy()
            names = list(model.task.target_names) or ["normal", "anomaly"]
            paths.append(figures.roc_pr(scores, labels, names, folder / "roc_pr.png"))
            paths.append(figures.score_histogram(scores, labels, names, folder / "anomaly_score.png",
                                                 "anomaly score"))
    return paths


def _frame(model: ZooModel, split: TensorSplit):
    """The raw rows with the target as a column ``target`` (class names for a classifier), for MLflow's evaluate."""
    import pandas as pd

    df = pd.DataFrame(split.x.reshape(len(split.x), -1).numpy().astype(np.float64), columns=model.feature_names)
    y = split.y.numpy()
    df["target"] = np.asarray(model.class_names, dtype=object)[y] if model.info.task == "classification" \
        else y.reshape(len(y), -1)[:, 0].astype(np.float64)
    return df


def compose_data(model: ZooModel, data: str | None, overrides: Sequence[str], registry=None):
    """The dataset's name and settings: ``data=NAME`` (default: the model's own, with its settings) and
    ``data.<key>=value`` overrides, composed and checked as ``zoo train`` does; and the registry."""
    from zoo.config import check_choices, check_plugin_settings, compose, override_value, register_configs
    from zoo.plugin.registry import default_registry

    registry = registry or default_registry()
    name = data or model.dataset
    check_choices([f"data={name}"], registry)
    base = model.record["data"].get("settings", {}) if name == model.dataset else {}
    register_configs(registry)
    composed = [f"+data={name}", *(f"data.{k}={override_value(v)}" for k, v in base.items()), *overrides]
    try:
        cfg = compose(composed, config_name=None)
    except Exception as exc:  # Hydra's own message for an unknown key or a bad value
        raise ZooError(f"{' '.join(overrides) or 'data=' + name}: {str(exc).splitlines()[0]}") from None
    from omegaconf import OmegaConf

    plain = {"data": OmegaConf.to_container(cfg.data, resolve=True)}
    check_plugin_settings(plain, "data", registry.dataset(name))
    return name, {k: v for k, v in plain["data"].items() if k != "name"}, registry


def evaluate(ref: str, *, data: str | None = None, data_overrides: Sequence[str] = (), split: str = "test",
             seed: int | None = None, uri: str | None = None, experiment: str | None = None, registry=None) -> dict:
    """Measure the model ``ref`` names on a split of a dataset in a new run; return the metrics and the run id."""
    from zoo.tracking import Tracker, tags
    from zoo.tracking.models import evaluate_pyfunc, experiment_of, run_of

    if split not in SPLITS:
        raise ZooError(f"split={split!r} is not a split: choose {', '.join(SPLITS)}")
    uri = store(uri)
    found = find(ref, uri)
    model = load(found, uri)
    name, settings, registry = compose_data(model, data, data_overrides, registry)
    seed = model.record["data"].get("seed", 0) if seed is None else seed
    entry = registry.dataset(name)
    splits = registry.load_dataset(name, seed, **settings)
    check_fits(model, name, splits.info)
    part = raw_split(model, splits.info, getattr(splits, split))
    source = run_of(uri, found.run_id) if found.run_id else None
    experiment = experiment or (experiment_of(uri, source) if source else None) or "zoo"
    task = model.task
    tracker = Tracker(uri, experiment, system_metrics=False)
    params = {"eval": {"model": str(ref), "model_uri": found.uri, "split": split}, "data": {"name": name, **settings},
              "seed": seed}
    run_tags = {tags.MODEL: model.architecture, tags.DATASET: name, tags.TASK: task.name, tags.EVALUATED_MODEL: found.uri}
    with tracker.run(run_name=f"eval-{model.architecture}-{name}-{split}", params=params, tags=run_tags) as run:
        records = [r for r in dataset_records(splits, name, entry.plugin, settings, seed) if r["split"] == split]
        linked = run.datasets(records).get(split)
        if found.model_id:
            run.model_input(found.model_id)
        metrics, kept = measure(model, part, split)
        run.linked_metrics(metrics, 0, found.model_id, linked)
        tabular = model.info.kind == "tabular" and task.name in ("classification", "regression") and \
            isinstance(part, TensorSplit) and model.info.output_dim >= 1
        with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
            for path in draw(model, kept, Path(tmp), with_confusion=not tabular):
                run.artifact(path, "plots")
            run.flush()  # the writer has copied them before the folder goes
        if tabular and (task.name == "classification" or model.info.output_dim == 1):
            kind = "classifier" if task.name == "classification" else "regressor"
            metrics.update(evaluate_pyfunc(run.run_id, found.uri, _frame(model, part), "target", kind, f"{name} ({split}, raw)"))
    return {**metrics, "run_id": tracker.run_id, "experiment_id": tracker.experiment_id, "model_uri": found.uri}
