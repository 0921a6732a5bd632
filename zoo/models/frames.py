"""A model's example input and its answers as a person reads them (DataFrames), made without torch.

A model's answers are computed by :func:`zoo.models.io.answers` (torch) as plain arrays and lists, and presented
here (pandas): :func:`as_answer` is the last step of :func:`zoo.models.io.predict`. The split lets the run's
writer process, which logs the model, make its example input and output for MLflow's signature without
importing torch or loading the model: the training process loads the saved model back and computes its answers
(:func:`zoo.models.log.log_model`), the writer makes the DataFrames (:func:`examples`).
"""

from __future__ import annotations


def as_example(raw: dict):
    """:func:`zoo.models.log.raw_inputs`' examples as the model takes them: a graph's arrays, a DataFrame of text
    or of named columns, or an array."""
    if "graph" in raw or "array" in raw:
        return raw.get("graph", raw.get("array"))
    import pandas as pd

    if "text" in raw:
        return pd.DataFrame({"text": raw["text"]})
    return pd.DataFrame(raw["rows"], columns=raw["columns"])


def as_answer(answer: dict):
    """:func:`zoo.models.io.answers`' plain answer as :func:`zoo.models.io.predict` returns it: a DataFrame of
    ``{"columns": {name: array}}`` or ``{"rows": [{name: value}]}`` (a Series named after its column when
    there is one: ``mlflow.models.evaluate`` reads it as the predictions), else the array of
    ``{"arrays": {name: array}}`` (a dict of them when there are several)."""
    if "arrays" in answer:
        arrays = answer["arrays"]
        return next(iter(arrays.values())) if len(arrays) == 1 else arrays
    import pandas as pd

    frame = pd.DataFrame(answer["columns"] if "columns" in answer else answer["rows"])
    return frame.iloc[:, 0] if frame.shape[1] == 1 else frame


def examples(raw: dict, answer: dict, params: dict) -> tuple:
    """``(input example, what the model answers to it, its default params)``, as MLflow logs them with the model."""
    return as_example(raw), as_answer(answer), params
