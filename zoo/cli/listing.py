"""``zoo list``: every architecture and dataset, with its plugin and where it came from, and the plugins that failed."""

from __future__ import annotations

from zoo.cli import load_registry
from zoo.text import format_table


def main(args: list[str]) -> int:
    registry = load_registry(args)
    print(format_table([("ARCHITECTURE", "FAMILY", "DATA KINDS", "PLUGIN", "SOURCE")]
                       + [(name, e.decl.family, ",".join(e.decl.kinds), e.plugin, e.source)
                          for name, e in sorted(registry.architectures.items())]))
    print()
    print(format_table([("DATASET", "KIND", "TASK", "PLUGIN", "SOURCE")]
                       + [(name, e.decl.kind, e.decl.task, e.plugin, e.source)
                          for name, e in sorted(registry.datasets.items())]))
    if registry.failures:
        print()
        print(format_table([("FAILED PLUGIN", "SOURCE", "ERROR")]
                           + [(f.plugin, f.source, f.error) for f in registry.failures]))
    return 0
