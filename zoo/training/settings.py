"""What the loop and its callbacks are told: the ``trainer`` settings, typed, parsed once.

:func:`zoo.config.validate` has already checked every value (and named the key of a bad one);
this only gives them types, so the hot loop reads attributes instead of dictionary keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainerSettings:
    """The loop's settings, from the validated ``trainer`` group and two ``tracking`` values.

    Args:
        max_epochs: epochs to train for (counted over the whole run, resumes included).
        batch_size: examples per step; ``None`` is ``full``: the whole split in one batch.
        precision: ``"32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 adds a gradient scaler).
        grad_clip: clip the total gradient norm to this; ``None``: never.
        patience: stop after this many epochs without a better validation metric; ``None``: never.
        log_every: steps between fetches of the losses and norms waiting on the device.
        compile: run the forward pass through ``torch.compile``.
        grad_every: gradient and weight norms every N steps; 0: never; ``"auto"``: the cheapest
            cadence that costs under 5% of a step (measured on the first few).
        hist_every: weight and gradient histograms every N steps; 0: never.
    """

    max_epochs: int
    batch_size: int | None
    precision: Literal["32", "bf16", "fp16"] = "32"
    grad_clip: float | None = None
    patience: int | None = None
    log_every: int = 50
    compile: bool = False
    grad_every: int | Literal["auto"] = "auto"
    hist_every: int = 0

    @classmethod
    def from_config(cls, plain: dict) -> TrainerSettings:
        """The settings of a validated config (``plain``: what :func:`zoo.config.validate` returns)."""
        t, tr = plain["trainer"], plain["tracking"]
        return cls(
            max_epochs=int(t["max_epochs"]),
            batch_size=None if t["batch_size"] == "full" else int(t["batch_size"]),
            precision=str(t.get("precision", "32")),
            grad_clip=float(t["grad_clip"]) if t.get("grad_clip") else None,  # 0 clips nothing: off
            patience=int(t["patience"]) if t.get("patience") else None,  # 0 never stops: off
            log_every=int(t["log_every"]),
            compile=bool(t.get("compile")),
            grad_every="auto" if tr["grad_every"] == "auto" else int(tr["grad_every"]),
            hist_every=int(tr["hist_every"]),
        )
