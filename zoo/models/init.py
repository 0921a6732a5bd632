"""``zoo train init_from=MODEL``: a new run that starts from a trained model's weights; ``model.freeze``.

The configured model is built as usual; every parameter (and buffer) whose name and shape match
one of the trained model's is loaded, a layer whole or not at all, and the rest keep their fresh
initialisation: fine-tuning
on the same data, or transfer onto data with another number of classes (the head is new). The
run records which were loaded and which were not (``init_from.json``), where it started from
(the tag ``zoo.init_from`` and MLflow's model input, so the UI shows the lineage).

``model.freeze=[prefixes]`` keeps the parameters whose names start with one of the prefixes
fixed (``requires_grad=False``, left out of the optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from zoo.errors import ConfigError, ZooError
from zoo.models.reference import find, load
from zoo.tracking.models import ModelRef

SHOWN = 8  # names an error lists


@dataclass
class Start:
    """Where a run started from, and what of it was used."""

    ref: str
    found: ModelRef
    loaded: list[str] = field(default_factory=list)
    not_loaded: dict[str, str] = field(default_factory=dict)  # name -> why (new, or another shape)
    unused: list[str] = field(default_factory=list)  # the trained model's, with no place in this one

    def summary(self) -> dict:
        return {"init_from": self.ref, "model_uri": self.found.uri, "run_id": self.found.run_id,
                "loaded": self.loaded, "not_loaded": self.not_loaded, "unused": self.unused}


def load_matching(model: nn.Module, ref: str, uri: str, configured: str) -> Start:
    """Load into ``model`` the tensors of the trained model ``ref`` whose names and shapes match."""
    found = find(ref, uri)
    source = load(found, uri)
    theirs = source.net.state_dict()
    mine = model.state_dict()
    start = Start(str(ref), found)
    chosen = {}
    for name, tensor in mine.items():
        other = theirs.get(name)
        if other is None:
            start.not_loaded[name] = "not in the trained model"
        elif other.shape != tensor.shape:
            start.not_loaded[name] = f"shape {tuple(other.shape)} there, {tuple(tensor.shape)} here"
        else:
            chosen[name] = other.to(tensor.dtype)
            start.loaded.append(name)
    # a layer loads whole or not at all: a bias that fits beside a weight that does not stays fresh
    mismatched = {n.rpartition(".")[0] for n in start.not_loaded if n in theirs}
    for name in [n for n in start.loaded if n.rpartition(".")[0] in mismatched]:
        del chosen[name]
        start.loaded.remove(name)
        start.not_loaded[name] = f"kept fresh with the rest of {name.rpartition('.')[0]}"
    start.unused = [k for k in theirs if k not in mine]
    if not chosen:
        raise ZooError(f"init_from={ref}: none of the {len(theirs)} tensors of that model "
                       f"({source.architecture}, trained on {source.dataset}) fits model={configured} "
                       f"(its tensors: {', '.join(list(mine)[:SHOWN])}); train model={source.architecture} "
                       f"to start from it")
    model.load_state_dict(chosen, strict=False)
    return start


def freeze(model: nn.Module, prefixes) -> list[str]:
    """Keep the parameters whose names start with one of ``prefixes`` fixed; return their names."""
    if prefixes in (None, "", []):
        return []
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            raise ConfigError("model.freeze", list(prefixes),
                              f"prefixes of the model's parameter names ({', '.join(names[:SHOWN])}"
                              f"{' ...' if len(names) > SHOWN else ''})")
        frozen += hits
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    if len(set(frozen)) == len(names):
        raise ConfigError("model.freeze", list(prefixes), "prefixes that leave at least one parameter to train")
    return sorted(set(frozen))
