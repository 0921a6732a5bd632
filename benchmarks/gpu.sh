#!/usr/bin/env bash
# The GPU checks of issue 16 in one short run (a few minutes on one GPU), from the repository root:
#
#   benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: gpu-results (every table and log goes there)
#
# 1. tests/test_gpu.py (CUDA at 32, bf16, fp16 and torch.compile; MLflow's system/gpu_* metrics);
# 2. bench.py on CUDA, (a) raw against (b) zoo, on digits and the large gpt workload (4.8M parameters),
#    at fp32, bf16 and with torch.compile; GPU utilisation from MLflow's system metrics (sampled every second);
# 3. gpu_sync.py: host-device synchronisations of zoo's loop, counted by the profiler and by line.
# Each step is bounded by `timeout`; a step that fails is reported and the next one still runs.
set -u
out=${1:-gpu-results}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
status=0
step() {  # step NAME SECONDS COMMAND...: run, tee into OUT/NAME.txt, remember a failure
  local name=$1 seconds=$2; shift 2
  echo "== $name: $*" | tee "$out/$name.txt"
  timeout "$seconds" "$@" 2>&1 | tee -a "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name exited $rc" | tee -a "$out/$name.txt"; status=1; }
}
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
export MLFLOW_DISABLE_TELEMETRY=true
step test_gpu 240 "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py
common=(--device cuda --variants a,b --workloads digits,gpt --reps 2 --threads default --no-server --no-startup
        --no-command --zoo-args "tracking.system_metrics_interval=1" --markdown)
step bench_fp32 300 "$py" benchmarks/bench.py "${common[@]}" --json "$out/bench_fp32.json"
step bench_bf16 300 "$py" benchmarks/bench.py "${common[@]}" --precision bf16 --json "$out/bench_bf16.json"
step bench_compile 420 "$py" benchmarks/bench.py "${common[@]}" --compile --json "$out/bench_compile.json"
step sync 240 "$py" benchmarks/gpu_sync.py --epochs 3
exit $status
