"""A trained network with the preprocessing its data went through: raw inputs in, a person's answers out.

:class:`ZooModel` is what ``zoo.load_model`` returns and what the logged MLflow model wraps. It
holds the network, the :class:`zoo.DataInfo` of the data it was trained on (with the dataset's
``meta["preprocessing"]``: the training split's statistics, the target's scale, the image size),
and the :class:`zoo.Task` whose ``predict`` says what the output means. On disk it is two files:

* ``weights.pt``: the network's state dict, read back with ``torch.load(weights_only=True)``
  (tensors only, never code);
* ``zoo_model.json``: the architecture's name and settings, the data's name, settings, shape,
  task and meta, and the run it came from.

Loading rebuilds the network by its architecture's name through the *installed* plugins (the
entry points and ``ZOO_PLUGIN_DIR``, never a path the file names), then loads the weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError, one_line
from zoo.plugin.declarations import DataInfo

FORMAT = 1
WEIGHTS, RECORD = "weights.pt", "zoo_model.json"
LABEL_KEYS = ("label", "next_token")  # indices a person reads as names (class names, the vocabulary)


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it (tuples as lists); what JSON cannot hold is left out."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = jsonable(v)
            if v is not _SKIP:
                out[str(k)] = v
        return out
    if isinstance(value, (list, tuple)):
        items = [jsonable(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _SKIP
    return _SKIP


_SKIP = object()


def preprocessing_step(meta: dict, name: str) -> dict | None:
    """One step of a dataset's ``meta["preprocessing"]``: ``input`` or ``target`` (``{"mean", "std"}``), or ``image``.

    The file datasets' spelling is read as the same: ``input_scaling`` and ``target_scaling``, and an
    image reader's ``size`` and ``mode`` (grey levels 0..255 as they are).
    """
    steps = meta.get("preprocessing") or {}
    if steps.get(name):
        return steps[name]
    if name in ("input", "target"):
        return steps.get(f"{name}_scaling")
    if name == "image" and steps.get("reader") == "images" and steps.get("size"):
        return {"mode": steps.get("mode") or "L", "size": list(steps["size"]), "range": [0.0, 255.0]}
    return None


class ZooModel(nn.Module):
    """A trained network, its data's preprocessing and its task.

    ``forward(x)`` takes raw inputs (as the dataset's files or scikit-learn hold them: digits'
    pixels 0..16, iris in centimetres) and returns the network's output; :meth:`predictions`
    returns the task's named answers (class labels and probabilities, values in the target's own
    units, reconstructions and anomaly scores); :meth:`predict` takes and returns what a person
    has (a DataFrame, an array, text, a graph as a dict) and is what the MLflow model serves.

    Args:
        net: the trained network (in eval mode).
        info: the data it was trained on (``meta["preprocessing"]`` as documented in docs/plugin-contract.md).
        task: the data's task.
        record: the JSON record (architecture, settings, data, run).
    """

    def __init__(self, net: nn.Module, info: DataInfo, task, record: dict):
        super().__init__()
        self.net, self.info, self.task, self.record = net, info, task, record
        for name in ("input", "target"):
            spec = preprocessing_step(info.meta, name)
            for stat in ("mean", "std"):
                value = None if not spec else torch.as_tensor(spec[stat], dtype=torch.float32)
                self.register_buffer(f"{name}_{stat}", value)
        self.eval()

    # -- what it is --------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return self.record["architecture"]["name"]

    @property
    def dataset(self) -> str:
        return self.record["data"]["name"]

    @property
    def class_names(self) -> list[str]:
        names = self.info.meta.get("class_names") or list(self.task.target_names)
        return [str(n) for n in names] or [str(i) for i in range(self.info.output_dim)]

    @property
    def feature_names(self) -> list[str]:
        steps = self.info.meta.get("preprocessing") or {}
        names = self.info.meta.get("feature_names") or steps.get("encoded_features")  # a file's columns
        return [str(n) for n in names] if names else [f"x{i + 1}" for i in range(math.prod(self.info.input_shape))]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.info.input_shape))
        return (f"ZooModel({self.architecture} on {self.dataset}: {self.info.kind} {shape} -> {self.info.task}, "
                f"run {self.record.get('run_id') or '-'})")

    # -- raw inputs in, answers out ----------------------------------------------------------------
    def preprocess(self, x):
        """Raw inputs as the network saw them in training (``(x - mean) / std``; token ids pass as they are)."""
        if self.input_mean is None:
            return x
        if isinstance(x, torch.Tensor):
            return (x - self.input_mean) / self.input_std if x.is_floating_point() else x
        if hasattr(x, "x") and hasattr(x, "edge_index"):  # a graph: its node features
            x = x.clone()
            x.x = (x.x - self.input_mean) / self.input_std
        return x

    def forward(self, x):
        return self.net(self.preprocess(x))

    @torch.no_grad()
    def predictions(self, x) -> dict[str, torch.Tensor]:
        """The task's named answers for a batch of raw inputs, in the data's own units."""
        inputs = self.preprocess(x)
        out = self.net(inputs)
        if self.task.predict is None:
            return {"output": out}
        preds = dict(self.task.predict(out, inputs))
        if "prediction" in preds and self.target_mean is not None:
            preds["prediction"] = preds["prediction"] * self.target_std + self.target_mean
        if "reconstruction" in preds and self.input_mean is not None:
            preds["reconstruction"] = preds["reconstruction"] * self.input_std + self.input_mean
        return preds

    def predict(self, data, output: str = "default", **params):
        """Predictions for ``data`` as a person has it; see :func:`zoo.models.io.predict`."""
        from zoo.models import io

        return io.predict(self, data, output, **params)

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int = 100, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0) -> str:
        """The text ``max_new_tokens`` sampled tokens continue ``prompt`` with (a model with ``generate``, e.g. gpt)."""
        from zoo.models import io

        if not hasattr(self.net, "generate"):
            raise ZooError(f"model {self.architecture} cannot generate text: only a model with generate() can (gpt)")
        ids = io.encode(self, prompt)[None]
        g = torch.Generator().manual_seed(int(seed))
        out = self.net.generate(ids, int(max_new_tokens), temperature=float(temperature), top_k=top_k or None,
                                generator=g)
        return io.decode(self, out[0, ids.shape[1]:].tolist())

    # -- on disk -----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``weights.pt`` and ``zoo_model.json`` into ``folder``; return their paths by name."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights, record = folder / WEIGHTS, folder / RECORD
        torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, weights)
        record.write_text(json.dumps(self.record, indent=1))
        return {"weights": weights, "zoo_model": record}


def make_record(*, architecture: str, plugin: str, settings: dict, dataset: str, data_settings: dict, seed: int,
                info: DataInfo, run_id: str | None = None, **extra) -> dict:
    """The JSON record of a trained model (``zoo_model.json``)."""
    import zoo

    data = {"name": dataset, "settings": jsonable(data_settings), "seed": seed, "kind": info.kind, "task": info.task,
            "input_shape": list(info.input_shape), "output_dim": info.output_dim, "meta": jsonable(dict(info.meta))}
    return {"format": FORMAT, "zoo_version": zoo.__version__, "run_id": run_id,
            "architecture": {"name": architecture, "plugin": plugin, "settings": jsonable(settings)},
            "data": data, **extra}


def read_record(folder: str | Path) -> dict:
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ZooError(f"{folder} is not a Zoo model ({RECORD}: {one_line(exc, 150)})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ZooError(f"{path} has format {record.get('format') if isinstance(record, dict) else '?'}; "
                       f"this Zoo reads format {FORMAT}")
    return record


def info_of(record: dict) -> DataInfo:
    d = record["data"]
    return DataInfo(kind=d["kind"], task=d["task"], input_shape=tuple(d["input_shape"]), output_dim=d["output_dim"],
                    meta=d.get("meta") or {})


def load_folder(folder: str | Path, registry=None) -> ZooModel:
    """The :class:`ZooModel` saved in ``folder`` (``weights.pt`` and ``zoo_model.json``)."""
    from zoo.plugin.registry import default_registry

    folder = Path(folder)
    record = read_record(folder)
    registry = registry or default_registry()
    arch = record["architecture"]
    if arch["name"] not in registry.architectures:
        raise ZooError(f"this model is a '{arch['name']}' from the plugin {arch.get('plugin')!r}, which is not "
                       f"installed here: install that plugin (or set ZOO_PLUGIN_DIR to its folder) to load it")
    info = info_of(record)
    net = registry.create_model(arch["name"], info, **arch.get("settings", {}))
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:
        raise ZooError(f"the weights in {folder / WEIGHTS} do not fit a {arch['name']} built from its record: "
                       f"{one_line(exc, 200)}") from None
    return ZooModel(net.eval(), info, registry.task(info.task), record)
