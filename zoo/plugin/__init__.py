"""The plugin contract: what a plugin author reads.

Owns the hook specifications (``hookspecs``), the declaration types (``declarations``), plugin
discovery and lookups (``registry``), the tasks that turn a batch into a loss and metrics
(``tasks``) and the helpers plugins share (``nn``, ``data``). It may import ``zoo.errors`` and
third-party libraries (pluggy, torch, torchmetrics), never another Zoo subpackage: everything
else in Zoo is built on it.
"""
