"""The built-in tasks: how a batch becomes a loss, which metrics to report, what a model outputs.

A dataset names its task; for each batch ``(inputs, target)`` the loop asks the task for
``loss(output, target, inputs)`` and feeds ``prepare(output, target, inputs)`` to the task's
metrics. The metrics are Zoo's own (``zoo.metrics``; a run of a built-in task never imports
torchmetrics): they accumulate on the device without a host sync per step, and reduce across
processes under DDP. Targets equal to ``zoo.IGNORE_INDEX`` do not count.

=================  ==========================================  ==============================
task               loss                                        metrics (``val/``, ``test/``)
=================  ==========================================  ==============================
classification     cross-entropy over examples or positions    accuracy
regression         mean squared error                          mse, r2
next_token         cross-entropy per position (nats per token)  accuracy, perplexity
reconstruction     MSE of the output against the input         mse
anomaly            MSE against the input (train on normal      auroc of the per-example
                   data only)                                  reconstruction error
=================  ==========================================  ==============================

These are declared through the ``zoo_tasks`` hook like any plugin's tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import zoo

# ----------------------------------------------------------------------------------- losses


def _flat_logits(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification over examples (B, C) or over positions (B, T, C) -> (N, C), (N,)."""
    return output.reshape(-1, output.shape[-1]), target.reshape(-1)


def _ce(output, target, inputs=None):
    return F.cross_entropy(*_flat_logits(output, target), ignore_index=zoo.IGNORE_INDEX)


def _flat_prepare(output, target, inputs):
    return _flat_logits(output, target)


def _mse(output, target, inputs=None):
    return F.mse_loss(output.reshape(target.shape), target)


def _flat_regression(output, target, inputs):
    return output.reshape(-1), target.reshape(-1)


def _reconstruction_loss(output, target, inputs):
    return F.mse_loss(output.reshape(inputs.shape), inputs)


def _reconstruction_prepare(output, target, inputs):
    return output.reshape(-1), inputs.reshape(-1)


def _anomaly_prepare(output, target, inputs):
    """Score each example by its reconstruction error; the target says whether it is an anomaly."""
    err = (output.reshape(inputs.shape) - inputs).pow(2).flatten(1).mean(1)
    return err, target.reshape(-1).long()


# ----------------------------------------------------------------------------------- metrics

def _classification_metrics(info: zoo.DataInfo):
    return {"accuracy": zoo.metrics.Accuracy()}


def _next_token_metrics(info: zoo.DataInfo):
    return {"accuracy": zoo.metrics.Accuracy(), "perplexity": zoo.metrics.Perplexity()}


def _regression_metrics(info: zoo.DataInfo):
    return {"mse": zoo.metrics.MeanSquaredError(), "r2": zoo.metrics.R2Score()}


def _reconstruction_metrics(info: zoo.DataInfo):
    return {"mse": zoo.metrics.MeanSquaredError()}


def _anomaly_metrics(info: zoo.DataInfo):
    return {"auroc": zoo.metrics.AUROC()}


# ----------------------------------------------------------------------------------- predictions
# What a trained model returns to a person (zoo.Task.predict): the logged model, zoo predict, zoo serve.

def _classify(output, inputs):
    return {"label": output.argmax(-1), "probabilities": output.softmax(-1)}


def _regress(output, inputs):
    return {"prediction": output}


def _next_token(output, inputs):
    last = output[:, -1]  # the prediction after the last position of each sequence
    return {"next_token": last.argmax(-1), "probabilities": last.softmax(-1)}


def _reconstruct(score: str):
    def predict(output, inputs):
        rec = output.reshape(inputs.shape)
        return {score: (rec - inputs).pow(2).flatten(1).mean(1), "reconstruction": rec}
    return predict


# ----------------------------------------------------------------------------------- output shapes


def _per_class(unit: str):
    """``(*target, output_dim)``: a score per class (or token) for every target."""
    def shape(info, inputs, target):
        if target is not None:
            return [(*target, info.output_dim)], f"target {target} + {info.output_dim} {unit}"
    return shape


def _like_target(info, inputs, target):
    if target is not None:
        return [target], "the target's shape"


def _like_input(info, inputs, target):
    if inputs is not None:
        return [inputs, (inputs[0], math.prod(inputs[1:]))], "the input's shape, or it flattened"


# ----------------------------------------------------------------------------------- targets


def _class_indices(info: zoo.DataInfo, target) -> str | None:
    """Integer labels must name a class (or a token): ``0..output_dim-1``, or ``IGNORE_INDEX`` to skip one;
    floating-point targets only as probabilities over the ``output_dim`` classes (last dimension)."""
    if not isinstance(target, torch.Tensor):
        return None  # a graph batch: the loss reads it
    if target.is_floating_point():
        if target.ndim >= 2 and target.shape[-1] == info.output_dim:
            return None  # class probabilities: the loss reads those
        return f"targets are {target.dtype}: class indices must be integers (torch.long)"
    bad = (target != zoo.IGNORE_INDEX) & ((target < 0) | (target >= info.output_dim))
    if not bad.any():
        return None
    return (f"{int(bad.sum())} labels are outside 0..{info.output_dim - 1} (e.g. {int(target[bad][0])}), but the "
            f"data declares output_dim={info.output_dim} classes ({zoo.IGNORE_INDEX} marks a target to skip)")


def _regression_targets(info, target):
    """Finite floating-point values, ``output_dim`` of them per example (the target's last dimension)."""
    if not isinstance(target, torch.Tensor):
        return None  # a graph batch: the loss reads it
    if not target.is_floating_point():
        return f"targets are {target.dtype}: regression targets must be floating point (torch.float32)"
    if not torch.isfinite(target).all():
        return f"{int((~torch.isfinite(target)).sum())} targets are NaN or infinite"
    width = target.shape[-1] if target.ndim > 1 else 1
    if width != info.output_dim:
        return f"targets have {width} value(s) per example (shape {tuple(target.shape)}), but output_dim={info.output_dim}"
    return None


def _anomaly_targets(info, target):
    """0 for a normal example, 1 for an anomaly."""
    if not isinstance(target, torch.Tensor):
        return None
    if target.is_floating_point() or not bool(((target == 0) | (target == 1)).all()):
        return f"targets must be 0 (normal) or 1 (anomaly) as integers, got {target.dtype} values {target.unique()[:5].tolist()}"
    return None


@zoo.hookimpl
def zoo_tasks():
    return [
        zoo.Task("classification", _ce, _classification_metrics, "accuracy", "max", _flat_prepare,
                 output_shape=_per_class("classes"), targets=_class_indices,
                 description="cross-entropy over examples or positions", predict=_classify),
        zoo.Task("regression", _mse, _regression_metrics, "mse", "min", _flat_regression,
                 output_shape=_like_target, targets=_regression_targets, description="mean squared error", predict=_regress),
        zoo.Task("next_token", _ce, _next_token_metrics, "perplexity", "min", _flat_prepare, per_position=True,
                 output_shape=_per_class("tokens in the vocabulary"), targets=_class_indices,
                 description="cross-entropy of the next token at every position", predict=_next_token),
        zoo.Task("reconstruction", _reconstruction_loss, _reconstruction_metrics, "mse", "min", _reconstruction_prepare,
                 per_position=True, output_shape=_like_input, description="MSE of the output against the input",
                 predict=_reconstruct("reconstruction_error")),
        zoo.Task("anomaly", _reconstruction_loss, _anomaly_metrics, "auroc", "max", _anomaly_prepare,
                 per_position=True, output_shape=_like_input, target_names=("normal", "anomaly"), targets=_anomaly_targets,
                 description="reconstruction error as the anomaly score (train on normal data only)",
                 predict=_reconstruct("anomaly_score")),
    ]
