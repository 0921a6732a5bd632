"""How the kit words what it found: values, shapes, differences between tensors, and exceptions
(with the line of the plugin's own code that raised)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plain_value(v: Any) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and plain_value(x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return all(plain_value(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def same(a: Any, b: Any) -> bool:
    """Equal with the same types (1 is not 1.0 nor True); lists element by element; nan == nan."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def diff(a, b) -> str:
    """'' when ``a`` and ``b`` are identical tensors, else how they differ."""
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
        if torch.equal(a, b):
            return ""
        if not a.is_floating_point():
            return f"{int((a != b).sum())} of {a.numel()} entries differ"
        d = (a.detach().float() - b.detach().float()).abs()
        d = torch.where(torch.isnan(d), torch.full_like(d, float("inf")), d)
        return f"max |a-b| = {float(d.max()):.3g} ({int((d > 0).sum())} of {a.numel()} entries differ)"
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return next((f"item {i}: {d}" for i, d in ((i, diff(x, y)) for i, (x, y) in enumerate(zip(a, b))) if d), "")
    return "" if a == b else f"{a!r} != {b!r}"


def shape_of(x) -> str:
    found = getattr(x, "shape", None)
    return str(tuple(found)) if found is not None else type(x).__name__


def examples(target, inputs) -> str:
    n = getattr(target, "shape", (None,))[0]
    graphs = getattr(inputs, "num_graphs", None)
    return f"{graphs} graphs" if graphs else f"{n} examples"


def kwargs(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def raised(what: str, exc: BaseException) -> str:
    """'<what> raised <Error>: <message> (at file.py:line)', the line in the plugin's own code.

    A plugin's ValueError or TypeError that the factory turned into a one-line ZooError
    (``call_plugin``) is reported as the plugin raised it.
    """
    import traceback

    from zoo.errors import ZooError

    if isinstance(exc, ZooError) and isinstance(exc.__cause__, (ValueError, TypeError)):
        exc = exc.__cause__
    frames = traceback.extract_tb(exc.__traceback__)
    core = Path(__file__).resolve().parent.parent  # the zoo package: its subpackages are Zoo's, not the plugin's
    libs = ("/torch/", "/torch_geometric/", "/site-packages/omegaconf/", "/site-packages/hydra/")
    outside = [f for f in frames if not any(s in f.filename for s in libs)]
    plugin = [f for f in outside if core not in Path(f.filename).resolve().parents]
    frame = (plugin or outside or [None])[-1]
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{what} raised {first_line(exc)}{where}"
