"""The plugin contract: what a plugin author reads.

Owns the hook specifications (``hookspecs``: the three hooks and what their results become),
the declaration types (``declarations``: ``Architecture``, ``Dataset``, ``Task``, ``DataInfo``,
``Splits``, ``IGNORE_INDEX``), plugin discovery, lookups and the factory (``registry``:
``create_model``, ``load_dataset``, ``get_task`` over a cached default registry), task lookups
for builders (``tasks``) and the helpers plugins share (``nn``; ``data``: in-memory splits, the
seeded split, standardisation, checking and recording a dataset's files; ``arrays``: whether
data stays in memory, and rows on disk; ``stream``: data larger than memory, read from disk
while training; ``metrics``: the metrics the built-in tasks report, as ``zoo.metrics``). It knows no task,
architecture or dataset by name: the built-in ones are plugins (``zoo_builtins``) found through
the same entry points as any other. It may import ``zoo.errors`` and third-party libraries
(pluggy, torch, numpy, psutil), never another Zoo subpackage and never a plugin: everything else in Zoo is
built on it. The contract kit that checks plugins against it is ``zoo.testing``.
"""
