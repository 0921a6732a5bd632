"""A dataset plugin over the user's file: a JSON-lines file, one example per line.

Each line is ``{"x": [numbers...], "label": "a class name"}``. The plugin uses the helpers Zoo
gives dataset authors (docs/data.md):

* ``zoo.data_path`` checks ``data.path`` (one line naming it when it is missing, a folder, empty);
* ``zoo.source_of`` records what was read (path, size, sha256), so the run is tagged with it;
* ``zoo.keep_in_memory`` decides from ``data.in_memory`` and ``data.memory_budget``;
* ``zoo.RowWriter`` collects the decoded rows in memory, or in a temporary file when they are
  larger than the budget;
* ``zoo.split_indices`` gives the seeded, stratified 70/15/15 split;
* in memory: ``zoo.standardize`` and ``zoo.TensorSplit``; on disk: ``zoo.row_stats`` and
  ``zoo.StreamSplit`` (batches read from the file while training, in the same order a
  TensorSplit would give them; ``data.workers``: who reads them, ``auto`` by the machine's cores).

Use it as any plugin folder::

    zoo train plugins.dir=docs/examples data=jsonl data.path=examples.jsonl

``tests/test_data_files.py`` runs this file, in memory and streamed.
"""

import json

import numpy as np
import torch

import zoo

WHAT = 'a JSON-lines file, one {"x": [numbers], "label": ...} per line'


def read_lines(p):
    """``(x, label)`` per line, with a one-line error naming the line that cannot be used."""
    with open(p, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield [float(v) for v in row["x"]], str(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"data.path={str(p)!r} line {number} cannot be parsed ({type(exc).__name__}): "
                                 f"expected {WHAT}") from None


def load_jsonl(seed: int, path=None, in_memory="auto", memory_budget="auto", workers="auto") -> zoo.Splits:
    p = zoo.data_path(path, "file", WHAT)
    labels, width = [], None
    for x, label in read_lines(p):  # first pass: the labels and the width, nothing else kept
        width = width or len(x)
        if len(x) != width:
            raise ValueError(f"data.path={str(p)!r}: line {len(labels) + 1} has {len(x)} values, the first has {width}")
        labels.append(label)
    names = sorted(set(labels))
    if len(labels) < 20 or len(names) < 2:
        raise ValueError(f"data.path={str(p)!r} has {len(labels)} examples of {len(names)} classes: "
                         f"the split needs at least 20 examples of two classes")
    y = np.array([names.index(label) for label in labels])

    keep = zoo.keep_in_memory(len(labels) * width * 4, in_memory, memory_budget)
    writer = zoo.RowWriter((width,), np.float32, on_disk=not keep)
    for x, _ in read_lines(p):  # second pass: the inputs, in memory or into a temporary file
        writer.append([x])
    x = writer.finish()

    parts = zoo.split_indices(len(y), seed, stratify=y)
    targets = [torch.from_numpy(y[i]) for i in parts]
    if keep:
        inputs = zoo.standardize(*(torch.from_numpy(x[i]) for i in parts))  # by the training rows' statistics
        splits = [zoo.TensorSplit(a, t) for a, t in zip(inputs, targets)]
    else:
        mean, std = zoo.row_stats(x, parts[0])  # the same statistics, read a chunk at a time
        splits = [zoo.StreamSplit(x, t, i, mean=mean, std=std, workers=workers) for i, t in zip(parts, targets)]
    info = zoo.DataInfo(kind="tabular", task="classification", input_shape=(width,), output_dim=len(names),
                        meta={"class_names": names, "source": zoo.source_of(p),
                              "preprocessing": {"class_names": names, "standardized": True}})
    return zoo.Splits(*splits, info=info)


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(name="jsonl", kind="tabular", task="classification", load=load_jsonl,
                        description="a JSON-lines file of {x, label} examples (docs/examples)")]
