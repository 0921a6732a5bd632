"""System metrics (``system/*``: CPU, memory, disk, network, GPU): MLflow's own monitor, and a last sample at the end.

MLflow's :class:`~mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor` takes a
sample, waits ``interval`` seconds, logs it, and so on; when the run ends during a wait, the
sample it holds is dropped. A run shorter than the interval (a 3-epoch default run, against 10 s)
recorded nothing. :func:`start` runs the same monitor for a run, and :meth:`Monitor.finish` logs
the sample taken since the last one logged, so every run records at least one. The monitor is
started for Zoo's run alone, never through MLflow's process-wide switches (which set environment
variables that outlive the run).
"""

from __future__ import annotations

import logging

from zoo.errors import one_line

log = logging.getLogger(__name__)


def start(uri: str, run_id: str, interval: float, resume: bool):
    """Start sampling ``run_id`` every ``interval`` seconds; returns the monitor (None if it could not start).

    ``resume``: the run is continued, and its samples' steps go on from the last one logged.
    """
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        def finish(self):
            """Stop sampling, then log the sample taken since the last one logged (a short run's only one)."""
            super().finish()
            try:
                if not any(m.metrics for m in self.monitors):  # stopped before its first sample
                    self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
                self.mlflow_logger.flush()
            except Exception as exc:  # a figure about the machine, never a reason to fail the run
                log.warning("could not record the last system metrics sample: %s", one_line(exc, 200))

    try:
        monitor = Monitor(run_id, resume_logging=resume, tracking_uri=uri)
        # MLflow lets its environment variables override these arguments; Zoo's config has already
        # read them (tracking.system_metrics_interval), so what the run's params say is what is used
        monitor.sampling_interval, monitor.samples_before_logging = interval, 1
        monitor.start()
    except Exception as exc:  # psutil missing, or a monitor that cannot start: the run goes on without
        log.warning("system metrics are not recorded: %s", one_line(exc, 200))
        return None
    return monitor
