"""What a run stores once it has trained: the best checkpoint, the figures, the family's report, the model.

:func:`log_outputs` hands the model to the run's writer first (MLflow's save of the pyfunc runs in the
writer process by default) and draws every figure meanwhile; only then does it store them, so that no
figure waits for the model before the next one is drawn. It returns once the model and every file
are stored.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from zoo.errors import ZooError, one_line
from zoo.models.log import log_model
from zoo.plugin.registry import call_plugin
from zoo.tracking import tags
from zoo.training.checkpoint import Checkpointer

log = logging.getLogger(__name__)


def log_outputs(run, checkpointer: Checkpointer, history, model, splits, arch, dataset, task, out_dir: Path, *,
                settings: dict, data_settings: dict, seed: int, with_model: bool = True,
                stopped: bool = False) -> str | None:
    """The best checkpoint, the figures, the family's own report, and the model itself (its model id).

    ``settings``, ``data_settings``: the model's and the data's plugin settings (the model's record).
    ``stopped``: a search pruned the run (``Loop.request_stop``); it keeps its best checkpoint (and
    ``last.pt`` on disk) and skips the rest, which a trial that is no candidate does not need.
    """
    best = checkpointer.folder / "best.pt"
    if best.exists():  # a run resumed from a lone last.pt that never improved has none
        run.artifact(best, "checkpoints")
    if stopped:
        return None
    pending = None
    if with_model:  # logged by the run's writer while the figures are drawn here
        pending = log_model(run, model, splits, arch=arch, dataset=dataset, settings=settings,
                            data_settings=data_settings, seed=seed, task=task, step=checkpointer.best_step or 0,
                            wait=False)
    try:
        figs = out_dir / "figures"
        figs.mkdir(parents=True, exist_ok=True)
        files = figures(history, figs)
        failed = None
        if arch.decl.report is not None:
            drawn, failed = report(arch, model, splits, figs)
            files += [(path, "plots") for path in drawn]
        for path, folder in files:  # each waits behind the model in the writer's queue
            run.artifact(path, folder)
        if failed is not None:
            report_failed(run, failed)
    except BaseException:
        if pending is not None:  # its files stay until the writer has taken them
            with contextlib.suppress(Exception):
                pending()
        raise
    return pending() if pending is not None else None


def figures(history, figs: Path) -> list[tuple[Path, str]]:
    """Zoo's own figures of the run, drawn into ``figs``: ``(file, the run's artifact folder)`` each."""
    from zoo import plots

    files = [(plots.loss_curve(history, figs / "loss_curve.png"), "plots")]
    if history.hist:
        npz, png = plots.histograms(history.hist, figs / "histograms.npz", figs / "histograms.png")
        files += [(npz, "histograms"), (png, "plots")]
    return files


def report(arch, model, splits, figs: Path) -> tuple[list[Path], BaseException | None]:
    """The family's own report, drawn into ``figs``: its files (for ``plots/``), or the error it raised.

    A report that fails is a warning and a record on the run (:func:`report_failed`), never the run's
    failure: the model trained.
    """
    model.eval()
    try:
        return list(call_plugin(f"model={arch.decl.name} report", arch.decl.report, model, splits, figs) or ()), None
    except Exception as exc:  # a bug in a plot is not a failed training
        cause = exc.__cause__ if isinstance(exc, ZooError) and exc.__cause__ else exc
        log.warning("model=%s: its report failed (%s); the run goes on without it", arch.decl.name, _named(cause))
        return [], cause


def report_failed(run, cause: BaseException) -> None:
    """The report's error on the run: tag ``zoo.report_error`` and ``error/report_traceback.txt``."""
    import traceback

    with contextlib.suppress(Exception):
        run.tags({tags.REPORT_ERROR: _named(cause)[:5000]})
        run.text("".join(traceback.format_exception(cause)), "error/report_traceback.txt")


def _named(cause: BaseException) -> str:
    return f"{type(cause).__name__}: {one_line(cause)}"
