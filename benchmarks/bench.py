#!/usr/bin/env python
"""How fast Zoo trains, against the limit and against the usual ways of logging to MLflow.

One command measures, for each workload, the same model, data, optimizer, seed and number of
steps in every variant, interleaved (each repetition runs every variant once, in a shuffled
order), and prints the median steps per second and the ratios side by side:

  (a) raw      a plain PyTorch loop over tensors already in memory (randperm and index
               slicing; PyG batching for graphs), no logging: the limit.
  (b) zoo      ``zoo train`` with its full default tracking (per-step loss, gradient and weight
               norms, histograms, system metrics, checkpoints, the logged model). Its training
               loop is timed by the run itself (``perf/steps_per_s``, read back from MLflow);
               ``zoo cmd`` is the whole command, start-up included; ``zoo server`` is the loop
               again, logging to a local ``mlflow server`` over HTTP.
  (c) tutorial ``torch.utils.data.DataLoader`` over a ``TensorDataset`` (torch-geometric's
               ``DataLoader`` for graphs), ``loss.item()`` and a synchronous
               ``mlflow.log_metric`` at every step.
  (d) lightning PyTorch Lightning's ``Trainer`` with its ``MLFlowLogger`` logging the loss at
               every step (needs ``pip install lightning``; left out, and said so, without it).

Every variant runs in its own process and its own SQLite store in a temporary folder, twice:
at the user's defaults (no ``OMP_NUM_THREADS``: torch's own thread count in (a), (c), (d) and
Zoo's thread policy in (b)) and at ``OMP_NUM_THREADS=1`` (``--threads default,1``); the report
has one set of tables for each. Beside them, the whole default ``zoo train`` (no arguments, 400
steps) against ``benchmarks/bare_digits.py``, a bare script that trains the same MLP for the same
400 steps with torch's defaults and evaluates it, timed from the shell, side by side.

``--device cuda`` (with ``--precision bf16`` and ``--compile``) runs (a) and (b) on a GPU and adds
the ``gpt`` workload, a transformer of about 4.8 million parameters (benchmarks/gpu.sh). Usage::

    .venv/bin/python benchmarks/bench.py                       # everything, 3 repetitions
    .venv/bin/python benchmarks/bench.py --workloads digits --reps 5 --steps 1600
    .venv/bin/python benchmarks/bench.py --variants a,b,c --no-server --json out.json
    .venv/bin/python benchmarks/bench.py --device cuda --variants a,b --precision bf16

See benchmarks/README.md for the measured table and docs/performance.md for what makes (b) fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 0
LR = 1e-3  # conf/optimizer/adam.yaml: every variant uses Adam(lr=1e-3)

VARIANTS = {
    "a": "(a) raw",
    "b": "(b) zoo loop",
    "cmd": "(b) zoo cmd",
    "server": "(b) zoo server",
    "c": "(c) tutorial",
    "d": "(d) lightning",
}


@dataclass(frozen=True)
class Workload:
    """One model on one dataset with one batch size; ``steps`` is rounded to whole epochs."""

    name: str
    model: str
    data: str
    batch: int
    steps: int
    model_args: dict = field(default_factory=dict)
    data_args: dict = field(default_factory=dict)
    plugin_dir: str | None = None
    target: float = 0.90  # (b) / (a) the issue asks for
    about: str = ""
    gpu: bool = False  # too large for the CPU: in the default list only with --device cuda

    def zoo_overrides(self, epochs: int, opts: Options) -> list[str]:
        def value(v):
            return json.dumps(v).replace(" ", "") if isinstance(v, (list, dict)) else str(v)

        args = [f"model={self.model}", f"data={self.data}", f"trainer.batch_size={self.batch}",
                f"trainer.max_epochs={epochs}", f"trainer.device={opts.device}", f"seed={SEED}",
                f"trainer.precision={opts.precision}", f"trainer.compile={str(opts.compile).lower()}"]
        args += [f"model.{k}={value(v)}" for k, v in self.model_args.items()]
        args += [f"data.{k}={value(v)}" for k, v in self.data_args.items()]
        if self.plugin_dir:
            args.append(f"plugins.dir={self.plugin_dir}")
        return args


@dataclass(frozen=True)
class Options:
    """Where and how every variant trains: ``device`` (cpu, cuda), ``precision`` (32, bf16), ``compile``."""

    device: str = "cpu"
    precision: str = "32"
    compile: bool = False

    def label(self) -> str:
        return f"{self.device}, precision {self.precision}" + (", torch.compile" if self.compile else "")


WORKLOADS = {w.name: w for w in (
    Workload("digits", "mlp", "digits", 32, 800, target=0.80,
             about="the default MLP 64-256-256-10 on digits (1,257 training rows), batch 32"),
    Workload("mlp50k", "mlp", "synthetic", 256, 137, model_args={"hidden_sizes": [512, 512, 512]},
             plugin_dir=str(HERE / "plugins"),
             about="MLP 64-512-512-512-10 on 50,000 synthetic rows (35,000 training), batch 256"),
    Workload("lstm", "lstm", "sine", 64, 440,
             about="LSTM (hidden 64) on sine waves of 50 steps (1,400 training sequences), batch 64"),
    Workload("gin", "gin", "cycles", 64, 220,
             about="GIN (3 layers, hidden 64) on 2,000 molecule-like graphs (1,400 training), batch 64"),
    Workload("gpt", "gpt", "text", 64, 360, gpu=True, target=0.95,
             model_args={"d_model": 256, "n_heads": 8, "n_layers": 6, "d_ff": 1024, "dropout": 0.0},
             data_args={"block_size": 128, "stride": 32},
             about="GPT (6 layers, d_model 256, 4.8M parameters) on the bundled corpus, 128 characters, batch 64"),
)}


# =============================================================================== the children
# Each variant of (a), (c), (d) runs in a fresh process: ``bench.py _child VARIANT WORKLOAD EPOCHS DIR OPTIONS``
# (OPTIONS: the Options as JSON) prints one JSON line {"steps": ..., "loop_s": ...}.

def _registry(w: Workload):
    from zoo.plugin.registry import load_registry

    return load_registry([w.plugin_dir] if w.plugin_dir else [])


def _setup(w: Workload, device: str = "cpu"):
    """The workload's training split, model and task, built through the factory as ``zoo train`` builds them."""
    import torch

    reg = _registry(w)
    reg.check_pair(w.model, w.data)
    torch.manual_seed(SEED)
    splits = reg.load_dataset(w.data, SEED, **w.data_args)
    torch.manual_seed(SEED)
    model = reg.create_model(w.model, splits.info, **w.model_args).to(device)
    return splits.train.to(device), model, reg.task(splits.info.task)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _graphs(split):
    return getattr(split, "graphs", None)


def child_raw(w: Workload, epochs: int, folder: Path, opts: Options = Options()) -> dict:
    """(a): randperm and index slicing over tensors in memory (PyG ``Batch`` for graphs), nothing logged.

    On a GPU, under ``opts.precision`` (autocast) and ``opts.compile`` (``torch.compile``) as zoo's loop runs them.
    """
    import torch

    train, model, task = _setup(w, opts.device)
    forward = torch.compile(model) if opts.compile else model
    autocast = torch.autocast(torch.device(opts.device).type, dtype=torch.bfloat16,
                              enabled=opts.precision == "bf16")
    graphs = _graphs(train)
    if graphs is not None:
        from torch_geometric.data import Batch
    else:
        x, y = train.x, train.y
    n, bs = (len(graphs) if graphs is not None else len(x)), w.batch
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    steps = 0
    _sync(opts.device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(opts.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if graphs is not None:
                xb = Batch.from_data_list([graphs[j] for j in idx.tolist()]).to(opts.device)
                yb = xb.y
            else:
                xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = task.loss(forward(xb), yb, xb)
            loss.backward()
            opt.step()
            steps += 1
    _sync(opts.device)
    return {"steps": steps, "loop_s": time.perf_counter() - t0, "loss": loss.item()}


def _loader(train, bs: int, generator):
    graphs = _graphs(train)
    if graphs is not None:
        from torch_geometric.loader import DataLoader

        return DataLoader(graphs, batch_size=bs, shuffle=True, generator=generator), True
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(train.x, train.y), batch_size=bs, shuffle=True, generator=generator), False


def child_tutorial(w: Workload, epochs: int, folder: Path, opts: Options = Options()) -> dict:
    """(c): a DataLoader, ``loss.item()`` and a synchronous ``mlflow.log_metric`` at every step (32-bit, eager)."""
    import mlflow
    import torch

    train, model, task = _setup(w)
    model.to(opts.device)
    loader, graphs = _loader(train, w.batch, torch.Generator().manual_seed(SEED))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment("bench-tutorial")
    model.train()
    steps = 0
    with mlflow.start_run():
        t0 = time.perf_counter()
        for _ in range(epochs):
            for batch in loader:
                batch = batch.to(opts.device) if graphs else [t.to(opts.device) for t in batch]
                xb, yb = (batch, batch.y) if graphs else batch
                opt.zero_grad()
                loss = task.loss(model(xb), yb, xb)
                loss.backward()
                opt.step()
                steps += 1
                mlflow.log_metric("train_loss", loss.item(), step=steps)
        seconds = time.perf_counter() - t0
    return {"steps": steps, "loop_s": seconds, "loss": loss.item()}


def child_lightning(w: Workload, epochs: int, folder: Path, opts: Options = Options()) -> dict:
    """(d): Lightning's Trainer and MLFlowLogger, ``self.log`` of the loss at every step.

    Lightning's defaults otherwise (a checkpoint each epoch), minus the progress bar and the
    model summary (Zoo's progress bar is off when the output is not a terminal, as here). The
    loop is timed from ``on_train_start`` to ``on_train_end``, so Lightning's set-up is not counted.
    """
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    try:
        import lightning as L
        from lightning.pytorch.loggers import MLFlowLogger
    except ImportError:
        return {"skipped": "lightning is not installed (pip install lightning)"}
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    train, model, task = _setup(w)
    loader, graphs = _loader(train, w.batch, torch.Generator().manual_seed(SEED))

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            xb, yb = (batch, batch.y) if graphs else batch
            loss = task.loss(self.model(xb), yb, xb)
            self.log("train_loss", loss, batch_size=w.batch)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    class Timer(L.Callback):
        def on_train_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.seconds = time.perf_counter() - self.t0

    timer = Timer()
    logger = MLFlowLogger(experiment_name="bench-lightning", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    logger.experiment, logger.run_id  # create the store and the run before the clock starts
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if opts.device.startswith("cuda") else "cpu", devices=1, logger=logger, log_every_n_steps=1,
                        default_root_dir=str(folder), enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(Module(), train_dataloaders=loader)
    return {"steps": trainer.global_step, "loop_s": timer.seconds, "loss": float(trainer.callback_metrics["train_loss"])}


CHILDREN = {"a": child_raw, "c": child_tutorial, "d": child_lightning}


# =============================================================================== the parent

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _env(threads: str) -> dict:
    """The variants' environment: ``threads`` "default" (the user's: no thread variable) or N (OMP_NUM_THREADS=N)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and k not in THREAD_VARS}
    # MLFLOW_DISABLE_TELEMETRY: offline, MLflow's telemetry thread gives up and unsets an environment variable,
    # which races with a server thread copying the environment (an intermittent 500 on log-batch, KeyError
    # '_MLFLOW_TELEMETRY_SESSION_ID'); it is the same for every variant
    if threads != "default":
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(PYTHONWARNINGS="ignore", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", GIT_PYTHON_REFRESH="quiet",
               MLFLOW_DISABLE_TELEMETRY="true")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _zoo() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli"]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_child(variant: str, w: Workload, epochs: int, folder: Path, env: dict, timeout: float,
              opts: Options = Options()) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", variant, w.name, str(epochs), str(folder),
           json.dumps(opts.__dict__)]
    r = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return {"error": _last_line(r.stderr) or f"exit {r.returncode}"}
    return json.loads(_last_line(r.stdout))


def run_zoo(w: Workload, epochs: int, folder: Path, env: dict, uri: str, timeout: float,
            opts: Options = Options(), extra: tuple[str, ...] = ()) -> dict:
    """``zoo train`` as a user runs it; the loop's own timing and breakdown come back from the run."""
    import mlflow

    cmd = [*_zoo(), "train", *w.zoo_overrides(epochs, opts), f"tracking.uri={uri}", "tracking.experiment=bench", *extra]
    t0, wall0 = time.perf_counter(), time.time()
    r = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout)
    total, wall1 = time.perf_counter() - t0, time.time()
    if r.returncode != 0:
        return {"error": _last_line(r.stderr) or f"exit {r.returncode}"}
    run_id = _last_line(r.stdout).split(" run ")[-1].split()[0]
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    m = run.data.metrics
    if "perf/fit_s" not in m:
        return {"error": f"run {run_id} has no perf/fit_s metric (an older zoo?)"}
    gpu = [h.value for h in client.get_metric_history(run_id, "system/gpu_0_utilization_percentage")]
    return {"steps": int(m["perf/steps"]), "loop_s": m["perf/fit_s"], "command_s": total,
            "threads": run.data.tags.get("zoo.threads", "?"), "gpu_util": statistics.mean(gpu) if gpu else None,
            "perf": {k[5:]: v for k, v in m.items() if k.startswith("perf/")},
            "grad_every": int(run.data.tags.get("zoo.grad_every", 0)),
            "writer": run.data.tags.get("zoo.metric_writer", "?"),
            # the command's time outside the loop: before the run exists (imports, data, model, store),
            # inside the run but not training (test pass, plots, the logged model), and exiting
            "phases": {"before_run_s": run.info.start_time / 1000 - wall0,
                       "run_not_loop_s": (run.info.end_time - run.info.start_time) / 1000 - m["perf/fit_s"],
                       "exit_s": wall1 - run.info.end_time / 1000}}


@contextlib.contextmanager
def mlflow_server(folder: Path, env: dict):
    """A local ``mlflow server`` over SQLite in its own process group, killed on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {folder / 'server.log'}")
            time.sleep(0.5)
        yield uri
    finally:
        from zoo._runtime import stop_group

        stop_group(proc)  # the server and its workers
        log.close()


def run_command(kind: str, folder: Path, env: dict, timeout: float, epochs: int | None = None) -> dict:
    """The whole default command from the shell: ``zoo train`` with no arguments, or the bare script.

    ``zoo train`` logs into ``folder``'s ``mlruns/`` (its default store, made beforehand: a user's
    exists already); both print what they trained, read back here. ``epochs``: both train this many
    epochs instead of the default 20 (``zoo train trainer.max_epochs=N``; the tests use 1).
    """
    import mlflow

    more = [] if epochs is None else [str(epochs) if kind == "bare" else f"trainer.max_epochs={epochs}"]
    cmd = [sys.executable, str(HERE / "bare_digits.py")] if kind == "bare" else [*_zoo(), "train"]
    cmd += more
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        return {"error": _last_line(r.stderr) or f"exit {r.returncode}"}
    if kind == "bare":
        return {"command_s": seconds, **json.loads(_last_line(r.stdout)), "threads": "torch's default"}
    run_id = _last_line(r.stdout).split(" run ")[-1].split()[0]
    run = mlflow.MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}").get_run(run_id)
    m = run.data.metrics
    return {"command_s": seconds, "steps": int(m["perf/steps"]), "loop_s": m["perf/fit_s"],
            "test_accuracy": m.get("test/accuracy"), "threads": run.data.tags.get("zoo.threads", "?")}


def startup_times(env: dict, folder: Path) -> dict:
    """Wall seconds of ``python -c 'import torch'``, ``zoo list`` and ``zoo train --help``."""
    out = {}
    for name, cmd in (("import torch", [sys.executable, "-c", "import torch"]),
                      ("zoo list", [*_zoo(), "list"]),
                      ("zoo train --help", [*_zoo(), "train", "--help"])):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=folder, capture_output=True, timeout=120)
        out[name] = time.perf_counter() - t0
    return out


def steps_per_epoch(w: Workload) -> int:
    return _registry(w).load_dataset(w.data, SEED, **w.data_args).train.num_batches(w.batch)


def wait_quiet(max_load: float | None, patience: float) -> float:
    load = os.getloadavg()[0]
    if max_load is None:
        return load
    deadline = time.time() + patience
    while load > max_load and time.time() < deadline:
        print(f"  load average {load:.2f} > {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(20)
        load = os.getloadavg()[0]
    return load


# =============================================================================== the report

def _median(values):
    return statistics.median(values) if values else float("nan")


def summarize(results: dict, workloads: list[Workload]) -> dict:
    """Median steps per second per workload and variant, and the ratios."""
    out = {}
    for w in workloads:
        rows = results.get(w.name, {})
        rate = {}
        for v, runs in rows.items():
            ok = [r for r in runs if "loop_s" in r]
            if not ok:
                continue
            key = "command_s" if v == "cmd" else "loop_s"
            rate[v] = _median([r["steps"] / r[key] for r in ok])
        out[w.name] = {"steps": next((r["steps"] for runs in rows.values() for r in runs if "steps" in r), None),
                       "rate": rate, "ratio": {v: rate[v] / rate["a"] for v in rate if "a" in rate}}
    return out


def paired_ratios(rows: dict) -> list[float]:
    """(b)/(a) within each repetition: the two ran minutes apart at most, on the same machine state."""
    out = []
    for a, b in zip(rows.get("a", []), rows.get("b", [])):
        if "loop_s" in a and "loop_s" in b:
            out.append((b["steps"] / b["loop_s"]) / (a["steps"] / a["loop_s"]))
    return out


def _fmt(x, digits=0) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths)))
                     for r in rows)


def report(results: dict, workloads: list[Workload], variants: list[str], meta: dict, markdown: bool = False) -> str:
    s = summarize(results, workloads)
    out = []
    shown = [v for v in VARIANTS if v in variants]
    rows = [["workload", "steps", *[VARIANTS[v] for v in shown]]]
    for w in workloads:
        r = s[w.name]
        rows.append([w.name, _fmt(r["steps"]), *[_fmt(r["rate"].get(v)) for v in shown]])
    out += [f"steps per second (median of {meta['reps']}, interleaved)", table(rows, markdown), ""]

    rows = [["workload", "b/a", "b/a each rep", "target b/a", "cmd/a", "server/a", "c/a", "d/a", "b/c", "b/d"]]
    checks = []
    for w in workloads:
        r, ratio = s[w.name]["rate"], s[w.name]["ratio"]
        b_over = {v: (r["b"] / r[v] if "b" in r and v in r else None) for v in ("c", "d")}
        pairs = paired_ratios(results.get(w.name, {}))
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
        rows.append([w.name, _fmt(ratio.get("b"), 2), spread, f">= {w.target:.2f}", _fmt(ratio.get("cmd"), 2),
                     _fmt(ratio.get("server"), 2), _fmt(ratio.get("c"), 2), _fmt(ratio.get("d"), 2),
                     _fmt(b_over["c"], 1), _fmt(b_over["d"], 1)])
        if ratio.get("b") is not None:
            checks.append((f"{w.name}: (b) >= {w.target:.2f} x (a)", ratio["b"] >= w.target, f"{ratio['b']:.2f}"))
        if w.name == "digits":
            for v, target in (("c", 4), ("d", 6)):
                if b_over[v] is not None:
                    checks.append((f"digits: (b) >= {target} x ({v})", b_over[v] >= target, f"{b_over[v]:.1f}"))
    out += ["ratios (b = zoo's loop, cmd = the whole zoo command, server = zoo's loop logging over HTTP)",
            table(rows, markdown), ""]
    if checks:
        out += ["targets: " + "; ".join(f"{name}: {value} {'ok' if ok else 'MISSED'}" for name, ok, value in checks), ""]

    parts = ("eval_s", "checkpoint_s", "norms_s", "fetch_s", "writer_s")
    rows = [["workload", "zoo loop s", "eval", "checkpoints", "norms", "fetch+queue", "metric writer", "rows/step",
             "grad_every", "written by", "zoo.threads", "GPU util %"]]
    for w in workloads:
        runs = [r for r in results.get(w.name, {}).get("b", []) if "perf" in r]
        if not runs:
            continue
        loop = _median([r["loop_s"] for r in runs])
        share = {p: _median([r["perf"].get(p, 0.0) / r["loop_s"] for r in runs]) for p in parts}
        rows.append([w.name, _fmt(loop, 2), *[f"{100 * share[p]:.1f}%" for p in parts],
                     _fmt(_median([r["perf"].get("metric_rows", 0) / r["steps"] for r in runs]), 1),
                     str(int(_median([r["grad_every"] for r in runs]))),
                     "/".join(sorted({r["writer"] for r in runs})),
                     "/".join(sorted({str(r.get("threads", "?")) for r in runs})),
                     _fmt(_median([r["gpu_util"] for r in runs if r.get("gpu_util") is not None]))])
    phases = [["workload", "zoo loop s", "whole command s", "before the run s", "in the run, not the loop s", "exit s"]]
    for w in workloads:
        runs = [r for r in results.get(w.name, {}).get("b", []) if "phases" in r]
        if runs:
            phases.append([w.name, _fmt(_median([r["loop_s"] for r in runs]), 2),
                           _fmt(_median([r["command_s"] for r in runs]), 1),
                           *[_fmt(_median([r["phases"][k] for r in runs]), 1)
                             for k in ("before_run_s", "run_not_loop_s", "exit_s")]])
    if len(rows) > 1:
        out += ["where (b)'s loop time goes (median share of the loop time; the metric writer works beside the loop, "
                "in its own process or in a thread)",
                table(rows, markdown), ""]
    if len(phases) > 1:
        out += ["where the whole zoo command's time goes (median seconds; before the run: start-up, imports, data, "
                "model, opening the store; in the run: the test pass, plots, the logged model, ending the run)",
                table(phases, markdown), ""]

    errors = [(w, v, r["error"]) for w, rows_ in results.items() for v, runs in rows_.items() for r in runs if "error" in r]
    skipped = {(w, v, r["skipped"]) for w, rows_ in results.items() for v, runs in rows_.items() for r in runs if "skipped" in r}
    for w, v, why in sorted(skipped):
        out.append(f"left out: {w} {VARIANTS[v]}: {why}")
    for w, v, e in errors:
        out.append(f"error: {w} {VARIANTS[v]}: {e}")
    text = "\n".join(out)
    if markdown:  # a blank line between each title and its table
        text = re.sub(r"(?m)^([^|\n].*)\n\|", r"\1\n\n|", text)
    return text


def threads_label(setting: str) -> str:
    if setting == "default":
        return ("the user's defaults: no OMP_NUM_THREADS (torch's own thread count in (a), (c), (d) and the bare "
                "script; Zoo's thread policy in (b), see zoo.threads)")
    return f"OMP_NUM_THREADS={setting} in every variant"


def command_report(commands: dict, markdown: bool) -> str:
    """The default ``zoo train`` against the bare script, whole commands from the shell, per thread setting."""
    rows = [["threads", "bare script s", "zoo train s", "zoo/bare", "zoo/bare each rep", "bare loop steps/s",
             "zoo loop steps/s", "zoo.threads", "test acc bare", "test acc zoo"]]
    for setting, pair in commands.items():
        bare = [r for r in pair.get("bare", []) if "command_s" in r]
        zoo = [r for r in pair.get("zoo", []) if "command_s" in r]
        each = [z["command_s"] / b["command_s"] for b, z in zip(pair.get("bare", []), pair.get("zoo", []))
                if "command_s" in b and "command_s" in z]
        b_s, z_s = _median([r["command_s"] for r in bare]), _median([r["command_s"] for r in zoo])
        rows.append([setting, _fmt(b_s, 2), _fmt(z_s, 2), _fmt(z_s / b_s if bare and zoo else None, 2),
                     f"{min(each):.2f}-{max(each):.2f}" if each else "-",
                     _fmt(_median([r["steps"] / r["loop_s"] for r in bare])),
                     _fmt(_median([r["steps"] / r["loop_s"] for r in zoo])),
                     "/".join(sorted({str(r["threads"]) for r in zoo})) or "-",
                     _fmt(_median([r["test_accuracy"] for r in bare]), 3),
                     _fmt(_median([r["test_accuracy"] for r in zoo if r.get("test_accuracy") is not None]), 3)])
    errors = [f"error: {setting} {kind}: {r['error']}" for setting, pair in commands.items()
              for kind, runs in pair.items() for r in runs if "error" in r]
    return "\n".join(["the whole default command, from the shell (median wall seconds; `zoo train` with no arguments "
                      "against benchmarks/bare_digits.py: the same MLP, 400 steps, evaluated; target zoo/bare <= 1.0)",
                      table(rows, markdown), *errors, ""])


def full_report(saved: dict, markdown: bool = False) -> str:
    """Every thread setting's tables, then the whole-command comparison and the start-up times."""
    meta, by_setting = saved["meta"], saved["results"]
    out = []
    for setting, results in by_setting.items():
        workloads = [WORKLOADS[n] for n in results if n in WORKLOADS]
        variants = [v for v in VARIANTS if any(results[w.name].get(v) for w in workloads)]
        if workloads:
            out += [f"### threads: {threads_label(setting)}", "", report(results, workloads, variants, meta, markdown), ""]
    if saved.get("commands"):
        out.append(command_report(saved["commands"], markdown))
    if meta.get("startup"):
        st = meta["startup"]
        out.append("start-up (median wall seconds): " + ", ".join(f"{k}: {_median(v):.2f}" for k, v in st.items()))
    text = "\n".join(out)
    if markdown:
        text = re.sub(r"(?m)^([^|\n].*)\n\|", r"\1\n\n|", text)
    return text


def machine() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for mod in ("torch", "mlflow", "lightning"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{mod} {version(mod)}")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {', '.join(versions)}"


# =============================================================================== main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        variant, name, epochs, folder = argv[1], argv[2], int(argv[3]), Path(argv[4])
        opts = Options(**json.loads(argv[5])) if len(argv) > 5 else Options()
        print(json.dumps(CHILDREN[variant](WORKLOADS[name], epochs, folder, opts)))
        return 0
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=None,
                   help=f"comma-separated: {', '.join(WORKLOADS)} (default: all but gpt; with --device cuda, all)")
    p.add_argument("--variants", default="a,b,c,d", help="comma-separated: a, b (zoo: loop and whole command), c, d")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every variant (the median is shown)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per run (rounded up to whole epochs; default: each workload's own)")
    p.add_argument("--no-server", action="store_true", help="skip (b) against a local mlflow server")
    p.add_argument("--server-workloads", default="digits",
                   help="the workloads that also run (b) against the mlflow server (default digits; 'all')")
    p.add_argument("--no-startup", action="store_true", help="skip timing `zoo list` and `zoo train --help`")
    p.add_argument("--no-command", action="store_true",
                   help="skip the whole default `zoo train` against the bare script (benchmarks/bare_digits.py)")
    p.add_argument("--command-epochs", type=int, default=None,
                   help="epochs of both whole commands (default: zoo train's own 20, with no argument)")
    p.add_argument("--threads", default="default,1",
                   help="thread settings, comma-separated: default (no OMP_NUM_THREADS: what a user gets) "
                        "and/or N (OMP_NUM_THREADS=N); default: default,1")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where (a) and (b) train (c, d: cpu or cuda)")
    p.add_argument("--precision", default="32", choices=("32", "bf16"), help="(a) and (b): 32-bit or bf16 autocast")
    p.add_argument("--compile", action="store_true", help="(a) and (b): torch.compile the model")
    p.add_argument("--zoo-args", default="", help="extra overrides for every zoo train of (b), space-separated")
    p.add_argument("--max-load", type=float, default=None,
                   help="before each repetition, wait (up to --patience s) until the 1-minute load average is below this")
    p.add_argument("--patience", type=float, default=600)
    p.add_argument("--json", type=Path, help="also write every measurement to this file")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    p.add_argument("--from-json", type=Path, metavar="FILE", help="print the report of a --json file again; run nothing")
    p.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    ns = p.parse_args(argv)

    if ns.from_json:
        saved = json.loads(ns.from_json.read_text())
        if saved["results"] and set(saved["results"]) <= set(WORKLOADS):  # one setting, as bench.py wrote it before
            saved["results"] = {str(saved["meta"]["threads"]): saved["results"]}
        meta = saved["meta"]
        print(f"Zoo benchmark on {meta['machine']}; {meta.get('options', 'cpu')}; started {meta['started']}; "
              f"load average before each repetition and at the end: {', '.join(f'{x:.2f}' for x in meta['loads'])}")
        print(full_report(saved, markdown=ns.markdown))
        return 0
    opts = Options(ns.device, ns.precision, ns.compile)
    gpu = opts.device.startswith("cuda")
    names = [n for n in (ns.workloads or ",".join(n for n, w in WORKLOADS.items() if gpu or not w.gpu)).split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    workloads = [WORKLOADS[n] for n in names]
    variants = [v for v in ns.variants.split(",") if v]
    bad = [v for v in variants if v not in ("a", "b", "c", "d")]
    if bad:
        p.error(f"unknown variant {', '.join(bad)}: choose from a, b, c, d")
    settings = [t.strip() for t in ns.threads.split(",") if t.strip()]
    if not settings or any(t != "default" and not t.isdecimal() for t in settings):
        p.error(f"--threads {ns.threads!r}: give default and/or thread counts, e.g. default,1")
    if "b" in variants:
        variants += ["cmd"] + ([] if ns.no_server else ["server"])
    extra = tuple(ns.zoo_args.split())
    # SIGTERM unwinds like Ctrl-C: the running variant is killed and the mlflow server stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import logging

    import mlflow  # noqa: F401  (first: importing it sets its logger to INFO)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    epochs = {}
    for w in workloads:
        per = steps_per_epoch(w)
        epochs[w.name] = max(1, math.ceil((ns.steps or w.steps) / per))
    meta = {"reps": ns.reps, "threads": settings, "machine": machine(), "epochs": epochs, "loads": [],
            "startup": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "options": opts.label()}
    print(f"Zoo benchmark on {meta['machine']}", flush=True)
    print(f"{opts.label()}; threads: {', '.join(settings)}; {ns.reps} repetitions; epochs: "
          + ", ".join(f"{n}={e}" for n, e in epochs.items()), flush=True)

    results: dict = {t: {w.name: {v: [] for v in variants} for w in workloads} for t in settings}
    commands: dict = {t: {"bare": [], "zoo": []} for t in settings} if not ns.no_command else {}
    rng = random.Random(SEED)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        tmp = Path(tmp)
        # (b) logs into one store per workload, made beforehand: a user's mlruns/ exists already
        stores = {w.name: f"sqlite:///{tmp / ('store-' + w.name) / 'mlflow.db'}" for w in workloads}
        home = tmp / "home"  # the whole default `zoo train` runs here, with its default store ./mlruns
        if "b" in variants or commands:
            from zoo.tracking import prepare_store

            for uri in stores.values():
                prepare_store(uri, "bench")
            prepare_store(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}", "zoo")
        with contextlib.ExitStack() as stack:
            server_uri = (stack.enter_context(mlflow_server(tmp / "server", _env(settings[0])))
                          if "server" in variants else None)
            for rep in range(ns.reps):
                load = wait_quiet(ns.max_load, ns.patience)
                meta["loads"].append(load)
                for setting in settings:
                    env = _env(setting)
                    for w in workloads:
                        with_server = ns.server_workloads == "all" or w.name in ns.server_workloads.split(",")
                        order = [v for v in ("a", "b", "server", "c", "d")
                                 if v in variants and (v != "server" or with_server)]
                        rng.shuffle(order)
                        for v in order:
                            folder = tmp / f"{w.name}-{v}-{setting}-{rep}"
                            folder.mkdir()
                            if v in ("b", "server"):
                                r = run_zoo(w, epochs[w.name], folder, env, stores[w.name] if v == "b" else server_uri,
                                            ns.timeout, opts, extra)
                                results[setting][w.name][v].append(r)
                                if v == "b":
                                    results[setting][w.name]["cmd"].append(r)
                            else:
                                r = run_child(v, w, epochs[w.name], folder, env, ns.timeout, opts)
                                results[setting][w.name][v].append(r)
                            shown = (f"{r['steps'] / r['loop_s']:.0f} steps/s" if "loop_s" in r
                                     else r.get("error") or r.get("skipped"))
                            print(f"  rep {rep + 1} threads={setting:7s} {w.name:7s} {VARIANTS[v]:15s} {shown}",
                                  flush=True)
                    if commands:
                        home.mkdir(exist_ok=True)
                        for kind in rng.sample(["bare", "zoo"], 2):
                            r = run_command(kind, home, env, ns.timeout, ns.command_epochs)
                            commands[setting][kind].append(r)
                            shown = f"{r['command_s']:.2f} s" if "command_s" in r else r.get("error")
                            print(f"  rep {rep + 1} threads={setting:7s} whole command: "
                                  f"{'bare script' if kind == 'bare' else 'zoo train':11s} {shown}", flush=True)
                if not ns.no_startup:
                    for name, seconds in startup_times(_env(settings[0]), tmp).items():
                        meta["startup"].setdefault(name, []).append(seconds)
    meta["loads"].append(os.getloadavg()[0])
    meta["seconds"] = time.perf_counter() - started
    saved = {"meta": meta, "results": results, "commands": commands,
             "summary": {t: summarize(results[t], workloads) for t in settings}}
    print()
    print(f"load average (1 min) before each repetition and at the end: "
          + ", ".join(f"{x:.2f}" for x in meta["loads"]) + f"; {meta['seconds']:.0f} s in all")
    print(full_report(saved, markdown=ns.markdown))
    if ns.json:
        ns.json.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
