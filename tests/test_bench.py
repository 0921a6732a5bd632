"""The benchmark runs end to end on a minimal setting and prints its tables (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

BENCH = [sys.executable, str(ROOT / "benchmarks" / "bench.py")]


def _bench(*args: str, timeout: float = 300) -> str:
    r = subprocess.run([*BENCH, "--workloads", "digits", "--reps", "1", "--steps", "40", "--no-server",
                        "--no-startup", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_prints_rates_and_ratios(tmp_path):
    out = _bench("--variants", "a,b,c", "--json", str(tmp_path / "bench.json"))
    assert "steps per second (median of 1, interleaved)" in out
    rates = re.search(r"^digits\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", out, re.M)
    assert rates, out  # steps, (a), (b) loop, (b) whole command, (c)
    assert int(rates.group(1)) == 40  # one epoch of digits' 1,257 training rows in batches of 32
    assert all(int(rates.group(k)) > 0 for k in (2, 3, 5))  # the whole command may round to 0 steps/s
    ratios = re.search(r"^digits\s+(\d+\.\d\d)\s+(\d+\.\d\d)-(\d+\.\d\d)\s+>= 0\.80\s+(\d+\.\d\d)\s+-\s+"
                       r"(\d+\.\d\d)\s+-\s+(\d+\.\d)\s+-\s*$", out, re.M)
    # b/a, b/a in each repetition (min-max), target, cmd/a, server/a (left out), c/a, d/a (left out), b/c, b/d (left out)
    assert ratios, out
    assert ratios.group(1) == ratios.group(2) == ratios.group(3)  # one repetition: its own ratio is the median
    assert "targets: digits: (b) >= 0.80 x (a)" in out and "where (b)'s loop time goes" in out
    assert (tmp_path / "bench.json").stat().st_size > 0


def test_lightning_variant_or_says_why_it_is_left_out():
    out = _bench("--variants", "a,d")
    if importlib.util.find_spec("lightning") is None:
        assert "left out: digits (d) lightning: lightning is not installed" in out
    else:
        assert re.search(r"^digits\s+40\s+\d+\s+\d+\s*$", out, re.M), out


def test_rejects_an_unknown_workload():
    r = subprocess.run([*BENCH, "--workloads", "imagenet"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown workload imagenet" in r.stderr


@pytest.mark.parametrize("name", ["mlp50k", "lstm", "gin"])
def test_every_workload_trains_in_the_raw_variant(name):
    """The raw loop builds each workload's model and data exactly as zoo train does."""
    r = subprocess.run([*BENCH, "_child", "a", name, "1", str(ROOT)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"steps": ' in r.stdout and '"loop_s": ' in r.stdout


def test_compare_on_a_generated_sweep_is_exact(tmp_path):
    """benchmarks/compare_large.py (1,000 runs by default) on 6 runs: every run in the table, the
    best first, the groups' counts adding up (it asserts those itself; no timing is asserted)."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_large.py"), "--runs", "6", "--seeds", "3"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "s for 6 rows (every run; the best first)" in r.stdout
    assert "for 2 groups of 3 (counts add up to 6)" in r.stdout
