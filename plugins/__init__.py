"""Zoo's built-in plugins, installed as ``zoo_builtins`` and found only through the ``zoo.plugins``
entry points, exactly like a third-party plugin; each uses only the public contract in ``zoo``.

* ``tasks``: the five built-in tasks (``zoo_tasks``), with their metrics from ``zoo.metrics``.
* datasets, grouped by kind (``zoo_datasets``): ``tabular``, ``sequence``, ``text`` (its corpus in
  ``data/``), ``graph`` (with ``GraphSplit``), ``image`` (which reuses ``tabular``'s digit helpers).
* model families (``zoo_architectures``), each laid out like a timm file (docstring, building
  blocks, main classes, builders, reports, registration): ``ann``, ``rnn``, ``autoencoder``,
  ``gnn``, ``transformer``.
"""
