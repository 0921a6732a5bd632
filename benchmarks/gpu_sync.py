#!/usr/bin/env python
"""Does Zoo's loop wait for the GPU at every step? Counts the host-device synchronisations of a CUDA run.

Trains the ``gpt`` workload of ``bench.py`` (or ``--model``/``--data``) through ``train(cfg)`` on
CUDA, into a temporary store, twice over: once under ``torch.profiler`` (CUDA synchronisation
calls and device-to-host copies, counted), once with ``torch.cuda.set_sync_debug_mode("warn")``
(every synchronising torch call warns; the warnings are grouped by the line of Zoo that made
them). A line that synchronises at every step shows up with a count of at least the number of
steps; the fetches every ``trainer.log_every`` steps, the validation passes and the checkpoints
are the expected ones. Usage (needs a CUDA GPU; ``benchmarks/gpu.sh`` runs it)::

    .venv/bin/python benchmarks/gpu_sync.py [--epochs 3] [--precision bf16]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import WORKLOADS, Options  # noqa: E402


def config(tmp: Path, epochs: int, opts: Options):
    from hydra import compose, initialize_config_dir

    from zoo.config import CONF_DIR

    w = WORKLOADS["gpt"]
    overrides = w.zoo_overrides(epochs, opts)
    overrides += [f"paths.output_dir={tmp / 'out'}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                  "tracking.log_model=false", "tracking.system_metrics=false"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--precision", default="32", choices=("32", "bf16"))
    ns = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from zoo.training.train import registry_for, train

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure", file=sys.stderr)
        return 2
    opts = Options("cuda", ns.precision, False)
    with tempfile.TemporaryDirectory(prefix="zoo-sync-") as tmp:
        cfg = config(Path(tmp), ns.epochs, opts)
        registry = registry_for(cfg)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            metrics = train(cfg, registry)
        import mlflow

        run = mlflow.MlflowClient(f"sqlite:///{Path(tmp) / 'mlflow.db'}").get_run(metrics["run_id"])
        steps = int(run.data.metrics["perf/steps"])
        counts = collections.Counter()
        for e in prof.key_averages():
            if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
                         "aten::_local_scalar_dense", "aten::item"):
                counts[e.key] += e.count
            elif e.key.startswith("Memcpy DtoH"):
                counts["Memcpy DtoH"] += e.count
        print(f"profiler, the whole train(cfg) ({ns.epochs} epochs, {steps or '?'} steps, precision {ns.precision}):")
        for key, n in sorted(counts.items()):
            print(f"  {key:28s} {n:6d}" + f"  ({n / steps:.3f} per step)")

        cfg = config(Path(tmp) / "second", ns.epochs, opts)
        by_line = collections.Counter()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(cfg, registry)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        for w in caught:
            if "synchroniz" in str(w.message):
                by_line[f"{Path(w.filename).name}:{w.lineno}"] += 1
        print(f"synchronising torch calls by line (set_sync_debug_mode('warn'); a per-step sync counts >= {steps}):")
        for line, n in by_line.most_common(15):
            print(f"  {line:40s} {n:6d}" + ("  <- every step" if n >= steps else ""))
        every = [line for line, n in by_line.items() if n >= steps]
        print("verdict: " + ("a line synchronises at every step: " + ", ".join(every) if every
                             else "no line synchronises at every step"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
