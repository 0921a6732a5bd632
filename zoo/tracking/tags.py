"""The names of the tags Zoo writes on MLflow runs, in one place.

Everything that reads or writes a run's tags names them through these constants, so a tag is
spelled once. MLflow's own tags (``mlflow.*``) are read by its UI: the parent of a nested run,
the run's description, the source commit.
"""

# MLflow's own
PARENT = "mlflow.parentRunId"  # a sweep's child run points at its parent
NOTE = "mlflow.note.content"  # the description the UI shows
GIT_COMMIT = "mlflow.source.git.commit"
EXPERIMENT_KIND = "mlflow.experimentKind"  # an experiment's: which view the MLflow UI opens it in ...
MODEL_TRAINING = "custom_model_development"  # ... its model-training view (not the GenAI one)

# what a run trained
MODEL = "zoo.model"
FAMILY = "zoo.family"
PLUGIN = "zoo.plugin"
PLUGIN_SOURCE = "zoo.plugin_source"
DATASET = "zoo.dataset"
DATA_PLUGIN = "zoo.data_plugin"
DATA_SOURCE = "zoo.data_source"  # the file or folder a dataset read (DataInfo.meta["source"]) ...
DATA_DIGEST = "zoo.data_digest"  # ... the sha256 of its content ...
DATA_SIZE = "zoo.data_size"  # ... and its size in bytes
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
THREADS = "zoo.threads"  # torch's intra-op threads during the run (zoo.training.threads)
THREADS_FROM = "zoo.threads_from"  # trainer.threads, OMP_NUM_THREADS or auto: what chose them
RESUMED_FROM_STEP = "zoo.resumed_from_step"
RESUMED_WITH = "zoo.resumed_with"  # the overrides a resume changed (trainer.max_epochs=40)
RESUMED_AFTER = "zoo.resumed_after"  # a continued run that FINISHED: the error it had stopped with
INIT_FROM = "zoo.init_from"  # the model a run started from (init_from=)
INIT_LOADED = "zoo.init_loaded"  # how many of its tensors came from that model: "12 of 14"
EVALUATED_MODEL = "zoo.evaluated_model"  # what a zoo eval run measured (the model's URI)

# who runs it (zoo.tracking.liveness): a RUNNING run whose process is gone is stale
HOST = "zoo.host"
PID = "zoo.pid"
PID_STARTED = "zoo.pid_started"  # when that process started (seconds since the epoch): a pid used again is another
HEARTBEAT = "zoo.heartbeat"  # seconds since the epoch, refreshed while the run runs

# how it ended
PRUNED = "zoo.pruned"  # "true": a search trial stopped early by its pruner; the run ends FINISHED
PRUNED_EPOCH = "zoo.pruned_epoch"  # the last epoch it trained
ERROR = "zoo.error"
SYNCED = "zoo.synced"  # zoo sync replayed the run's journal: how many rows, from where, when
FAILURE = "zoo.failure"
FAILURE_STEP = "zoo.failure_step"
REPORT_ERROR = "zoo.report_error"  # the family's report failed; the run itself did not (error/report_traceback.txt)

# a sweep's parent run (zoo.experiments.sweep): what it ran
SWEEP = "zoo.sweep"  # grid or optuna
SWEEP_OVERRIDES = "zoo.sweep_overrides"  # the command's overrides as typed
SWEEP_KEYS = "zoo.sweep_keys"  # the keys whose value varies from job to job
SWEEP_ARMS = "zoo.sweep_arms"
SWEEP_DIR = "zoo.sweep_dir"
SWEEPER = "zoo.sweeper"
LAUNCHER = "zoo.launcher"
PRESET = "zoo.preset"  # the experiment or hparams_search preset
RESUMED = "zoo.resumed"  # when a search continued under this parent

# ... and what came of it
SWEEP_RUNS = "zoo.sweep_runs"
SWEEP_UNFINISHED_RUNS = "zoo.sweep_unfinished_runs"
SWEEP_FAILED_JOBS = "zoo.sweep_failed_jobs"
SWEEP_PRUNED_RUNS = "zoo.sweep_pruned_runs"
SWEEP_STOPPED = "zoo.sweep_stopped"  # why a search stopped before its last trial (too many failures)
REPEATS = "zoo.repeats"  # seeds per configuration (hydra.sweeper.repeats)
BEST_METRIC = "zoo.best_metric"
BEST_DIRECTION = "zoo.best_direction"
BEST_RUN_ID = "zoo.best_run_id"
BEST_RUN_NAME = "zoo.best_run_name"
BEST_VALUE = "zoo.best_value"  # with repeats: the best configuration's mean over its seeds
BEST_GROUP = "zoo.best_group"  # with repeats: the best configuration (its runs' name less the seed)
BEST_STD = "zoo.best_std"  # ... the standard deviation over its seeds
BEST_N = "zoo.best_n"  # ... and how many seeds finished

# an Optuna search's parent run (hydra_plugins/zoo_sweepers/optuna_search.py)
OPTUNA_STUDY = "zoo.optuna_study"
OPTUNA_STORAGE = "zoo.optuna_storage"
OPTUNA_TRIALS_COMPLETE = "zoo.optuna_trials_complete"
OPTUNA_TRIALS_PRUNED = "zoo.optuna_trials_pruned"
OPTUNA_TRIALS_FAILED = "zoo.optuna_trials_failed"
OPTUNA_BEST_TRIAL = "zoo.optuna_best_trial"
OPTUNA_BEST_PARAMS = "zoo.optuna_best_params"
