"""The GPU paths: a run on CUDA with bf16, fp16 and torch.compile, and MLflow's GPU system metrics.

CI has no GPU, so everything but the first test runs only where ``torch.cuda.is_available()``
(``make test`` on a GPU machine). The first test checks, everywhere, that the piece MLflow needs
to sample a GPU is installed: without it a GPU run records no ``system/gpu_*`` metric, silently.
"""

from __future__ import annotations

import pytest
import torch

from zoo.training.train import train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_mlflow_can_sample_a_gpu():
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

    try:
        GPUMonitor()
    except ImportError as exc:  # nvidia-ml-py missing: MLflow would skip the GPU without a word
        pytest.fail(f"MLflow's GPU monitor cannot start: {exc}")
    except RuntimeError as exc:  # installed; there is no GPU (or no driver) on this machine
        assert "NVML" in str(exc)


@cuda
@pytest.mark.parametrize("precision,compile_", [("32", False), ("bf16", False), ("fp16", False), ("32", True)])
def test_a_cuda_run(make_cfg, registry, client, precision, compile_):
    m = train(make_cfg("trainer.device=cuda", f"trainer.precision={precision}", f"trainer.compile={compile_}",
                       "trainer.max_epochs=3", "tracking.log_model=false"), registry)
    run = client.get_run(m["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["zoo.device"].startswith("cuda")
    assert m["test/accuracy"] > 0.85  # digits MLP, 3 epochs


@cuda
def test_gpu_system_metrics_are_recorded(make_cfg, registry, client):
    m = train(make_cfg("trainer.device=cuda", "trainer.max_epochs=3", "tracking.system_metrics=true",
                       "tracking.system_metrics_interval=0.5", "tracking.log_model=false"), registry)
    names = set(client.get_run(m["run_id"]).data.metrics)
    assert {"system/gpu_0_utilization_percentage", "system/gpu_0_memory_usage_megabytes"} <= names, sorted(names)
