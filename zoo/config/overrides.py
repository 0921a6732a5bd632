"""Hydra override text: the key an override sets, and a Python value written as an override."""

from __future__ import annotations

import re
from typing import Any


def override_key(override: str) -> str:
    """The key an override sets: ``+model.dropout=0.1`` -> ``model.dropout``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def override_value(v: Any) -> str:
    """A Python value as the text of a Hydra command-line override (``[a,b]``, ``true``, ``null``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(override_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{override_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    # plain words, dotted names, paths and URIs (torch.optim.SGD, sqlite:////tmp/x.db) need no quotes
    if re.fullmatch(r"[A-Za-z_/][\w\-./:]*", s) and s.lower() not in ("true", "false", "null", "nan", "inf"):
        return s
    # quoted: a backslash escapes only a quote or the backslashes right before one (Hydra's grammar)
    s = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", s)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, s) + "'"
