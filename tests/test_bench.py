"""The benchmark runs end to end on a minimal setting and prints its tables (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from zoo.training.threads import available_cores

from .conftest import ROOT

BENCH = [sys.executable, str(ROOT / "benchmarks" / "bench.py")]


def _bench(*args: str, timeout: float = 600, threads: str = "1", command: bool = False) -> str:
    r = subprocess.run([*BENCH, "--workloads", "digits", "--reps", "1", "--steps", "40", "--no-server",
                        "--no-startup", "--threads", threads, *([] if command else ["--no-command"]), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def every_variant(tmp_path_factory) -> tuple[str, object]:
    """One benchmark of every variant (a, b, c and d), read by the two tests below, and its --json file."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    return _bench("--variants", "a,b,c,d", "--json", str(out)), out


def test_prints_rates_and_ratios(every_variant):
    out, json_file = every_variant
    assert "steps per second (median of 1, interleaved)" in out
    rates = re.search(r"^digits\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+|-)\s*$", out, re.M)
    assert rates, out  # steps, (a), (b) loop, (b) whole command, (c), (d) (left out without lightning)
    assert int(rates.group(1)) == 40  # one epoch of digits' 1,257 training rows in batches of 32
    assert all(int(rates.group(k)) > 0 for k in (2, 3, 5))  # the whole command may round to 0 steps/s
    ratios = re.search(r"^digits\s+(\d+\.\d\d)\s+(\d+\.\d\d)-(\d+\.\d\d)\s+>= 0\.80\s+(\d+\.\d\d)\s+-\s+"
                       r"(\d+\.\d\d)\s+(-|\d+\.\d\d)\s+(\d+\.\d)\s+(-|\d+\.\d)\s*$", out, re.M)
    # b/a, b/a in each repetition (min-max), target, cmd/a, server/a (left out), c/a, d/a, b/c, b/d
    assert ratios, out
    assert ratios.group(1) == ratios.group(2) == ratios.group(3)  # one repetition: its own ratio is the median
    assert (ratios.group(6) == "-") == (rates.group(6) == "-") == (ratios.group(8) == "-")  # d: all or nothing
    assert "targets: digits: (b) >= 0.80 x (a)" in out and "where (b)'s loop time goes" in out
    assert json_file.stat().st_size > 0


def test_lightning_variant_or_says_why_it_is_left_out(every_variant):
    out, _ = every_variant
    rates = re.search(r"^digits\s+40\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+|-)\s*$", out, re.M)  # (d) last
    assert rates, out
    if importlib.util.find_spec("lightning") is None:
        assert "left out: digits (d) lightning: lightning is not installed" in out and rates.group(1) == "-"
    else:
        assert rates.group(1) != "-" and "left out: digits (d)" not in out, out


def test_both_thread_settings_and_the_whole_command_against_the_bare_script():
    """Every variant at the user's defaults and at OMP_NUM_THREADS=1; the default zoo train beside the bare script."""
    out = _bench("--variants", "a", "--threads", "default,1", "--command-epochs", "1", command=True)
    assert out.index("### threads: the user's defaults: no OMP_NUM_THREADS") < out.index(
        "### threads: OMP_NUM_THREADS=1 in every variant")
    assert len(re.findall(r"^digits\s+40\s+\d+\s*$", out, re.M)) == 2, out  # (a)'s rate in each table
    assert "the whole default command, from the shell" in out
    rows = re.findall(r"^(default|1)\s+(\d+\.\d\d)\s+(\d+\.\d\d)\s+(\d+\.\d\d)\s+\S+\s+\d+\s+\d+\s+(\d+)"
                      r"\s+(0\.\d{3}|1\.000)\s+(0\.\d{3}|1\.000)\s*$", out, re.M)
    # threads, bare s, zoo s, zoo/bare, each rep, bare steps/s, zoo steps/s, zoo.threads, test accuracies
    assert [r[0] for r in rows] == ["default", "1"], out
    default, one = rows
    assert one[4] == "1"  # OMP_NUM_THREADS=1 was respected by zoo train's thread policy
    assert 1 <= int(default[4]) <= max(1, available_cores() - 1)  # auto leaves a core for the writer
    assert "error:" not in out


def test_rejects_bad_thread_settings_and_precisions():
    r = subprocess.run([*BENCH, "--threads", "two"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--threads 'two': give default and/or thread counts" in r.stderr
    r = subprocess.run([*BENCH, "--precision", "fp8"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "invalid choice: 'fp8'" in r.stderr


def test_rejects_an_unknown_workload():
    r = subprocess.run([*BENCH, "--workloads", "imagenet"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown workload imagenet" in r.stderr


@pytest.mark.parametrize("name", ["mlp50k", "lstm", "gin"])
def test_every_workload_trains_in_the_raw_variant(name):  # gpt: only on a GPU (benchmarks/gpu.sh)
    """The raw loop builds each workload's model and data exactly as zoo train does."""
    r = subprocess.run([*BENCH, "_child", "a", name, "1", str(ROOT)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"steps": ' in r.stdout and '"loop_s": ' in r.stdout


def test_profile_of_the_default_command_names_every_phase(tmp_path):
    """benchmarks/profile_train.py: the real zoo train, timed phase by phase; its table written."""
    out_file = tmp_path / "profile.md"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_train.py"), "--reps", "1", "--markdown",
                        "--out", str(out_file), "--", "trainer.max_epochs=1", "tracking.system_metrics=false"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    table = out_file.read_text()
    for phase in ("imports", "config", "validation", "data", "model", "run creation", "loop", "test pass",
                  "checkpoints etc.", "plots", "model logging", "run end", "shutdown", "other", "whole command"):
        assert re.search(rf"^\| {re.escape(phase)} \| \d+\.\d\d \| -?\d+% \|", table, re.M), (phase, table)
    assert re.search(r"run 1: \d+\.\d\d s .*run [0-9a-f]{32} \(experiment 'zoo'\)", r.stdout), r.stdout  # its summary


def test_sweep_overhead_times_every_trial_of_the_sweep(tmp_path):
    """benchmarks/sweep_overhead.py on a 2-trial grid: both trials found and timed phase by phase (no timing asserted)."""
    out = tmp_path / "sweep.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep_overhead.py"), "--trials", "2", "--json",
                        str(out), "--", "tracking.system_metrics=false"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    run = json.loads(out.read_text())["runs"][0]
    assert run["trials"] == 2 and len(run["phases"]) == 2
    assert all(p["loop+test"] > 0 and p["model logging"] > 0 and p["run creation"] > 0 for p in run["phases"])
    assert run["wall_s"] > run["loop_test_s"] > 0
    assert "per trial beyond training (goal < 0.5)" in r.stdout and "each trial's phases" in r.stdout


def test_long_run_reports_speed_lag_memory_and_opens_the_run(tmp_path):
    """benchmarks/long_run.py, very short: the run FINISHED, zoo compare and zoo ui open it, every row read back."""
    out = tmp_path / "long.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_run.py"), "--steps", "80", "--raw-steps", "40",
                        "--poll", "1", "--windows", "2", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    result = json.loads(out.read_text())
    assert result["status"] == "FINISHED" and result["steps"] == 80 and result["compare"]["rc"] == 0
    assert result["loss_rows"] == 80  # one train/loss row per step, none lost
    assert result["ui"]["train/loss history"]["rows"] == 80 and result["ui"]["page"]["status"] == 200
    assert result["peak_main_mb"] > 0 and result["db_mb"] > 0 and result["windows"]
    assert "the loop's speed over the run" in r.stdout


def test_compare_on_a_generated_sweep_is_exact(tmp_path):
    """benchmarks/compare_large.py (1,000 runs by default) on 6 runs: every run in the table, the
    best first, the groups' counts adding up (it asserts those itself; no timing is asserted)."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_large.py"), "--runs", "6", "--seeds", "3"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "s for 6 rows (every run; the best first)" in r.stdout
    assert "for 2 groups of 3 (counts add up to 6)" in r.stdout
