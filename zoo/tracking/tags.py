"""The names of the tags Zoo writes on MLflow runs, in one place.

Everything that reads or writes a run's tags names them through these constants, so a tag is
spelled once. MLflow's own tags (``mlflow.*``) are read by its UI: the parent of a nested run,
the run's description, the source commit.
"""

# MLflow's own
PARENT = "mlflow.parentRunId"  # a sweep's child run points at its parent
NOTE = "mlflow.note.content"  # the description the UI shows
GIT_COMMIT = "mlflow.source.git.commit"

# what a run trained
MODEL = "zoo.model"
FAMILY = "zoo.family"
PLUGIN = "zoo.plugin"
PLUGIN_SOURCE = "zoo.plugin_source"
DATASET = "zoo.dataset"
DATA_PLUGIN = "zoo.data_plugin"
TASK = "zoo.task"
MONITOR = "zoo.monitor"  # the metric that picks the best epoch, e.g. best/val_accuracy
DIRECTION = "zoo.direction"  # maximize or minimize: which way MONITOR improves
DEVICE = "zoo.device"
TORCH_VERSION = "zoo.torch_version"
VERSION = "zoo.version"
OVERRIDES = "zoo.overrides"
WORLD_SIZE = "zoo.world_size"
OUTPUT_DIR = "zoo.output_dir"
CHECKPOINT_DIR = "zoo.checkpoint_dir"
GRAD_EVERY = "zoo.grad_every"
METRIC_WRITER = "zoo.metric_writer"
RESUMED_FROM_STEP = "zoo.resumed_from_step"

# how it ended
ERROR = "zoo.error"
FAILURE = "zoo.failure"
FAILURE_STEP = "zoo.failure_step"
