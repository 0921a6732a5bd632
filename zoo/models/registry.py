"""Names for trained models: ``zoo register`` and ``zoo models`` over MLflow's Model Registry.

A registered version points at a run's logged model and carries what ``zoo models`` shows
without opening anything else: the architecture, the dataset, the task and the headline metric
(the test value of the metric the run monitored), as tags, and a description built from the run
(its architecture and settings, its data, its metrics) that the MLflow UI shows on the model's page.
"""

from __future__ import annotations

import fnmatch
import json

from zoo.errors import ZooError
from zoo.models.reference import find, store
from zoo.tracking import tags
from zoo.tracking.models import ModelRef, register, registered_versions, run_of

# the tags every registered version gets, and their column in `zoo models`
VERSION_TAGS = {"zoo.model": "architecture", "zoo.dataset": "dataset", "zoo.task": "task"}


def headline(run) -> tuple[str, float] | None:
    """The test value of the metric the run monitored (``test/accuracy`` for ``best/val_accuracy``)."""
    monitor = run.data.tags.get(tags.MONITOR, "")
    key = "test/" + monitor.split("best/val_", 1)[1] if monitor.startswith("best/val_") else None
    if key and key in run.data.metrics:
        return key, run.data.metrics[key]
    return None


def describe(run) -> str:
    """The version's description: what was trained on what, with which settings, and how well."""
    t, p = run.data.tags, run.data.params
    model, data = t.get(tags.MODEL, "?"), t.get(tags.DATASET, "?")
    settings = {k[len("model."):]: v for k, v in p.items() if k.startswith("model.") and k != "model.name"}
    data_settings = {k[len("data."):]: v for k, v in p.items() if k.startswith("data.") and k != "data.name"}
    tests = {k: v for k, v in sorted(run.data.metrics.items()) if k.startswith(("test/", "best/"))}
    lines = [f"{model} on {data} ({t.get(tags.TASK, '?')}), run {run.info.run_id} ({run.info.run_name})",
             "", f"- architecture: {model} {json.dumps(settings)}", f"- data: {data} {json.dumps(data_settings)}"
             f", seed {p.get('seed', '?')}",
             f"- training: optimizer {p.get('optimizer._target_', '?')} lr {p.get('optimizer.lr', '?')}, "
             f"{p.get('trainer.max_epochs', '?')} epochs, batch {p.get('trainer.batch_size', '?')}",
             "- metrics: " + (", ".join(f"{k}={v:.4g}" for k, v in tests.items()) or "none")]
    return "\n".join(lines)


def register_run_model(ref: str | ModelRef, name: str, alias: str | None = None, uri: str | None = None) -> dict:
    """Register the model ``ref`` names as a new version of ``name``; return what was registered.

    ``ref`` is a run id (a sweep's parent: its best child), ``runs:/``, ``models:/`` or a found
    :class:`ModelRef`. Raises a one-line :class:`ZooError` for an unknown run or one without a model.
    """
    uri = store(uri)
    if not name or not str(name).strip():
        raise ZooError("--name is empty: give the registered model a name, e.g. --name digits-mlp")
    found = ref if isinstance(ref, ModelRef) else find(ref, uri)
    run = run_of(uri, found.run_id)
    top = headline(run)
    version_tags = {k: run.data.tags.get(k, "") for k in VERSION_TAGS}
    if top:
        version_tags["zoo.metric"], version_tags["zoo.metric_value"] = top[0], f"{top[1]:.6g}"
    version = register(uri, found, name, alias=alias, description=describe(run), version_tags=version_tags)
    return {"name": name, "version": version, "alias": alias, "run_id": found.run_id, "model_id": found.model_id,
            "metric": top}


def list_models(pattern: str = "*", uri: str | None = None) -> list[dict]:
    """The registered versions whose model name matches ``pattern`` (shell wildcards, like timm's list_models)."""
    rows = [v for v in registered_versions(store(uri)) if fnmatch.fnmatchcase(v["name"], pattern or "*")]
    rows.sort(key=lambda v: (v["name"], -int(v["version"])))
    return rows
