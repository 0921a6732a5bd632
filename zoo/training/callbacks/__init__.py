"""The loop's callbacks, one concern each: the step log, the progress bars, the timings, a search trial's reports.

The checkpointer is in :mod:`zoo.training.checkpoint`, beside the checkpoint format it writes.
"""

from zoo.training.callbacks.progress import Progress
from zoo.training.callbacks.pruning import TrialReport
from zoo.training.callbacks.step_log import History, NonFiniteLoss, StepLog
from zoo.training.callbacks.timing import Perf

__all__ = ["History", "NonFiniteLoss", "Perf", "Progress", "StepLog", "TrialReport"]
