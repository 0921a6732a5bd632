"""What a person has, as a batch; and a model's answers, as a person reads them.

One input form per data kind (the model's signature in MLflow says the same):

========== ===================================================================================
kind       input
========== ===================================================================================
tabular    a DataFrame (or CSV) with exactly the training columns, by name; numbers in their
           raw units. A 2-D array in the columns' order also works.
text       strings (a list, or a DataFrame column ``text``); tokens are the model's vocabulary
           (characters for a character-level model, else words separated by spaces)
graph      a dict: ``x`` (nodes, features), ``edge_index`` (2, edges) of node indices, and
           optionally ``batch`` (nodes,), the graph each node belongs to
others     an array ``(N, *input_shape)`` (a single example without N also works)
========== ===================================================================================

Answers are the task's (:attr:`zoo.Task.predict`): for tabular, text and graph inputs a DataFrame
(a Series when there is one column: ``mlflow.models.evaluate`` reads it as the predictions) with one column per answer (``label``, ``prediction``, ``anomaly_score``, ...) and one column per
value of a wider answer (``probabilities_<class>``, ``reconstruction_<feature>``); for arrays the
answer's array (a dict of arrays when there are several). ``output="default"`` gives every answer
but the probabilities, ``"all"`` every answer, or name them (``"label,probabilities"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.models.frames import as_answer
from zoo.models.packaged import LABEL_KEYS

if TYPE_CHECKING:
    import pandas as pd

    from zoo.models.packaged import ZooModel

MAX_SHOWN = 6  # column names an error lists


def _names(items, n: int = MAX_SHOWN) -> str:
    items = list(items)
    return ", ".join(map(repr, items[:n])) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def default_params(model: ZooModel) -> dict:
    """The parameters the logged model's ``predict`` takes (MLflow's ``params``), with their defaults."""
    params: dict[str, Any] = {"output": "default"}
    if hasattr(model.net, "generate"):
        params.update(max_new_tokens=0, temperature=1.0, top_k=0, seed=0)
    return params


def predict(model: ZooModel, data, output: str = "default", **params):
    """The model's answers for ``data`` (see the module's table), the answers chosen by ``output``."""
    return as_answer(answers(model, data, output, **params))


def answers(model: ZooModel, data, output: str = "default", **params) -> dict:
    """:func:`predict`'s answers as plain arrays and lists (:func:`zoo.models.frames.as_answer` presents them)."""
    kind = model.info.kind
    if kind == "text":
        return {"rows": _predict_texts(model, texts(data), output, params)}
    if kind == "tabular":
        return {"columns": _columns(model, _select(model.predictions(rows(model, data)), output), model.feature_names)}
    if kind == "graph":
        return {"columns": _columns(model, _select(model.predictions(graph(model, data)), output))}
    preds = _select(model.predictions(tensor(model, data)), output)
    return {"arrays": {k: _named(model, k, v.cpu().numpy()) for k, v in preds.items()}}


def _select(preds: dict, output: str) -> dict:
    if output in (None, "", "default"):
        chosen = [k for k in preds if k != "probabilities"] or list(preds)
    elif output == "all":
        chosen = list(preds)
    else:
        chosen = [k.strip() for k in str(output).split(",") if k.strip()]
        unknown = [k for k in chosen if k not in preds]
        if unknown:
            raise ZooError(f"output={output!r}: this model answers {', '.join(preds)} (or default, all), "
                           f"not {', '.join(unknown)}")
    return {k: preds[k] for k in chosen}


# ------------------------------------------------------------------------------ inputs
def rows(model: ZooModel, data) -> torch.Tensor:
    """Tabular input as a float tensor ``(N, features)``: a DataFrame's columns by name, or an array."""
    if isinstance(data, (np.ndarray, torch.Tensor, list, tuple)):  # in the columns' order
        return tensor(model, data)
    import pandas as pd

    names = model.feature_names
    if isinstance(data, pd.Series):
        data = data.to_frame().T
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        return tensor(model, data)
    columns = [str(c) for c in data.columns]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ZooError(f"the input lacks the column(s) {_names(missing)}: model {model.architecture} was trained "
                       f"on {len(names)} columns ({_names(names)})")
    extra = [c for c in columns if c not in names]
    if extra:
        raise ZooError(f"the input has column(s) {_names(extra)} that model {model.architecture} was not trained "
                       f"on: give exactly its {len(names)} columns ({_names(names)})")
    data = data.set_axis(columns, axis=1)[names].copy()
    for name in names:
        col = data[name]
        if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):  # numbers as text (MLflow's scoring server reads a CSV body as strings)
            numbers = pd.to_numeric(col, errors="coerce")
            if not (numbers.isna() & col.notna()).any():
                data[name] = col = numbers
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
            where = bad.idxmax() if bad.any() else col.index[0]
            raise ZooError(f"column {name!r} is not numeric (row {where}: {col[where]!r}): "
                           f"model {model.architecture} takes numbers in every column")
    return torch.from_numpy(np.array(data.to_numpy(dtype=np.float32)))


def tensor(model: ZooModel, data) -> torch.Tensor:
    """An array input as a tensor ``(N, *input_shape)``: floats, or token ids for text."""
    shape = tuple(model.info.input_shape)
    ints = model.info.kind == "text"
    try:
        a = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data,
                       dtype=np.int64 if ints else np.float32)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"the input is not an array of {'token ids' if ints else 'numbers'}: {exc}") from None
    if a.shape == shape:
        a = a[None]
    if a.shape[1:] != shape:
        raise ZooError(f"model {model.architecture} takes inputs of shape (N, {', '.join(map(str, shape))}) "
                       f"({model.info.kind} data like {model.dataset}), got {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))


def graph(model: ZooModel, data):
    """A graph (or several, with ``batch``) from a dict of ``x``, ``edge_index`` and optional ``batch``."""
    from torch_geometric.data import Batch

    if hasattr(data, "x") and hasattr(data, "edge_index"):  # a PyG Data or Batch already
        return data
    if hasattr(data, "to_dict") and not isinstance(data, dict):  # a one-row DataFrame of lists (MLflow's JSON)
        data = {k: v[0] for k, v in data.to_dict(orient="list").items()}
    if not isinstance(data, dict) or "x" not in data or "edge_index" not in data:
        raise ZooError(f"model {model.architecture} takes a graph: a dict with x (nodes, "
                       f"{model.info.input_shape[0]} features) and edge_index (2, edges), optionally batch")
    x = np.asarray(data["x"], dtype=np.float32)
    ei = np.asarray(data["edge_index"])
    features = model.info.input_shape[0]
    if x.ndim != 2 or x.shape[1] != features:
        raise ZooError(f"x must be (nodes, {features}) node features for model {model.architecture}, got {x.shape}")
    if ei.size == 0:
        ei = ei.reshape(2, 0)
    if ei.ndim != 2 or ei.shape[0] != 2 or not np.issubdtype(ei.dtype, np.integer):
        raise ZooError(f"edge_index must be a (2, edges) array of node indices, got {ei.shape} {ei.dtype}")
    if ei.size and (ei.min() < 0 or ei.max() >= len(x)):
        raise ZooError(f"edge_index refers to node {int(ei.max() if ei.max() >= len(x) else ei.min())} "
                       f"but x has {len(x)} nodes (valid indices 0..{len(x) - 1})")
    batch = np.asarray(data.get("batch") if data.get("batch") is not None else np.zeros(len(x)), dtype=np.int64)
    if batch.shape != (len(x),):
        raise ZooError(f"batch must give one graph index per node ({len(x)}), got shape {batch.shape}")
    return Batch(x=torch.from_numpy(x), edge_index=torch.as_tensor(ei, dtype=torch.long),
                 batch=torch.from_numpy(batch))


def texts(data) -> list[str]:
    """Text input as a list of strings: a string, a list of them, or a DataFrame column ``text``."""
    if isinstance(data, str):
        return [data]
    if hasattr(data, "columns"):  # a DataFrame
        cols = list(data.columns)
        if "text" not in cols and len(cols) != 1:
            raise ZooError(f"a text model takes a column named 'text', got the columns {_names(cols)}")
        data = data["text" if "text" in cols else cols[0]]
    values = list(data.tolist() if hasattr(data, "tolist") else data)
    if not all(isinstance(v, str) for v in values):
        raise ZooError("a text model takes strings (a list, or a column 'text'), not "
                       f"{type(next(v for v in values if not isinstance(v, str))).__name__}")
    return values


def _vocab(model: ZooModel) -> tuple[list[str], bool]:
    itos = model.info.meta.get("itos")
    if not itos:
        raise ZooError(f"model {model.architecture} has no vocabulary (meta itos) to read text with")
    return [str(t) for t in itos], bool(model.info.meta.get("char_level"))


def encode(model: ZooModel, text: str) -> torch.Tensor:
    """Token ids of ``text`` in the model's vocabulary (characters, or space-separated words)."""
    itos, chars = _vocab(model)
    stoi = {t: i for i, t in enumerate(itos)}
    tokens = list(text) if chars else text.split()
    unknown = sorted({t for t in tokens if t not in stoi})
    if unknown:
        raise ZooError(f"the text has {_names(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not in the "
                       f"vocabulary of model {model.architecture} ({len(itos)} tokens: {_names(itos, 12)})")
    if not tokens:
        raise ZooError("the text is empty: give at least one token")
    return torch.tensor([stoi[t] for t in tokens], dtype=torch.long)


def decode(model: ZooModel, ids) -> str:
    itos, chars = _vocab(model)
    return ("" if chars else " ").join(itos[i] for i in ids)


def _predict_texts(model: ZooModel, items: list[str], output: str, params: dict) -> list[dict]:
    block = model.info.input_shape[0]
    generate = int(params.get("max_new_tokens") or 0)
    out = []
    for text in items:
        ids = encode(model, text)
        if len(ids) > block:
            if model.info.task != "next_token":
                raise ZooError(f"the text has {len(ids)} tokens; model {model.architecture} reads at most {block}")
            ids = ids[-block:]  # the context a decoder predicts the next token from
        preds = _select(model.predictions(ids[None]), output)
        row = {}
        for key, value in preds.items():
            v = value[0].cpu()
            if key in LABEL_KEYS:
                row[key] = decode(model, v.reshape(-1).tolist())
            else:
                row[key] = v.tolist()
        if generate:
            row["generated"] = model.generate(text, generate, params.get("temperature", 1.0),
                                              params.get("top_k") or None, params.get("seed", 0))
        out.append(row)
    return out


# ------------------------------------------------------------------------------ answers
def _named(model: ZooModel, key: str, a: np.ndarray) -> np.ndarray:
    """Class indices as class names (``label``); everything else as it is."""
    if key in LABEL_KEYS and np.issubdtype(a.dtype, np.integer):
        names = np.asarray(model.class_names, dtype=object)
        return names[a]
    return a


def _columns(model: ZooModel, preds: dict, features: list[str] | None = None) -> dict[str, np.ndarray]:
    """One column per answer; a wider answer gets one column per value, named after what it is."""
    cols: dict[str, Any] = {}
    for key, value in preds.items():
        a = _named(model, key, value.cpu().numpy())
        if a.ndim == 1:
            cols[key] = a
            continue
        a = a.reshape(len(a), -1)
        if key == "probabilities":
            names = model.class_names
        elif key == "reconstruction" and features:
            names = features
        elif key == "prediction":
            names = list(model.info.meta.get("target_names") or [])
        else:
            names = []
        if a.shape[1] == 1 and key == "prediction":
            cols[key] = a[:, 0]
            continue
        names = names if len(names) == a.shape[1] else [str(i) for i in range(a.shape[1])]
        for j, n in enumerate(names):
            cols[f"{key}_{n}"] = a[:, j]
    return cols
