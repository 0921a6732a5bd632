"""Plain-text output shared by the command line and the records it writes (aligned tables)."""

from __future__ import annotations

from typing import Sequence


def format_table(rows: Sequence[Sequence], sep: str = "  ", rule: bool = False) -> str:
    """Rows of cells as left-aligned columns, the first row being the header (``rule``: a line of
    dashes under it); trailing spaces trimmed."""
    rows = [[str(c) for c in r] for r in rows]
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    if rule:
        rows.insert(1, ["-" * w for w in widths])
    return "\n".join(sep.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
