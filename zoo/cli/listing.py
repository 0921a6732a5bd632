"""``zoo list [plugins.dir=PATH]``: every architecture and dataset (with its description), its plugin
and where it came from, and the plugins that failed."""

from __future__ import annotations

from zoo.cli import load_registry
from zoo.errors import ZooError
from zoo.text import format_table

USAGE = """usage: zoo list [plugins.dir=PATH]

Every architecture and dataset Zoo knows, with its plugin and where that came from, and the
plugins that failed to load. plugins.dir=PATH (or ZOO_PLUGIN_DIR) adds a folder of *.py plugins.
ZOO_TRACE_PLUGINS=1 prints every hook call on stderr."""


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    for a in args:
        if not a.startswith("plugins.dir="):
            hint = " (write plugins.dir=PATH)" if "plugin" in a else ""
            raise ZooError(f"zoo list: unknown argument {a!r}{hint}; usage: zoo list [plugins.dir=PATH]")
    registry = load_registry(args)
    print(format_table([("ARCHITECTURE", "FAMILY", "DATA KINDS", "PLUGIN", "SOURCE", "DESCRIPTION")]
                       + [(name, e.decl.family, ",".join(e.decl.kinds), e.plugin, e.source, e.decl.description)
                          for name, e in sorted(registry.architectures.items())]))
    print()
    print(format_table([("DATASET", "KIND", "TASK", "PLUGIN", "SOURCE", "DESCRIPTION")]
                       + [(name, e.decl.kind, e.decl.task, e.plugin, e.source, e.decl.description)
                          for name, e in sorted(registry.datasets.items())]))
    if registry.failures:
        print()
        print(format_table([("FAILED PLUGIN", "SOURCE", "ERROR")]
                           + [(f.plugin, f.source, f.error) for f in registry.failures]))
    return 0
