"""The command line: ``zoo train | list | ui``. It parses, calls and prints; no logic of its own.

``zoo train`` is a Hydra app (overrides, ``-m`` sweeps, ``--cfg``, ``--help``) over
:func:`zoo.train.train`. A problem with the user's input prints one line and exits 2, without a
traceback unless ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import difflib
import gc
import logging
import os
import sys
from pathlib import Path

from zoo._runtime import exit_now, share_config_store, start_without_collector, stop_group
from zoo.errors import ZooError

USAGE = """usage: zoo <command> [args]

commands:
  train [overrides]   train a model (Hydra overrides; `zoo train --help` lists them)
  list                every architecture and dataset, with its plugin and where it came from
  ui [--port N] [--host H]   the MLflow UI over the project's store (127.0.0.1 by default)
  compare [runs|--experiment E|--sweep ID] [--sort METRIC] [--plot FILE.png]
                      a table of runs side by side, and their curves in one figure
  server              a shared MLflow tracking server (PostgreSQL, authentication) for a team
"""

GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "tracking", "experiment", "hparams_search")


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def _fail(msg: str, code: int = 2) -> None:
    # one line, whatever the message echoes back (a newline typed into an override, say)
    msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def _plugin_dirs(args: list[str]) -> list[str]:
    """``plugins.dir`` must be known before Hydra composes (plugins add config nodes)."""
    dirs = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0].lstrip("+~") == "plugins.dir" and "=" in a]
    if not dirs and os.environ.get("ZOO_PLUGIN_DIR"):
        dirs = [os.environ["ZOO_PLUGIN_DIR"]]
    return [d for d in dirs if d and d != "null"]


def _registry(args: list[str]):
    from zoo.plugin.registry import load_registry

    reg = load_registry(_plugin_dirs(args))
    for f in reg.failures:
        print(f"warning: plugin '{f.plugin}' ({f.source}) was skipped: {f.error}", file=sys.stderr)
    return reg


def _choices(group: str, registry) -> list[str]:
    from zoo.config import CONF_DIR

    names = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    if group == "model":
        names |= set(registry.architectures)
    if group == "data":
        names |= set(registry.datasets)
    return sorted(names)


def _names_a_config(arg: str) -> bool:
    """Whether Hydra reads the value of ``group=value`` as names: Hydra crashes on a number or null."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
    except Exception:  # malformed: Hydra says so itself, on one line
        return True
    if override.is_sweep_override():
        return True
    values = override.value() if isinstance(override.value(), list) else [override.value()]
    return all(isinstance(v, str) and "${" not in v for v in values)  # an interpolation is not a name


def check_choices(args: list[str], registry) -> None:
    """One clear line for an unknown ``group=name`` before Hydra composes anything."""
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~").split("@", 1)[0]  # group@package=option is a group choice too
        if not group:  # Hydra itself crashes on some of these (+=1, @=1)
            raise ZooError(f"{arg} names no config key before '=': write key=value, e.g. trainer.max_epochs=5")
        if (group in GROUPS or "/" in group) and not _names_a_config(arg):  # hydra/launcher=... too
            hint = f"; write ~{group} to go without one" if value == "null" else ""
            raise ZooError(f"{arg}: a config group takes the name of a config, not {value!r}{hint}")
        if group not in GROUPS or value == "" or (value.split("(", 1)[0].isidentifier() and "(" in value):
            continue  # a sweep (choice(...), range(...)) is Hydra's to read
        options = _choices(group, registry)
        for v in value.split(","):
            if v not in options:
                close = difflib.get_close_matches(v, options, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                what = {"model": "model (architecture)", "data": "dataset"}.get(group, group)
                raise ZooError(f"unknown {what} '{v}' in {arg}.{hint} Available: {', '.join(options) or 'none'}")


def cmd_train(args: list[str]) -> int:
    start_without_collector()  # the loop turns it on again (zoo._runtime.frozen_collector)
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from omegaconf import OmegaConf

    from zoo.config import CONF_DIR, register_configs

    registry = _registry(args)
    register_configs(registry)
    share_config_store()
    if not any(a in ("--help", "-h", "--hydra-help", "--info", "--cfg", "-c", "--shell-completion") for a in args):
        check_choices(args, registry)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def run(cfg) -> float | None:
        # imported here, not above: --help, --cfg and the like never load torch's training stack or MLflow
        from zoo.training.distributed import launch, under_torchrun
        from zoo.training.train import train

        overrides = list(HydraConfig.get().overrides.task)
        if cfg.trainer.get("strategy") == "ddp" and not under_torchrun():
            # every rank writes into this job's output folder
            out = f"hydra.run.dir={HydraConfig.get().runtime.output_dir}"
            code = launch(OmegaConf.to_container(cfg.trainer, resolve=True), [*overrides, out])
            if code:
                sys.exit(code)
            return None
        try:
            metrics = train(cfg, registry, overrides)
        except ZooError as exc:
            if _full_errors():
                raise
            if HydraConfig.get().mode == RunMode.MULTIRUN:  # a sweep's job: the sweeper reports it, the others go on
                raise ZooError(str(exc)) from None
            _fail(str(exc))
        if metrics.get("run_id"):  # rank 0 (the only rank with a run)
            print(summary_line(cfg, metrics))
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # the next job runs in this process: free what this one left
            gc.collect()
        return metrics.get("objective")

    sys.argv = ["zoo train", *args]
    run()
    return 0


def summary_line(cfg, metrics: dict) -> str:
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
    return (f"zoo: {cfg.model.name} on {cfg.data.name} | {shown} | {metrics.get('duration_s', 0):.1f}s | "
            f"run {metrics['run_id']} (experiment '{cfg.tracking.experiment}')")


def cmd_list(args: list[str]) -> int:
    registry = _registry(args)
    rows = [("ARCHITECTURE", "FAMILY", "DATA KINDS", "PLUGIN", "SOURCE")]
    for name, e in sorted(registry.architectures.items()):
        rows.append((name, e.decl.family, ",".join(e.decl.kinds), e.plugin, e.source))
    _table(rows)
    print()
    rows = [("DATASET", "KIND", "TASK", "PLUGIN", "SOURCE")]
    for name, e in sorted(registry.datasets.items()):
        rows.append((name, e.decl.kind, e.decl.task, e.plugin, e.source))
    _table(rows)
    if registry.failures:
        print()
        _table([("FAILED PLUGIN", "SOURCE", "ERROR")] + [(f.plugin, f.source, f.error) for f in registry.failures])
    return 0


def _table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def cmd_ui(args: list[str]) -> int:
    import argparse
    import signal
    import subprocess

    from zoo.tracking import artifact_root, default_uri

    p = argparse.ArgumentParser(prog="zoo ui", description="Start the MLflow UI over Zoo's store.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1: enough for one person)")
    p.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_uri(),
                   help="the store (default: MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    ns = p.parse_args(args)
    if ns.uri.startswith("sqlite:///"):
        Path(ns.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", ns.uri, "--host", ns.host, "--port", str(ns.port),
           "--workers", str(max(1, ns.workers))]
    root = artifact_root(ns.uri)
    if root:
        cmd += ["--default-artifact-root", root]

    proc = None
    stopping: list[int] = []

    def stop(signum, frame):  # Ctrl-C, SIGTERM or a closed terminal: stop the server's whole group
        stopping.append(signum)
        if proc is not None:  # else Popen is under way: stop right after it
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    if ns.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding to {ns.host}: anyone who can reach this machine can read (and change) your runs",
              file=sys.stderr)
    else:
        print(f"zoo ui binds to {ns.host} (this machine only); pass --host 0.0.0.0 to share it", file=sys.stderr)
    print(f"MLflow UI for {ns.uri} at http://{'127.0.0.1' if ns.host in ('0.0.0.0', '::') else ns.host}:{ns.port}", flush=True)
    # MLflow's GenAI job runners (a dozen Huey processes that outlive SIGTERM) serve nothing Zoo records.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    try:
        proc = subprocess.Popen(cmd, start_new_session=True, env=env)
        if stopping:
            raise KeyboardInterrupt
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_group(proc)


def cmd_compare(args: list[str]) -> int:
    from zoo.experiments.compare import main as compare_main

    return compare_main(args)


def cmd_server(args: list[str]) -> int:
    from zoo.tracking.server import main as server_main

    return server_main(args)


COMMANDS = {"train": cmd_train, "list": cmd_list, "ui": cmd_ui, "compare": cmd_compare, "server": cmd_server}


def main(argv: list[str] | None = None) -> int:
    """Run one ``zoo`` command. Called with no arguments (the ``zoo`` command itself), it ends the process."""
    if argv is None:
        try:
            code = _main(sys.argv[1:])
        except SystemExit as exc:
            code = exc.code
        exit_now(code)
    return _main(argv)


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        _fail(f"unknown command '{argv[0]}'.{f' Did you mean {close[0]!r}?' if close else ''} Commands: {', '.join(COMMANDS)}")
    try:
        return cmd(argv[1:]) or 0
    except ZooError as exc:
        if _full_errors():
            raise
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        run_id = getattr(exc, "zoo_run_id", None)
        hint = f": run {run_id} ended KILLED; continue it with: zoo train resume={run_id}" if run_id else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
