"""MLflow's model and dataset records: logged models, dataset inputs, the Model Registry.

Everything Zoo asks of MLflow about trained models goes through here: logging a model as a
pyfunc (:func:`log_pyfunc`) with its step, signature and example; a run's train/val/test data as
dataset inputs (:func:`log_datasets`); metrics linked to a model and a dataset
(:func:`log_linked_metrics`); a run's model as the input of another run (:func:`log_model_input`);
naming a model (:func:`resolve`: a run id, ``runs:/``, ``models:/name/version``,
``models:/name@alias``, ``models:/m-<id>``); the registry (:func:`register`,
:func:`registered_versions`); and fetching a model's files (:func:`download`).

``models:/`` names are looked up in the store's own registry (the tracking URI's, or
``MLFLOW_REGISTRY_URI``): the user's own names, nothing fetched from elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from zoo.errors import ZooError, one_line
from zoo.tracking import tags
from zoo.tracking.runs import Runs, short

MODEL_NAME = "model"  # the name a run's model is logged under (runs:/<id>/model)
ARTIFACT = "zoo"  # the model's artifact (a folder) that holds its weights and record: artifacts/zoo/
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}  # the split -> MLflow's input context


@dataclass(frozen=True)
class ModelRef:
    """A model found by its reference: the URI MLflow loads, and where it came from."""

    uri: str  # what mlflow.pyfunc.load_model / mlflow models serve take
    model_id: str | None
    run_id: str | None
    name: str | None = None  # a registered model's name ...
    version: str | None = None  # ... and version

    def __str__(self) -> str:
        return f"{self.name} version {self.version}" if self.name else self.uri


# ------------------------------------------------------------------------------ writing
def log_pyfunc(folder: Path, *, run_id: str, loader: str, examples, step: int, metadata: dict,
               requirements: Sequence[str], model_tags: dict | None = None) -> str:
    """Log the model in ``folder`` (weights and record) as a pyfunc of run ``run_id``; return its model id.

    ``loader``: ``"module:function"`` of the installed Zoo that loads the folder (:class:`ZooPythonModel`).
    ``examples() -> (input example, output example, params)``: the model's examples and default params, made
    here (by the writer process, by default) from plain arrays (:func:`zoo.models.frames.examples`): logging a
    model imports neither torch nor the model.

    ``mlflow.pyfunc.log_model`` for a run given by its id (the store is MLflow's tracking URI: the
    writer process's, or the one the Tracker set).
    """
    from mlflow.models import Model, infer_signature

    from zoo.tracking.pyfunc import ZooPythonModel

    prepare_model_logging()  # done ahead by the writer's warm-up, or being done: not twice
    input_example, output_example, params = examples()
    signature = infer_signature(input_example, output_example, params=params or None)
    with _quiet(), _active(run_id):  # the logged model's experiment is the active run's
        info = Model.log(None, _PYFUNC, name=MODEL_NAME, run_id=run_id, python_model=ZooPythonModel(loader),
                         artifacts={ARTIFACT: str(folder)}, signature=signature,
                         input_example=(input_example, params) if params else input_example,
                         pip_requirements=list(requirements), metadata=metadata, step=step,
                         tags={k: str(v) for k, v in (model_tags or {}).items()}, validate_serving_input=False)
    return info.model_id


def _save_pyfunc(path, mlflow_model=None, validate_serving_input=None, **kwargs):
    """``mlflow.pyfunc.save_model``, as the flavor ``Model.log`` saves with (:data:`_PYFUNC`)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.save_model(path, mlflow_model=mlflow_model, **kwargs)


# MLflow's pyfunc flavor (by its name, for the logged model's record), less the load-and-predict check of the
# serving example that Model.log runs after saving: its ``validate_serving_input`` switch, which
# mlflow.transformers passes and pyfunc's own save_model would refuse. The training process checked already
# that the saved model loads and answers its example (zoo.models.log.log_model), and a failed check would
# only be MLflow's warning. The files saved are the same, serving_input_example.json included.
_PYFUNC = SimpleNamespace(__name__="mlflow.pyfunc", save_model=_save_pyfunc)


_PREPARING = threading.Lock()


def prepare_model_logging() -> None:
    """Do ahead what :func:`log_pyfunc` does first (the writer process calls it while the run trains).

    Import MLflow's pyfunc, signature and example machinery and Zoo's pyfunc wrapper, and have MLflow
    map the installed distributions to their modules: its check of the model's requirements against
    this environment reads every installed distribution's file list (0.3-0.9 s), once per process.
    :func:`log_pyfunc` calls it too: it waits for a warm-up that is doing it instead of mapping a second time.
    """
    with _PREPARING:
        import mlflow.models.signature  # noqa: F401
        import mlflow.models.utils  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
        from mlflow.utils import requirements_utils

        import zoo.tracking.pyfunc  # noqa: F401

        packages = getattr(requirements_utils, "_init_modules_to_packages_map", None)  # MLflow's own cache
        if packages is not None:
            packages()


@contextlib.contextmanager
def _active(run_id: str):
    """Run ``run_id`` as MLflow's active run of this thread for the block (what MLflow's model logging and
    evaluation infer the experiment and the run from), then no longer, still RUNNING: its Tracker ends it."""
    import mlflow

    mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None, log_system_metrics=False)
    try:
        yield
    finally:
        mlflow.end_run("RUNNING")


class _NotPickleWarning(logging.Filter):
    """MLflow warns that a pickled ``python_model`` may run code when loaded; Zoo's pickle holds two
    names of the installed Zoo (a class and a function) and no code, so the warning says nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "serialized using CloudPickle" not in record.getMessage()


@contextlib.contextmanager
def _quiet():
    """No progress bars or pickle warning while MLflow saves the model and checks it loads."""
    log = logging.getLogger("mlflow.pyfunc")
    quiet = _NotPickleWarning()
    log.addFilter(quiet)
    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        yield
    finally:
        log.removeFilter(quiet)
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)


def _source(source: dict | None, fallback: dict):
    """A file's path as MLflow's local file source; otherwise the plugin and settings that made the data."""
    import warnings

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if source and source.get("path"):
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local file source
            warnings.simplefilter("ignore")
            return resolve_dataset_source(str(source["path"]))
    return CodeDatasetSource(tags={k: str(v) for k, v in fallback.items()})


def log_datasets(client, run_id: str, records: Sequence[dict]) -> dict[str, tuple[str, str]]:
    """Log each split as a dataset input of the run, in one request; return ``split -> (name, digest)``.

    A record: ``split`` (train, val, test), ``name``, ``features`` and ``targets`` (arrays, or
    ``None`` for data not held in memory), ``source`` (``DataInfo.meta["source"]``: path, size,
    digest, when the data came from a file), ``about`` (what names the data otherwise: plugin,
    settings, seed). With arrays MLflow computes the digest and the schema; without them the
    digest is the file's (or the description's) hash, with the split's name.
    """
    import hashlib
    import json

    import mlflow.data
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs, found = [], {}
    for r in records:
        source = _source(r.get("source"), r.get("about", {}))
        file_digest = (r.get("source") or {}).get("digest")
        if r.get("features") is not None and not file_digest:
            ds = mlflow.data.from_numpy(r["features"], source=source, targets=r.get("targets"), name=r["name"])
        else:
            basis = file_digest or hashlib.sha256(json.dumps(r.get("about", {}), sort_keys=True).encode()).hexdigest()
            ds = MetaDataset(source=source, name=r["name"], digest=f"{basis[:10]}-{r['split']}")
        found[r["split"]] = (ds.name, ds.digest)
        inputs.append(DatasetInput(ds._to_mlflow_entity(),
                                   tags=[InputTag("mlflow.data.context", CONTEXTS.get(r["split"], r["split"]))]))
    for attempt in range(3):  # jobs of one sweep in parallel record the same dataset at the same moment:
        try:                  # the loser of MLflow's insert finds the winner's record when it tries again
            client.log_inputs(run_id, datasets=inputs)
            break
        except Exception as exc:
            if not any(m in str(exc) for m in ("UNIQUE constraint failed: datasets", "duplicate key value")) \
                    or attempt == 2:
                raise
    return found


def log_linked_metrics(client, run_id: str, metrics: dict[str, float], step: int, model_id: str | None,
                       dataset: tuple[str, str] | None) -> None:
    """Metrics of the run that belong to ``model_id`` measured on ``dataset`` (name, digest): MLflow 3's links."""
    from mlflow.entities import Metric

    name, digest = dataset or (None, None)
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, int(step), model_id=model_id, dataset_name=name,
                                             dataset_digest=digest) for k, v in metrics.items()])


def log_model_input(client, run_id: str, model_id: str) -> None:
    """Record ``model_id`` as an input of the run (where it started from, or what it evaluated)."""
    from mlflow.entities import LoggedModelInput

    client.log_inputs(run_id, models=[LoggedModelInput(model_id)])


# ------------------------------------------------------------------------------ finding a model
def _store_name(uri: str) -> str:
    return uri if len(uri) < 80 else "..." + uri[-77:]


def _logged_model_id(source: str | None) -> str | None:
    """``m-...`` from a version's source ``models:/m-...`` (MLflow 3 leaves ``model_id`` unset on versions)."""
    found = re.fullmatch(r"models:/(m-[0-9a-f]+)/?", source or "")
    return found.group(1) if found else None


def _run_model(runs: Runs, run) -> ModelRef:
    """The model a run logged (a sweep's parent: its best child's)."""
    best = run.data.tags.get(tags.BEST_RUN_ID)
    if best:
        run = runs.client.get_run(best)
    outputs = list(getattr(run.outputs, "model_outputs", None) or [])
    if not outputs:
        raise ZooError(f"run {short(run)} has no model: it was trained with tracking.log_model=false or ended "
                       f"{run.info.status} before logging one; train it again to get one")
    model_id = max(outputs, key=lambda o: o.step).model_id
    return ModelRef(f"models:/{model_id}", model_id, run.info.run_id)


def _version(client, name: str, spec: str):
    """A registered model's version by number, ``latest``, or ``@alias``."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=200))
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ZooError(f"no registered model '{name}' in this store.{hint} Registered: "
                       f"{', '.join(known[:10]) or 'none'} (zoo models lists them)") from None
    versions = client.search_model_versions(f"name = '{name}'")
    numbers = sorted(int(v.version) for v in versions)
    if spec.startswith("@"):
        try:
            return client.get_model_version_by_alias(name, spec[1:])
        except MlflowException:
            aliases = sorted(dict(client.get_registered_model(name).aliases or {}))
            raise ZooError(f"model '{name}' has no alias '{spec[1:]}': its aliases are "
                           f"{', '.join(aliases) or 'none'} (versions {', '.join(map(str, numbers))})") from None
    if spec == "latest" and numbers:
        spec = str(numbers[-1])
    if not spec.isdecimal() or int(spec) not in numbers:
        raise ZooError(f"model '{name}' has no version {spec!r}: its versions are {', '.join(map(str, numbers)) or 'none'}")
    return client.get_model_version(name, spec)


def resolve(uri: str, ref: str) -> ModelRef:
    """The model ``ref`` names in the store at ``uri``; a one-line :class:`ZooError` when there is none.

    ``ref``: a run id (or a unique prefix; a sweep's parent means its best child), ``runs:/<id>/model``,
    ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<name>/latest``, ``models:/m-<model id>``.
    """
    from mlflow.exceptions import MlflowException

    ref = str(ref).strip()
    runs = Runs.open(uri)
    client = runs.client
    if ref.startswith("models:/"):
        body = ref[len("models:/"):].strip("/")
        if body.startswith("m-") and "/" not in body and "@" not in body:
            try:
                model = client.get_logged_model(body)
            except MlflowException:
                raise ZooError(f"no logged model '{body}' in {_store_name(uri)}") from None
            return ModelRef(ref, model.model_id, model.source_run_id)
        name, sep, spec = body.partition("@") if "@" in body else body.rpartition("/")
        if not name:
            raise ZooError(f"{ref} names no model: write models:/NAME/VERSION or models:/NAME@ALIAS")
        mv = _version(client, name, ("@" + spec) if sep == "@" else spec)
        model_id = getattr(mv, "model_id", None) or _logged_model_id(mv.source)
        return ModelRef(f"models:/{name}/{mv.version}", model_id, mv.run_id, name, mv.version)
    if ref.startswith("runs:/"):
        run_id = ref[len("runs:/"):].split("/", 1)[0]
        return _run_model(runs, runs.resolve(run_id))
    if "/" in ref or ":" in ref:
        raise ZooError(f"{ref!r} does not name a model: give a run id, runs:/<run id>/model, "
                       f"models:/<name>/<version> or models:/<name>@<alias>")
    return _run_model(runs, runs.resolve(ref))


def download(uri: str, ref: ModelRef, dest: str | os.PathLike) -> Path:
    """The model's files (the MLmodel, the pyfunc and ``artifacts/zoo/``) fetched into the folder ``dest``."""
    import mlflow

    try:
        mlflow.set_tracking_uri(uri)
        with _quiet():
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dest), tracking_uri=uri))
    except Exception as exc:
        raise ZooError(f"cannot fetch the files of {ref}: {one_line(exc, 200)}") from None


def run_of(uri: str, run_id: str):
    import mlflow

    return mlflow.MlflowClient(uri).get_run(run_id)


def experiment_of(uri: str, run) -> str | None:
    """The name of the experiment ``run`` belongs to."""
    import mlflow

    exp = mlflow.MlflowClient(uri).get_experiment(run.info.experiment_id)
    return exp.name if exp else None


def evaluate_pyfunc(run_id: str, model_uri: str, frame, targets: str, model_type: str,
                    name: str) -> dict[str, float]:
    """``mlflow.models.evaluate`` of the logged pyfunc on raw rows (a dataset called ``name``), logged to
    run ``run_id`` (made MLflow's active run for the call, and left RUNNING: its Tracker ends it); its metrics."""
    import mlflow
    import mlflow.data

    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's notes on the evaluator's choices, for a person at a notebook
        data = mlflow.data.from_pandas(frame, targets=targets, name=name)
        with _active(run_id):
            result = mlflow.models.evaluate(model_uri, data=data, model_type=model_type,
                                            evaluators=["default"],
                                            evaluator_config={"default": {"log_model_explainability": False}})
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}


# ------------------------------------------------------------------------------ the registry
def register(uri: str, ref: ModelRef, name: str, *, alias: str | None, description: str,
             version_tags: dict[str, Any]) -> str:
    """Register ``ref`` (a logged model) as a new version of ``name`` (created when new); return the version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description=f"Zoo models: {description.splitlines()[0]}")
        except MlflowException as exc:
            raise ZooError(f"--name {name!r}: MLflow refuses it as a model name ({one_line(exc, 150)})") from None
    mv = client.create_model_version(name, ref.uri, run_id=ref.run_id, description=description,
                                     tags={k: str(v) for k, v in version_tags.items()}, model_id=ref.model_id)
    if alias:
        try:
            client.set_registered_model_alias(name, alias, mv.version)
        except MlflowException as exc:
            raise ZooError(f"--alias {alias!r}: {one_line(exc, 150)} (version {mv.version} is registered)") from None
    return str(mv.version)


def registered_versions(uri: str) -> list[dict]:
    """Every version of every registered model: name, version, aliases, tags, run id, description."""
    client = Runs.open(uri).client
    out = []
    for model in client.search_registered_models(max_results=1000):
        aliases = dict(model.aliases or {})  # alias -> version (versions found by search carry none)
        for mv in client.search_model_versions(f"name = '{model.name}'"):
            mine = sorted(a for a, v in aliases.items() if str(v) == str(mv.version))
            out.append({"name": model.name, "version": str(mv.version), "aliases": mine,
                        "tags": dict(mv.tags or {}), "run_id": mv.run_id, "description": mv.description or "",
                        "created": mv.creation_timestamp})
    return out
