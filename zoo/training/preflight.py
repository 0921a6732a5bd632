"""What ``train`` checks between reading the config and starting the run, so that data or a model
that cannot work is one line (:class:`zoo.ZooError`) before any run exists, not a traceback later:

* :func:`check_data_size`: a dataset's size from its settings (``data.n_samples``) against the
  memory there is, before loading it;
* :func:`check_splits`: what a dataset's ``load`` gave: no empty split, inputs and targets of one
  length, ``info.input_shape`` the data's own, finite numbers, targets the task accepts
  (:attr:`zoo.Task.targets`);
* :func:`check_model_memory`: the model's parameters counted on PyTorch's ``meta`` device (shapes
  only, nothing allocated) against the memory of the training device, before building it;
* :func:`check_output`: one forward pass on two training examples: a tensor of the shape and kind
  the task expects (:meth:`zoo.Task.output_problem`), and a loss the task can compute from it.

A model or dataset too large for these estimates still fails in one line when its allocation
fails (:func:`zoo.plugin.registry.call_plugin`).
"""

from __future__ import annotations

import resource

import torch

from zoo.errors import ZooError, one_line
from zoo.plugin.registry import Registry, size_setting

# Training holds each parameter about four times: the weights, their gradients and an optimizer's
# two moments (Adam's; SGD without momentum holds fewer).
COPIES_IN_TRAINING = 4
BYTES_PER_EXAMPLE = 16  # the least an example takes: one float64 feature and one label
PROBE = 2  # examples in check_output's forward pass
STREAM_PROBE = 1024  # examples of a streamed split that check_splits reads


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def available_memory(device: torch.device) -> int | None:
    """Bytes this process can still allocate on ``device`` (None when it cannot tell).

    On the CPU, the least of the system's available memory, what the address-space limit
    (``ulimit -v``) leaves and what the cgroup's limit leaves; on a GPU, its free memory.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    found = []
    meminfo = _read("/proc/meminfo")
    status = _read("/proc/self/status")
    if "MemAvailable:" in meminfo:
        found.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY and "VmSize:" in status:
        found.append(limit - int(status.split("VmSize:")[1].split()[0]) * 1024)
    cgroup_max, cgroup_now = _read("/sys/fs/cgroup/memory.max").strip(), _read("/sys/fs/cgroup/memory.current").strip()
    if cgroup_max.isdigit() and cgroup_now.isdigit():
        found.append(int(cgroup_max) - int(cgroup_now))
    return max(0, min(found)) if found else None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------------------------------ the data
def check_data_size(name: str, settings: dict) -> None:
    """``data.n_samples`` examples take at least BYTES_PER_EXAMPLE each: refuse a number the memory cannot hold."""
    n = settings.get("n_samples")
    if not isinstance(n, int) or isinstance(n, bool):
        return
    need, avail = n * BYTES_PER_EXAMPLE, available_memory(torch.device("cpu"))
    if avail is not None and need > avail:
        raise ZooError(f"data={name}: data.n_samples={n} needs at least {gib(need)} ({BYTES_PER_EXAMPLE} bytes an "
                       f"example) but {gib(avail)} of memory is available; lower data.n_samples")


def check_splits(what: str, splits, task) -> None:
    """Every split of ``splits`` as training will read it: the data's own faults, one line.

    A split in memory is read whole, once (``batches(None)``); a streamed split (a file larger
    than memory, :class:`zoo.StreamSplit`) only its first STREAM_PROBE examples, so that the
    check never loads what training streams.
    """
    from zoo.plugin.stream import StreamSplit

    info = splits.info
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        n = len(split)
        if n == 0:
            raise ZooError(f"{what}: the {name} split is empty: every split needs at least one example")
        read = split.batches(None) if not isinstance(split, StreamSplit) else [next(iter(split.batches(STREAM_PROBE)))]
        for x, y in read:
            tensors = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            if tensors and len(x) != len(y):
                raise ZooError(f"{what}: the {name} split's inputs and targets differ in length: {len(x)} != {len(y)}")
            if isinstance(x, torch.Tensor) and tuple(x.shape[1:]) != tuple(info.input_shape):
                raise ZooError(f"{what}: info.input_shape is {tuple(info.input_shape)}, but the {name} split's examples "
                               f"are {tuple(x.shape[1:])}: declare the shape of one example, without the batch dimension")
            for part, t in (("inputs", x), ("targets", y)):
                if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
                    continue
                bad = ~torch.isfinite(t)
                if bad.any():
                    first = int(bad.reshape(len(t), -1).any(1).nonzero()[0])
                    raise ZooError(f"{what}: the {name} split's {part} hold {int(bad.sum())} NaN or infinite values "
                                   f"(the first in example {first}): clean the data or drop those examples")
            problem = task.targets(info, y) if task.targets is not None else None
            if problem:
                raise ZooError(f"{what}: the {name} split's targets do not fit the {task.name} task: {problem}")


# ------------------------------------------------------------------------------ the model
def check_model_memory(registry: Registry, name: str, info, settings: dict, device: torch.device) -> None:
    """Build the model on the ``meta`` device (shapes, no memory) and refuse one the device cannot train.

    A builder that cannot build on ``meta`` (it reads a tensor's values, say) is not estimated:
    its real build's allocation failure is caught instead.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = registry.create_model(name, info, **settings)
    except ZooError:
        raise  # a bad setting, a hang, an exit: the real build would say the same
    except Exception:
        return
    params = sum(p.numel() for p in model.parameters())
    need = COPIES_IN_TRAINING * sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    avail = available_memory(device)
    if avail is not None and need > avail:
        raise ZooError(f"model={name} needs about {gib(need)} to train ({params:,} parameters, each held as weights, "
                       f"gradients and the optimizer's state) but {gib(avail)} of {device.type} memory is available; "
                       f"{size_setting(f'model={name}', settings)}")


def check_output(what: str, model, splits, task) -> None:
    """The model's output for two training examples: what the task expects, and a loss the task can compute."""
    x, y = next(iter(splits.train.batches(PROBE)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if getattr(x, "is_cuda", False) else []):
            try:
                out = model(x)
            except Exception as exc:
                raise ZooError(f"{what}: the model's forward pass fails on {PROBE} training examples: {one_line(exc)}") from None
            problem = task.output_problem(splits.info, x, y, out, f" for a batch of {PROBE}")
            if problem:
                raise ZooError(f"{what}: the model's output does not fit the {task.name} task: {problem}")
            try:
                task.loss(out, y, x)
            except Exception as exc:
                raise ZooError(f"{what}: the {task.name} loss fails on the model's output {tuple(out.shape)} "
                               f"(targets {tuple(getattr(y, 'shape', ()))}): {one_line(exc)}") from None
    finally:
        model.train(was_training)
